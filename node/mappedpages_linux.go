package node

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// mappedPages gives back the pages of a bbolt file that the process has
// mapped, keeping them in the page cache.
//
// bbolt reads raft.db through a read-only shared mapping, and every append
// reads the last leaf's entries through it to rewrite them (raft-boltdb
// keeps a 100 KiB entry per key, and a leaf holds two to four). Left
// alone, every page of the log the node ever touched stays in its resident
// set until the kernel needs the memory: 1.4 GB of VmRSS with the default
// 10 240 trailing entries of 100 KiB (docs/performance.md, Capacity), for a
// node whose own memory is 43 MiB. madvise(MADV_DONTNEED) on a shared file
// mapping only unmaps the pages from this process: the page cache keeps
// them, and the next read through the map faults them back from it (a
// minor fault, no I/O) with the file's current bytes, since bbolt writes
// with pwrite, never through the map. So it is safe while transactions run.
//
// The mapping is found in /proc/self/maps by the file's device and inode.
// It must not move between that read and madvise: bbolt moves it only when
// a transaction grows the file past it, so raft.db is mapped with 64 GiB of
// address space up front and release skips a file past half of that.
type mappedPages struct {
	major, minor uint32
	ino          uint64
	path         string
}

func newMappedPages(path string) (*mappedPages, error) {
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		return nil, fmt.Errorf("stat %s: %w", path, err)
	}
	return &mappedPages{major: unix.Major(st.Dev), minor: unix.Minor(st.Dev), ino: st.Ino, path: path}, nil
}

// release unmaps the file's resident pages from the process and returns how
// many bytes of mapping it advised.
func (m *mappedPages) release() (int64, error) {
	var st unix.Stat_t
	if err := unix.Stat(m.path, &st); err != nil {
		return 0, err
	}
	if st.Size > raftInitialMmapBytes/2 {
		return 0, nil // bbolt may remap it at any moment
	}
	regions, err := m.regions()
	if err != nil {
		return 0, err
	}
	var advised int64
	for _, r := range regions {
		n := min(r.end-r.start, uint64(st.Size+int64(os.Getpagesize())-1)&^uint64(os.Getpagesize()-1))
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, uintptr(r.start), uintptr(n), unix.MADV_DONTNEED); errno != 0 {
			return advised, fmt.Errorf("madvise %s: %w", m.path, errno)
		}
		advised += int64(n)
	}
	return advised, nil
}

type region struct{ start, end uint64 }

// regions are the file's mappings in /proc/self/maps: lines of
// "start-end perms offset major:minor inode path" in hex, inode decimal.
func (m *mappedPages) regions() ([]region, error) {
	b, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return nil, err
	}
	var out []region
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) < 5 {
			continue
		}
		if ino, err := strconv.ParseUint(string(f[4]), 10, 64); err != nil || ino != m.ino {
			continue
		}
		maj, mnr, ok := hexPair(f[3], ':')
		if !ok || maj != uint64(m.major) || mnr != uint64(m.minor) {
			continue
		}
		start, end, ok := hexPair(f[0], '-')
		if !ok || end <= start {
			continue
		}
		out = append(out, region{start, end})
	}
	return out, sc.Err()
}

// hexPair parses "a<sep>b", both hexadecimal, as /proc/self/maps writes an
// address range and a device.
func hexPair(field []byte, sep byte) (a, b uint64, ok bool) {
	i := bytes.IndexByte(field, sep)
	if i < 0 {
		return 0, 0, false
	}
	a, err1 := strconv.ParseUint(string(field[:i]), 16, 64)
	b, err2 := strconv.ParseUint(string(field[i+1:]), 16, 64)
	return a, b, err1 == nil && err2 == nil
}
