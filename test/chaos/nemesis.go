package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/weir-streaming/weir/test/chaos/checker"
)

// Faults the nemesis knows. Each is injected, held, then healed before the
// next one starts.
const (
	FaultKillLeader      = "kill-leader"      // docker kill -s KILL the leader, docker start it after the hold
	FaultKillRandom      = "kill-random"      // the same for a random node
	FaultKillAll         = "kill-all"         // kill -9 every node, then start them all
	FaultPauseLeader     = "pause-leader"     // docker pause the leader past the election timeout
	FaultPartitionLeader = "partition-leader" // isolate the leader from every other node
	FaultPartitionHalves = "partition-halves" // a random minority cut off from the majority
	FaultPartitionBridge = "partition-bridge" // 5 nodes: two pairs that see only the middle node
	FaultLoss            = "loss"             // drop a share of node-to-node packets (iptables statistic)
	FaultDelay           = "delay"            // tc netem delay on every node's interface
)

// AllFaults lists every fault, in the order docs/chaos.md describes them.
var AllFaults = []string{FaultKillLeader, FaultKillRandom, FaultKillAll, FaultPauseLeader, FaultPartitionLeader,
	FaultPartitionHalves, FaultPartitionBridge, FaultLoss, FaultDelay}

// Fault tunables.
const (
	lossProbability   = 0.3
	netemDelay        = "100ms"
	netemJitter       = "50ms"
	pauseMinHold      = 3 * time.Second // well past the 500 ms election timeout
	leaderProbe       = 2 * time.Second
	nemesisCmdTimeout = 30 * time.Second
)

// NemesisEvent is one line of nemesis.jsonl.
type NemesisEvent struct {
	Time   int64    `json:"time"` // the history's clock
	Wall   string   `json:"wall"` // UTC wall clock, to match the node logs
	Action string   `json:"action"`
	Fault  string   `json:"fault"`
	Nodes  []string `json:"nodes,omitempty"`
	Detail string   `json:"detail,omitempty"`
	Error  string   `json:"error,omitempty"`
}

// nemesis injects faults on a seeded schedule.
type nemesis struct {
	c                  *Cluster
	cl                 *client
	rec                *recorder
	rng                *rand.Rand
	logf               func(string, ...any)
	file               *os.File
	enc                *json.Encoder
	mu                 sync.Mutex
	faults             []string
	holdMin, holdMax   time.Duration
	quietMin, quietMax time.Duration

	// What is broken now, so heal can undo it.
	killed    map[string]bool
	paused    map[string]bool
	netFaults map[string]bool // nodes with iptables rules
	netem     map[string]bool

	skipped  map[string]string // fault -> why it cannot run here
	injected map[string]int
	// windows are the [start, end) times of each injected fault.
	windows []faultWindow
}

type faultWindow struct {
	Fault      string `json:"fault"`
	Start, End int64
}

func newNemesis(c *Cluster, cl *client, rec *recorder, seed int64, faults []string, path string, logf func(string, ...any)) (*nemesis, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	return &nemesis{c: c, cl: cl, rec: rec, rng: rand.New(rand.NewSource(seed)), logf: logf, file: f, enc: json.NewEncoder(f),
		faults: faults, killed: map[string]bool{}, paused: map[string]bool{}, netFaults: map[string]bool{}, netem: map[string]bool{},
		skipped: map[string]string{}, injected: map[string]int{},
		holdMin: 8 * time.Second, holdMax: 15 * time.Second, quietMin: 5 * time.Second, quietMax: 10 * time.Second}, nil
}

func (n *nemesis) event(ev NemesisEvent) {
	op := n.rec.add(checker.Op{Process: nemesisProcess, Type: checker.Info, F: checker.Nemesis,
		Fault: strings.TrimSpace(ev.Action + " " + ev.Fault + " " + strings.Join(ev.Nodes, ",")), Error: ev.Error})
	ev.Time = op.Time
	ev.Wall = time.Now().UTC().Format(time.RFC3339Nano)
	n.mu.Lock()
	_ = n.enc.Encode(ev)
	n.mu.Unlock()
	msg := fmt.Sprintf("nemesis %s %s %v %s", ev.Action, ev.Fault, ev.Nodes, ev.Detail)
	if ev.Error != "" {
		msg += " error: " + ev.Error
	}
	n.logf("%s", msg)
}

// probe finds out which faults this host can make and logs, for each it
// cannot, why it is skipped. It needs the cluster up.
func (n *nemesis) probe(ctx context.Context) {
	need := map[string]bool{}
	for _, f := range n.faults {
		need[f] = true
	}
	node := n.c.Nodes[0]
	netFaults := []string{FaultPartitionLeader, FaultPartitionHalves, FaultPartitionBridge, FaultLoss}
	if _, err := n.c.InNetns(ctx, node, "iptables", "-w", "-S", "INPUT"); err != nil {
		for _, f := range netFaults {
			n.skipped[f] = fmt.Sprintf("iptables in the container network namespace does not work on this host (install iptables and util-linux's nsenter; run as root): %v", err)
		}
	} else if _, err := n.c.InNetns(ctx, node, "iptables", "-m", "statistic", "-h"); err != nil {
		n.skipped[FaultLoss] = fmt.Sprintf("the iptables statistic match is not available: %v", err)
	}
	if len(n.c.Nodes) < 5 {
		n.skipped[FaultPartitionBridge] = fmt.Sprintf("a bridge partition needs 5 nodes, the cluster has %d (set WEIR_CHAOS_NODES=5)", len(n.c.Nodes))
	}
	if _, err := n.c.InNetns(ctx, node, "tc", "qdisc", "add", "dev", "eth0", "root", "netem", "delay", "1ms"); err != nil {
		n.skipped[FaultDelay] = fmt.Sprintf("tc netem does not work here (the kernel needs sch_netem, the host iproute2's tc): %v", err)
	} else {
		_, _ = n.c.InNetns(ctx, node, "tc", "qdisc", "del", "dev", "eth0", "root")
	}
	for _, f := range AllFaults {
		if why, ok := n.skipped[f]; ok && need[f] {
			n.logf("SKIP fault %s: %s", f, why)
			n.event(NemesisEvent{Action: "skip", Fault: f, Detail: why})
		}
	}
}

// usable are the faults of the mix this host can make.
func (n *nemesis) usable() []string {
	var out []string
	for _, f := range n.faults {
		if _, skip := n.skipped[f]; !skip {
			out = append(out, f)
		}
	}
	return out
}

// run injects faults until ctx ends, then heals.
func (n *nemesis) run(ctx context.Context) {
	faults := n.usable()
	if len(faults) == 0 {
		n.logf("nemesis: no usable fault; the run is a plain workload")
		<-ctx.Done()
		return
	}
	sleep(ctx, n.between(n.quietMin, n.quietMax))
	for ctx.Err() == nil {
		f := faults[n.rng.Intn(len(faults))]
		hold := n.between(n.holdMin, n.holdMax)
		if f == FaultPauseLeader && hold < pauseMinHold {
			hold = pauseMinHold
		}
		start := n.rec.now()
		n.inject(ctx, f)
		sleep(ctx, hold)
		n.heal(f)
		n.mu.Lock()
		n.windows = append(n.windows, faultWindow{Fault: f, Start: start, End: n.rec.now()})
		n.mu.Unlock()
		sleep(ctx, n.between(n.quietMin, n.quietMax))
	}
}

func (n *nemesis) between(lo, hi time.Duration) time.Duration {
	if hi <= lo {
		return lo
	}
	return lo + time.Duration(n.rng.Int63n(int64(hi-lo)))
}

// leader asks the nodes who leads; "" when nobody knows.
func (n *nemesis) leader() *Node {
	for _, i := range n.rng.Perm(len(n.c.Nodes)) {
		node := n.c.Nodes[i]
		if n.killed[node.ID] || n.paused[node.ID] {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), leaderProbe)
		st, err := n.cl.status(ctx, node.API)
		cancel()
		if err == nil && st.Leader != "" {
			if l := n.c.Node(st.Leader); l != nil {
				return l
			}
		}
	}
	return nil
}

// leaderOrRandom is the leader, or a random node (logged) when none is known.
func (n *nemesis) leaderOrRandom(f string) *Node {
	if l := n.leader(); l != nil {
		return l
	}
	node := n.c.Nodes[n.rng.Intn(len(n.c.Nodes))]
	n.event(NemesisEvent{Action: "note", Fault: f, Nodes: []string{node.ID}, Detail: "no leader known; taking a random node"})
	return node
}

func (n *nemesis) inject(ctx context.Context, f string) {
	n.mu.Lock()
	n.injected[f]++
	n.mu.Unlock()
	cctx, cancel := context.WithTimeout(context.Background(), nemesisCmdTimeout)
	defer cancel()
	switch f {
	case FaultKillLeader:
		n.kill(cctx, f, []*Node{n.leaderOrRandom(f)})
	case FaultKillRandom:
		n.kill(cctx, f, []*Node{n.c.Nodes[n.rng.Intn(len(n.c.Nodes))]})
	case FaultKillAll:
		n.kill(cctx, f, n.c.Nodes)
	case FaultPauseLeader:
		node := n.leaderOrRandom(f)
		out, err := n.c.Docker(cctx, "pause", node.Container)
		n.paused[node.ID] = err == nil
		n.event(NemesisEvent{Action: "start", Fault: f, Nodes: []string{node.ID}, Error: errText(err, out)})
	case FaultPartitionLeader:
		l := n.leaderOrRandom(f)
		var rest []*Node
		for _, o := range n.c.Nodes {
			if o != l {
				rest = append(rest, o)
			}
		}
		n.partition(cctx, f, [][]*Node{{l}, rest}, nil)
	case FaultPartitionHalves:
		perm := n.rng.Perm(len(n.c.Nodes))
		minority := (len(n.c.Nodes) - 1) / 2
		var a, b []*Node
		for i, p := range perm {
			if i < minority {
				a = append(a, n.c.Nodes[p])
			} else {
				b = append(b, n.c.Nodes[p])
			}
		}
		n.partition(cctx, f, [][]*Node{a, b}, nil)
	case FaultPartitionBridge:
		perm := n.rng.Perm(len(n.c.Nodes))
		nodes := make([]*Node, len(perm))
		for i, p := range perm {
			nodes[i] = n.c.Nodes[p]
		}
		half := len(nodes) / 2
		n.partition(cctx, f, [][]*Node{nodes[:half], nodes[half+1:]}, nodes[half])
	case FaultLoss:
		n.loss(cctx, f)
	case FaultDelay:
		n.delay(cctx, f)
	}
}

func (n *nemesis) kill(ctx context.Context, f string, nodes []*Node) {
	var ids []string
	var errs []string
	for _, node := range nodes {
		out, err := n.c.Docker(ctx, "kill", "-s", "KILL", node.Container)
		if err != nil {
			errs = append(errs, node.ID+": "+errText(err, out))
			continue
		}
		n.killed[node.ID] = true
		ids = append(ids, node.ID)
	}
	n.event(NemesisEvent{Action: "start", Fault: f, Nodes: ids, Detail: "docker kill -s KILL", Error: strings.Join(errs, "; ")})
}

// partition cuts every pair of nodes in different groups; bridge, when
// set, keeps talking to everyone.
func (n *nemesis) partition(ctx context.Context, f string, groups [][]*Node, bridge *Node) {
	group := map[string]int{}
	for gi, g := range groups {
		for _, node := range g {
			group[node.ID] = gi
		}
	}
	var errs []string
	for _, node := range n.c.Nodes {
		if node == bridge {
			continue
		}
		var peers []*Node
		for _, o := range n.c.Nodes {
			if o != node && o != bridge && group[o.ID] != group[node.ID] {
				peers = append(peers, o)
			}
		}
		if err := n.dropFrom(ctx, node, peers, ""); err != nil {
			errs = append(errs, err.Error())
		}
	}
	var desc []string
	for _, g := range groups {
		var ids []string
		for _, node := range g {
			ids = append(ids, node.ID)
		}
		desc = append(desc, "{"+strings.Join(ids, ",")+"}")
	}
	detail := strings.Join(desc, " | ")
	if bridge != nil {
		detail += " bridged by " + bridge.ID
	}
	n.event(NemesisEvent{Action: "start", Fault: f, Detail: detail, Error: strings.Join(errs, "; ")})
}

// dropFrom makes node drop every packet to and from peers (all of them,
// or a share with probability "0.3"). The host's own traffic to the node
// (the API through the published ports) is left alone.
func (n *nemesis) dropFrom(ctx context.Context, node *Node, peers []*Node, probability string) error {
	if len(peers) == 0 {
		return nil
	}
	if err := n.ensureChain(ctx, node); err != nil {
		return err
	}
	n.netFaults[node.ID] = true
	for _, p := range peers {
		for _, dir := range []string{"-s", "-d"} {
			args := []string{"iptables", "-w", "-A", chainName, dir, p.IP}
			if probability != "" {
				args = append(args, "-m", "statistic", "--mode", "random", "--probability", probability)
			}
			args = append(args, "-j", "DROP")
			if _, err := n.c.InNetns(ctx, node, args...); err != nil {
				return fmt.Errorf("%s: %w", node.ID, err)
			}
		}
	}
	return nil
}

func (n *nemesis) ensureChain(ctx context.Context, node *Node) error {
	if _, err := n.c.InNetns(ctx, node, "iptables", "-w", "-S", chainName); err != nil {
		if _, err := n.c.InNetns(ctx, node, "iptables", "-w", "-N", chainName); err != nil {
			return fmt.Errorf("%s: %w", node.ID, err)
		}
	}
	for _, hook := range []string{"INPUT", "OUTPUT"} {
		if _, err := n.c.InNetns(ctx, node, "iptables", "-w", "-C", hook, "-j", chainName); err != nil {
			if _, err := n.c.InNetns(ctx, node, "iptables", "-w", "-I", hook, "-j", chainName); err != nil {
				return fmt.Errorf("%s: %w", node.ID, err)
			}
		}
	}
	return nil
}

func (n *nemesis) loss(ctx context.Context, f string) {
	var errs []string
	for _, node := range n.c.Nodes {
		var peers []*Node
		for _, o := range n.c.Nodes {
			if o != node {
				peers = append(peers, o)
			}
		}
		if err := n.dropFrom(ctx, node, peers, fmt.Sprint(lossProbability)); err != nil {
			errs = append(errs, err.Error())
		}
	}
	n.event(NemesisEvent{Action: "start", Fault: f, Detail: fmt.Sprintf("drop %.0f%% of node-to-node packets each way", lossProbability*100), Error: strings.Join(errs, "; ")})
}

func (n *nemesis) delay(ctx context.Context, f string) {
	var errs []string
	for _, node := range n.c.Nodes {
		if _, err := n.c.InNetns(ctx, node, "tc", "qdisc", "add", "dev", "eth0", "root", "netem", "delay", netemDelay, netemJitter); err != nil {
			errs = append(errs, node.ID+": "+err.Error())
			continue
		}
		n.netem[node.ID] = true
	}
	n.event(NemesisEvent{Action: "start", Fault: f, Detail: "netem delay " + netemDelay + " " + netemJitter, Error: strings.Join(errs, "; ")})
}

// heal undoes the fault f (and anything else still broken).
func (n *nemesis) heal(f string) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*nemesisCmdTimeout)
	defer cancel()
	var healed, errs []string
	for _, id := range sortedIDs(n.paused) {
		node := n.c.Node(id)
		if out, err := n.c.Docker(ctx, "unpause", node.Container); err != nil {
			errs = append(errs, id+": unpause: "+errText(err, out))
		}
		delete(n.paused, id)
		healed = append(healed, id)
	}
	for _, id := range sortedIDs(n.killed) {
		node := n.c.Node(id)
		if out, err := n.c.Docker(ctx, "start", node.Container); err != nil {
			errs = append(errs, id+": start: "+errText(err, out))
		}
		delete(n.killed, id)
		healed = append(healed, id)
	}
	for _, id := range sortedIDs(n.netFaults) {
		if _, err := n.c.InNetns(ctx, n.c.Node(id), "iptables", "-w", "-F", chainName); err != nil {
			errs = append(errs, id+": "+err.Error())
		}
		delete(n.netFaults, id)
		healed = append(healed, id)
	}
	for _, id := range sortedIDs(n.netem) {
		if _, err := n.c.InNetns(ctx, n.c.Node(id), "tc", "qdisc", "del", "dev", "eth0", "root"); err != nil {
			errs = append(errs, id+": "+err.Error())
		}
		delete(n.netem, id)
		healed = append(healed, id)
	}
	n.event(NemesisEvent{Action: "stop", Fault: f, Nodes: healed, Error: strings.Join(errs, "; ")})
}

// healAll makes sure nothing is left broken (end of run, teardown): every
// container running and unpaused, no rule, no qdisc.
func (n *nemesis) healAll() {
	n.heal("all")
	ctx, cancel := context.WithTimeout(context.Background(), 2*nemesisCmdTimeout)
	defer cancel()
	for _, node := range n.c.Nodes {
		_, _ = n.c.Docker(ctx, "unpause", node.Container)
		_, _ = n.c.Docker(ctx, "start", node.Container)
		_, _ = n.c.InNetns(ctx, node, "iptables", "-w", "-F", chainName)
		if _, ok := n.skipped[FaultDelay]; !ok {
			_, _ = n.c.InNetns(ctx, node, "tc", "qdisc", "del", "dev", "eth0", "root")
		}
	}
}

func (n *nemesis) close() { n.file.Close() }

// activeAt names the fault whose window holds t ("none" outside them).
func (n *nemesis) activeAt(t int64) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, w := range n.windows {
		if t >= w.Start && t < w.End {
			return w.Fault
		}
	}
	return "none"
}

func sortedIDs(m map[string]bool) []string {
	var ids []string
	for id, on := range m {
		if on {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	return ids
}

func errText(err error, out []byte) string {
	if err == nil {
		return ""
	}
	return fmt.Sprintf("%v: %s", err, firstLine(out))
}
