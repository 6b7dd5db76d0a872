package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/weir-streaming/weir/api"
)

// ClusterCmd is `weir cluster`.
type ClusterCmd struct {
	Start    ClusterStartCmd    `cmd:"" help:"Start a local cluster of node processes on loopback, or start a stopped one again."`
	Stop     ClusterStopCmd     `cmd:"" help:"Stop the local cluster's node processes; the data stays."`
	Status   ClusterStatusCmd   `cmd:"" help:"Show the cluster's phase, versions, leader, nodes and lifecycle progress."`
	Shutdown ClusterShutdownCmd `cmd:"" help:"Close the data plane on every node (drain, flush, pre-upgrade backup); in local mode then stop the node processes."`
	Upgrade  ClusterUpgradeCmd  `cmd:"" help:"Print the upgrade plan and mark the cluster for an upgrade to this binary's version (or --to); in local mode start stopped nodes on this binary first."`
	Resume   ClusterResumeCmd   `cmd:"" help:"Resume the cluster node by node, health-gated, and finalize the version; in local mode start stopped nodes on this binary first."`
	Rollback ClusterRollbackCmd `cmd:"" help:"Abandon an upgrade that is not finalized: back to phase shutdown on the old version; in local mode then stop the node processes."`
	History  ClusterHistoryCmd  `cmd:"" help:"List every lifecycle command the cluster applied: when, who, from and to."`
	Backup   ClusterBackupCmd   `cmd:"" help:"Write a consistent, checksummed backup of the cluster's state to a file."`
	Restore  ClusterRestoreCmd  `cmd:"" help:"Rebuild the local cluster (stopped, or new) from a backup file."`
	Delete   ClusterDeleteCmd   `cmd:"" help:"Stop the local cluster and delete its data."`
}

// ClusterStartCmd is `weir cluster start`.
type ClusterStartCmd struct {
	Nodes   *int   `help:"Number of nodes of a new local cluster (default ${default_nodes})." placeholder:"N"`
	DataDir string `help:"Directory for a new local cluster's data and logs (default $WEIR_HOME/local)." type:"path" placeholder:"DIR"`
}

// Run starts the local cluster: a new one, or the stopped nodes of the
// recorded one on the same ports, data and ids; then waits until a leader
// is known and every node serves.
func (c *ClusterStartCmd) Run(g *Globals, p *Printer) error {
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
	if lc == nil {
		lc, err = c.newCluster(home, binary)
	} else {
		err = c.checkSame(lc)
	}
	if err != nil {
		return err
	}
	_, stopped := lc.split()
	if len(stopped) == 0 {
		return printStarted(p, lc, nil, "the local cluster is already running")
	}
	lc.Binary = binary
	exits := make(chan nodeExit, len(stopped))
	var started []string
	for _, n := range stopped {
		if err := lc.spawn(n, g.LogLevel, exits); err != nil {
			_ = lc.save()
			return err
		}
		started = append(started, n.ID)
	}
	if err := lc.save(); err != nil {
		return err
	}
	st, err := waitReady(lc, exits)
	if err != nil {
		return err
	}
	if err := lc.remember(st.ClusterID, st.Phase, st.ActiveVersion, st.TargetVersion); err != nil {
		return err
	}
	return printStarted(p, lc, st, "started "+strings.Join(started, ", "))
}

func (c *ClusterStartCmd) newCluster(home, binary string) (*LocalCluster, error) {
	n := defaultLocalNodes
	if c.Nodes != nil {
		n = *c.Nodes
	}
	if n < 1 {
		return nil, failf("pass --nodes 1 or more (3 tolerates the loss of one node)", "--nodes %d: a cluster needs at least one node", n)
	}
	dir := c.DataDir
	if dir == "" {
		dir = localDir(home)
	}
	return newLocalCluster(home, dir, binary, n)
}

// checkSame refuses flags that would change a recorded cluster.
func (c *ClusterStartCmd) checkSame(lc *LocalCluster) error {
	hint := `run "weir cluster start" without it to start the recorded cluster, or "weir cluster delete" first to make a new one`
	if c.Nodes != nil && *c.Nodes != len(lc.Nodes) {
		return failf(hint, "the local cluster has %d nodes; --nodes %d only sizes a new cluster", len(lc.Nodes), *c.Nodes)
	}
	if c.DataDir != "" && filepath.Clean(c.DataDir) != filepath.Clean(lc.DataDir) {
		return failf(hint, "the local cluster's data is in %s; --data-dir %s only places a new cluster", lc.DataDir, c.DataDir)
	}
	return nil
}

// waitReady polls the cluster's status until a leader is known and every
// local node is ready (notReady), a node process exits, or startDeadline
// passes.
func waitReady(lc *LocalCluster, exits <-chan nodeExit) (*api.StatusResponse, error) {
	st, _, err := waitCluster(lc, exits, startDeadline, func(st *api.StatusResponse) string { return notReady(lc, st) })
	return st, err
}

// waitCluster polls the cluster's status until lacking says it lacks
// nothing (""), a node process exits (that node is returned with the
// error), or deadline passes.
func waitCluster(lc *LocalCluster, exits <-chan nodeExit, deadline time.Duration, lacking func(*api.StatusResponse) string) (*api.StatusResponse, *LocalNode, error) {
	cl, err := NewClient(lc.APIAddrs())
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	waiting := "no node answered yet"
	for {
		select {
		case ex := <-exits:
			msg := fmt.Sprintf("%s exited while starting (%v)", ex.node.ID, ex.err)
			if tail := logTail(ex.node.Log); tail != "" {
				msg += "; the end of its log:\n" + tail
			}
			ex.node.PID = 0
			_ = lc.save()
			return nil, ex.node, failf(fmt.Sprintf(`see %s; stop the rest with "weir cluster stop"`, ex.node.Log), "%s", msg)
		case <-ctx.Done():
			return nil, nil, failf(fmt.Sprintf(`see the nodes' logs under %s; "weir cluster status" shows where they stand`, lc.DataDir),
				"the local cluster did not become ready within %s: %s", deadline, waiting)
		case <-tick.C:
		}
		var st api.StatusResponse
		resp, err := cl.Do(ctx, Request{Method: http.MethodGet, Path: api.PathStatus, Timeout: statusPollTimeout})
		if err == nil {
			err = decodeJSON(resp, &st)
		}
		if err != nil {
			waiting = err.Error()
			continue
		}
		if waiting = lacking(&st); waiting == "" {
			return &st, nil, nil
		}
	}
}

// notReady says what the cluster still lacks, or "" when a leader is known
// and every local node has joined and is alive; while the phase keeps the
// data plane open (running), every node must also serve. In phase shutdown
// or upgrade-marked the nodes serve only the control plane.
func notReady(lc *LocalCluster, st *api.StatusResponse) string {
	return lacking(lc, st, func(id string, ns api.NodeStatus) string {
		if dataPlaneOpen(st.Phase) && !ns.Serving {
			return fmt.Sprintf("%s is not serving yet (raft %s, gossip %s)", id, orDash(ns.RaftState), orDash(ns.GossipState))
		}
		return ""
	})
}

// lacking says what the local cluster still lacks in st, or "": a leader,
// every local node known, passing check (nil: no check) and alive in gossip.
func lacking(lc *LocalCluster, st *api.StatusResponse, check func(id string, ns api.NodeStatus) string) string {
	if st.Leader == "" {
		return "no leader elected yet"
	}
	seen := map[string]api.NodeStatus{}
	for _, n := range st.Nodes {
		seen[n.ID] = n
	}
	for _, n := range lc.Nodes {
		ns, ok := seen[n.ID]
		if !ok {
			return n.ID + " has not joined yet"
		}
		if check != nil {
			if why := check(n.ID, ns); why != "" {
				return why
			}
		}
		if ns.GossipState != "alive" {
			return fmt.Sprintf("%s is not alive in gossip yet (gossip %s)", n.ID, orDash(ns.GossipState))
		}
	}
	return ""
}

// dataPlaneOpen reports whether produce and consume are open on every node
// in phase (a new cluster has none yet).
func dataPlaneOpen(phase string) bool { return phase == phaseRunning || phase == "" }

func printStarted(p *Printer, lc *LocalCluster, st *api.StatusResponse, what string) error {
	leader, phase := "", ""
	if st != nil {
		leader, phase = st.Leader, st.Phase
	}
	if p.json {
		return p.JSON(struct {
			Leader string        `json:"leader,omitempty"`
			Phase  string        `json:"phase,omitempty"`
			Local  *LocalCluster `json:"local"`
		}{leader, phase, lc})
	}
	p.Linef("%s (local cluster of %d node%s, data under %s)", what, len(lc.Nodes), plural(len(lc.Nodes)), lc.DataDir)
	if leader != "" {
		p.Linef("leader: %s", leader)
	}
	printLocalNodes(p, lc)
	p.Linef("")
	if !dataPlaneOpen(phase) {
		p.Linef("the cluster is in phase %s (version %s): produce and consume stay closed until it resumes", phase, orDash(st.ActiveVersion))
		printPhaseNext(p, st)
		return nil
	}
	p.Linef("next:")
	p.Linef("  weir topic create events -p 3")
	p.Linef("  weir produce events < records.txt")
	p.Linef("  weir consume events -B -d")
	p.Linef("  weir cluster status")
	p.Linef("  weir cluster stop")
	return nil
}

// printLocalNodes prints the local node processes and their addresses.
func printLocalNodes(p *Printer, lc *LocalCluster) {
	rows := make([][]string, 0, len(lc.Nodes))
	for _, n := range lc.Nodes {
		state, pid := "stopped", "-"
		if processAlive(n.PID, n.ID) {
			state, pid = "running", strconv.Itoa(n.PID)
		}
		rows = append(rows, []string{n.ID, state, pid, n.APIAddr, n.ClusterAddr, n.GossipAddr, n.Log})
	}
	p.Table([]string{"NODE", "PROCESS", "PID", "API", "CLUSTER", "GOSSIP", "LOG"}, rows)
}

// ClusterStopCmd is `weir cluster stop`.
type ClusterStopCmd struct{}

// Run stops the local node processes.
func (c *ClusterStopCmd) Run(g *Globals, p *Printer) error {
	lc, err := requireLocal(g)
	if err != nil {
		return err
	}
	say := p.Linef
	if p.json {
		say = func(string, ...any) {}
	}
	if err := lc.stopNodes(say); err != nil {
		return err
	}
	if p.json {
		return p.JSON(struct {
			Local *LocalCluster `json:"local"`
		}{lc})
	}
	p.Linef("the data stays under %s; start the cluster again with: weir cluster start", lc.DataDir)
	return nil
}

// requireLocal loads the local cluster's record or refuses.
func requireLocal(g *Globals) (*LocalCluster, error) {
	home, err := g.HomeDir()
	if err != nil {
		return nil, err
	}
	lc, err := loadLocalCluster(home)
	if err != nil {
		return nil, err
	}
	if lc == nil {
		return nil, failf(`start one with "weir cluster start", or set WEIR_HOME to where it was started`,
			"no local cluster is recorded under %s", localDir(home))
	}
	return lc, nil
}

// ClusterStatusCmd is `weir cluster status`.
type ClusterStatusCmd struct{}

// Run prints the cluster's status; in local mode also the node processes,
// and, when none runs, the state the CLI last saw committed.
func (c *ClusterStatusCmd) Run(g *Globals, s *Streams, cl *Client, p *Printer) error {
	_, lc, err := g.addrs()
	if err != nil {
		return err
	}
	var st api.StatusResponse
	resp, err := cl.GetJSON(context.Background(), api.PathStatus, &st)
	if err != nil {
		if lc != nil {
			if running, _ := lc.split(); len(running) == 0 {
				return printStopped(p, lc)
			}
			if !p.json {
				printLocalNodes(p, lc)
			}
		}
		return err
	}
	rememberQuietly(lc, s, st.ClusterID, st.Phase, st.ActiveVersion, st.TargetVersion)
	if p.json {
		return p.Raw(resp.Body)
	}
	printStatus(p, &st)
	if lc != nil {
		p.Linef("")
		p.Linef("local processes (%s):", lc.DataDir)
		printLocalNodes(p, lc)
	}
	printPhaseNext(p, &st)
	return nil
}

// printStatus prints a status: the cluster line, lifecycle progress, and a
// table of the nodes.
func printStatus(p *Printer, st *api.StatusResponse) {
	p.Linef("cluster %s: phase %s, active version %s, leader %s (answered by %s)",
		orDash(st.ClusterID), orDash(st.Phase), orDash(st.ActiveVersion), orDash(st.Leader), orDash(st.Node))
	if st.TargetVersion != "" {
		p.Linef("target version: %s", st.TargetVersion)
	}
	voters := voterIDs(st)
	if len(st.Quiesced) > 0 {
		p.Linef("quiesced: %s (%d/%d)", strings.Join(st.Quiesced, ", "), len(st.Quiesced), len(voters))
	}
	if st.Phase == phaseResuming {
		p.Linef("resumed: %s (%d/%d)", orNone(st.Resumed), len(st.Resumed), len(voters))
	}
	if h := st.Halted; h != nil {
		p.Linef("halted: the rolling resume stopped at %s: %s", h.Node, h.Reason)
	}
	if st.Gates != nil {
		p.Linef("gates open: %s", orNone(st.Gates))
	}
	rows := make([][]string, 0, len(st.Nodes))
	for _, n := range st.Nodes {
		rows = append(rows, []string{n.ID, orDash(n.BinaryVersion), orDash(n.RaftState), orDash(n.RaftSuffrage),
			orDash(n.GossipState), yesNo(n.Serving), strconv.FormatUint(n.AppliedIndex, 10), orDash(n.APIAddr)})
	}
	p.Table([]string{"NODE", "BINARY", "RAFT", "SUFFRAGE", "GOSSIP", "SERVING", "APPLIED", "API"}, rows)
}

// printPhaseNext says what to run next in a lifecycle phase other than
// running.
func printPhaseNext(p *Printer, st *api.StatusResponse) {
	var next []string
	switch {
	case st.Phase == phaseShutdown:
		next = []string{
			"weir cluster upgrade    # with the new weir binary: plan and mark the upgrade",
			"weir cluster resume     # or open the data plane again on the version it runs",
		}
	case st.Phase == phaseUpgradeMarked:
		next = []string{
			fmt.Sprintf("weir cluster resume     # with weir %s: roll the nodes over and finalize", orDash(st.TargetVersion)),
			"weir cluster rollback   # or abandon the upgrade",
		}
	case st.Phase == phaseResuming && st.Halted != nil:
		next = []string{
			fmt.Sprintf("weir cluster resume     # once %s is fixed: continue the roll", st.Halted.Node),
			"weir cluster rollback   # or abort the upgrade",
		}
	case st.Phase == phaseResuming:
		next = []string{"weir cluster resume     # follow the roll until it finishes"}
	}
	if len(next) == 0 {
		return
	}
	p.Linef("")
	p.Linef("next:")
	for _, n := range next {
		p.Linef("  %s", n)
	}
}

// printStopped reports a local cluster none of whose processes runs. After
// `cluster shutdown` that is the expected state: it prints the lifecycle
// state last seen committed and succeeds. A running cluster that was
// stopped is a failure, with the hint to start it.
func printStopped(p *Printer, lc *LocalCluster) error {
	ks := lc.LastKnown
	if ks == nil || ks.Phase == phaseRunning {
		if !p.json {
			if ks != nil {
				p.Linef("cluster %s: phase %s, active version %s (last known, seen %s)", orDash(lc.ClusterID), ks.Phase, orDash(ks.ActiveVersion), ks.At.Format(time.RFC3339))
			}
			printLocalNodes(p, lc)
		}
		return failf(`start it again with "weir cluster start"`, "the local cluster is stopped")
	}
	if p.json {
		return p.JSON(struct {
			ClusterID     string           `json:"cluster_id"`
			Phase         string           `json:"phase"`
			ActiveVersion string           `json:"active_version"`
			TargetVersion string           `json:"target_version,omitempty"`
			Leader        string           `json:"leader"`
			Nodes         []api.NodeStatus `json:"nodes"`
			Processes     string           `json:"processes"`
			LastKnownAt   time.Time        `json:"last_known_at"`
			Local         *LocalCluster    `json:"local"`
		}{lc.ClusterID, ks.Phase, ks.ActiveVersion, ks.TargetVersion, "", []api.NodeStatus{}, "stopped", ks.At, lc})
	}
	p.Linef("cluster %s: phase %s, active version %s (last known state, committed before the processes stopped; seen %s)",
		orDash(lc.ClusterID), ks.Phase, orDash(ks.ActiveVersion), ks.At.Format(time.RFC3339))
	if ks.TargetVersion != "" && ks.TargetVersion != ks.ActiveVersion {
		p.Linef("target version: %s", ks.TargetVersion)
	}
	p.Linef("the node processes are stopped (%s):", lc.DataDir)
	printLocalNodes(p, lc)
	p.Linef("")
	p.Linef("next:")
	switch ks.Phase {
	case phaseShutdown:
		p.Linef("  weir cluster upgrade    # with the new weir binary: start the nodes on it, plan and mark the upgrade")
		p.Linef("  weir cluster resume     # or start the nodes on this binary and open the data plane again")
	case phaseUpgradeMarked:
		p.Linef("  weir cluster resume     # with weir %s: start the nodes on it, roll over and finalize", orDash(ks.TargetVersion))
		p.Linef("  weir cluster start      # or start the nodes, then \"weir cluster rollback\" to abandon the upgrade")
	default:
		p.Linef("  weir cluster resume     # start the nodes on this binary and continue the roll")
	}
	return nil
}

// ClusterDeleteCmd is `weir cluster delete`.
type ClusterDeleteCmd struct {
	Force bool `help:"Delete without asking."`
}

// Run stops the local cluster and deletes its data, after a confirmation on
// a terminal.
func (c *ClusterDeleteCmd) Run(g *Globals, s *Streams, p *Printer) error {
	home, err := g.HomeDir()
	if err != nil {
		return err
	}
	lc, err := loadLocalCluster(home)
	if err != nil {
		return err
	}
	if lc == nil {
		p.Linef("no local cluster under %s; nothing to delete", localDir(home))
		return nil
	}
	if !c.Force {
		if !isTerminal(s.In) {
			return failf("pass --force to delete without the question",
				"refusing to delete the local cluster under %s without a confirmation: standard input is not a terminal", lc.DataDir)
		}
		fmt.Fprintf(s.Err, "delete the local cluster (%d node%s) and all its data under %s? [y/N] ", len(lc.Nodes), plural(len(lc.Nodes)), lc.DataDir)
		if !confirmed(s.In) {
			return failf("", "not deleted")
		}
	}
	say := p.Linef
	if p.json {
		say = func(string, ...any) {}
	}
	if err := lc.stopNodes(say); err != nil {
		return err
	}
	if err := lc.remove(home); err != nil {
		return fmt.Errorf("deleting the local cluster: %w", err)
	}
	say("deleted the local cluster and its data under %s", lc.DataDir)
	return nil
}

// confirmed reads a yes from r.
func confirmed(r io.Reader) bool {
	line, err := bufio.NewReader(r).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return false
	}
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return true
	}
	return false
}

// isTerminal reports whether r is an interactive terminal: a character
// device other than /dev/null.
func isTerminal(r io.Reader) bool {
	f, ok := r.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	if err != nil || fi.Mode()&os.ModeCharDevice == 0 {
		return false
	}
	if null, err := os.Stat(os.DevNull); err == nil && os.SameFile(fi, null) {
		return false
	}
	return true
}
