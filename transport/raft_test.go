package transport

import (
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// Raft timings for in-process clusters.
const (
	testRaftHeartbeat   = 50 * time.Millisecond
	testRaftElection    = 50 * time.Millisecond
	testRaftLeaderLease = 50 * time.Millisecond
	testRaftCommit      = 5 * time.Millisecond
	testRaftNetTimeout  = 500 * time.Millisecond
	testRaftMaxPool     = 3
	testClusterWait     = 10 * time.Second
)

// countFSM counts applied commands and remembers the last one.
type countFSM struct {
	mu      sync.Mutex
	applied []string
}

func (f *countFSM) Apply(l *raft.Log) any {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applied = append(f.applied, string(l.Data))
	return len(f.applied)
}

func (f *countFSM) has(cmd string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, c := range f.applied {
		if c == cmd {
			return true
		}
	}
	return false
}

func (f *countFSM) Snapshot() (raft.FSMSnapshot, error) { return noopSnapshot{}, nil }
func (f *countFSM) Restore(rc io.ReadCloser) error      { return rc.Close() }

type noopSnapshot struct{}

func (noopSnapshot) Persist(sink raft.SnapshotSink) error { return sink.Close() }
func (noopSnapshot) Release()                             {}

type raftTestNode struct {
	addr string
	mux  *Mux
	raft *raft.Raft
	fsm  *countFSM
}

// newRaftTestCluster starts n Raft nodes, each over its own Mux, all
// dialing through faults, bootstrapped by the first.
func newRaftTestCluster(t *testing.T, n int, faults *Faults) []*raftTestNode {
	t.Helper()
	nodes := make([]*raftTestNode, n)
	var servers []raft.Server
	for i := range nodes {
		m, err := Listen(Config{BindAddr: "127.0.0.1:0", Faults: faults,
			Logger: testLogger(t, fmt.Sprintf("mux-%d", i), hclog.Info)})
		if err != nil {
			t.Fatalf("listen: %v", err)
		}
		nodes[i] = &raftTestNode{addr: m.Addr().String(), mux: m, fsm: &countFSM{}}
		servers = append(servers, raft.Server{ID: raft.ServerID(fmt.Sprint(i)), Address: raft.ServerAddress(nodes[i].addr)})
	}
	for i, nd := range nodes {
		logger := testLogger(t, fmt.Sprintf("raft-%d", i), hclog.Warn)
		trans := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
			Stream:  nd.mux.RaftLayer(),
			MaxPool: testRaftMaxPool,
			Timeout: testRaftNetTimeout,
			Logger:  logger,
		})
		cfg := raft.DefaultConfig()
		cfg.LocalID = servers[i].ID
		cfg.HeartbeatTimeout = testRaftHeartbeat
		cfg.ElectionTimeout = testRaftElection
		cfg.LeaderLeaseTimeout = testRaftLeaderLease
		cfg.CommitTimeout = testRaftCommit
		cfg.Logger = logger
		store := raft.NewInmemStore()
		r, err := raft.NewRaft(cfg, nd.fsm, store, store, raft.NewInmemSnapshotStore(), trans)
		if err != nil {
			t.Fatalf("raft %d: %v", i, err)
		}
		nd.raft = r
		t.Cleanup(func() {
			_ = r.Shutdown().Error()
			_ = trans.Close()
			_ = nd.mux.Close()
		})
	}
	if err := nodes[0].raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
		t.Fatalf("bootstrap: %v", err)
	}
	return nodes
}

// leaderAmong returns the only node of nodes in the Leader state, or nil.
func leaderAmong(nodes []*raftTestNode) *raftTestNode {
	var leader *raftTestNode
	for _, nd := range nodes {
		if nd.raft.State() == raft.Leader {
			if leader != nil {
				return nil
			}
			leader = nd
		}
	}
	return leader
}

func applyOnLeader(t *testing.T, nodes []*raftTestNode, cmd string) {
	t.Helper()
	waitFor(t, testClusterWait, "a leader to apply "+cmd, func() bool {
		leader := leaderAmong(nodes)
		return leader != nil && leader.raft.Apply([]byte(cmd), time.Second).Error() == nil
	})
	waitFor(t, testClusterWait, "every node to apply "+cmd, func() bool {
		for _, nd := range nodes {
			if !nd.fsm.has(cmd) {
				return false
			}
		}
		return true
	})
}

func TestRaft_ClusterElectsAppliesAndSurvivesIsolation(t *testing.T) {
	faults := NewFaults()
	nodes := newRaftTestCluster(t, 3, faults)

	var old *raftTestNode
	waitFor(t, testClusterWait, "a leader", func() bool {
		old = leaderAmong(nodes)
		return old != nil
	})
	applyOnLeader(t, nodes, "before-isolation")

	faults.Isolate(old.addr)
	var rest []*raftTestNode
	for _, nd := range nodes {
		if nd != old {
			rest = append(rest, nd)
		}
	}
	var next *raftTestNode
	waitFor(t, testClusterWait, "a new leader among the other two", func() bool {
		next = leaderAmong(rest)
		return next != nil
	})
	waitFor(t, testClusterWait, "the isolated leader to step down", func() bool {
		return old.raft.State() != raft.Leader
	})
	applyOnLeader(t, rest, "during-isolation")
	if old.fsm.has("during-isolation") {
		t.Fatal("isolated node applied a command committed without it")
	}

	faults.Heal()
	waitFor(t, testClusterWait, "the old leader to rejoin as a follower", func() bool {
		leader := leaderAmong(nodes)
		return leader != nil && leader != old && old.raft.State() == raft.Follower &&
			old.fsm.has("during-isolation")
	})
	applyOnLeader(t, nodes, "after-heal")
}
