// Package node is the Weir daemon: it wires the state machine (fsm), Raft,
// the cluster transport, gossip and the HTTP API together, runs the leader's
// duties, and serves the API.
//
// Start order is transport → Raft → gossip → API; Close runs it in reverse
// (API → gossip leave → Raft → transport → state store).
package node

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/memberlist"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"github.com/weir-streaming/weir/fsm"
	"github.com/weir-streaming/weir/transport"
	"github.com/weir-streaming/weir/version"
)

// File names in the data directory, and timeouts of the node's own work.
const (
	stateFile   = "state.db"
	raftFile    = "raft.db"
	snapshotDir = "snapshots"

	// snapshotsRetained: one snapshot is kept (rqlite keeps one too); a
	// second exists only while the next is written. A snapshot copies the
	// state store's index and links the segment files (fsm.SnapshotStore),
	// so it costs little to write, but the records it links stay on disk
	// until it is reaped.
	snapshotsRetained = 1
	// logCacheEntries recent log entries stay in memory for replication, so
	// the leader sends what it just wrote without reading raft.db. Two of
	// raft's AppendEntries batches (MaxAppendEntries 64): a follower further
	// behind reads from disk. It bounds the heap: 128 produce entries of
	// 100 KiB are 13 MB (512 were 51 MB, a third of a node's heap).
	logCacheEntries     = 128
	raftMaxPool         = 3 // pooled connections per peer
	raftIOTimeout       = 10 * time.Second
	gossipLeaveTimeout  = 2 * time.Second
	httpShutdownTimeout = 5 * time.Second
	applyTimeout        = 10 * time.Second
	tickInterval        = 250 * time.Millisecond
	metaUpdateTimeout   = time.Second
)

// Node is one running Weir node.
type Node struct {
	cfg    Config
	logger hclog.Logger

	fsm       *fsm.FSM
	mux       *transport.Mux
	rpc       *transport.Client
	raft      *raft.Raft
	raftTrans *raft.NetworkTransport
	logStore  *raftboltdb.BoltStore
	snaps     *fsm.SnapshotStore
	ml        *memberlist.Memberlist
	gossip    *gossip

	httpSrv *http.Server
	httpLn  net.Listener
	apiAddr string // advertised

	kickCh      chan struct{} // wakes run
	reconcileCh chan struct{} // wakes the leader loop
	shutdownCh  chan struct{}
	wg          sync.WaitGroup
	closeOnce   sync.Once
	closeErr    error

	mu     sync.Mutex
	joined bool
	known  []string // remembered peer gossip addresses (peers.go)

	window    string      // the oldest active version this binary can run
	inflight  inflight    // data-plane requests being served
	fenced    atomic.Bool // the binary cannot run the active version
	storageOK atomic.Bool
	// established is true while this node leads and its state machine has
	// applied every entry of earlier terms (the leader loop's Barrier).
	established atomic.Bool
}

// New validates cfg, opens the node's storage and starts every part. It
// returns once the node is listening; the cluster may still be forming.
func New(cfg Config) (*Node, error) {
	cfg.setDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	n := &Node{
		cfg:         cfg,
		logger:      cfg.Logger.With("node", cfg.ID),
		kickCh:      make(chan struct{}, 1),
		reconcileCh: make(chan struct{}, 1),
		shutdownCh:  make(chan struct{}),
	}
	if err := n.start(); err != nil {
		n.Close()
		return nil, err
	}
	return n, nil
}

func (n *Node) start() error {
	noSync, err := n.prepareStateStore()
	if err != nil {
		return err
	}
	n.fsm, err = fsm.Open(filepath.Join(n.cfg.DataDir, stateFile), n.logger.Named("fsm"), fsm.Options{NoSync: noSync})
	if err != nil {
		return err
	}
	if err := n.checkCanRun(); err != nil {
		return err
	}
	n.storageOK.Store(true)
	w, err := version.WindowFor(n.cfg.BinaryVersion, n.cfg.MinCompatible)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrConfig, err)
	}
	n.window = w.String()
	n.mux, err = transport.Listen(transport.Config{
		BindAddr: n.cfg.ClusterAddr, Advertise: n.cfg.Advertise, Logger: n.logger.Named("transport"), Faults: n.cfg.Faults,
	})
	if err != nil {
		return fmt.Errorf("cluster address %s: %w", n.cfg.ClusterAddr, err)
	}
	n.rpc = transport.NewClient(n.mux.Addr().String(), n.cfg.Faults, nil, n.logger.Named("rpc"))
	n.mux.ServeRPC(n.handleRPC)
	if err := n.startRaft(); err != nil {
		return err
	}
	if err := n.startHTTP(); err != nil {
		return err
	}
	if err := n.startGossip(); err != nil {
		return err
	}
	n.wg.Add(3)
	go n.monitorLeadership()
	go n.run()
	go n.lifecycleLoop()
	n.logger.Info("node started", "version", n.cfg.BinaryVersion, "api", n.apiAddr, "cluster", n.mux.Addr().String(),
		"gossip", n.GossipAddr(), "cluster_id", n.clusterID())
	return nil
}

func (n *Node) startRaft() error {
	rlog := n.logger.Named("raft")
	rs, err := OpenRaftStorage(n.cfg.DataDir, rlog)
	if err != nil {
		return err
	}
	n.logStore, n.snaps = rs.Store, rs.Snaps
	n.raftTrans = NewRaftTransport(n.mux.RaftLayer(), rlog)
	if n.cfg.RestoreFrom != "" {
		if err := n.seedFromBackup(n.logStore, n.logStore); err != nil {
			return err
		}
	}
	if err := n.restoreIfBehind(); err != nil {
		return err
	}
	if err := n.checkCanRun(); err != nil { // the state may have come from a backup or snapshot
		return err
	}
	rc := RaftConfig(n.cfg, rlog)
	n.raft, err = raft.NewRaft(rc, n.fsm, rs.Logs, n.logStore, n.snaps, n.raftTrans)
	if err != nil {
		return fmt.Errorf("start raft: %w", err)
	}
	rs.ReleaseMapped()
	return nil
}

// restoreIfBehind restores the newest snapshot when the state store is older
// than it (a lost or replaced state store): Raft replays only the entries
// after its newest snapshot.
func (n *Node) restoreIfBehind() error {
	metas, err := n.snaps.List()
	if err != nil || len(metas) == 0 {
		return err
	}
	if metas[0].Index <= n.fsm.AppliedIndex() {
		return nil
	}
	n.logger.Warn("state store is behind the newest snapshot; restoring it", "applied", n.fsm.AppliedIndex(), "snapshot", metas[0].Index)
	_, rc, err := n.snaps.Open(metas[0].ID)
	if err != nil {
		return fmt.Errorf("open snapshot %s: %w", metas[0].ID, err)
	}
	return n.fsm.Restore(rc)
}

// checkCanRun refuses to start a binary that cannot run the stored active
// version: a node never serves in a version it cannot read.
func (n *Node) checkCanRun() error {
	cs, err := n.fsm.Cluster()
	if err != nil || cs.ActiveVersion == "" {
		return err
	}
	if err := version.CanRun(n.cfg.BinaryVersion, n.cfg.MinCompatible, cs.ActiveVersion); err != nil {
		return fmt.Errorf("refusing to start: %w", err)
	}
	return nil
}

func (n *Node) startGossip() error {
	host, portStr, _ := net.SplitHostPort(n.cfg.GossipAddr)
	port, _ := strconv.Atoi(portStr)
	n.gossip = &gossip{n: n}
	if _, err := n.gossip.setMeta(n.localMeta()); err != nil {
		return err
	}
	mc := memberlistConfig(&n.cfg, n.gossip, host, port)
	if n.cfg.Advertise != "" {
		mc.AdvertiseAddr = n.cfg.Advertise
	}
	var err error
	n.ml, err = memberlist.Create(mc)
	if err != nil {
		return fmt.Errorf("gossip address %s: %w", n.cfg.GossipAddr, err)
	}
	if len(n.seeds()) > 0 {
		if err := n.join(); errors.Is(err, ErrWrongCluster) {
			return fmt.Errorf("refusing to join: %w", err)
		}
	}
	return nil
}

// join contacts the seeds. It is retried from run until one answers; a seed
// from another cluster is fatal.
func (n *Node) join() error {
	_, err := n.ml.Join(n.seeds())
	n.gossip.mu.Lock()
	mismatch := n.gossip.mismatch
	n.gossip.mu.Unlock()
	if mismatch != nil {
		return mismatch
	}
	if err != nil {
		// Seeds that are not up yet: run retries.
		n.logger.Debug("join failed; will retry", "seeds", n.seeds(), "error", err)
		return err
	}
	n.mu.Lock()
	n.joined = true
	n.mu.Unlock()
	return nil
}

func (n *Node) startHTTP() error {
	ln, err := net.Listen("tcp", n.cfg.APIAddr)
	if err != nil {
		return fmt.Errorf("api address %s: %w", n.cfg.APIAddr, err)
	}
	n.httpLn = ln
	port := ln.Addr().(*net.TCPAddr).Port
	host, _, _ := net.SplitHostPort(n.cfg.APIAddr)
	if n.cfg.Advertise != "" {
		host = n.cfg.Advertise
	}
	n.apiAddr = net.JoinHostPort(host, strconv.Itoa(port))
	n.httpSrv = &http.Server{Handler: n.routes(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := n.httpSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.logger.Error("api server stopped", "error", err)
		}
	}()
	return nil
}

// Close stops the node: API, gossip (leaving), Raft, transport, state store.
func (n *Node) Close() error {
	n.closeOnce.Do(func() {
		close(n.shutdownCh)
		var errs []error
		if n.httpSrv != nil {
			ctx, cancel := context.WithTimeout(context.Background(), httpShutdownTimeout)
			errs = append(errs, n.httpSrv.Shutdown(ctx))
			cancel()
		} else if n.httpLn != nil {
			n.httpLn.Close()
		}
		if n.ml != nil {
			if err := n.ml.Leave(gossipLeaveTimeout); err != nil {
				n.logger.Warn("gossip leave", "error", err)
			}
			errs = append(errs, n.ml.Shutdown())
		}
		n.wg.Wait()
		if n.raft != nil {
			errs = append(errs, n.raft.Shutdown().Error())
		} else if n.raftTrans != nil {
			n.raftTrans.Close() // a start that failed before Raft took it over
		}
		if n.rpc != nil {
			n.rpc.Close()
		}
		if n.mux != nil {
			n.mux.Close()
		}
		if n.logStore != nil {
			errs = append(errs, n.logStore.Close())
		}
		if n.fsm != nil {
			err := n.fsm.Close()
			if err == nil {
				n.markStateStoreClosed()
			}
			errs = append(errs, err)
		}
		n.closeErr = errors.Join(errs...)
	})
	return n.closeErr
}

// ID is the node's id.
func (n *Node) ID() string { return n.cfg.ID }

// APIAddr is the advertised HTTP API address.
func (n *Node) APIAddr() string { return n.apiAddr }

// ClusterAddr is the advertised Raft/RPC address.
func (n *Node) ClusterAddr() string { return n.mux.Addr().String() }

// GossipAddr is the advertised gossip address.
func (n *Node) GossipAddr() string {
	ln := n.ml.LocalNode()
	return net.JoinHostPort(ln.Addr.String(), strconv.Itoa(int(ln.Port)))
}

// FSM exposes the state machine to tests in this module.
func (n *Node) FSM() *fsm.FSM { return n.fsm }

// Raft exposes Raft to tests in this module.
func (n *Node) Raft() *raft.Raft { return n.raft }

func (n *Node) clusterID() string {
	cs, err := n.fsm.Cluster()
	if err != nil {
		return ""
	}
	return cs.ClusterID
}

// kick wakes the periodic work and the leader loop early (a gossip change).
func (n *Node) kick() {
	for _, ch := range []chan struct{}{n.kickCh, n.reconcileCh} {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

func (n *Node) localMeta() Meta {
	cs, _ := n.fsm.Cluster()
	m := Meta{
		ID:            n.cfg.ID,
		ClusterID:     cs.ClusterID,
		Version:       n.cfg.BinaryVersion,
		MinCompatible: n.window,
		StorageOK:     n.storageOK.Load(),
		ClusterAddr:   n.mux.Addr().String(),
		APIAddr:       n.apiAddr,
		AppliedIndex:  n.fsm.AppliedIndex(),
		HasState:      n.hasRaftState(),
	}
	if n.raft != nil {
		m.RaftState = raftStateName(n.raft.State())
		m.Serving = n.serving(cs)
	}
	return m
}

func (n *Node) hasRaftState() bool {
	if n.raft == nil {
		return false
	}
	return n.raft.LastIndex() > 0
}

// serving says whether this node's data plane is open: it knows a leader,
// belongs to an initialized cluster, and the lifecycle phase (and, while
// resuming, its own progress) allows data.
func (n *Node) serving(cs fsm.ClusterState) bool {
	addr, _ := n.raft.LeaderWithID()
	return addr != "" && cs.ClusterID != "" && n.dataPlaneErr() == nil
}

// run does the node's periodic work: publish its gossip meta, retry the
// join, and bootstrap a new cluster once enough peers are seen.
func (n *Node) run() {
	defer n.wg.Done()
	t := time.NewTicker(tickInterval)
	defer t.Stop()
	lastStorageCheck := time.Now()
	for {
		if time.Since(lastStorageCheck) >= storageCheckInterval {
			n.storageOK.Store(n.checkStorage())
			lastStorageCheck = time.Now()
		}
		n.mu.Lock()
		joined := n.joined
		n.mu.Unlock()
		if !joined && len(n.seeds()) > 0 {
			if err := n.join(); errors.Is(err, ErrWrongCluster) {
				n.logger.Error("refusing peers of another cluster", "error", err)
			}
		}
		if changed, err := n.gossip.setMeta(n.localMeta()); err != nil {
			n.logger.Error("gossip meta", "error", err)
		} else if changed {
			if err := n.ml.UpdateNode(metaUpdateTimeout); err != nil {
				n.logger.Debug("gossip meta update", "error", err)
			}
		}
		n.maybeBootstrap()
		n.rememberPeers()
		select {
		case <-n.shutdownCh:
			return
		case <-t.C:
		case <-n.kickCh:
		}
	}
}

func raftStateName(s raft.RaftState) string {
	switch s {
	case raft.Leader:
		return "leader"
	case raft.Follower:
		return "follower"
	case raft.Candidate:
		return "candidate"
	case raft.Shutdown:
		return "shutdown"
	}
	return "unknown"
}
