package fsm

import (
	"os"

	"golang.org/x/sys/unix"
)

// startWriteback asks the kernel to begin writing [off, off+n) of fh to disk
// and returns without waiting for it (sync_file_range SYNC_FILE_RANGE_WRITE,
// as RocksDB's bytes_per_sync does). Segments are written without fsync, so
// left alone their pages pile up dirty until a snapshot fsyncs them all at
// once, a burst that the Raft log's fsyncs queue behind on a shared disk.
func startWriteback(fh *os.File, off, n int64) {
	_ = unix.SyncFileRange(int(fh.Fd()), off, n, unix.SYNC_FILE_RANGE_WRITE)
}
