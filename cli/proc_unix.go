//go:build unix

package cli

import (
	"bytes"
	"errors"
	"os"
	"strconv"
	"syscall"
)

// detachedProcAttr puts a node in a process group of its own, so that it
// outlives the command that started it and a Ctrl-C does not reach it.
func detachedProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}

// processAlive reports whether pid runs node id. Where /proc exists it also
// rules out a zombie and a pid reused by another program.
func processAlive(pid int, id string) bool {
	if pid <= 0 {
		return false
	}
	if err := syscall.Kill(pid, 0); err != nil && !errors.Is(err, syscall.EPERM) {
		return false
	}
	proc := "/proc/" + strconv.Itoa(pid)
	if stat, err := os.ReadFile(proc + "/stat"); err == nil {
		// pid (comm) state ...: the state follows the last ')'.
		if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) && (stat[i+2] == 'Z' || stat[i+2] == 'X') {
			return false
		}
	}
	if cmdline, err := os.ReadFile(proc + "/cmdline"); err == nil {
		return bytes.Contains(cmdline, []byte("\x00--id\x00"+id+"\x00"))
	}
	return true
}

// signalProcess sends sig to pid.
func signalProcess(pid int, sig syscall.Signal) error {
	return syscall.Kill(pid, sig)
}
