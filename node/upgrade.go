package node

import (
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strconv"
	"strings"

	"github.com/weir-streaming/weir/api"
	"github.com/weir-streaming/weir/fsm"
	"github.com/weir-streaming/weir/version"
)

// plan computes the upgrade preflight: every voter's binary and health, and
// every blocker with the action that clears it. It decides nothing that
// version.CheckUpgrade and version.CheckNode do not.
func (n *Node) plan(target string, force bool) (api.UpgradePlan, error) {
	cs, err := n.fsm.Cluster()
	if err != nil {
		return api.UpgradePlan{}, err
	}
	p := api.UpgradePlan{ClusterID: cs.ClusterID, Phase: string(cs.Phase), ActiveVersion: cs.ActiveVersion, TargetVersion: target, Force: force,
		Nodes: []api.PlanNode{}, Blockers: []api.Blocker{}}
	block := func(node string, err error) {
		b := api.Blocker{Node: node, Code: toAPIError(err).Body.Code, Message: err.Error()}
		var ref *version.Refusal
		var fe *fsm.Error
		switch {
		case errors.As(err, &ref):
			b.Hint = ref.Hint
		case errors.As(err, &fe):
			b.Hint = fe.Hint
		default:
			b.Hint = toAPIError(err).Body.Hint
		}
		p.Blockers = append(p.Blockers, b)
	}
	if err := version.CheckUpgrade(cs.ActiveVersion, target, "", force); err != nil {
		block("", err)
	}
	switch {
	case cs.Phase == fsm.PhaseRunning && !force:
		block("", &fsm.Error{Kind: fsm.ErrWrongPhase, Message: "the cluster is running", Hint: `run "weir cluster shutdown" first, or pass --force`})
	case cs.Phase == fsm.PhaseResuming:
		block("", &fsm.Error{Kind: fsm.ErrWrongPhase, Message: "the cluster is resuming", Hint: `let "weir cluster resume" finish, or run "weir cluster rollback"`})
	case cs.Phase == fsm.PhaseUpgradeMarked && cs.TargetVersion != target && !force:
		block("", &fsm.Error{Kind: fsm.ErrWrongPhase, Message: fmt.Sprintf("the cluster is already marked for an upgrade to %s", cs.TargetVersion),
			Hint: `run "weir cluster rollback" first, or pass --force to re-mark`})
	}
	_, leader := n.raft.LeaderWithID()
	if leader == "" {
		block("", fmt.Errorf("%w: no leader is elected", ErrNoQuorum))
	}
	voters, err := n.voters()
	if err != nil {
		return p, err
	}
	peers := n.peerByID()
	ids := make([]string, 0, len(voters))
	for id := range voters {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		pn := api.PlanNode{ID: id, Role: "follower", Health: "unknown"}
		if id == string(leader) {
			pn.Role = "leader"
		}
		before := len(p.Blockers)
		pr, ok := peers[id]
		if ok {
			pn.BinaryVersion, pn.MinCompatible, pn.Health = pr.Version, pr.MinCompatible, pr.State
		}
		switch {
		case !ok || pr.State != "alive":
			block(id, &fsm.Error{Kind: ErrNoQuorum, Message: fmt.Sprintf("node %s is not reachable (gossip: %s)", id, pn.Health),
				Hint: fmt.Sprintf("start node %s with weir %s", id, target)})
		default:
			if err := version.CheckNode(id, pr.Version, pr.MinCompatible, cs.ActiveVersion, target); err != nil {
				block(id, err)
			}
		}
		pn.Ready = len(p.Blockers) == before
		p.Nodes = append(p.Nodes, pn)
	}
	p.OK = len(p.Blockers) == 0
	return p, nil
}

func (n *Node) handlePlan(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	force, _ := strconv.ParseBool(q.Get("force"))
	target := q.Get("to")
	if target == "" {
		target = n.cfg.BinaryVersion
	}
	p, err := n.plan(target, force)
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, p)
}

func (n *Node) handleUpgrade(w http.ResponseWriter, r *http.Request) {
	var req api.LifecycleRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, err)
		return
	}
	if req.To == "" {
		writeError(w, badRequest("the target version (to) is required"))
		return
	}
	p, err := n.plan(req.To, req.Force)
	if err != nil {
		writeError(w, err)
		return
	}
	if !p.OK {
		var msgs []string
		for _, b := range p.Blockers {
			msgs = append(msgs, b.Message)
		}
		first := p.Blockers[0]
		writeJSON(w, toAPIError(fromAPIError(api.ErrorBody{Code: first.Code})).Status, api.ErrorResponse{Error: api.ErrorBody{
			Code: first.Code, Message: "upgrade refused: " + strings.Join(msgs, "; "), Hint: first.Hint,
		}})
		return
	}
	lr, err := n.submitLifecycle(r.Context(), fsm.UpgradeMarkType, fsm.UpgradeMarkCommand{
		Lifecycle: lifecycleOf(req), From: p.ActiveVersion, To: req.To, Force: req.Force,
	})
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, lifecycleResponse(lr))
}
