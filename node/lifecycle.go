package node

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"github.com/weir-streaming/weir/api"
	"github.com/weir-streaming/weir/fsm"
	"github.com/weir-streaming/weir/version"
)

const (
	// backupDir holds the pre-upgrade backup each node writes on shutdown.
	backupDir = "backups"
	// PreUpgradeBackup is that backup: a directory holding one snapshot
	// whose files are links to the node's newest Raft snapshot
	// (fsm.SnapshotStore.Export), read with fsm.OpenBackup.
	PreUpgradeBackup = "pre-upgrade"
	// legacyPreUpgradeBackup is the file earlier builds wrote instead (a
	// full copy of the stream); a new backup replaces it.
	legacyPreUpgradeBackup = "pre-upgrade.snap"
	// drainTimeout bounds the wait for in-flight data requests on shutdown.
	drainTimeout = 10 * time.Second
	// defaultShutdownWait bounds how long `cluster shutdown` waits for every
	// voter's acknowledgement.
	defaultShutdownWait = 30 * time.Second
	// DefaultGateTimeout bounds one node's health gate in a rolling resume.
	DefaultGateTimeout = 2 * time.Minute
	// DefaultResumeStabilize is how long a node must stay healthy before
	// it counts as resumed.
	DefaultResumeStabilize = 2 * time.Second
	// storageCheckInterval is how often a node proves its data dir writable.
	storageCheckInterval = 5 * time.Second
)

// ErrNoQuorum means no leader could be reached for a lifecycle command.
var ErrNoQuorum = errors.New("no quorum")

// inflight counts data-plane requests being served, so shutdown can drain.
type inflight struct{ n atomic.Int64 }

func (f *inflight) begin() func() { f.n.Add(1); return func() { f.n.Add(-1) } }

// dataPlaneErr says why this node does not serve produce and consume now,
// or nil when it does.
func (n *Node) dataPlaneErr() error {
	cs, err := n.fsm.Cluster()
	if err != nil {
		return err
	}
	switch {
	case cs.Phase == fsm.PhaseNone, cs.Phase == fsm.PhaseRunning:
		if n.fenced.Load() {
			return &fsm.Error{Kind: fsm.ErrVersionRefused, Message: fmt.Sprintf("this node's binary %s cannot serve active version %s", n.cfg.BinaryVersion, cs.ActiveVersion),
				Hint: "install a binary that can run the active version on this node, or use another node"}
		}
		return nil
	case cs.Phase == fsm.PhaseResuming && fsm.Contains(cs.Resumed, n.cfg.ID):
		return nil
	case cs.Phase == fsm.PhaseResuming:
		return &fsm.Error{Kind: fsm.ErrClusterShutDown, Message: fmt.Sprintf("node %s has not resumed yet (the cluster is resuming)", n.cfg.ID),
			Hint: `use a node that has resumed, or wait for "weir cluster resume" to finish`}
	}
	return &fsm.Error{Kind: fsm.ErrClusterShutDown, Message: fmt.Sprintf("the cluster is in phase %s: produce and consume are closed", cs.Phase),
		Hint: `run "weir cluster resume" to open it again`}
}

// lifecycleLoop reacts to committed lifecycle state on every node: it
// acknowledges a shutdown once drained and backed up, and fences the node
// when the active version moves past what its binary can run.
func (n *Node) lifecycleLoop() {
	defer n.wg.Done()
	acked := uint64(0)
	lastID := n.clusterID()
	for {
		ch := n.fsm.Changed()
		cs, err := n.fsm.Cluster()
		if err == nil && cs.ClusterID != lastID {
			lastID = cs.ClusterID
			n.kick() // publish the cluster id by gossip now, not at the next tick
		}
		if err == nil {
			if cs.ActiveVersion != "" {
				if err := version.CanRun(n.cfg.BinaryVersion, n.cfg.MinCompatible, cs.ActiveVersion); err != nil {
					if !n.fenced.Swap(true) {
						n.logger.Error("this binary cannot run the cluster's active version; data plane closed", "error", err)
					}
				} else {
					n.fenced.Store(false)
				}
			}
			if cs.Phase == fsm.PhaseShutdown && cs.ShutdownIndex != acked && !fsm.Contains(cs.Quiesced, n.cfg.ID) {
				if err := n.quiesce(cs); err != nil {
					n.logger.Warn("acknowledging shutdown", "error", err)
				} else {
					acked = cs.ShutdownIndex
				}
			}
		}
		select {
		case <-ch:
		case <-n.shutdownCh:
			return
		case <-time.After(tickInterval * 4):
		}
	}
}

// quiesce drains in-flight data requests, writes the pre-upgrade backup and
// commits NodeQuiesced for this node.
func (n *Node) quiesce(cs fsm.ClusterState) error {
	deadline := time.Now().Add(drainTimeout)
	for n.inflight.n.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if err := n.writePreUpgradeBackup(); err != nil {
		return fmt.Errorf("pre-upgrade backup: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	_, err := n.submit(ctx, fsm.NodeQuiescedType, fsm.NodeQuiescedCommand{
		Lifecycle: fsm.Lifecycle{RequestID: fmt.Sprintf("quiesce-%s-%d", n.cfg.ID, cs.ShutdownIndex), By: n.cfg.ID, At: time.Now().UnixMilli()},
		Node:      n.cfg.ID,
	})
	if err == nil {
		n.logger.Info("shutdown acknowledged: data plane closed, backup written", "backup", filepath.Join(n.cfg.DataDir, backupDir, PreUpgradeBackup))
	}
	return err
}

// writePreUpgradeBackup takes a Raft snapshot (none when the newest one
// already holds every applied entry) and exports the newest by links into
// backups/pre-upgrade. Writing the state out as one file instead copied
// every record: at 5 M records three nodes on one disk each copied 5 GB,
// and none acknowledged within `cluster shutdown`'s 30 s
// (docs/performance.md, "The upgrade path at 5 M records").
func (n *Node) writePreUpgradeBackup() error {
	if err := n.raft.Snapshot().Error(); err != nil && !errors.Is(err, raft.ErrNothingNewToSnapshot) {
		return fmt.Errorf("raft snapshot: %w", err)
	}
	dir := filepath.Join(n.cfg.DataDir, backupDir)
	var err error
	for range 3 { // a newer snapshot may reap the one being linked: take the newest again
		var metas []*raft.SnapshotMeta
		if metas, err = n.snaps.List(); err != nil {
			return err
		}
		if len(metas) == 0 {
			return errors.New("no raft snapshot to export")
		}
		if _, err = n.snaps.Export(metas[0].ID, filepath.Join(dir, PreUpgradeBackup)); err == nil {
			break
		}
	}
	if err != nil {
		return err
	}
	if err := os.Remove(filepath.Join(dir, legacyPreUpgradeBackup)); err != nil && !errors.Is(err, os.ErrNotExist) {
		n.logger.Warn("removing the previous pre-upgrade backup file", "error", err)
	}
	return nil
}

// checkStorage proves the data dir writable and the state store readable.
func (n *Node) checkStorage() bool {
	probe := filepath.Join(n.cfg.DataDir, ".storage-check")
	if err := os.WriteFile(probe, []byte("ok"), 0o600); err != nil {
		return false
	}
	os.Remove(probe)
	_, err := n.fsm.Cluster()
	return err == nil
}

// voters lists the Raft voters by id with their addresses.
func (n *Node) voters() (map[string]string, error) {
	fut := n.raft.GetConfiguration()
	if err := fut.Error(); err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, s := range fut.Configuration().Servers {
		if s.Suffrage == raft.Voter {
			out[string(s.ID)] = string(s.Address)
		}
	}
	return out, nil
}

func (n *Node) peerByID() map[string]peer {
	out := map[string]peer{}
	for _, p := range n.peers() {
		out[p.ID] = p
	}
	return out
}

func lifecycleOf(req api.LifecycleRequest) fsm.Lifecycle {
	return fsm.Lifecycle{RequestID: req.RequestID, By: req.By, At: time.Now().UnixMilli()}
}

// submitLifecycle proposes a lifecycle command; without a reachable leader
// it answers NO_QUORUM.
func (n *Node) submitLifecycle(ctx context.Context, t fsm.MessageType, msg any) (fsm.LifecycleResult, error) {
	res, err := n.submit(ctx, t, msg)
	if errors.Is(err, ErrNoLeader) {
		return fsm.LifecycleResult{}, fmt.Errorf("%w: no leader could be reached: %v", ErrNoQuorum, err)
	}
	if err != nil {
		return fsm.LifecycleResult{}, err
	}
	lr, _ := res.(fsm.LifecycleResult)
	return lr, nil
}

func lifecycleResponse(lr fsm.LifecycleResult) api.LifecycleResponse {
	return api.LifecycleResponse{Phase: string(lr.Phase), ActiveVersion: lr.ActiveVersion, TargetVersion: lr.TargetVersion, Noop: lr.Noop, Message: lr.Message}
}

func (n *Node) handleShutdown(w http.ResponseWriter, r *http.Request) {
	var req api.LifecycleRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, err)
		return
	}
	lr, err := n.submitLifecycle(r.Context(), fsm.ShutdownType, fsm.ShutdownCommand{Lifecycle: lifecycleOf(req)})
	if err != nil {
		writeError(w, err)
		return
	}
	resp := lifecycleResponse(lr)
	wait := defaultShutdownWait
	if req.WaitMs > 0 {
		wait = time.Duration(req.WaitMs) * time.Millisecond
	}
	resp.Quiesced, resp.Missing = n.waitQuiesced(r.Context(), wait)
	writeJSON(w, http.StatusOK, resp)
}

// waitQuiesced waits until every voter acknowledged the shutdown, or the
// wait ends; it returns who did and who did not.
func (n *Node) waitQuiesced(ctx context.Context, wait time.Duration) (quiesced, missing []string) {
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	ctx, cancel := context.WithTimeout(ctx, wait)
	defer cancel()
	if err := n.catchUp(ctx); err != nil {
		n.logger.Warn("shutdown: catching up with the leader", "error", err)
	}
	for {
		ch := n.fsm.Changed()
		cs, _ := n.fsm.Cluster()
		voters, _ := n.voters()
		missing = missing[:0]
		for id := range voters {
			if !fsm.Contains(cs.Quiesced, id) {
				missing = append(missing, id)
			}
		}
		sort.Strings(missing)
		if len(missing) == 0 || cs.Phase != fsm.PhaseShutdown {
			return cs.Quiesced, missing
		}
		select {
		case <-ch:
		case <-deadline.C:
			return cs.Quiesced, missing
		case <-ctx.Done():
			return cs.Quiesced, missing
		case <-time.After(tickInterval):
		}
	}
}

func (n *Node) handleRollback(w http.ResponseWriter, r *http.Request) {
	var req api.LifecycleRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, err)
		return
	}
	lr, err := n.submitLifecycle(r.Context(), fsm.RollbackType, fsm.RollbackCommand{Lifecycle: lifecycleOf(req)})
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, lifecycleResponse(lr))
}

func (n *Node) handleResume(w http.ResponseWriter, r *http.Request) {
	var req api.LifecycleRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, err)
		return
	}
	gate := req.GateTimeoutMs
	if gate <= 0 {
		gate = DefaultGateTimeout.Milliseconds()
	}
	lr, err := n.submitLifecycle(r.Context(), fsm.ResumeType, fsm.ResumeCommand{Lifecycle: lifecycleOf(req), GateTimeoutMs: gate})
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, lifecycleResponse(lr))
}

func (n *Node) handleHistory(w http.ResponseWriter, r *http.Request) {
	cs, err := n.fsm.Cluster()
	if err != nil {
		writeError(w, err)
		return
	}
	out := api.HistoryResponse{Entries: []api.HistoryEntry{}}
	for _, h := range cs.History {
		out.Entries = append(out.Entries, api.HistoryEntry{Index: h.Index, Command: h.Command, RequestID: h.RequestID, By: h.By, At: h.At, From: h.From, To: h.To, Detail: h.Detail})
	}
	writeJSON(w, http.StatusOK, out)
}

func (n *Node) handleBackup(w http.ResponseWriter, r *http.Request) {
	if !n.readable(w, r) {
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	if err := n.fsm.WriteSnapshot(w); err != nil {
		n.logger.Error("backup stream", "error", err)
	}
}
