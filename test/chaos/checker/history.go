// Package checker decides from a recorded history alone whether a Weir
// cluster broke one of its guarantees (DESIGN §7): no acknowledged record
// lost, no duplicate, no phantom or definitely-failed record visible, dense
// offsets equal on every node, the same lifecycle history on every node, and
// linearizable appends and strong reads per partition (porcupine, over
// bounded windows).
//
// It is pure: no clock, no network, no Docker. The chaos harness (package
// chaos, one directory up) records a history while it injects faults and
// hands it here; the tests of this package feed it hand-made histories.
//
// A history is JSON lines, one Op per line; docs/chaos.md documents the
// schema.
package checker

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
)

// Type is an operation's event: an invocation, or its completion.
type Type string

// The event types, as in Jepsen: ok and fail are definite outcomes, info
// means the outcome is unknown (the operation may or may not have happened).
const (
	Invoke Type = "invoke"
	OK     Type = "ok"
	Fail   Type = "fail"
	Info   Type = "info"
)

// F is what an operation does.
type F string

// The operations a history holds.
const (
	// Produce appends Value to Partition with the idempotent-producer
	// headers (Producer, Seq); ok carries the acknowledged Offset.
	Produce F = "produce"
	// Consume reads Partition from Offset (at most Max records); ok carries
	// Records, or OutOfRange when Offset was past the end.
	Consume F = "consume"
	// NodeRead is a node's whole partition as that node holds it, read from
	// its own API (local consistency) after the cluster healed: one ok op
	// per node and partition, no invoke needed.
	NodeRead F = "node-read"
	// LifecycleHistory is a node's lifecycle history (GET
	// /v1/cluster/history on that node) after the run: one ok op per node.
	LifecycleHistory F = "lifecycle-history"
	// Nemesis marks a fault injected or healed (informational; process -1).
	Nemesis F = "nemesis"
	// Lifecycle is a lifecycle command (Value: "shutdown <request id>");
	// counted, not checked: the lifecycle-history ops are.
	Lifecycle F = "lifecycle"
)

// Consistency of a consume: strong reads are served by a leader that just
// verified its leadership and are checked for linearizability; local reads
// are served from the answering node's state and may be stale.
const (
	Strong = "strong"
	Local  = "local"
)

// Op is one line of a history. Invoke and completion are two lines with the
// same Process; the completion repeats the invocation's fields it needs.
type Op struct {
	// Index is the line's position, from 0; filled by Read when absent.
	Index int `json:"index"`
	// Process is the logical client. A process whose operation ended info
	// is retired: it never invokes again (a new process takes over).
	Process int  `json:"process"`
	Type    Type `json:"type"`
	F       F    `json:"f"`
	// Time is nanoseconds on one monotonic clock for the whole run.
	Time int64 `json:"time"`
	// Node is the node the request went to (or whose state a node-read
	// or lifecycle-history is); ServedBy the node that answered when a
	// strong read was redirected to the leader.
	Node      string `json:"node,omitempty"`
	ServedBy  string `json:"served_by,omitempty"`
	Partition int    `json:"partition"`
	// Value is a produced record's value, unique in the run.
	Value string `json:"value,omitempty"`
	// Offset is the acknowledged offset of a produce (ok), or the first
	// offset a consume asked for.
	Offset *int64 `json:"offset,omitempty"`
	// Producer and Seq are the idempotent-producer headers of a produce.
	Producer string `json:"producer,omitempty"`
	Seq      uint64 `json:"seq,omitempty"`
	// Attempts counts the HTTP requests an operation took (retries of the
	// same sequence included).
	Attempts int `json:"attempts,omitempty"`
	// Max is a consume's max_records; Consistency is strong or local.
	Max         int    `json:"max,omitempty"`
	Consistency string `json:"consistency,omitempty"`
	// Records are what a consume or node-read returned, in order.
	Records []Record `json:"records,omitempty"`
	// OutOfRange says a consume's offset was past the partition's end
	// (OFFSET_OUT_OF_RANGE): the record there does not exist yet.
	OutOfRange bool `json:"out_of_range,omitempty"`
	// HighWatermark is the partition end the answering node reported.
	HighWatermark *int64 `json:"high_watermark,omitempty"`
	// Lifecycle is a node's lifecycle history (lifecycle-history ops).
	Lifecycle []LifecycleEntry `json:"lifecycle,omitempty"`
	// Error is the last error of a fail or info: "CODE: message" for API
	// errors, the transport error otherwise.
	Error string `json:"error,omitempty"`
	// Fault names a nemesis action (nemesis ops): "kill-leader weir2" etc.
	Fault string `json:"fault,omitempty"`
}

// Record is one record read back.
type Record struct {
	Offset int64  `json:"offset"`
	Value  string `json:"value"`
}

// LifecycleEntry is one applied lifecycle command as a node reports it.
type LifecycleEntry struct {
	Index     uint64 `json:"index"`
	Command   string `json:"command"`
	RequestID string `json:"request_id"`
	From      string `json:"from"`
	To        string `json:"to"`
}

// History is a run's operations in the order they were recorded.
type History []Op

// Int64 returns a pointer to v, for Offset and HighWatermark.
func Int64(v int64) *int64 { return &v }

// Read parses a JSON-lines history. Blank lines are skipped; Index is set
// to the line's position among the ops.
func Read(r io.Reader) (History, error) {
	var h History
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 1<<20), 64<<20)
	line := 0
	for sc.Scan() {
		line++
		b := sc.Bytes()
		if len(trimSpace(b)) == 0 {
			continue
		}
		var op Op
		if err := json.Unmarshal(b, &op); err != nil {
			return nil, fmt.Errorf("history line %d: %w", line, err)
		}
		op.Index = len(h)
		h = append(h, op)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading history: %w", err)
	}
	return h, nil
}

// ReadFile reads a history file.
func ReadFile(path string) (History, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return Read(f)
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\r') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// Write writes h as JSON lines.
func Write(w io.Writer, h History) error {
	bw := bufio.NewWriter(w)
	enc := json.NewEncoder(bw)
	for _, op := range h {
		if err := enc.Encode(op); err != nil {
			return err
		}
	}
	return bw.Flush()
}

// Complete is an operation with its invocation and completion paired.
type Complete struct {
	Process   int
	F         F
	Partition int
	Value     string
	// Call and Return are the invocation's and completion's times; an op
	// still pending at the end of the history has Return = -1.
	Call, Return int64
	Type         Type // ok, fail or info (info when never completed)
	Invoke       Op
	Done         Op // zero when never completed
}

// Pair matches each invocation with its process's next completion. Ops that
// need no invocation (node-read, lifecycle-history) come back alone with
// Call == Return; nemesis ops are left out. An invocation without a
// completion is info: its outcome is unknown.
func Pair(h History) ([]Complete, error) {
	open := map[int]int{} // process -> index into out
	var out []Complete
	for _, op := range h {
		switch op.F {
		case Nemesis:
			continue
		case NodeRead, LifecycleHistory:
			out = append(out, Complete{Process: op.Process, F: op.F, Partition: op.Partition, Call: op.Time, Return: op.Time, Type: op.Type, Invoke: op, Done: op})
			continue
		}
		if op.Type == Invoke {
			if i, ok := open[op.Process]; ok {
				return nil, fmt.Errorf("op %d: process %d invokes again while op %d is open", op.Index, op.Process, out[i].Invoke.Index)
			}
			open[op.Process] = len(out)
			out = append(out, Complete{Process: op.Process, F: op.F, Partition: op.Partition, Value: op.Value, Call: op.Time, Return: -1, Type: Info, Invoke: op})
			continue
		}
		i, ok := open[op.Process]
		if !ok {
			return nil, fmt.Errorf("op %d: %s of process %d without an invocation", op.Index, op.Type, op.Process)
		}
		delete(open, op.Process)
		c := &out[i]
		if c.F != op.F {
			return nil, fmt.Errorf("op %d: %s %s completes a %s invocation (op %d)", op.Index, op.Type, op.F, c.F, c.Invoke.Index)
		}
		c.Type, c.Done, c.Return = op.Type, op, op.Time
		if c.Value == "" {
			c.Value = op.Value
		}
	}
	return out, nil
}
