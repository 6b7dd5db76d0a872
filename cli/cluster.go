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
	Start  ClusterStartCmd  `cmd:"" help:"Start a local cluster of node processes on loopback, or start a stopped one again."`
	Stop   ClusterStopCmd   `cmd:"" help:"Stop the local cluster's node processes; the data stays."`
	Status ClusterStatusCmd `cmd:"" help:"Show the cluster's phase, versions, leader and nodes."`
	Delete ClusterDeleteCmd `cmd:"" help:"Stop the local cluster and delete its data."`
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
		return printStarted(p, lc, "", "the local cluster is already running")
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
	return printStarted(p, lc, st.Leader, "started "+strings.Join(started, ", "))
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
// local node serves, a node process exits, or startDeadline passes.
func waitReady(lc *LocalCluster, exits <-chan nodeExit) (*api.StatusResponse, error) {
	cl, err := NewClient(lc.APIAddrs())
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), startDeadline)
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
			return nil, failf(fmt.Sprintf(`see %s; stop the rest with "weir cluster stop"`, ex.node.Log), "%s", msg)
		case <-ctx.Done():
			return nil, failf(fmt.Sprintf(`see the nodes' logs under %s; "weir cluster status" shows where they stand`, lc.DataDir),
				"the local cluster did not become ready within %s: %s", startDeadline, waiting)
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
		if waiting = notReady(lc, &st); waiting == "" {
			return &st, nil
		}
	}
}

// notReady says what the cluster still lacks, or "" when a leader is known
// and every local node serves.
func notReady(lc *LocalCluster, st *api.StatusResponse) string {
	if st.Leader == "" {
		return "no leader elected yet"
	}
	seen := map[string]api.NodeStatus{}
	for _, n := range st.Nodes {
		seen[n.ID] = n
	}
	for _, n := range lc.Nodes {
		ns, ok := seen[n.ID]
		switch {
		case !ok:
			return n.ID + " has not joined yet"
		case !ns.Serving:
			return fmt.Sprintf("%s is not serving yet (raft %s, gossip %s)", n.ID, orDash(ns.RaftState), orDash(ns.GossipState))
		}
	}
	return ""
}

func printStarted(p *Printer, lc *LocalCluster, leader, what string) error {
	if p.json {
		return p.JSON(struct {
			Leader string        `json:"leader,omitempty"`
			Local  *LocalCluster `json:"local"`
		}{leader, lc})
	}
	p.Linef("%s (local cluster of %d node%s, data under %s)", what, len(lc.Nodes), plural(len(lc.Nodes)), lc.DataDir)
	if leader != "" {
		p.Linef("leader: %s", leader)
	}
	printLocalNodes(p, lc)
	p.Linef("")
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

// Run prints the cluster's status; in local mode also the node processes.
func (c *ClusterStatusCmd) Run(g *Globals, cl *Client, p *Printer) error {
	_, lc, err := g.addrs()
	if err != nil {
		return err
	}
	var st api.StatusResponse
	resp, err := cl.GetJSON(context.Background(), api.PathStatus, &st)
	if err != nil {
		if lc != nil && !p.json {
			printLocalNodes(p, lc)
			if running, _ := lc.split(); len(running) == 0 {
				return failf(`start it again with "weir cluster start"`, "the local cluster is stopped")
			}
		}
		return err
	}
	if p.json {
		return p.Raw(resp.Body)
	}
	p.Linef("cluster %s: phase %s, active version %s, leader %s (answered by %s)",
		orDash(st.ClusterID), orDash(st.Phase), orDash(st.ActiveVersion), orDash(st.Leader), orDash(st.Node))
	if st.TargetVersion != "" {
		p.Linef("target version: %s", st.TargetVersion)
	}
	rows := make([][]string, 0, len(st.Nodes))
	for _, n := range st.Nodes {
		rows = append(rows, []string{n.ID, orDash(n.BinaryVersion), orDash(n.RaftState), orDash(n.RaftSuffrage),
			orDash(n.GossipState), yesNo(n.Serving), strconv.FormatUint(n.AppliedIndex, 10), orDash(n.APIAddr)})
	}
	p.Table([]string{"NODE", "BINARY", "RAFT", "SUFFRAGE", "GOSSIP", "SERVING", "APPLIED", "API"}, rows)
	if lc != nil {
		p.Linef("")
		p.Linef("local processes (%s):", lc.DataDir)
		printLocalNodes(p, lc)
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
