package node

import (
	"context"
	"fmt"
	"sort"
	"time"

	"github.com/hashicorp/raft"
	"github.com/weir-streaming/weir/fsm"
	"github.com/weir-streaming/weir/version"
)

// resumeGate is the leader's memory of the node it is gating now. It is not
// replicated: a new leader starts the node's stabilization period again,
// while the progress itself (who resumed) is in the FSM.
type resumeGate struct {
	rollIndex    uint64 // the Resume entry this gate belongs to
	node         string
	started      time.Time
	healthySince time.Time
}

// driveResume advances a rolling resume by one step: followers first, in id
// order, the leader last after handing leadership to a resumed node. Each
// node must pass its health gate and stay healthy for the stabilization
// period; a node that cannot within the gate timeout halts the roll.
func (n *Node) driveResume(g *resumeGate) {
	cs, err := n.fsm.Cluster()
	if err != nil || cs.Phase != fsm.PhaseResuming || cs.Halted != nil {
		*g = resumeGate{}
		return
	}
	voters, err := n.voters()
	if err != nil {
		return
	}
	var pending []string
	for id := range voters {
		if !fsm.Contains(cs.Resumed, id) && id != n.cfg.ID {
			pending = append(pending, id)
		}
	}
	sort.Strings(pending)
	if _, ok := voters[n.cfg.ID]; ok && !fsm.Contains(cs.Resumed, n.cfg.ID) {
		pending = append(pending, n.cfg.ID)
	}
	lc := fsm.Lifecycle{By: n.cfg.ID, At: time.Now().UnixMilli()}
	ctx, cancel := context.WithTimeout(context.Background(), requestTimeout)
	defer cancel()
	if len(pending) == 0 {
		lc.RequestID = fmt.Sprintf("resume-complete-%d", cs.ResumeIndex)
		if _, err := n.submitLifecycle(ctx, fsm.ResumeCompleteType, fsm.ResumeCompleteCommand{Lifecycle: lc}); err != nil {
			n.logger.Warn("finalizing the resume", "error", err)
		} else {
			n.logger.Info("resume complete", "active_version", cs.TargetVersion)
		}
		return
	}
	next := pending[0]
	if next == n.cfg.ID && len(voters) > 1 {
		// Only the leader is left: hand leadership to a resumed voter,
		// which gates this node as a follower.
		for _, id := range cs.Resumed {
			if addr, ok := voters[id]; ok {
				n.logger.Info("resume: transferring leadership before resuming the leader", "to", id)
				if err := n.raft.LeadershipTransferToServer(raft.ServerID(id), raft.ServerAddress(addr)).Error(); err != nil {
					n.logger.Warn("leadership transfer", "to", id, "error", err)
				}
				return
			}
		}
	}
	if g.rollIndex != cs.ResumeIndex || g.node != next {
		*g = resumeGate{rollIndex: cs.ResumeIndex, node: next, started: time.Now()}
	}
	reason := n.gateFailure(next, cs)
	now := time.Now()
	if reason == "" {
		if g.healthySince.IsZero() {
			g.healthySince = now
			n.logger.Info("resume: node passed its gate; stabilizing", "peer", next)
		}
		if now.Sub(g.healthySince) < n.cfg.ResumeStabilize {
			return
		}
		lc.RequestID = fmt.Sprintf("resumed-%s-%d", next, cs.ResumeIndex)
		if _, err := n.submitLifecycle(ctx, fsm.NodeResumedType, fsm.NodeResumedCommand{Lifecycle: lc, Node: next}); err != nil {
			n.logger.Warn("marking node resumed", "peer", next, "error", err)
			return
		}
		n.logger.Info("resume: node resumed", "peer", next)
		*g = resumeGate{}
		return
	}
	g.healthySince = time.Time{}
	n.logger.Debug("resume: gate not passed", "peer", next, "reason", reason)
	gateTimeout := time.Duration(cs.GateTimeoutMs) * time.Millisecond
	if now.Sub(g.started) < gateTimeout {
		return
	}
	lc.RequestID = fmt.Sprintf("halt-%s-%d-%d", next, cs.ResumeIndex, now.UnixNano())
	if _, err := n.submitLifecycle(ctx, fsm.ResumeHaltedType, fsm.ResumeHaltedCommand{Lifecycle: lc, Node: next, Reason: reason}); err != nil {
		n.logger.Warn("halting the resume", "peer", next, "error", err)
		return
	}
	n.logger.Warn("resume halted", "peer", next, "reason", reason)
	*g = resumeGate{}
}

// gateFailure says why node id does not pass its health gate now, or "".
func (n *Node) gateFailure(id string, cs fsm.ClusterState) string {
	p, ok := n.peerByID()[id]
	switch {
	case !ok:
		return fmt.Sprintf("node %s is not known to gossip; start it with weir %s", id, cs.TargetVersion)
	case p.State != "alive":
		return fmt.Sprintf("node %s is %s in gossip; start it with weir %s", id, p.State, cs.TargetVersion)
	case p.Version != cs.TargetVersion:
		return fmt.Sprintf("node %s runs weir %s, the target is %s; install %s on it and restart it", id, p.Version, cs.TargetVersion, cs.TargetVersion)
	case p.AppliedIndex < cs.ResumeIndex:
		return fmt.Sprintf("node %s has applied index %d, behind the resume at %d", id, p.AppliedIndex, cs.ResumeIndex)
	case !p.StorageOK:
		return fmt.Sprintf("node %s failed its storage check; see its log", id)
	}
	if err := version.CanRun(p.Version, p.MinCompatible, cs.TargetVersion); err != nil {
		return err.Error()
	}
	return ""
}
