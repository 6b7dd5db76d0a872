//go:build !unix

package cli

import (
	"errors"
	"syscall"
)

// Local mode manages node processes with Unix signals and process groups;
// elsewhere, run `weir node run` yourself and point --addr at it.

func detachedProcAttr() *syscall.SysProcAttr { return nil }

func processAlive(pid int, id string) bool { return false }

func signalProcess(pid int, sig syscall.Signal) error {
	return errors.New("local mode needs a Unix system")
}
