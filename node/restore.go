package node

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/hashicorp/raft"
	"github.com/weir-streaming/weir/fsm"
)

// ErrRestore marks a refused restore.
var ErrRestore = errors.New("cannot restore")

// seedFromBackup installs a backup (a `cluster backup` file or a node's
// pre-upgrade backup) as this node's first Raft snapshot, with a
// configuration of this node alone. The node then starts as a one-voter
// cluster holding the backup's state; the nodes that join it are added by
// the leader and receive the state by snapshot install, as any new voter
// does. Only a node without Raft state can be seeded.
func (n *Node) seedFromBackup(logs raft.LogStore, stable raft.StableStore) error {
	path := n.cfg.RestoreFrom
	has, err := raft.HasExistingState(logs, stable, n.snaps)
	if err != nil {
		return err
	}
	if has {
		return fmt.Errorf("%w: node %s already has Raft state in %s; restore only into a new or wiped data dir (\"weir cluster restore\" does this)",
			ErrRestore, n.cfg.ID, n.cfg.DataDir)
	}
	h, err := fsm.ReadSnapshotFile(path)
	if err != nil {
		return fmt.Errorf("%w from %s: %v", ErrRestore, path, err)
	}
	if cur := n.clusterID(); cur != "" && cur != h.ClusterID {
		return fmt.Errorf("%w: %s is a backup of cluster %s, this node's data belongs to cluster %s", ErrRestore, path, h.ClusterID, cur)
	}
	index := h.AppliedIndex
	if index == 0 {
		index = 1
	}
	conf := raft.Configuration{Servers: []raft.Server{{Suffrage: raft.Voter, ID: raft.ServerID(n.cfg.ID), Address: raft.ServerAddress(n.mux.Addr().String())}}}
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		// A node's pre-upgrade backup: its files by link, as it was made.
		if _, err := n.snaps.Import(path, index, 1, conf, index); err != nil {
			return fmt.Errorf("%w from %s: %v", ErrRestore, path, err)
		}
		n.logger.Info("seeded from backup", "dir", path, "cluster_id", h.ClusterID, "index", index)
		return nil
	}
	sink, err := n.snaps.Create(raft.SnapshotVersionMax, index, 1, conf, index, n.raftTrans)
	if err != nil {
		return err
	}
	rc, _, err := fsm.OpenBackup(path)
	if err != nil {
		sink.Cancel()
		return err
	}
	defer rc.Close()
	if _, err := io.Copy(sink, rc); err != nil {
		sink.Cancel()
		return fmt.Errorf("%w: copying %s: %v", ErrRestore, path, err)
	}
	if err := sink.Close(); err != nil {
		return err
	}
	n.logger.Info("seeded from backup", "file", path, "cluster_id", h.ClusterID, "index", index)
	return nil
}
