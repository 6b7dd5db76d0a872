package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"os/user"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/weir-streaming/weir/api"
	"github.com/weir-streaming/weir/fsm"
	"github.com/weir-streaming/weir/version"
)

// The lifecycle phases as the API names them (DESIGN §4); the phase table
// itself lives in fsm.
const (
	phaseRunning       = string(fsm.PhaseRunning)
	phaseShutdown      = string(fsm.PhaseShutdown)
	phaseUpgradeMarked = string(fsm.PhaseUpgradeMarked)
	phaseResuming      = string(fsm.PhaseResuming)
)

// Timeouts of the lifecycle commands.
const (
	// lifecycleRetryDeadline bounds retrying a lifecycle command the cluster
	// cannot take now (no leader, leader lost). A retry carries the same
	// request id, so the cluster applies the command at most once.
	lifecycleRetryDeadline = 20 * time.Second
	// lifecycleReplyMargin is added to a wait the node does itself (the
	// shutdown's acknowledgements) to bound the whole request.
	lifecycleReplyMargin = 15 * time.Second
	// resumePollInterval paces polling the status during a rolling resume.
	resumePollInterval = 500 * time.Millisecond
	// requestIDBytes is the randomness in a lifecycle request id.
	requestIDBytes = 8
)

// newRequestID makes the request id of one invocation of a lifecycle command.
func newRequestID() string {
	raw := make([]byte, requestIDBytes)
	if _, err := rand.Read(raw); err != nil {
		return fmt.Sprintf("cli-%d", time.Now().UnixNano())
	}
	return "cli-" + hex.EncodeToString(raw)
}

// requester is who asks, as user@host, for the cluster's history.
func requester() string {
	name := os.Getenv("USER")
	if u, err := user.Current(); err == nil && u.Username != "" {
		name = u.Username
	}
	if name == "" {
		name = "unknown"
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	return name + "@" + host
}

// newLifecycleRequest is the body of a lifecycle POST from this invocation.
func newLifecycleRequest() api.LifecycleRequest {
	return api.LifecycleRequest{RequestID: newRequestID(), By: requester()}
}

// postLifecycle sends a lifecycle command. With retryFor > 0 it is retried
// while the cluster asks to try again (the request id makes that safe);
// attempt bounds one attempt at one address.
func postLifecycle(ctx context.Context, cl *Client, path string, req api.LifecycleRequest, attempt, retryFor time.Duration) (*api.LifecycleResponse, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	hreq := Request{Method: http.MethodPost, Path: path, Body: body, Timeout: attempt,
		Header: http.Header{"Content-Type": {"application/json"}}}
	var resp *Response
	if retryFor > 0 {
		resp, err = cl.Retry(ctx, retryFor, hreq)
	} else {
		resp, err = cl.Do(ctx, hreq)
	}
	if err != nil {
		return nil, err
	}
	var out api.LifecycleResponse
	return &out, decodeJSON(resp, &out)
}

// getStatus is one GET /v1/status, bounded by timeout (0: requestTimeout).
func getStatus(ctx context.Context, cl *Client, timeout time.Duration) (*api.StatusResponse, *Response, error) {
	resp, err := cl.Do(ctx, Request{Method: http.MethodGet, Path: api.PathStatus, Timeout: timeout})
	if err != nil {
		return nil, nil, err
	}
	var st api.StatusResponse
	return &st, resp, decodeJSON(resp, &st)
}

// progressTo is where a command narrates what it does: standard output, or
// standard error when standard output carries JSON.
func progressTo(p *Printer, s *Streams) func(format string, args ...any) {
	if p.json {
		return func(format string, args ...any) { fmt.Fprintf(s.Err, format+"\n", args...) }
	}
	return p.Linef
}

// rememberQuietly records what a lifecycle command saw in cluster.json; a
// failure to record changes nothing in the cluster, so it is only reported.
func rememberQuietly(lc *LocalCluster, s *Streams, clusterID, phase, active, target string) {
	if lc == nil {
		return
	}
	if err := lc.remember(clusterID, phase, active, target); err != nil {
		fmt.Fprintf(s.Err, "warning: could not record the cluster's state in %s: %v\n", lc.file, err)
	}
}

// ClusterShutdownCmd is `weir cluster shutdown`.
type ClusterShutdownCmd struct {
	Timeout time.Duration `default:"30s" help:"How long to wait for every voter to acknowledge (drain in-flight requests, write its pre-upgrade backup)."`
}

// Run commits Shutdown and waits for every voter's acknowledgement; in local
// mode it then stops the node processes.
func (c *ClusterShutdownCmd) Run(g *Globals, s *Streams, cl *Client, p *Printer) error {
	_, lc, err := g.addrs()
	if err != nil {
		return err
	}
	if lc != nil && lc.LastKnown != nil && lc.LastKnown.Phase == phaseShutdown {
		if running, _ := lc.split(); len(running) == 0 {
			if p.json {
				return p.JSON(api.LifecycleResponse{Phase: phaseShutdown, ActiveVersion: lc.LastKnown.ActiveVersion, Noop: true,
					Message: "the cluster is already shut down and its node processes are stopped; nothing changed"})
			}
			p.Linef("the local cluster is already shut down (version %s) and its node processes are stopped; nothing changed", orDash(lc.LastKnown.ActiveVersion))
			printShutdownNext(p)
			return nil
		}
	}
	req := newLifecycleRequest()
	req.WaitMs = c.Timeout.Milliseconds()
	resp, err := postLifecycle(context.Background(), cl, api.PathShutdown, req, c.Timeout+lifecycleReplyMargin, lifecycleRetryDeadline)
	if err != nil {
		return err
	}
	rememberQuietly(lc, s, "", resp.Phase, resp.ActiveVersion, resp.TargetVersion)
	say := progressTo(p, s)
	say("%s", resp.Message)
	if len(resp.Quiesced) > 0 {
		say("acknowledged by %s: data plane closed, in-flight requests drained, pre-upgrade backup written", strings.Join(resp.Quiesced, ", "))
	}
	if len(resp.Missing) > 0 {
		if p.json {
			_ = p.JSON(resp)
		}
		hint := fmt.Sprintf(`the data plane stays closed; check %s ("weir cluster status", its log), then run "weir cluster shutdown" again: it is idempotent`, strings.Join(resp.Missing, ", "))
		if lc != nil {
			hint += "; the local node processes keep running until every voter acknowledged"
		}
		return failf(hint, "not every voter acknowledged the shutdown within %s: missing %s", c.Timeout, strings.Join(resp.Missing, ", "))
	}
	if lc != nil && resp.Phase == phaseShutdown {
		if err := lc.stopNodes(say); err != nil {
			return fmt.Errorf("the cluster is shut down, but stopping its node processes failed: %w", err)
		}
		say("the node processes are stopped; the cluster stays in phase %s (\"weir cluster status\" shows the last known state)", resp.Phase)
	}
	if p.json {
		return p.JSON(resp)
	}
	printShutdownNext(p)
	return nil
}

func printShutdownNext(p *Printer) {
	p.Linef("")
	p.Linef("next: install the new weir binary, then run with it:")
	p.Linef("  weir cluster upgrade    # start the nodes on it (local mode), check the plan, mark the upgrade")
	p.Linef("  weir cluster resume     # roll the nodes over one by one and finalize the version")
	p.Linef("or, to open the cluster again on the binary it runs now: weir cluster resume")
}

// ClusterUpgradeCmd is `weir cluster upgrade`.
type ClusterUpgradeCmd struct {
	To     string `help:"Version to upgrade to (default: this binary's version, ${binary_version})." placeholder:"VERSION"`
	DryRun bool   `help:"Print the plan and stop: exit 0 when the upgrade could be marked, 1 when something blocks it."`
	Force  bool   `help:"Mark a running cluster, or re-mark the same version. Never allows a downgrade or marking without quorum."`
	Yes    bool   `short:"y" help:"Mark without asking for a confirmation."`
}

// Run prints the upgrade plan and, unless it is a dry run or something
// blocks it, commits the upgrade mark. In local mode the stopped node
// processes are started first, on this binary.
func (c *ClusterUpgradeCmd) Run(g *Globals, s *Streams, cl *Client, p *Printer) error {
	_, lc, err := g.addrs()
	if err != nil {
		return err
	}
	target := c.To
	if target == "" {
		target = version.Version
	}
	say := progressTo(p, s)
	if lc != nil {
		if err := startOnThisBinary(g, say, lc); err != nil {
			return err
		}
	}
	ctx := context.Background()
	q := url.Values{"to": {target}, "force": {strconv.FormatBool(c.Force)}}
	resp, err := cl.Do(ctx, Request{Method: http.MethodGet, Path: api.PathUpgrade, Query: q})
	if err != nil {
		return err
	}
	var plan api.UpgradePlan
	if err := decodeJSON(resp, &plan); err != nil {
		return err
	}
	if p.json && c.DryRun {
		if err := p.Raw(resp.Body); err != nil {
			return err
		}
	} else if !p.json {
		printPlan(p, &plan)
		if lc != nil && !plan.OK {
			printLocalPlanNote(p, &plan)
		}
	}
	if !plan.OK {
		if p.json && !c.DryRun {
			_ = p.JSON(struct {
				Plan *api.UpgradePlan `json:"plan"`
			}{&plan})
		}
		return planRefusal(&plan)
	}
	if c.DryRun {
		if !p.json {
			p.Linef("")
			p.Linef("dry run: nothing was marked. next: weir cluster upgrade%s", c.flags())
		}
		return nil
	}
	if !c.Yes && !c.Force && isTerminal(s.In) {
		fmt.Fprintf(s.Err, "Mark the cluster for upgrade to %s? [y/N] ", target)
		if !confirmed(s.In) {
			return failf("run it again and answer y, or pass --yes", "not marked: the cluster is unchanged")
		}
	}
	req := newLifecycleRequest()
	req.To, req.Force = target, c.Force
	res, err := postLifecycle(ctx, cl, api.PathUpgrade, req, 0, 0)
	if err != nil {
		return err
	}
	rememberQuietly(lc, s, plan.ClusterID, res.Phase, res.ActiveVersion, res.TargetVersion)
	if p.json {
		return p.JSON(struct {
			Plan   *api.UpgradePlan       `json:"plan"`
			Result *api.LifecycleResponse `json:"result"`
		}{&plan, res})
	}
	p.Linef("")
	if res.Noop {
		p.Linef("%s", res.Message)
	} else {
		p.Linef("marked the cluster for upgrade: %s → %s (phase %s)", orDash(res.ActiveVersion), orDash(res.TargetVersion), res.Phase)
		p.Linef("  %s", res.Message)
	}
	p.Linef("")
	p.Linef("next: weir cluster resume    # with weir %s: rolls the nodes over one by one and finalizes the version", orDash(res.TargetVersion))
	p.Linef("or:   weir cluster rollback  # abandon the upgrade; the cluster stays on %s", orDash(res.ActiveVersion))
	return nil
}

// flags repeats the flags that choose the upgrade, for a "next:" line.
func (c *ClusterUpgradeCmd) flags() string {
	var b strings.Builder
	if c.To != "" {
		b.WriteString(" --to " + c.To)
	}
	if c.Force {
		b.WriteString(" --force")
	}
	return b.String()
}

// printPlan prints an upgrade plan the way kubeadm prints its own: what
// changes, every node's readiness, every blocker with what clears it.
func printPlan(p *Printer, plan *api.UpgradePlan) {
	forced := ""
	if plan.Force {
		forced = " (--force)"
	}
	p.Linef("Upgrade plan for cluster %s (phase %s)%s", orDash(plan.ClusterID), orDash(plan.Phase), forced)
	p.Linef("")
	p.Linef("  active version:  %s", orDash(plan.ActiveVersion))
	p.Linef("  target version:  %s", orDash(plan.TargetVersion))
	p.Linef("")
	rows := make([][]string, 0, len(plan.Nodes))
	for _, n := range plan.Nodes {
		window := "-"
		if n.MinCompatible != "" {
			window = ">= " + n.MinCompatible
		}
		rows = append(rows, []string{n.ID, orDash(n.Role), orDash(n.BinaryVersion), window, orDash(n.Health), yesNo(n.Ready)})
	}
	p.Table([]string{"NODE", "ROLE", "BINARY", "RUNS ACTIVE", "HEALTH", "READY"}, rows)
	p.Linef("")
	if len(plan.Blockers) == 0 {
		p.Linef("No blockers: the cluster can be marked for the upgrade to %s.", orDash(plan.TargetVersion))
		return
	}
	p.Linef("Blockers (%d): the upgrade cannot be marked until each is cleared.", len(plan.Blockers))
	for _, b := range plan.Blockers {
		who := ""
		if b.Node != "" {
			who = b.Node + ": "
		}
		p.Linef("  - [%s] %s%s", orDash(b.Code), who, b.Message)
		if b.Hint != "" {
			p.Linef("    fix: %s", b.Hint)
		}
	}
}

// printLocalPlanNote says how local mode clears blockers about running
// nodes on another binary: they are not restarted by upgrade.
func printLocalPlanNote(p *Printer, plan *api.UpgradePlan) {
	var other []string
	for _, n := range plan.Nodes {
		if n.BinaryVersion != "" && n.BinaryVersion != version.Version {
			other = append(other, n.ID)
		}
	}
	if len(other) == 0 {
		return
	}
	verb := "run"
	if len(other) == 1 {
		verb = "runs"
	}
	p.Linef("")
	p.Linef("local mode: %s %s another binary, and \"weir cluster upgrade\" starts only stopped nodes on this one (weir %s):",
		strings.Join(other, ", "), verb, version.Version)
	p.Linef("  weir cluster shutdown (or weir cluster stop), then weir cluster upgrade again")
}

// planRefusal is the error of a plan with blockers: every blocker with its
// code, and the first one's fix as the hint.
func planRefusal(plan *api.UpgradePlan) error {
	msgs := make([]string, len(plan.Blockers))
	for i, b := range plan.Blockers {
		msgs[i] = fmt.Sprintf("%s (%s)", strings.TrimSuffix(b.Message, "."), b.Code)
	}
	hint := ""
	if len(plan.Blockers) > 0 {
		hint = plan.Blockers[0].Hint
	}
	if len(plan.Blockers) > 1 {
		hint += "; the plan lists every blocker with its fix"
	}
	return failf(hint, "upgrade to %s refused: %s", orDash(plan.TargetVersion), strings.Join(msgs, "; "))
}

// ClusterResumeCmd is `weir cluster resume`.
type ClusterResumeCmd struct {
	Timeout     time.Duration `default:"5m" help:"How long to wait for every voter to resume; the roll goes on in the cluster after it."`
	GateTimeout time.Duration `default:"2m" help:"How long one node may take to pass its health gate before the roll halts at it."`
}

// Run commits Resume and follows the rolling resume node by node until the
// cluster runs again, the roll halts, or the timeout passes. In local mode
// the stopped node processes are started first, on this binary.
func (c *ClusterResumeCmd) Run(g *Globals, s *Streams, cl *Client, p *Printer) error {
	_, lc, err := g.addrs()
	if err != nil {
		return err
	}
	say := progressTo(p, s)
	if lc != nil {
		if err := startOnThisBinary(g, say, lc); err != nil {
			return err
		}
	}
	ctx := context.Background()
	before, _, err := getStatus(ctx, cl, 0)
	if err != nil {
		return err
	}
	req := newLifecycleRequest()
	req.GateTimeoutMs = c.GateTimeout.Milliseconds()
	res, err := postLifecycle(ctx, cl, api.PathResume, req, 0, lifecycleRetryDeadline)
	if err != nil {
		return err
	}
	if res.Noop && res.Phase == phaseRunning {
		rememberQuietly(lc, s, before.ClusterID, res.Phase, res.ActiveVersion, res.TargetVersion)
		if p.json {
			return p.JSON(res)
		}
		p.Linef("%s", res.Message)
		p.Linef("next: weir cluster status")
		return nil
	}
	say("%s", res.Message)
	say("rolling resume to %s: followers first, the leader last; each node must pass its health gate (gate timeout %s)", orDash(res.TargetVersion), c.GateTimeout)
	w := &resumeWatch{cl: cl, say: say, requestID: req.RequestID, before: before.Halted, printed: map[string]bool{}, local: lc != nil}
	st, body, err := w.follow(ctx, c.Timeout)
	if st != nil {
		rememberQuietly(lc, s, st.ClusterID, st.Phase, st.ActiveVersion, st.TargetVersion)
	}
	if err != nil {
		return err
	}
	if p.json {
		return p.Raw(body)
	}
	p.Linef("")
	p.Linef("the cluster is running version %s (gates open: %s)", orDash(st.ActiveVersion), orNone(st.Gates))
	p.Linef("")
	p.Linef("next:")
	p.Linef("  weir cluster status")
	p.Linef("  weir consume TOPIC -B -d    # everything produced before the upgrade, in order")
	p.Linef("  weir cluster history")
	return nil
}

// resumeWatch follows a rolling resume through the status. Each poll may
// be answered by another node, and a follower may not have applied the
// resume yet: a halt seen before the resume and a phase from before it are
// not taken for the roll's outcome.
type resumeWatch struct {
	cl        *Client
	say       func(format string, args ...any)
	requestID string    // of this resume
	before    *api.Halt // the halt the status showed before this resume: stale
	printed   map[string]bool
	total     int
	local     bool // the nodes are the local cluster's processes
}

// follow polls the status until the phase is running, the roll halts (or
// is rolled back), or timeout passes; it narrates each resumed node.
func (w *resumeWatch) follow(ctx context.Context, timeout time.Duration) (*api.StatusResponse, []byte, error) {
	end := time.Now().Add(timeout)
	tick := time.NewTicker(resumePollInterval)
	defer tick.Stop()
	var (
		last    *api.StatusResponse
		lastErr error
	)
	for {
		st, resp, err := getStatus(ctx, w.cl, statusPollTimeout)
		if err != nil {
			lastErr = err
		} else {
			last, lastErr = st, nil
			if done, err := w.step(ctx, st); done || err != nil {
				return st, resp.Body, err
			}
		}
		if time.Now().After(end) {
			return last, nil, w.timedOut(last, lastErr, timeout)
		}
		select {
		case <-ctx.Done():
			return last, nil, ctx.Err()
		case <-tick.C:
		}
	}
}

// step narrates one status; done when the phase is running.
func (w *resumeWatch) step(ctx context.Context, st *api.StatusResponse) (bool, error) {
	if v := len(voterIDs(st)); v > 0 {
		w.total = v
	}
	switch st.Phase {
	case phaseResuming:
		for _, id := range st.Resumed {
			if !w.printed[id] {
				w.printed[id] = true
				w.say("resumed %s (%d/%d)", id, len(w.printed), w.total)
			}
		}
		if h := st.Halted; h != nil && !sameHalt(h, w.before) {
			w.say("halted at %s: %s", h.Node, h.Reason)
			hint := fmt.Sprintf(`fix %s (its log, "weir cluster status"), then run "weir cluster resume" to continue the roll, or "weir cluster rollback" to abort the upgrade`, h.Node)
			if w.local {
				hint += fmt.Sprintf(`; in local mode "weir cluster stop", then "weir cluster resume" with weir %s, restarts the nodes on that binary`, orDash(st.TargetVersion))
			}
			return true, failf(hint, "the rolling resume halted at node %s: %s", h.Node, h.Reason)
		}
	case phaseRunning:
		var rest []string
		for _, id := range voterIDs(st) {
			if !w.printed[id] {
				rest = append(rest, id)
			}
		}
		if len(rest) > 0 {
			w.say("resumed %s (%d/%d)", strings.Join(rest, ", "), w.total, w.total)
			for _, id := range rest {
				w.printed[id] = true
			}
		}
		// The phase is committed before every node's gossip says it
		// serves again (each node announces it on its next tick): say
		// "complete" only once "weir cluster status" would show it.
		if len(notServing(st)) > 0 {
			return false, nil
		}
		w.say("resume complete: active version %s", orDash(st.ActiveVersion))
		return true, nil
	case phaseShutdown:
		if w.applied(ctx) {
			return true, failf(`"weir cluster history" shows who rolled it back; run "weir cluster resume" again to resume`,
				"the resume was aborted: the cluster is back in phase shutdown at version %s", orDash(st.ActiveVersion))
		}
	}
	return false, nil
}

// applied reports whether the node answering the history has applied this
// resume: then a phase shutdown is a rollback after it, not a node that lags.
func (w *resumeWatch) applied(ctx context.Context) bool {
	var h api.HistoryResponse
	if _, err := w.cl.GetJSON(ctx, api.PathHistory, &h); err != nil {
		return false
	}
	return slices.ContainsFunc(h.Entries, func(e api.HistoryEntry) bool { return e.RequestID == w.requestID })
}

// timedOut is the error of a resume that did not finish in time.
func (w *resumeWatch) timedOut(st *api.StatusResponse, lastErr error, timeout time.Duration) error {
	hint := `the roll goes on in the cluster: watch it with "weir cluster status", run "weir cluster resume" again to keep waiting, or "weir cluster rollback" to abort`
	if st == nil {
		if lastErr != nil {
			return failf(hint, "the cluster did not finish resuming within %s; no status answered: %v", timeout, lastErr)
		}
		return failf(hint, "the cluster did not finish resuming within %s", timeout)
	}
	if st.Phase == phaseRunning {
		return failf(`see the node's log and "weir cluster status"`, "the cluster resumed (phase running, version %s), but within %s these nodes did not report serving: %s",
			orDash(st.ActiveVersion), timeout, strings.Join(notServing(st), ", "))
	}
	var pending []string
	for _, id := range voterIDs(st) {
		if !slices.Contains(st.Resumed, id) {
			pending = append(pending, id)
		}
	}
	return failf(hint, "the cluster did not finish resuming within %s (phase %s): not yet resumed: %s", timeout, st.Phase, orNone(pending))
}

// notServing lists the voters whose status does not say they serve.
func notServing(st *api.StatusResponse) []string {
	var ids []string
	for _, n := range st.Nodes {
		if n.RaftSuffrage == "voter" && !n.Serving {
			ids = append(ids, n.ID)
		}
	}
	sort.Strings(ids)
	return ids
}

// voterIDs are the voters in a status, sorted.
func voterIDs(st *api.StatusResponse) []string {
	var ids []string
	for _, n := range st.Nodes {
		if n.RaftSuffrage == "voter" {
			ids = append(ids, n.ID)
		}
	}
	sort.Strings(ids)
	return ids
}

func sameHalt(a, b *api.Halt) bool {
	return a != nil && b != nil && a.Node == b.Node && a.At == b.At && a.Reason == b.Reason
}

// orNone joins a list, or says none.
func orNone(list []string) string {
	if len(list) == 0 {
		return "none"
	}
	return strings.Join(list, ", ")
}

// ClusterRollbackCmd is `weir cluster rollback`.
type ClusterRollbackCmd struct{}

// Run commits Rollback: an upgrade that is not finalized goes back to phase
// shutdown on the old active version. In local mode the node processes are
// then stopped, as after a shutdown: they run the new binary, and the
// cluster resumes on the old one, which starts them again.
func (c *ClusterRollbackCmd) Run(g *Globals, s *Streams, cl *Client, p *Printer) error {
	_, lc, err := g.addrs()
	if err != nil {
		return err
	}
	res, err := postLifecycle(context.Background(), cl, api.PathRollback, newLifecycleRequest(), 0, lifecycleRetryDeadline)
	if err != nil {
		return err
	}
	rememberQuietly(lc, s, "", res.Phase, res.ActiveVersion, res.TargetVersion)
	say := progressTo(p, s)
	say("%s", res.Message)
	if !res.Noop {
		say("rolled back: the cluster is in phase %s on version %s; the data plane stays closed", res.Phase, orDash(res.ActiveVersion))
	}
	if lc != nil && res.Phase == phaseShutdown {
		if err := lc.stopNodes(say); err != nil {
			return fmt.Errorf("the cluster is rolled back, but stopping its node processes failed: %w", err)
		}
		say("the node processes are stopped")
	}
	if p.json {
		return p.JSON(res)
	}
	p.Linef("")
	p.Linef("next: weir cluster resume    # with weir %s (the old binary): the cluster runs %s again", orDash(res.ActiveVersion), orDash(res.ActiveVersion))
	p.Linef("or:   weir cluster upgrade   # mark an upgrade again")
	return nil
}

// ClusterHistoryCmd is `weir cluster history`.
type ClusterHistoryCmd struct{}

// Run prints every lifecycle command the cluster applied, oldest first.
func (c *ClusterHistoryCmd) Run(cl *Client, p *Printer) error {
	var h api.HistoryResponse
	resp, err := cl.GetJSON(context.Background(), api.PathHistory, &h)
	if err != nil {
		return err
	}
	if p.json {
		return p.Raw(resp.Body)
	}
	printHistory(p, h.Entries)
	return nil
}

// printHistory prints history entries as a table, times in UTC.
func printHistory(p *Printer, entries []api.HistoryEntry) {
	if len(entries) == 0 {
		p.Linef("no lifecycle command has been applied yet")
		return
	}
	rows := make([][]string, 0, len(entries))
	for _, e := range entries {
		at := "-"
		if e.At > 0 {
			at = time.UnixMilli(e.At).UTC().Format(time.RFC3339)
		}
		rows = append(rows, []string{at, e.Command, orDash(e.By), orDash(e.From) + " → " + orDash(e.To), orDash(e.Detail), orDash(e.RequestID)})
	}
	p.Table([]string{"TIME", "COMMAND", "BY", "FROM → TO", "DETAIL", "REQUEST"}, rows)
}

// startOnThisBinary starts the local cluster's stopped node processes on
// this executable (the new binary of an upgrade), records it in
// cluster.json, and waits until every node answers in gossip and a leader
// is known. The data plane may stay closed (phase shutdown or
// upgrade-marked), so serving is not waited for. If a node exits while
// starting (it refuses a version it cannot run), the nodes this call
// started are stopped again.
func startOnThisBinary(g *Globals, say func(string, ...any), lc *LocalCluster) error {
	_, stopped := lc.split()
	if len(stopped) == 0 {
		return nil
	}
	binary, err := os.Executable()
	if err != nil {
		return fmt.Errorf("finding this weir binary: %w", err)
	}
	lc.Binary = binary
	exits := make(chan nodeExit, len(stopped))
	ids := make([]string, 0, len(stopped))
	for _, n := range stopped {
		if err := lc.spawn(n, g.LogLevel, exits); err != nil {
			_ = lc.save()
			return err
		}
		ids = append(ids, n.ID)
	}
	if err := lc.save(); err != nil {
		return err
	}
	say("started %s on weir %s (%s); waiting for the nodes to answer and a leader", strings.Join(ids, ", "), version.Version, binary)
	st, exited, err := waitCluster(lc, exits, startDeadline, func(st *api.StatusResponse) string { return upOnBinary(lc, st, stopped) })
	if err != nil {
		_ = lc.stop(stopped, func(string, ...any) {})
		if exited == nil {
			return err
		}
		msg := fmt.Sprintf("%s did not start on weir %s; the nodes this command started are stopped again", exited.ID, version.Version)
		if tail := logTail(exited.Log); tail != "" {
			msg += ". The end of its log:\n" + tail
		}
		active := "the cluster's active version"
		if lc.LastKnown != nil && lc.LastKnown.ActiveVersion != "" {
			active += " (last seen: " + lc.LastKnown.ActiveVersion + ")"
		}
		return failf(fmt.Sprintf("see %s. A node refuses to start on a binary that cannot run the cluster's active version: run this command with a weir that can run %s", exited.Log, active), "%s", msg)
	}
	say("the nodes answer; leader %s, phase %s", st.Leader, orDash(st.Phase))
	return lc.remember(st.ClusterID, st.Phase, st.ActiveVersion, st.TargetVersion)
}

// upOnBinary says what the cluster still lacks before a lifecycle command
// can ask it: a leader, every local node alive in gossip, and the nodes just
// started on this binary showing its version.
func upOnBinary(lc *LocalCluster, st *api.StatusResponse, started []*LocalNode) string {
	return lacking(lc, st, func(id string, ns api.NodeStatus) string {
		for _, s := range started {
			if s.ID == id && ns.BinaryVersion != version.Version {
				return fmt.Sprintf("%s still shows weir %s in gossip", id, orDash(ns.BinaryVersion))
			}
		}
		return ""
	})
}
