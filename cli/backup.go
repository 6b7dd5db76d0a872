package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/weir-streaming/weir/api"
	"github.com/weir-streaming/weir/fsm"
)

const (
	// backupTimeout bounds downloading one backup.
	backupTimeout = 30 * time.Minute
	// restoreDeadline bounds waiting for a restored cluster: the nodes that
	// join the seeded one receive the whole state by snapshot.
	restoreDeadline = 3 * time.Minute
	// backupFileMode keeps a backup readable by its owner only: it holds
	// every record.
	backupFileMode = 0o600
)

// ClusterBackupCmd is `weir cluster backup`.
type ClusterBackupCmd struct {
	Out   string `required:"" type:"path" placeholder:"FILE" help:"File to write the backup to. It is written as FILE.tmp, verified (format and CRC-32C), then renamed."`
	Force bool   `help:"Replace FILE if it exists."`
}

// Run downloads a consistent, checksummed snapshot of the cluster's state
// from the leader, verifies it and keeps it under FILE. Nothing is left
// under FILE unless it verified.
func (c *ClusterBackupCmd) Run(cl *Client, p *Printer) error {
	if _, err := os.Stat(c.Out); err == nil && !c.Force {
		return failf("pass --force to replace it, or choose another --out", "%s exists; refusing to overwrite a backup", c.Out)
	}
	tmp := c.Out + ".tmp"
	fh, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, backupFileMode)
	if err != nil {
		return failf("choose an --out in a directory you can write to", "cannot write the backup: %v", err)
	}
	keep := false
	defer func() {
		if !keep {
			_ = fh.Close()
			_ = os.Remove(tmp)
		}
	}()
	// A strong read: the leader serves it, so the backup holds every write
	// acknowledged before it.
	req := Request{Method: http.MethodGet, Path: api.PathBackup, Timeout: backupTimeout,
		Query:  url.Values{api.QueryConsistency: {api.ConsistencyStrong}},
		Header: http.Header{"Accept": {"application/octet-stream"}}}
	n, from, err := cl.Stream(context.Background(), req, fh)
	if err == nil {
		err = fh.Sync()
	}
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return failf(`run "weir cluster backup" again; nothing was written to `+c.Out, "the backup download failed: %v", err)
	}
	h, err := fsm.ReadSnapshotFile(tmp)
	if err != nil {
		return failf(`run "weir cluster backup" again; nothing was written to `+c.Out,
			"the backup from %s does not verify after %d bytes: %v", hostOf(from), n, err)
	}
	if err := os.Rename(tmp, c.Out); err != nil {
		return fmt.Errorf("keeping the backup: %w", err)
	}
	keep = true
	if p.json {
		return p.JSON(backupReport{File: c.Out, Bytes: n, ClusterID: h.ClusterID, AppliedIndex: h.AppliedIndex, Format: h.Format, From: hostOf(from)})
	}
	p.Linef("wrote backup %s: %d bytes, cluster %s, applied index %d (format %d, CRC-32C verified; from %s)",
		c.Out, n, orDash(h.ClusterID), h.AppliedIndex, h.Format, hostOf(from))
	p.Linef("")
	p.Linef("next: keep it somewhere safe; to rebuild a stopped or new local cluster from it:")
	p.Linef("  weir cluster restore --from %s", c.Out)
	return nil
}

// backupReport is what backup and restore say about a backup file.
type backupReport struct {
	File         string `json:"file"`
	Bytes        int64  `json:"bytes"`
	ClusterID    string `json:"cluster_id"`
	AppliedIndex uint64 `json:"applied_index"`
	Format       uint16 `json:"format"`
	From         string `json:"from,omitempty"`
}

// verifyBackup checks a backup (a file, or a node's pre-upgrade backup
// directory) end to end before anything is changed, and returns its header
// and the length of its stream.
func verifyBackup(path string) (fsm.SnapshotHeader, int64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return fsm.SnapshotHeader{}, 0, failf("check the path given to --from", "cannot read the backup: %v", err)
	}
	if !fi.Mode().IsRegular() && !fi.IsDir() {
		return fsm.SnapshotHeader{}, 0, failf(`give --from a file written by "weir cluster backup", or a node's data/backups/pre-upgrade directory`, "%s is neither a file nor a directory", path)
	}
	h, err := fsm.ReadSnapshotFile(path)
	var size int64
	if err == nil {
		var rc io.ReadCloser
		if rc, size, err = fsm.OpenBackup(path); err == nil {
			rc.Close()
		}
	}
	switch {
	case errors.Is(err, fsm.ErrBadSnapshot):
		return h, 0, failf(`use an intact backup: a file "weir cluster backup" wrote, or a node's data/backups/pre-upgrade directory; nothing was changed`,
			"%s is not a usable backup (%v): truncated, corrupted or of an unknown format", path, err)
	case err != nil:
		return h, 0, failf("check the path given to --from; nothing was changed", "cannot read the backup: %v", err)
	}
	return h, size, nil
}

// ClusterRestoreCmd is `weir cluster restore`.
type ClusterRestoreCmd struct {
	From  string `required:"" type:"path" placeholder:"PATH" help:"Backup file written by \"weir cluster backup\" (or a node's data/backups/pre-upgrade directory)."`
	Nodes *int   `placeholder:"N" help:"Number of nodes of a new local cluster (default ${default_nodes}); a recorded cluster keeps its own."`
	Force bool   `help:"Replace the data of a local cluster whose id differs from the backup's (or is not recorded)."`
}

// Run rebuilds the local cluster from a backup: the file is verified first;
// a recorded cluster must be stopped and of the backup's cluster id. Each
// node's data is wiped, the first node starts seeded from the backup and
// the others join it empty and receive the state.
func (c *ClusterRestoreCmd) Run(g *Globals, s *Streams, p *Printer) error {
	if addrs, lc, err := g.addrs(); err != nil {
		return err
	} else if lc == nil && len(g.Addr) > 0 {
		return failf(`for nodes you run yourself: stop them, empty each one's --data-dir, start one with "weir node run --restore-from FILE ..." and the others empty with --join; they receive the state`,
			"cluster restore rebuilds the local cluster only, and --addr (or WEIR_ADDR) points at %s", strings.Join(addrs, ","))
	}
	h, size, err := verifyBackup(c.From)
	if err != nil {
		return err
	}
	home, err := g.HomeDir()
	if err != nil {
		return err
	}
	lc, err := loadLocalCluster(home)
	if err != nil {
		return err
	}
	binary, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding this weir binary: %w", err)
	}
	say := progressTo(p, s)
	say("verified backup %s: cluster %s, applied index %d, %d bytes (format %d, CRC-32C ok)", c.From, orDash(h.ClusterID), h.AppliedIndex, size, h.Format)
	if lc != nil {
		if err := c.checkReplace(lc, h); err != nil {
			return err
		}
		for _, n := range lc.Nodes {
			if !within(lc.DataDir, n.DataDir) {
				return failf("remove it by hand if it is yours", "refusing to wipe %s: it is not under the cluster's data directory %s", n.DataDir, lc.DataDir)
			}
		}
		from, err := keepOutOfWipe(lc, c.From)
		if err != nil {
			return err
		}
		if from != c.From {
			say("moved %s out of the data to be wiped, to %s", c.From, from)
			c.From = from
		}
		for _, n := range lc.Nodes {
			if err := os.RemoveAll(n.DataDir); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("wiping %s's data: %w", n.ID, err)
			}
		}
		say("wiped the data of %s (their logs stay)", strings.Join(nodeIDs(lc), ", "))
		lc.Binary = binary
	} else {
		n := defaultLocalNodes
		if c.Nodes != nil {
			n = *c.Nodes
		}
		if n < 1 {
			return failf("pass --nodes 1 or more (3 tolerates the loss of one node)", "--nodes %d: a cluster needs at least one node", n)
		}
		if lc, err = newLocalCluster(home, localDir(home), binary, n); err != nil {
			return err
		}
		say("new local cluster of %d node%s under %s", n, plural(n), lc.DataDir)
	}
	lc.ClusterID, lc.LastKnown = h.ClusterID, nil
	exits := make(chan nodeExit, len(lc.Nodes))
	for i := range lc.Nodes {
		var extra []string
		if i == 0 {
			extra = []string{"--restore-from", c.From}
		}
		if err := lc.spawn(&lc.Nodes[i], g.LogLevel, exits, extra...); err != nil {
			_ = lc.save()
			return err
		}
	}
	if err := lc.save(); err != nil {
		return err
	}
	seed := lc.Nodes[0].ID
	say("started %s seeded from the backup%s; waiting for a leader and every node in the Raft configuration", seed, othersJoin(lc))
	st, _, err := waitCluster(lc, exits, restoreDeadline, func(st *api.StatusResponse) string { return notRestored(lc, st, h.ClusterID) })
	if err != nil {
		return err
	}
	rememberQuietly(lc, s, st.ClusterID, st.Phase, st.ActiveVersion, st.TargetVersion)
	if p.json {
		return p.JSON(struct {
			Backup backupReport        `json:"backup"`
			Status *api.StatusResponse `json:"status"`
			Local  *LocalCluster       `json:"local"`
		}{backupReport{File: c.From, Bytes: size, ClusterID: h.ClusterID, AppliedIndex: h.AppliedIndex, Format: h.Format}, st, lc})
	}
	p.Linef("restored cluster %s: phase %s, active version %s, leader %s, %d voter%s",
		orDash(st.ClusterID), orDash(st.Phase), orDash(st.ActiveVersion), orDash(st.Leader), len(voterIDs(st)), plural(len(voterIDs(st))))
	printLocalNodes(p, lc)
	p.Linef("")
	p.Linef("next:")
	if st.Phase != phaseRunning {
		p.Linef("  weir cluster resume     # the backup was taken in phase %s: the data plane stays closed until then", st.Phase)
	}
	p.Linef("  weir topic list")
	p.Linef("  weir consume TOPIC -B -d")
	p.Linef("  weir cluster status")
	return nil
}

// checkReplace refuses to restore over a recorded cluster that runs, is
// sized otherwise, or has another cluster id (unless --force).
func (c *ClusterRestoreCmd) checkReplace(lc *LocalCluster, h fsm.SnapshotHeader) error {
	if c.Nodes != nil && *c.Nodes != len(lc.Nodes) {
		return failf(`run it without --nodes to restore into the recorded cluster, or "weir cluster delete" first to make a new one`,
			"the local cluster has %d nodes; --nodes %d only sizes a new cluster", len(lc.Nodes), *c.Nodes)
	}
	if running, _ := lc.split(); len(running) > 0 {
		ids := make([]string, len(running))
		for i, n := range running {
			ids[i] = n.ID
		}
		return failf(`run "weir cluster stop" first: restore replaces the data of a stopped cluster; nothing was changed`,
			"the local cluster is running (%s)", strings.Join(ids, ", "))
	}
	if c.Force {
		return nil
	}
	switch {
	case lc.ClusterID == "":
		return failf(`pass --force to replace its data with the backup, or restore into a new local cluster (another WEIR_HOME, or "weir cluster delete" first); nothing was changed`,
			"the local cluster's id is not recorded, so the backup of cluster %s cannot be checked against it", h.ClusterID)
	case lc.ClusterID != h.ClusterID:
		return failf(`restore it into a new local cluster (another WEIR_HOME, or "weir cluster delete" first), or pass --force to replace this cluster's data with it; nothing was changed`,
			"%s is a backup of cluster %s, but the local cluster is %s (%s)", c.From, orDash(h.ClusterID), lc.ClusterID, api.CodeWrongCluster)
	}
	return nil
}

// keepOutOfWipe moves a backup that lies in a node's data directory (its
// pre-upgrade backup) next to the nodes' directories, so that wiping the
// data does not delete it, and returns where it is now.
func keepOutOfWipe(lc *LocalCluster, path string) (string, error) {
	for _, n := range lc.Nodes {
		if !within(n.DataDir, path) {
			continue
		}
		dst := filepath.Join(lc.DataDir, fmt.Sprintf("restore-%s-%s", n.ID, filepath.Base(path)))
		if err := os.Rename(path, dst); err != nil {
			return "", fmt.Errorf("moving %s out of %s's data before wiping it: %w", path, n.ID, err)
		}
		return dst, nil
	}
	return path, nil
}

// othersJoin names the nodes that join the seeded one empty.
func othersJoin(lc *LocalCluster) string {
	ids := nodeIDs(lc)[1:]
	if len(ids) == 0 {
		return ""
	}
	return ", " + strings.Join(ids, ", ") + " empty to join it"
}

func nodeIDs(lc *LocalCluster) []string {
	ids := make([]string, len(lc.Nodes))
	for i, n := range lc.Nodes {
		ids[i] = n.ID
	}
	return ids
}

// notRestored says what a restored cluster still lacks: a leader, the
// backup's cluster id, and every local node a voter alive in gossip.
func notRestored(lc *LocalCluster, st *api.StatusResponse, clusterID string) string {
	if st.Leader != "" && st.ClusterID != clusterID {
		return fmt.Sprintf("%s reports cluster %s, not the backup's %s", st.Node, orDash(st.ClusterID), clusterID)
	}
	return lacking(lc, st, func(id string, ns api.NodeStatus) string {
		if ns.RaftSuffrage != "voter" {
			return fmt.Sprintf("%s is not a voter yet (suffrage %s)", id, orDash(ns.RaftSuffrage))
		}
		return ""
	})
}
