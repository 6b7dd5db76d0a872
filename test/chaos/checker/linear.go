package checker

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

// Linearizability of one partition's log, checked with porcupine.
//
// The model is a log whose final content L is known: the reference log,
// taken from the nodes' final states (node-read ops) or, without them, from
// every read. Its state is k, the length of the prefix of L committed so
// far. An append of v acknowledged at offset o steps k from o to o+1 when
// L[o] == v; a read of n records from offset s (at most max) needs
// L[s:s+n] to be what it returned and k == s+n (or k >= s+n when n == max);
// a read past the end (OFFSET_OUT_OF_RANGE) needs k < s. So a lost write, a
// value at the wrong offset, a phantom read and a stale read (a read that
// misses an append acknowledged before it began) are all illegal.
//
// An append whose outcome is unknown (info) is resolved through L: if its
// value is at offset o it is an append at o that may take effect any time
// after its invocation; if its value is nowhere, it never happened and is
// left out. Definitely failed appends, failed reads and local (possibly
// stale) reads are left out.
//
// Bounded windows: the partition's operations, ordered by invocation, are
// cut into windows of WindowOps; a window also takes every operation that
// overlaps it in time, so nothing concurrent with its operations is missing.
// Each window is checked on its own (porcupine's partitions), starting from
// the state that operations completed before the window prove, and may pass
// silently over offsets whose appends are outside the window. That keeps the
// search small and never reports a violation that is not there; it can miss
// one that needs operations of two distant windows to show.

// LinearOptions tunes CheckLinearizable.
type LinearOptions struct {
	// WindowOps is how many operations (by invocation order) a window
	// holds before overlap; 0 takes DefaultWindowOps.
	WindowOps int
	// Timeout bounds porcupine per partition; 0 takes DefaultLinearTimeout.
	// A partition that runs out of time is "unknown", which is not valid.
	Timeout time.Duration
	// VisualizeDir, when set, receives linearizability-p<N>.html per
	// partition (porcupine's visualization).
	VisualizeDir string
}

// Defaults of LinearOptions.
const (
	DefaultWindowOps     = 200
	DefaultLinearTimeout = 2 * time.Minute
)

// LinearResult is one partition's verdict.
type LinearResult struct {
	Partition int    `json:"partition"`
	Result    string `json:"result"` // Ok | Illegal | Unknown | Skipped
	Ops       int    `json:"ops"`
	Windows   int    `json:"windows"`
	// Illegal lists the windows porcupine could not linearize, with the
	// history ops they hold.
	Illegal []Window `json:"illegal_windows,omitempty"`
	HTML    string   `json:"html,omitempty"`
	Detail  string   `json:"detail,omitempty"`
}

// Window names a checked window by the history ops it holds.
type Window struct {
	Index int   `json:"index"`
	From  int64 `json:"from_time"`
	To    int64 `json:"to_time"`
	Ops   []int `json:"ops"`
	// Linearized are the last operations of the longest linearization
	// porcupine found, Stuck the first operations (by return) it could not
	// place after them: where the history stops making sense.
	Linearized []string `json:"linearized_until,omitempty"`
	Stuck      []string `json:"stuck_at,omitempty"`
}

// Inputs and outputs of the model.
type (
	appendIn struct {
		value  string
		offset int64 // in L; -1 when the value is not in L
	}
	appendOut struct {
		offset  int64 // acknowledged; -1 for an info append
		unknown bool
	}
	readIn struct {
		offset int64
		max    int
	}
	readOut struct {
		values     []string
		offsets    []int64
		outOfRange bool
	}
	windowIn struct{ w int }
	// logState is the window being checked and the committed prefix of L.
	logState struct {
		w int
		k int64
	}
)

// stuckAt describes where porcupine's longest partial linearization of an
// illegal window ends: its last operations, and the pending ones that
// return first.
func stuckAt(m porcupine.Model, sub []porcupine.Operation, info porcupine.LinearizationInfo) (last, stuck []string) {
	var best []porcupine.Operation
	for _, part := range info.PartialLinearizationsOperations() {
		for _, pl := range part {
			if len(pl) > len(best) {
				best = pl
			}
		}
	}
	describe := func(op porcupine.Operation) string {
		meta := op.Metadata.(opMeta)
		return fmt.Sprintf("%s [time %d..%d] history ops %v", m.DescribeOperation(op.Input, op.Output), op.Call, op.Return, meta.Ops)
	}
	done := map[string]bool{}
	for _, op := range best {
		done[fmt.Sprint(op.Metadata.(opMeta).Ops, op.Call)] = true
	}
	for _, op := range best[max(0, len(best)-3):] {
		last = append(last, describe(op))
	}
	var rest []porcupine.Operation
	for _, op := range sub {
		if !done[fmt.Sprint(op.Metadata.(opMeta).Ops, op.Call)] {
			rest = append(rest, op)
		}
	}
	sort.SliceStable(rest, func(i, j int) bool { return rest[i].Return < rest[j].Return })
	for _, op := range rest[:min(3, len(rest))] {
		stuck = append(stuck, describe(op))
	}
	return last, stuck
}

// opMeta ties a porcupine operation to its window and history ops.
type opMeta struct {
	Window int
	Ops    []int
}

// window is the model's view of one window.
type window struct {
	partition int
	ref       []string
	lo        int64          // committed prefix proven before the window
	owned     map[int64]bool // offsets whose appends are in the window
}

// skippable says whether the state may pass from k to k2 without an
// operation of the window: every offset in [k, k2) is in L and appended by
// an operation outside the window.
func (w *window) skippable(k, k2 int64) bool {
	if k2 > int64(len(w.ref)) {
		return false
	}
	for o := k; o < k2; o++ {
		if w.owned[o] || w.ref[o] == hole {
			return false
		}
	}
	return true
}

func logModel(windows []*window) porcupine.Model {
	return porcupine.Model{
		Init: func() interface{} { return logState{w: -1} },
		Step: func(state, input, output interface{}) (bool, interface{}) {
			st := state.(logState)
			if in, ok := input.(windowIn); ok {
				if st.w != -1 {
					return false, st
				}
				return true, logState{w: in.w, k: windows[in.w].lo}
			}
			if st.w < 0 {
				return false, st
			}
			w := windows[st.w]
			switch in := input.(type) {
			case appendIn:
				out := output.(appendOut)
				if in.offset < 0 || (!out.unknown && out.offset != in.offset) {
					return false, st
				}
				if in.offset < st.k || !w.skippable(st.k, in.offset) {
					return false, st
				}
				return true, logState{w: st.w, k: in.offset + 1}
			case readIn:
				out := output.(readOut)
				if out.outOfRange {
					return st.k < in.offset, st
				}
				end := in.offset + int64(len(out.values))
				if end > int64(len(w.ref)) {
					return false, st
				}
				for i, v := range out.values {
					if out.offsets[i] != in.offset+int64(i) || w.ref[in.offset+int64(i)] != v {
						return false, st
					}
				}
				if len(out.values) >= in.max && st.k >= end {
					return true, st
				}
				// The least state that explains the read: smaller is never worse.
				if st.k > end || !w.skippable(st.k, end) {
					return false, st
				}
				return true, logState{w: st.w, k: end}
			}
			return false, st
		},
		Hash: func(state interface{}) uint64 {
			st := state.(logState)
			return uint64(st.w)<<40 ^ uint64(st.k)
		},
		DescribeOperation: func(input, output interface{}) string {
			switch in := input.(type) {
			case windowIn:
				return fmt.Sprintf("window %d starts", in.w)
			case appendIn:
				out := output.(appendOut)
				if out.unknown {
					return fmt.Sprintf("append(%s) -> ? (in L at %d)", in.value, in.offset)
				}
				return fmt.Sprintf("append(%s) -> %d", in.value, out.offset)
			case readIn:
				out := output.(readOut)
				if out.outOfRange {
					return fmt.Sprintf("read(%d, max %d) -> out of range", in.offset, in.max)
				}
				return fmt.Sprintf("read(%d, max %d) -> [%s]", in.offset, in.max, shorten(out.values))
			}
			return fmt.Sprintf("%v -> %v", input, output)
		},
		DescribeState: func(state interface{}) string {
			st := state.(logState)
			if st.w < 0 {
				return "start"
			}
			ref := windows[st.w].ref
			if st.k == 0 {
				return "k=0 []"
			}
			return fmt.Sprintf("k=%d [..., %s]", st.k, ref[st.k-1])
		},
	}
}

func shorten(vs []string) string {
	if len(vs) <= 4 {
		return strings.Join(vs, " ")
	}
	return fmt.Sprintf("%s %s ... %s (%d)", vs[0], vs[1], vs[len(vs)-1], len(vs))
}

// lop is one operation as the model sees it, with its history ops.
type lop struct {
	call, ret int64 // ret < 0: never returns (an info append)
	in, out   interface{}
	client    int
	ops       []int
	isAppend  bool
	offset    int64 // of an append in L
	// effect is the committed prefix this op proves once it returned.
	effect int64
}

// hole marks an offset of a reference log that nobody holds.
const hole = "\x00hole"

// ReferenceLogs returns each partition's reference log, indexed by offset:
// the final copy most nodes agree on (the longest on a tie) when node-read
// ops exist, else every read merged by offset. An offset below the end that
// nobody holds is a hole.
func ReferenceLogs(h History) map[int][]string {
	toLog := func(recs []Record) []string {
		var vals []string
		for _, r := range recs {
			if r.Offset < 0 {
				continue
			}
			for int64(len(vals)) <= r.Offset {
				vals = append(vals, hole)
			}
			if vals[r.Offset] == hole {
				vals[r.Offset] = r.Value
			}
		}
		return vals
	}
	ref := map[int][]string{}
	type candidate struct {
		log   []string
		votes int
	}
	copies := map[int]map[string]*candidate{}
	for _, op := range h {
		if op.F == NodeRead && op.Type == OK {
			if copies[op.Partition] == nil {
				copies[op.Partition] = map[string]*candidate{}
			}
			log := toLog(op.Records)
			key := strings.Join(log, "\x01")
			if c, ok := copies[op.Partition][key]; ok {
				c.votes++
			} else {
				copies[op.Partition][key] = &candidate{log: log, votes: 1}
			}
		}
	}
	for p, cs := range copies {
		var best *candidate
		for _, k := range sortedKeys(cs) {
			c := cs[k]
			if best == nil || c.votes > best.votes || (c.votes == best.votes && len(c.log) > len(best.log)) {
				best = c
			}
		}
		ref[p] = best.log
	}
	merged := map[int][]Record{}
	for _, op := range h {
		if op.F == Consume && op.Type == OK && copies[op.Partition] == nil {
			merged[op.Partition] = append(merged[op.Partition], op.Records...)
		}
	}
	for p, recs := range merged {
		ref[p] = toLog(recs)
	}
	return ref
}

// CheckLinearizable runs porcupine on every partition of h.
func CheckLinearizable(h History, opt LinearOptions) ([]LinearResult, error) {
	if opt.WindowOps <= 0 {
		opt.WindowOps = DefaultWindowOps
	}
	if opt.Timeout <= 0 {
		opt.Timeout = DefaultLinearTimeout
	}
	pairs, err := Pair(h)
	if err != nil {
		return nil, err
	}
	refs := ReferenceLogs(h)
	byPart := map[int][]Complete{}
	for _, c := range pairs {
		if c.F == Produce || (c.F == Consume && c.Invoke.Consistency == Strong) {
			byPart[c.Partition] = append(byPart[c.Partition], c)
		}
	}
	var out []LinearResult
	for _, p := range sortedKeys(byPart) {
		out = append(out, checkPartition(p, byPart[p], refs[p], opt))
	}
	return out, nil
}

func checkPartition(p int, cs []Complete, ref []string, opt LinearOptions) LinearResult {
	res := LinearResult{Partition: p}
	at := map[string]int64{}
	for i, v := range ref {
		if _, dup := at[v]; !dup && v != hole {
			at[v] = int64(i)
		}
	}
	var ops []lop
	var maxRet int64
	for _, c := range cs {
		l := lop{call: c.Call, ret: c.Return, client: c.Process, ops: []int{c.Invoke.Index}, effect: -1}
		if c.Type != Info {
			l.ops = append(l.ops, c.Done.Index)
		}
		switch c.F {
		case Produce:
			o, inRef := at[c.Value]
			switch c.Type {
			case Fail:
				continue
			case Info:
				if !inRef {
					continue // it never took effect
				}
				l.ret = -1
				l.out = appendOut{offset: -1, unknown: true}
			case OK:
				acked := int64(-1)
				if c.Done.Offset != nil {
					acked = *c.Done.Offset
				}
				l.out = appendOut{offset: acked}
				l.effect = acked + 1
				if !inRef {
					o = -1
				}
			}
			l.isAppend, l.offset = true, o
			l.in = appendIn{value: c.Value, offset: o}
		case Consume:
			if c.Type != OK || c.Invoke.Offset == nil {
				continue
			}
			d := c.Done
			vals := make([]string, len(d.Records))
			offs := make([]int64, len(d.Records))
			for i, r := range d.Records {
				vals[i], offs[i] = r.Value, r.Offset
			}
			max := d.Max
			if max == 0 {
				max = c.Invoke.Max
			}
			l.in = readIn{offset: *c.Invoke.Offset, max: max}
			l.out = readOut{values: vals, offsets: offs, outOfRange: d.OutOfRange}
			if !d.OutOfRange {
				l.effect = *c.Invoke.Offset + int64(len(vals))
			}
		}
		if l.ret > maxRet {
			maxRet = l.ret
		}
		ops = append(ops, l)
	}
	res.Ops = len(ops)
	if len(ops) == 0 {
		res.Result = "Skipped"
		res.Detail = "no operation to check"
		return res
	}
	sort.SliceStable(ops, func(i, j int) bool { return ops[i].call < ops[j].call })
	// Dense client ids for the visualization; 0 is the window marker.
	clients := map[int]int{}
	for _, l := range ops {
		if _, ok := clients[l.client]; !ok {
			clients[l.client] = len(clients) + 1
		}
	}

	var windows []*window
	var history []porcupine.Operation
	for start := 0; start < len(ops); start += opt.WindowOps {
		core := ops[start:min(start+opt.WindowOps, len(ops))]
		ts := core[0].call
		te := ts
		for _, l := range core {
			if l.ret > te {
				te = l.ret
			}
		}
		// Everything overlapping [ts, te]; info appends are handled below.
		var in []lop
		for _, l := range ops {
			if l.ret < 0 {
				continue
			}
			if l.call <= te && l.ret >= ts {
				in = append(in, l)
			}
		}
		tmin := ts
		for _, l := range in {
			if l.call < tmin {
				tmin = l.call
			}
		}
		var lo int64
		for _, l := range ops {
			if l.ret >= 0 && l.ret < tmin && l.effect > lo {
				lo = l.effect
			}
		}
		// Info appends invoked by the window's end that may still be due:
		// one invoked before the window starts takes effect at the
		// earliest at its start (nothing inside can tell the difference).
		for _, l := range ops {
			if l.ret >= 0 || l.call > te {
				continue
			}
			if l.call < tmin {
				if l.offset < lo {
					continue
				}
				l.call = tmin
			}
			in = append(in, l)
		}
		w := &window{partition: p, ref: ref, lo: lo, owned: map[int64]bool{}}
		for _, l := range in {
			if l.isAppend && l.offset >= 0 {
				w.owned[l.offset] = true
			}
		}
		wi := len(windows)
		windows = append(windows, w)
		history = append(history, porcupine.Operation{ClientId: 0, Input: windowIn{w: wi}, Call: tmin - 2, Return: tmin - 1, Metadata: opMeta{Window: wi}})
		for _, l := range in {
			ret := l.ret
			if ret < 0 {
				ret = maxRet + 1
			}
			history = append(history, porcupine.Operation{ClientId: clients[l.client], Input: l.in, Output: l.out, Call: l.call, Return: ret,
				Metadata: opMeta{Window: wi, Ops: l.ops}})
		}
	}
	res.Windows = len(windows)

	model := logModel(windows)
	model.Partition = func(hist []porcupine.Operation) [][]porcupine.Operation {
		parts := make([][]porcupine.Operation, len(windows))
		for _, op := range hist {
			wi := op.Metadata.(opMeta).Window
			parts[wi] = append(parts[wi], op)
		}
		return parts
	}
	model.DescribeOperationMetadata = func(info interface{}) string {
		m := info.(opMeta)
		return fmt.Sprintf("window %d, history ops %v", m.Window, m.Ops)
	}
	verdict, info := porcupine.CheckOperationsVerbose(model, history, opt.Timeout)
	res.Result = string(verdict)
	if verdict == porcupine.Illegal {
		// Name the windows at fault: check each alone.
		for wi := range windows {
			var sub []porcupine.Operation
			for _, op := range history {
				if op.Metadata.(opMeta).Window == wi {
					sub = append(sub, op)
				}
			}
			m := logModel(windows)
			verdict, winfo := porcupine.CheckOperationsVerbose(m, sub, opt.Timeout)
			if verdict != porcupine.Illegal {
				continue
			}
			win := Window{Index: wi, From: sub[0].Return + 1}
			win.Linearized, win.Stuck = stuckAt(m, sub, winfo)
			for _, op := range sub[1:] {
				if op.Return <= maxRet && op.Return > win.To {
					win.To = op.Return
				}
				win.Ops = append(win.Ops, op.Metadata.(opMeta).Ops...)
			}
			sort.Ints(win.Ops)
			res.Illegal = append(res.Illegal, win)
		}
	}
	if opt.VisualizeDir != "" {
		path := filepath.Join(opt.VisualizeDir, fmt.Sprintf("linearizability-p%d.html", p))
		if err := porcupine.VisualizePath(model, info, path); err != nil {
			res.Detail = fmt.Sprintf("visualization: %v", err)
		} else {
			res.HTML = filepath.Base(path)
		}
	}
	return res
}
