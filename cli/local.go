package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Local mode: `weir cluster start` runs N `weir node run` processes on
// loopback and records them in $WEIR_HOME/local/cluster.json.
const (
	localDirName      = "local"
	clusterFileName   = "cluster.json"
	nodeLogName       = "node.log"
	nodeDataName      = "data"
	defaultLocalNodes = 3
	loopbackHost      = "127.0.0.1"

	// startDeadline bounds waiting for a leader and every node serving.
	startDeadline = 60 * time.Second
	// stopDeadline bounds a graceful stop before SIGKILL; killDeadline the
	// wait after SIGKILL.
	stopDeadline = 30 * time.Second
	killDeadline = 5 * time.Second
	// pollInterval paces polling a process or the status endpoint.
	pollInterval = 200 * time.Millisecond
	// statusPollTimeout bounds one status request while waiting.
	statusPollTimeout = 2 * time.Second
	// logTailLines is how much of a failed node's log an error quotes.
	logTailLines = 8
)

// LocalCluster is cluster.json: the nodes `cluster start` runs, so that
// later commands find them (default --addr) and can stop and restart them
// on the same ports, data and ids.
type LocalCluster struct {
	// Binary is the weir binary the nodes were last started with.
	Binary string `json:"binary"`
	// DataDir holds one directory per node: data/ and node.log.
	DataDir string      `json:"data_dir"`
	Nodes   []LocalNode `json:"nodes"`
	// ClusterID is the id the nodes reported when this CLI last saw them;
	// `cluster restore` refuses a backup of another cluster against it.
	ClusterID string `json:"cluster_id,omitempty"`
	// LastKnown is the lifecycle state this CLI last saw committed. When no
	// node answers (`cluster shutdown` stops the processes), `cluster
	// status` reports it instead.
	LastKnown *KnownState `json:"last_known,omitempty"`

	file string // where cluster.json lives
}

// KnownState is a lifecycle state as a command saw it, and when.
type KnownState struct {
	Phase         string    `json:"phase"`
	ActiveVersion string    `json:"active_version"`
	TargetVersion string    `json:"target_version,omitempty"`
	At            time.Time `json:"at"`
}

// LocalNode is one node of a local cluster. PID is 0 when it was stopped.
type LocalNode struct {
	ID          string `json:"id"`
	PID         int    `json:"pid"`
	APIAddr     string `json:"api_addr"`
	ClusterAddr string `json:"cluster_addr"`
	GossipAddr  string `json:"gossip_addr"`
	Dir         string `json:"dir"`
	DataDir     string `json:"data_dir"`
	Log         string `json:"log"`
}

// localDir is $WEIR_HOME/local.
func localDir(home string) string { return filepath.Join(home, localDirName) }

// loadLocalCluster reads cluster.json; nil without error when there is none.
func loadLocalCluster(home string) (*LocalCluster, error) {
	return readClusterFile(filepath.Join(localDir(home), clusterFileName))
}

// readClusterFile reads a cluster.json; nil without error when there is none.
func readClusterFile(file string) (*LocalCluster, error) {
	data, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading the local cluster's record: %w", err)
	}
	lc := &LocalCluster{file: file}
	if err := json.Unmarshal(data, lc); err != nil || len(lc.Nodes) == 0 {
		return nil, failf(fmt.Sprintf("fix or remove %s (stop any weir node processes first)", file),
			"the local cluster's record %s is damaged", file)
	}
	return lc, nil
}

// save writes cluster.json atomically.
func (lc *LocalCluster) save() error {
	data, err := json.MarshalIndent(lc, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(lc.file), 0o755); err != nil {
		return err
	}
	tmp := lc.file + ".tmp"
	if err := os.WriteFile(tmp, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("recording the local cluster: %w", err)
	}
	return os.Rename(tmp, lc.file)
}

// remember records the cluster id (when not empty) and the lifecycle state a
// command saw. It re-reads cluster.json first, so that process ids another
// command recorded meanwhile stay; it writes nothing when nothing changed.
func (lc *LocalCluster) remember(clusterID, phase, active, target string) error {
	if phase == "" {
		return nil
	}
	cur, err := readClusterFile(lc.file)
	if err != nil || cur == nil {
		cur = lc
	}
	if clusterID == "" {
		clusterID = cur.ClusterID
	}
	if old := cur.LastKnown; old != nil && cur.ClusterID == clusterID &&
		old.Phase == phase && old.ActiveVersion == active && old.TargetVersion == target {
		lc.ClusterID, lc.LastKnown = cur.ClusterID, cur.LastKnown
		return nil
	}
	ks := &KnownState{Phase: phase, ActiveVersion: active, TargetVersion: target, At: time.Now().UTC().Truncate(time.Second)}
	cur.ClusterID, cur.LastKnown = clusterID, ks
	lc.ClusterID, lc.LastKnown = clusterID, ks
	return cur.save()
}

// APIAddrs are the nodes' API addresses, in node order.
func (lc *LocalCluster) APIAddrs() []string {
	out := make([]string, len(lc.Nodes))
	for i, n := range lc.Nodes {
		out[i] = n.APIAddr
	}
	return out
}

// split sorts the nodes into running and stopped processes.
func (lc *LocalCluster) split() (running, stopped []*LocalNode) {
	for i := range lc.Nodes {
		n := &lc.Nodes[i]
		if processAlive(n.PID, n.ID) {
			running = append(running, n)
		} else {
			stopped = append(stopped, n)
		}
	}
	return running, stopped
}

// newLocalCluster lays out n nodes under dataDir on free loopback ports.
func newLocalCluster(home, dataDir, binary string, n int) (*LocalCluster, error) {
	ports, err := freePorts(3 * n)
	if err != nil {
		return nil, fmt.Errorf("finding free loopback ports: %w", err)
	}
	lc := &LocalCluster{Binary: binary, DataDir: dataDir, file: filepath.Join(localDir(home), clusterFileName)}
	for i := range n {
		id := "node" + strconv.Itoa(i+1)
		dir := filepath.Join(dataDir, id)
		lc.Nodes = append(lc.Nodes, LocalNode{
			ID:          id,
			APIAddr:     net.JoinHostPort(loopbackHost, strconv.Itoa(ports[3*i])),
			ClusterAddr: net.JoinHostPort(loopbackHost, strconv.Itoa(ports[3*i+1])),
			GossipAddr:  net.JoinHostPort(loopbackHost, strconv.Itoa(ports[3*i+2])),
			Dir:         dir,
			DataDir:     filepath.Join(dir, nodeDataName),
			Log:         filepath.Join(dir, nodeLogName),
		})
	}
	return lc, nil
}

// freePorts finds n distinct loopback ports free for TCP and UDP (gossip
// needs both) by binding port 0 and closing. A port can be taken again
// between here and the node's start; the node then fails with a clear
// message in its log.
func freePorts(n int) ([]int, error) {
	var (
		ports   []int
		closers []func() error
	)
	defer func() {
		for _, c := range closers {
			_ = c()
		}
	}()
	for len(ports) < n {
		ln, err := net.Listen("tcp", net.JoinHostPort(loopbackHost, "0"))
		if err != nil {
			return nil, err
		}
		closers = append(closers, ln.Close)
		port := ln.Addr().(*net.TCPAddr).Port
		pc, err := net.ListenPacket("udp", net.JoinHostPort(loopbackHost, strconv.Itoa(port)))
		if err != nil {
			continue // UDP side taken: try another
		}
		closers = append(closers, pc.Close)
		ports = append(ports, port)
	}
	return ports, nil
}

// nodeArgs is the command line that runs node n, with extra flags last.
func (lc *LocalCluster) nodeArgs(n *LocalNode, logLevel string, extra ...string) []string {
	join := make([]string, len(lc.Nodes))
	for i, o := range lc.Nodes {
		join[i] = o.GossipAddr
	}
	return append([]string{
		"node", "run",
		"--id", n.ID,
		"--data-dir", n.DataDir,
		"--api-addr", n.APIAddr,
		"--cluster-addr", n.ClusterAddr,
		"--gossip-addr", n.GossipAddr,
		"--join", strings.Join(join, ","),
		"--bootstrap-expect", strconv.Itoa(len(lc.Nodes)),
		"--log-level", logLevel,
	}, extra...)
}

// nodeExit reports a node process that ended while this command waits.
type nodeExit struct {
	node *LocalNode
	err  error
}

// spawn starts node n on lc.Binary as a process of its own group, so that it
// outlives this command and a Ctrl-C in the terminal does not reach it. Its
// output goes to its log. Its exit, while this command runs, is sent on
// exits. extra flags follow the node's usual ones (--restore-from FILE).
func (lc *LocalCluster) spawn(n *LocalNode, logLevel string, exits chan<- nodeExit, extra ...string) error {
	if err := os.MkdirAll(n.Dir, 0o755); err != nil {
		return fmt.Errorf("%s: %w", n.ID, err)
	}
	logf, err := os.OpenFile(n.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("%s: opening its log: %w", n.ID, err)
	}
	defer logf.Close()
	args := lc.nodeArgs(n, logLevel, extra...)
	fmt.Fprintf(logf, logStartMarker+"%s starting: %s %s\n", time.Now().Format(time.RFC3339), lc.Binary, strings.Join(args, " "))
	cmd := exec.Command(lc.Binary, args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Dir = n.Dir
	cmd.SysProcAttr = detachedProcAttr()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", n.ID, err)
	}
	n.PID = cmd.Process.Pid
	go func() { exits <- nodeExit{node: n, err: cmd.Wait()} }()
	return nil
}

// stopNodes sends SIGTERM to the running nodes, waits for them to exit,
// and SIGKILLs those still running after stopDeadline. It reports each
// node's fate through say and records pid 0 for every node.
func (lc *LocalCluster) stopNodes(say func(format string, args ...any)) error {
	nodes := make([]*LocalNode, len(lc.Nodes))
	for i := range lc.Nodes {
		nodes[i] = &lc.Nodes[i]
	}
	return lc.stop(nodes, say)
}

// stop is stopNodes for some of the nodes.
func (lc *LocalCluster) stop(nodes []*LocalNode, say func(format string, args ...any)) error {
	var running, stopped []*LocalNode
	for _, n := range nodes {
		if processAlive(n.PID, n.ID) {
			running = append(running, n)
		} else {
			stopped = append(stopped, n)
		}
	}
	for _, n := range stopped {
		if n.PID != 0 {
			say("%s was not running (pid %d gone)", n.ID, n.PID)
		} else {
			say("%s was not running", n.ID)
		}
		n.PID = 0
	}
	for _, n := range running {
		if err := signalProcess(n.PID, syscall.SIGTERM); err != nil {
			say("%s: SIGTERM to pid %d: %v", n.ID, n.PID, err)
		}
	}
	left := waitGone(running, stopDeadline)
	for _, n := range left {
		say("%s (pid %d) did not stop within %s; sending SIGKILL", n.ID, n.PID, stopDeadline)
		_ = signalProcess(n.PID, syscall.SIGKILL)
	}
	if still := waitGone(left, killDeadline); len(still) > 0 {
		return fmt.Errorf("%s (pid %d) is still running after SIGKILL", still[0].ID, still[0].PID)
	}
	for _, n := range running {
		say("stopped %s (pid %d)", n.ID, n.PID)
		n.PID = 0
	}
	return lc.save()
}

// waitGone polls until no node of nodes runs or the deadline passes, and
// returns those still running.
func waitGone(nodes []*LocalNode, deadline time.Duration) []*LocalNode {
	end := time.Now().Add(deadline)
	for {
		var left []*LocalNode
		for _, n := range nodes {
			if processAlive(n.PID, n.ID) {
				left = append(left, n)
			}
		}
		if len(left) == 0 || time.Now().After(end) {
			return left
		}
		time.Sleep(pollInterval)
	}
}

// remove deletes the local cluster's files: $WEIR_HOME/local, and when the
// data lives elsewhere (--data-dir), each node's directory there.
func (lc *LocalCluster) remove(home string) error {
	local := localDir(home)
	if filepath.Clean(lc.DataDir) != filepath.Clean(local) {
		for _, n := range lc.Nodes {
			if !within(lc.DataDir, n.Dir) {
				return failf("remove it by hand if it is yours", "refusing to delete %s: it is not under the cluster's data directory %s", n.Dir, lc.DataDir)
			}
			if err := os.RemoveAll(n.Dir); err != nil {
				return err
			}
		}
		_ = os.Remove(lc.DataDir) // only if empty: it may hold other things
	}
	return os.RemoveAll(local)
}

// within reports whether path is strictly inside dir.
func within(dir, path string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != "." && !strings.HasPrefix(rel, "..") && !filepath.IsAbs(rel)
}

// logStartMarker begins the line spawn writes to a node's log before each
// start.
const logStartMarker = "=== "

// logTail is the end of a node's log, for an error message: at most
// logTailLines lines, none from before the node's last start.
func logTail(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	lines := bytes.Split(bytes.TrimRight(data, "\n"), []byte("\n"))
	for i := len(lines) - 1; i >= 0; i-- {
		if bytes.HasPrefix(lines[i], []byte(logStartMarker)) {
			lines = lines[i+1:]
			break
		}
	}
	if len(lines) > logTailLines {
		lines = lines[len(lines)-logTailLines:]
	}
	return string(bytes.Join(lines, []byte("\n")))
}
