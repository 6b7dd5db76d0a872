package node

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/weir-streaming/weir/fsm"
)

// The state store is derived from the Raft log, which is fsynced on every
// append; so the store's own commits need not be. A process crash (kill -9)
// loses nothing that reached the kernel, and the store's applied index tells
// Raft what to replay. An operating-system crash or power loss can, though,
// leave an unsynced bbolt file or segment file torn. To tell the two apart the node writes
// the kernel's boot id into stateOpenMarker while the store is open and
// removes it after a clean close: a marker from another boot means the
// machine went down under an open store, and the node rebuilds the store
// from the newest Raft snapshot and the log instead of trusting it.
//
// Where no boot id can be read (not Linux), the store fsyncs every commit.
const (
	stateOpenMarker = "state.db.open"
	bootIDPath      = "/proc/sys/kernel/random/boot_id"
)

func bootID() []byte {
	b, err := os.ReadFile(bootIDPath)
	if err != nil {
		return nil
	}
	return bytes.TrimSpace(b)
}

// prepareStateStore decides whether the state store may skip fsync, moves a
// store that an operating-system crash may have torn out of the way, and
// marks the store open. It returns true when commits may skip fsync.
func (n *Node) prepareStateStore() (noSync bool, err error) {
	id := bootID()
	if len(id) == 0 {
		return false, nil
	}
	marker := filepath.Join(n.cfg.DataDir, stateOpenMarker)
	state := filepath.Join(n.cfg.DataDir, stateFile)
	if prev, err := os.ReadFile(marker); err == nil && !bytes.Equal(bytes.TrimSpace(prev), id) {
		suffix := fmt.Sprintf(".after-os-crash-%d", time.Now().Unix())
		for _, p := range []string{state, fsm.SegmentDir(state)} {
			if _, err := os.Stat(p); err != nil {
				continue
			}
			n.logger.Warn("the machine restarted while the state store was open; rebuilding it from the Raft snapshot and log",
				"moved_aside", p+suffix)
			if err := os.Rename(p, p+suffix); err != nil {
				return false, fmt.Errorf("move the state store aside: %w", err)
			}
		}
	}
	if err := writeSynced(marker, id); err != nil {
		return false, fmt.Errorf("state store marker: %w", err)
	}
	return true, nil
}

// markStateStoreClosed records a clean close (the store was synced).
func (n *Node) markStateStoreClosed() {
	_ = os.Remove(filepath.Join(n.cfg.DataDir, stateOpenMarker))
}

func writeSynced(path string, data []byte) error {
	fh, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := fh.Write(data); err != nil {
		fh.Close()
		return err
	}
	if err := fh.Sync(); err != nil {
		fh.Close()
		return err
	}
	if err := fh.Close(); err != nil {
		return err
	}
	d, err := os.Open(filepath.Dir(path))
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
