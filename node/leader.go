package node

import (
	"crypto/rand"
	"encoding/hex"
	"sort"
	"time"

	"github.com/hashicorp/raft"
	"github.com/weir-streaming/weir/fsm"
)

const (
	// leaderTick is how often the leader compares gossip members with the
	// Raft configuration and advances a rolling resume.
	leaderTick = 250 * time.Millisecond
	// barrierTimeout bounds the leader's wait for its log to be applied
	// before it acts on the state.
	barrierTimeout = 30 * time.Second
	// addVoterTimeout bounds one configuration change.
	addVoterTimeout = 10 * time.Second
	// promoteLag is how far (in applied entries) behind the leader a
	// non-voter may be when it is made a voter: within one snapshot
	// interval's entries, so what is left to it is log replication.
	promoteLag = DefaultSnapshotThreshold
)

// maybeBootstrap forms a new cluster (Consul's bootstrap-expect): once
// BootstrapExpect nodes are alive in gossip and none of them has Raft state,
// the node with the lowest id bootstraps Raft with all of them as voters. A
// node that has state never bootstraps again.
func (n *Node) maybeBootstrap() {
	if n.hasRaftState() {
		return
	}
	expect := n.cfg.BootstrapExpect
	if expect <= 1 && len(n.cfg.Join) == 0 {
		expect = 1
	}
	if expect < 1 {
		return // joins an existing cluster: the leader adds it
	}
	var candidates []peer
	for _, p := range n.peers() {
		if p.State != "alive" {
			continue
		}
		if p.HasState {
			return // a cluster exists: wait to be added
		}
		candidates = append(candidates, p)
	}
	if len(candidates) < expect {
		return
	}
	sort.Slice(candidates, func(i, j int) bool { return candidates[i].ID < candidates[j].ID })
	if candidates[0].ID != n.cfg.ID {
		return
	}
	var servers []raft.Server
	for _, p := range candidates {
		servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(p.ID), Address: raft.ServerAddress(p.ClusterAddr)})
	}
	n.logger.Info("bootstrapping a new cluster", "voters", len(servers))
	if err := n.raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
		n.logger.Error("bootstrap failed", "error", err)
	}
}

// monitorLeadership runs leaderLoop while this node leads.
func (n *Node) monitorLeadership() {
	defer n.wg.Done()
	var stop chan struct{}
	var done chan struct{}
	for {
		select {
		case isLeader := <-n.raft.LeaderCh():
			if isLeader && stop == nil {
				stop, done = make(chan struct{}), make(chan struct{})
				go func(stop, done chan struct{}) {
					defer close(done)
					n.leaderLoop(stop)
				}(stop, done)
			} else if !isLeader && stop != nil {
				close(stop)
				<-done
				stop = nil
			}
			n.kick()
		case <-n.shutdownCh:
			if stop != nil {
				close(stop)
				<-done
			}
			return
		}
	}
}

// leaderLoop does the leader's duties: make sure every earlier entry is
// applied (Barrier), initialize a new cluster, then keep the Raft
// configuration in step with gossip.
func (n *Node) leaderLoop(stop chan struct{}) {
	n.logger.Info("leadership acquired")
	defer n.logger.Info("leadership lost")
	t := time.NewTicker(leaderTick)
	defer t.Stop()
	established := false
	defer n.established.Store(false)
	var gate resumeGate
	for {
		if !established {
			established = n.establish()
			n.established.Store(established)
		}
		if established {
			n.reconcile()
			n.driveResume(&gate)
		}
		select {
		case <-stop:
			return
		case <-n.shutdownCh:
			return
		case <-t.C:
		case <-n.reconcileCh:
		}
	}
}

func (n *Node) establish() bool {
	if err := n.raft.Barrier(barrierTimeout).Error(); err != nil {
		n.logger.Warn("barrier failed", "error", err)
		return false
	}
	if n.clusterID() != "" {
		return true
	}
	id := make([]byte, 16)
	if _, err := rand.Read(id); err != nil {
		n.logger.Error("cluster id", "error", err)
		return false
	}
	cmd := fsm.InitCommand{ClusterID: hex.EncodeToString(id), Version: n.cfg.BinaryVersion, By: n.cfg.ID, At: time.Now().UnixMilli()}
	if _, err := n.applyLocal(fsm.InitType, cmd); err != nil {
		n.logger.Warn("initializing the cluster", "error", err)
		return false
	}
	n.logger.Info("cluster initialized", "cluster_id", n.clusterID(), "version", n.cfg.BinaryVersion)
	return true
}

// reconcile brings every live gossip member of this cluster into the Raft
// configuration: first as a non-voter, then, once gossip shows it has
// applied within promoteLag entries of this leader, as a voter (Consul's
// autopilot does the same). A joining node first receives the whole state
// by snapshot, and a follower installing one answers nothing for as long as
// that takes: as a voter it counted against the leader's quorum all that
// time, so restoring 5 M records into three nodes made the seed step down
// again and again while the others installed (docs/performance.md, "The
// upgrade path at 5 M records"). A member that gossip reports dead is never
// removed: losing a voter is an operator's decision.
func (n *Node) reconcile() {
	fut := n.raft.GetConfiguration()
	if err := fut.Error(); err != nil {
		return
	}
	known := map[raft.ServerID]raft.ServerSuffrage{}
	for _, s := range fut.Configuration().Servers {
		known[s.ID] = s.Suffrage
	}
	ours := n.clusterID()
	for _, p := range n.peers() {
		suffrage, inConfig := known[raft.ServerID(p.ID)]
		if p.State != "alive" || (inConfig && suffrage == raft.Voter) {
			continue
		}
		if p.ClusterID != "" && p.ClusterID != ours {
			n.logger.Warn("not adding a node of another cluster", "peer", p.ID, "peer_cluster", p.ClusterID)
			continue
		}
		id, addr := raft.ServerID(p.ID), raft.ServerAddress(p.ClusterAddr)
		if !inConfig {
			n.logger.Info("adding non-voter", "peer", p.ID, "addr", p.ClusterAddr)
			if err := n.raft.AddNonvoter(id, addr, 0, addVoterTimeout).Error(); err != nil {
				n.logger.Warn("add non-voter failed", "peer", p.ID, "error", err)
			}
			continue
		}
		if applied := n.raft.AppliedIndex(); p.AppliedIndex+promoteLag < applied {
			continue // still catching up
		}
		n.logger.Info("promoting to voter", "peer", p.ID, "applied", p.AppliedIndex)
		if err := n.raft.AddVoter(id, addr, 0, addVoterTimeout).Error(); err != nil {
			n.logger.Warn("add voter failed", "peer", p.ID, "error", err)
		}
	}
}
