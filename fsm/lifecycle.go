package fsm

import (
	"fmt"
	"sort"

	bolt "go.etcd.io/bbolt"
)

// Phase is the cluster's lifecycle phase (DESIGN §4).
type Phase string

// The phases. A cluster is "running" from its Init entry on.
const (
	PhaseNone          Phase = ""               // before Init: no cluster yet
	PhaseRunning       Phase = "running"        // data plane open
	PhaseShutdown      Phase = "shutdown"       // data plane closed everywhere
	PhaseUpgradeMarked Phase = "upgrade-marked" // closed; target version recorded
	PhaseResuming      Phase = "resuming"       // open on the nodes that resumed
)

// DataPlaneOpen says whether produce and consume may be served in phase p
// (in "resuming", only by the nodes that have resumed).
func (p Phase) DataPlaneOpen() bool {
	return p == PhaseRunning || p == PhaseResuming
}

// Lifecycle command types.
const (
	ShutdownType       MessageType = 10
	NodeQuiescedType   MessageType = 11
	UpgradeMarkType    MessageType = 12
	ResumeType         MessageType = 13
	NodeResumedType    MessageType = 14
	ResumeHaltedType   MessageType = 15
	ResumeCompleteType MessageType = 16
	RollbackType       MessageType = 17
)

// Lifecycle carries what every lifecycle command has: a request id (a retry
// with the same id is a no-op that says so), who asked, and the leader's
// wall clock when it proposed the command.
type Lifecycle struct {
	RequestID string
	By        string
	At        int64 // Unix ms
}

// ShutdownCommand closes the data plane on every node.
type ShutdownCommand struct{ Lifecycle }

// NodeQuiescedCommand is a node's acknowledgement of Shutdown: its data
// plane is closed, in-flight requests are drained and its pre-upgrade backup
// is written.
type NodeQuiescedCommand struct {
	Lifecycle
	Node string
}

// UpgradeMarkCommand records the target version. The version policy is
// checked by the node before proposing; Apply checks the phase.
type UpgradeMarkCommand struct {
	Lifecycle
	From, To string
	Force    bool
}

// ResumeCommand starts (or continues) the rolling resume.
type ResumeCommand struct {
	Lifecycle
	GateTimeoutMs int64 // how long one node may take to pass its health gate
}

// NodeResumedCommand marks one node resumed: it passed its health gate.
type NodeResumedCommand struct {
	Lifecycle
	Node string
}

// ResumeHaltedCommand stops the roll at a node that failed its gate.
type ResumeHaltedCommand struct {
	Lifecycle
	Node, Reason string
}

// ResumeCompleteCommand finalizes: active version := target, phase running.
type ResumeCompleteCommand struct{ Lifecycle }

// RollbackCommand returns an upgrade that is not finalized to "shutdown".
type RollbackCommand struct{ Lifecycle }

// ClusterState is the cluster-wide lifecycle state, replicated with
// everything else and part of every snapshot.
type ClusterState struct {
	ClusterID     string
	Phase         Phase
	ActiveVersion string
	TargetVersion string
	CreatedBy     string
	CreatedAt     int64

	Quiesced      []string // nodes that acknowledged the last Shutdown
	Resumed       []string // nodes resumed in the current roll
	GateTimeoutMs int64    // of the current roll
	ResumeIndex   uint64   // Raft index of the Resume that started the roll
	Halted        *Halt    // set while the roll is halted
	ShutdownIndex uint64   // Raft index of the last Shutdown

	History  []HistoryEntry
	Requests map[string]uint64 // request id -> index it was applied at
}

// Halt says where and why a rolling resume stopped.
type Halt struct {
	Node, Reason string
	At           int64
}

// HistoryEntry is one applied lifecycle command.
type HistoryEntry struct {
	Index     uint64
	Command   string
	RequestID string
	By        string
	At        int64
	From      string // phase (and version) before
	To        string // after
	Detail    string
}

// LifecycleResult is what a lifecycle command returns.
type LifecycleResult struct {
	Phase         Phase
	ActiveVersion string
	TargetVersion string
	Noop          bool   // nothing changed (a retry, or already there)
	Message       string // says what happened, or why nothing did
}

// maxHistory bounds the history kept in the state (oldest dropped first);
// maxRequests bounds the remembered request ids the same way.
const (
	maxHistory  = 1000
	maxRequests = 1000
)

// Cluster returns the lifecycle state as of the last applied entry.
func (f *FSM) Cluster() (ClusterState, error) {
	var cs ClusterState
	err := f.view(func(tx *bolt.Tx) error {
		cs = readCluster(tx)
		return nil
	})
	return cs, err
}

// Contains reports whether list holds s.
func Contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func readCluster(tx *bolt.Tx) ClusterState {
	var cs ClusterState
	v := tx.Bucket(bucketMeta).Get(keyCluster)
	if v == nil {
		return cs
	}
	if err := decode(v, &cs); err != nil {
		panic("fsm: corrupt cluster state: " + err.Error())
	}
	return cs
}

func writeCluster(tx *bolt.Tx, cs ClusterState) {
	buf, err := Encode(0, cs)
	if err != nil {
		panic(err)
	}
	must(tx.Bucket(bucketMeta).Put(keyCluster, buf[1:]))
}

// applyInit records the cluster id and the first active version. Only the
// first Init counts; any later one (a new leader racing) is a no-op.
func applyInit(tx *bolt.Tx, body []byte) interface{} {
	var cmd InitCommand
	mustDecode(body, &cmd)
	cs := readCluster(tx)
	if cs.ClusterID != "" {
		return nil
	}
	writeCluster(tx, ClusterState{
		ClusterID:     cmd.ClusterID,
		Phase:         PhaseRunning,
		ActiveVersion: cmd.Version,
		CreatedBy:     cmd.By,
		CreatedAt:     cmd.At,
	})
	return nil
}

// dataPlaneCheck refuses data commands while the phase keeps the data plane
// closed.
func dataPlaneCheck(tx *bolt.Tx) error {
	cs := readCluster(tx)
	if cs.Phase == PhaseNone || cs.Phase.DataPlaneOpen() {
		return nil
	}
	return reject(ErrClusterShutDown, `run "weir cluster resume" to open it again`,
		"the cluster is in phase %s: produce and consume are closed", cs.Phase)
}

func mustDecode(body []byte, out any) {
	if err := decode(body, out); err != nil {
		panic("fsm: malformed command: " + err.Error())
	}
}

// The phase table. Each lifecycle command names the phases it may start
// from; every other phase refuses it with the hint that gets there. Commands
// that find the cluster already where they lead are no-ops that say so.
var phaseTable = map[MessageType]struct {
	name string
	from []Phase
	new  func() lifecycleCommand
}{
	ShutdownType:       {"shutdown", []Phase{PhaseRunning}, func() lifecycleCommand { return &ShutdownCommand{} }},
	NodeQuiescedType:   {"node-quiesced", []Phase{PhaseShutdown}, func() lifecycleCommand { return &NodeQuiescedCommand{} }},
	UpgradeMarkType:    {"upgrade", []Phase{PhaseShutdown, PhaseUpgradeMarked}, func() lifecycleCommand { return &UpgradeMarkCommand{} }}, // running too with --force
	ResumeType:         {"resume", []Phase{PhaseShutdown, PhaseUpgradeMarked, PhaseResuming}, func() lifecycleCommand { return &ResumeCommand{} }},
	NodeResumedType:    {"node-resumed", []Phase{PhaseResuming}, func() lifecycleCommand { return &NodeResumedCommand{} }},
	ResumeHaltedType:   {"resume-halted", []Phase{PhaseResuming}, func() lifecycleCommand { return &ResumeHaltedCommand{} }},
	ResumeCompleteType: {"resume-complete", []Phase{PhaseResuming}, func() lifecycleCommand { return &ResumeCompleteCommand{} }},
	RollbackType:       {"rollback", []Phase{PhaseUpgradeMarked, PhaseResuming}, func() lifecycleCommand { return &RollbackCommand{} }},
}

// lifecycleCommand is every lifecycle command: each embeds Lifecycle.
type lifecycleCommand interface{ lifecycle() *Lifecycle }

func (l *Lifecycle) lifecycle() *Lifecycle { return l }

// nextStep is the hint for a refused transition: what gets there from cs.
func nextStep(cs ClusterState, t MessageType) string {
	switch cs.Phase {
	case PhaseRunning:
		if t == UpgradeMarkType {
			return `run "weir cluster shutdown" first, or pass --force`
		}
		if t == RollbackType {
			return `the upgrade is finalized; to go back, restore a backup taken before it with "weir cluster restore"`
		}
		return `the cluster is running; run "weir cluster shutdown" first`
	case PhaseShutdown:
		return `run "weir cluster upgrade" to mark an upgrade, or "weir cluster resume" to open the data plane again`
	case PhaseUpgradeMarked:
		return `run "weir cluster resume" to roll the upgrade out, or "weir cluster rollback" to abandon it`
	case PhaseResuming:
		return `wait for the resume to finish ("weir cluster status"), run "weir cluster resume" to continue it, or "weir cluster rollback" to abort`
	}
	return `the cluster is not initialized yet; wait for a leader`
}

// lastCommand describes the newest history entry, so a command that lost a
// race is told which command won.
func lastCommand(cs ClusterState) string {
	if len(cs.History) == 0 {
		return ""
	}
	h := cs.History[len(cs.History)-1]
	return fmt.Sprintf(" (last change: %s by %s, request %s)", h.Command, h.By, h.RequestID)
}

func applyLifecycle(tx *bolt.Tx, index uint64, t MessageType, body []byte) interface{} {
	cs := readCluster(tx)
	row := phaseTable[t]
	cmd := row.new()
	lc := cmd.lifecycle()
	mustDecode(body, cmd)
	noop := func(format string, args ...any) interface{} {
		return LifecycleResult{Phase: cs.Phase, ActiveVersion: cs.ActiveVersion, TargetVersion: cs.TargetVersion, Noop: true, Message: fmt.Sprintf(format, args...)}
	}
	if lc.RequestID != "" {
		if at, ok := cs.Requests[lc.RequestID]; ok {
			return noop("request %s was already applied at index %d; nothing changed", lc.RequestID, at)
		}
	}
	if cs.Phase == PhaseNone {
		return reject(ErrWrongPhase, nextStep(cs, t), "the cluster is not initialized")
	}

	// Commands that find the cluster already where they lead.
	switch c := cmd.(type) {
	case *ShutdownCommand:
		if cs.Phase == PhaseShutdown {
			return noop("the cluster is already shut down%s; nothing changed", lastCommand(cs))
		}
	case *ResumeCommand:
		if cs.Phase == PhaseRunning {
			return noop("the cluster is already running version %s; nothing changed", cs.ActiveVersion)
		}
	case *NodeQuiescedCommand:
		if cs.Phase == PhaseShutdown && Contains(cs.Quiesced, c.Node) {
			return noop("node %s already acknowledged the shutdown", c.Node)
		}
	case *NodeResumedCommand:
		if cs.Phase == PhaseResuming && Contains(cs.Resumed, c.Node) {
			return noop("node %s already resumed", c.Node)
		}
	case *UpgradeMarkCommand:
		if cs.Phase == PhaseUpgradeMarked && cs.TargetVersion == c.To && !c.Force {
			return noop("the cluster is already marked for an upgrade to %s%s; nothing changed", c.To, lastCommand(cs))
		}
		if cs.Phase == PhaseUpgradeMarked && !c.Force {
			return reject(ErrWrongPhase, `run "weir cluster rollback" first, or pass --force to re-mark`,
				"the cluster is already marked for an upgrade to %s%s", cs.TargetVersion, lastCommand(cs))
		}
	}
	forcedMark := t == UpgradeMarkType && cs.Phase == PhaseRunning && cmd.(*UpgradeMarkCommand).Force
	if !phaseAllows(row.from, cs.Phase) && !forcedMark {
		return reject(ErrWrongPhase, nextStep(cs, t), "cannot %s: the cluster is %s%s", row.name, cs.Phase, lastCommand(cs))
	}

	before := describe(cs)
	detail := ""
	switch c := cmd.(type) {
	case *ShutdownCommand:
		cs.Phase = PhaseShutdown
		cs.Quiesced = nil
		cs.ShutdownIndex = index
	case *NodeQuiescedCommand:
		cs.Quiesced = sortedAdd(cs.Quiesced, c.Node)
		detail = "node " + c.Node
	case *UpgradeMarkCommand:
		cs.Phase = PhaseUpgradeMarked
		cs.TargetVersion = c.To
		if c.Force {
			detail = "forced"
		}
	case *ResumeCommand:
		if cs.Phase != PhaseResuming {
			cs.Resumed = nil
			cs.ResumeIndex = index
			if cs.TargetVersion == "" {
				cs.TargetVersion = cs.ActiveVersion // a plain resume after shutdown
			}
		} else {
			detail = "continued"
		}
		cs.Phase = PhaseResuming
		cs.Halted = nil
		cs.GateTimeoutMs = c.GateTimeoutMs
	case *NodeResumedCommand:
		cs.Resumed = sortedAdd(cs.Resumed, c.Node)
		cs.Halted = nil
		detail = "node " + c.Node
	case *ResumeHaltedCommand:
		cs.Halted = &Halt{Node: c.Node, Reason: c.Reason, At: c.At}
		detail = fmt.Sprintf("node %s: %s", c.Node, c.Reason)
	case *ResumeCompleteCommand:
		cs.Phase = PhaseRunning
		cs.ActiveVersion = cs.TargetVersion
		cs.TargetVersion = ""
		cs.Resumed, cs.Quiesced, cs.Halted = nil, nil, nil
	case *RollbackCommand:
		cs.Phase = PhaseShutdown
		cs.TargetVersion = ""
		cs.Resumed, cs.Halted = nil, nil
	}
	cs.History = append(cs.History, HistoryEntry{
		Index: index, Command: row.name, RequestID: lc.RequestID, By: lc.By, At: lc.At,
		From: before, To: describe(cs), Detail: detail,
	})
	if len(cs.History) > maxHistory {
		cs.History = cs.History[len(cs.History)-maxHistory:]
	}
	if lc.RequestID != "" {
		if cs.Requests == nil {
			cs.Requests = map[string]uint64{}
		}
		cs.Requests[lc.RequestID] = index
		trimRequests(cs.Requests)
	}
	writeCluster(tx, cs)
	return LifecycleResult{Phase: cs.Phase, ActiveVersion: cs.ActiveVersion, TargetVersion: cs.TargetVersion,
		Message: fmt.Sprintf("%s: %s -> %s", row.name, before, describe(cs))}
}

func phaseAllows(from []Phase, p Phase) bool {
	for _, f := range from {
		if f == p {
			return true
		}
	}
	return false
}

func describe(cs ClusterState) string {
	s := fmt.Sprintf("%s@%s", cs.Phase, cs.ActiveVersion)
	if cs.TargetVersion != "" && cs.TargetVersion != cs.ActiveVersion {
		s += "->" + cs.TargetVersion
	}
	return s
}

func sortedAdd(list []string, s string) []string {
	if Contains(list, s) {
		return list
	}
	list = append(list, s)
	sort.Strings(list)
	return list
}

// trimRequests forgets the oldest request ids past maxRequests; the order is
// by applied index, the same on every node.
func trimRequests(m map[string]uint64) {
	for len(m) > maxRequests {
		oldestID, oldest := "", uint64(0)
		for id, at := range m {
			if oldestID == "" || at < oldest || (at == oldest && id < oldestID) {
				oldestID, oldest = id, at
			}
		}
		delete(m, oldestID)
	}
}
