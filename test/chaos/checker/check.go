package checker

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"sort"
	"strings"
)

// Kinds of anomaly the checks report.
const (
	// KindLost: an acknowledged produce whose value no read and no node
	// holds after the final drain.
	KindLost = "lost"
	// KindWrongOffset: an acknowledged value read at an offset other than
	// the one its acknowledgement named.
	KindWrongOffset = "wrong-offset"
	// KindDuplicate: one value at two or more offsets.
	KindDuplicate = "duplicate"
	// KindPhantom: a value read that no produce ever wrote.
	KindPhantom = "phantom"
	// KindFailedVisible: a value read whose produce failed definitely.
	KindFailedVisible = "failed-visible"
	// KindDivergent: two reads (any nodes) saw different values at one
	// offset.
	KindDivergent = "divergent"
	// KindGap: offsets not dense: a read that skipped offsets, or returned
	// nothing below the high watermark it reported.
	KindGap = "gap"
	// KindNodeMismatch: nodes' final states of a partition differ.
	KindNodeMismatch = "node-mismatch"
	// KindLifecycle: nodes' lifecycle histories differ, or one command
	// was applied twice.
	KindLifecycle = "lifecycle"
	// KindNotLinearizable: porcupine found no linearization of a window.
	KindNotLinearizable = "not-linearizable"
	// KindMalformed: the history itself does not parse into operations.
	KindMalformed = "malformed-history"
)

// Anomaly is one broken guarantee, with the ops that show it.
type Anomaly struct {
	Kind      string `json:"kind"`
	Partition int    `json:"partition"`
	Offset    *int64 `json:"offset,omitempty"`
	Value     string `json:"value,omitempty"`
	Node      string `json:"node,omitempty"`
	Detail    string `json:"detail"`
	// Ops are indexes into the history (Op.Index).
	Ops []int `json:"ops,omitempty"`
}

func (a Anomaly) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s: partition %d", a.Kind, a.Partition)
	if a.Offset != nil {
		fmt.Fprintf(&b, " offset %d", *a.Offset)
	}
	if a.Value != "" {
		fmt.Fprintf(&b, " value %q", a.Value)
	}
	if a.Node != "" {
		fmt.Fprintf(&b, " node %s", a.Node)
	}
	fmt.Fprintf(&b, ": %s", a.Detail)
	if len(a.Ops) > 0 {
		fmt.Fprintf(&b, " (history ops %v)", a.Ops)
	}
	return b.String()
}

// Counts are outcomes per operation.
type Counts struct {
	OK   int `json:"ok"`
	Fail int `json:"fail"`
	Info int `json:"info"`
}

// Result is what the checks found. Valid is true when no anomaly was found
// and the linearizability check, when run, did not find a violation.
type Result struct {
	Valid     bool              `json:"valid"`
	Counts    map[F]*Counts     `json:"counts"`
	Anomalies []Anomaly         `json:"anomalies"`
	ByKind    map[string]int    `json:"by_kind"`
	Lost      []string          `json:"lost"`
	Duplicate []string          `json:"duplicated"`
	NodeHash  map[string]string `json:"node_hash,omitempty"` // "node/partition" -> sha256 of its offsets and values
	// Acked is the number of distinct acknowledged values; Read the number
	// of distinct values read by consumers and node reads.
	Acked int `json:"acked"`
	Read  int `json:"read"`
	// Linear is the porcupine result per partition (empty when not run).
	Linear []LinearResult `json:"linearizability,omitempty"`
}

func (r *Result) add(a Anomaly) {
	r.Anomalies = append(r.Anomalies, a)
	r.ByKind[a.Kind]++
}

// obs is one sighting of a value at an offset.
type obs struct {
	value string
	op    int
	node  string
	f     F
}

// Check runs every check except linearizability (see CheckLinearizable).
func Check(h History) Result {
	res := Result{Counts: map[F]*Counts{}, ByKind: map[string]int{}, Lost: []string{}, Duplicate: []string{}, Anomalies: []Anomaly{}}
	ops, err := Pair(h)
	if err != nil {
		res.add(Anomaly{Kind: KindMalformed, Detail: err.Error()})
		return res
	}
	for _, c := range ops {
		if c.F == NodeRead || c.F == LifecycleHistory {
			continue
		}
		cnt := res.Counts[c.F]
		if cnt == nil {
			cnt = &Counts{}
			res.Counts[c.F] = cnt
		}
		switch c.Type {
		case OK:
			cnt.OK++
		case Fail:
			cnt.Fail++
		default:
			cnt.Info++
		}
	}

	// What was written, and how it ended.
	type write struct {
		c      Complete
		offset int64
	}
	writes := map[string]write{}
	for _, c := range ops {
		if c.F != Produce {
			continue
		}
		if prev, dup := writes[c.Value]; dup {
			res.add(Anomaly{Kind: KindMalformed, Partition: c.Partition, Value: c.Value,
				Detail: "the workload produced this value twice; values must be unique", Ops: []int{prev.c.Invoke.Index, c.Invoke.Index}})
		}
		w := write{c: c, offset: -1}
		if c.Type == OK && c.Done.Offset != nil {
			w.offset = *c.Done.Offset
		}
		writes[c.Value] = w
	}

	// Every sighting of a value at a partition offset.
	at := map[int]map[int64][]obs{} // partition -> offset -> sightings
	where := map[string]map[[2]int64][]int{}
	see := func(p int, o int64, v string, op int, node string, f F) {
		if at[p] == nil {
			at[p] = map[int64][]obs{}
		}
		at[p][o] = append(at[p][o], obs{v, op, node, f})
		if where[v] == nil {
			where[v] = map[[2]int64][]int{}
		}
		k := [2]int64{int64(p), o}
		where[v][k] = append(where[v][k], op)
	}
	for _, c := range ops {
		if c.Type != OK || (c.F != Consume && c.F != NodeRead) {
			continue
		}
		d := c.Done
		for i, r := range d.Records {
			see(c.Partition, r.Offset, r.Value, d.Index, d.Node, c.F)
			// Dense offsets inside one response.
			if c.F == Consume && d.Offset != nil && r.Offset != *d.Offset+int64(i) {
				res.add(Anomaly{Kind: KindGap, Partition: c.Partition, Offset: Int64(*d.Offset + int64(i)), Node: d.Node,
					Detail: fmt.Sprintf("a read from offset %d returned offset %d as its record #%d", *d.Offset, r.Offset, i), Ops: []int{d.Index}})
				break
			}
			if c.F == NodeRead && r.Offset != int64(i) {
				res.add(Anomaly{Kind: KindGap, Partition: c.Partition, Offset: Int64(int64(i)), Node: d.Node,
					Detail: fmt.Sprintf("node %s holds offset %d as its record #%d: offsets are not dense from 0", d.Node, r.Offset, i), Ops: []int{d.Index}})
				break
			}
		}
		// A node that reports records below its high watermark must return them.
		if c.F == Consume && d.Offset != nil && d.HighWatermark != nil && !d.OutOfRange &&
			len(d.Records) == 0 && *d.HighWatermark > *d.Offset {
			res.add(Anomaly{Kind: KindGap, Partition: c.Partition, Offset: d.Offset, Node: d.Node,
				Detail: fmt.Sprintf("a read from offset %d returned nothing though the high watermark is %d", *d.Offset, *d.HighWatermark), Ops: []int{d.Index}})
		}
		if c.F == NodeRead && d.HighWatermark != nil && *d.HighWatermark != int64(len(d.Records)) {
			res.add(Anomaly{Kind: KindGap, Partition: c.Partition, Node: d.Node,
				Detail: fmt.Sprintf("node %s reports high watermark %d but returned %d records", d.Node, *d.HighWatermark, len(d.Records)), Ops: []int{d.Index}})
		}
	}

	// One value per offset, whoever read it.
	for _, p := range sortedKeys(at) {
		offs := at[p]
		for _, o := range sortedKeys(offs) {
			ss := offs[o]
			vals := map[string][]int{}
			for _, s := range ss {
				vals[s.value] = append(vals[s.value], s.op)
			}
			if len(vals) > 1 {
				var parts []string
				var idx []int
				for _, v := range sortedKeys(vals) {
					parts = append(parts, fmt.Sprintf("%q (ops %v)", v, vals[v]))
					idx = append(idx, vals[v][0])
				}
				res.add(Anomaly{Kind: KindDivergent, Partition: p, Offset: Int64(o),
					Detail: "different values read at one offset: " + strings.Join(parts, ", "), Ops: idx})
			}
		}
	}

	// Each value: written, not failed, at one offset, at its acknowledged offset.
	for _, v := range sortedKeys(where) {
		locs := where[v]
		keys := make([][2]int64, 0, len(locs))
		for k := range locs {
			keys = append(keys, k)
		}
		sort.Slice(keys, func(i, j int) bool {
			if keys[i][0] != keys[j][0] {
				return keys[i][0] < keys[j][0]
			}
			return keys[i][1] < keys[j][1]
		})
		first := locs[keys[0]][0]
		w, written := writes[v]
		switch {
		case !written:
			res.add(Anomaly{Kind: KindPhantom, Partition: int(keys[0][0]), Offset: Int64(keys[0][1]), Value: v,
				Detail: "read a value that no produce wrote", Ops: []int{first}})
		case w.c.Type == Fail:
			res.add(Anomaly{Kind: KindFailedVisible, Partition: int(keys[0][0]), Offset: Int64(keys[0][1]), Value: v,
				Detail: fmt.Sprintf("read a value whose produce failed definitely (%s)", w.c.Done.Error), Ops: []int{w.c.Done.Index, first}})
		}
		if len(keys) > 1 {
			var parts []string
			var idx []int
			for _, k := range keys {
				parts = append(parts, fmt.Sprintf("partition %d offset %d (ops %v)", k[0], k[1], locs[k]))
				idx = append(idx, locs[k][0])
			}
			res.add(Anomaly{Kind: KindDuplicate, Partition: int(keys[0][0]), Offset: Int64(keys[0][1]), Value: v,
				Detail: "value present at more than one offset: " + strings.Join(parts, ", "), Ops: idx})
			res.Duplicate = append(res.Duplicate, v)
		}
		if written && w.c.Type == OK && w.offset >= 0 {
			if _, ok := locs[[2]int64{int64(w.c.Partition), w.offset}]; !ok {
				res.add(Anomaly{Kind: KindWrongOffset, Partition: w.c.Partition, Offset: Int64(w.offset), Value: v,
					Detail: fmt.Sprintf("acknowledged at offset %d but read only at %v", w.offset, keys), Ops: []int{w.c.Done.Index, first}})
			}
		}
	}

	// No acknowledged value lost.
	for _, v := range sortedKeys(writes) {
		w := writes[v]
		if w.c.Type != OK {
			continue
		}
		res.Acked++
		if _, ok := where[v]; !ok {
			res.add(Anomaly{Kind: KindLost, Partition: w.c.Partition, Offset: Int64(w.offset), Value: v,
				Detail: "acknowledged, but no read and no node holds it after the final drain", Ops: []int{w.c.Invoke.Index, w.c.Done.Index}})
			res.Lost = append(res.Lost, v)
		}
	}
	res.Read = len(where)

	checkNodes(ops, &res)
	checkRetained(ops, at, &res)
	checkLifecycle(ops, &res)
	res.Valid = len(res.Anomalies) == 0
	return res
}

// checkNodes compares each partition's final state across nodes and hashes
// each node's copy.
func checkNodes(ops []Complete, res *Result) {
	type copyOf struct {
		node string
		op   int
		recs []Record
	}
	byPart := map[int][]copyOf{}
	for _, c := range ops {
		if c.F == NodeRead && c.Type == OK {
			byPart[c.Partition] = append(byPart[c.Partition], copyOf{c.Done.Node, c.Done.Index, c.Done.Records})
		}
	}
	if len(byPart) > 0 {
		res.NodeHash = map[string]string{}
	}
	for _, p := range sortedKeys(byPart) {
		copies := byPart[p]
		sort.Slice(copies, func(i, j int) bool { return copies[i].node < copies[j].node })
		for _, cp := range copies {
			res.NodeHash[fmt.Sprintf("%s/%d", cp.node, p)] = hashRecords(cp.recs)
		}
		ref := copies[0]
		for _, cp := range copies[1:] {
			n := min(len(ref.recs), len(cp.recs))
			diff := -1
			for i := 0; i < n; i++ {
				if ref.recs[i] != cp.recs[i] {
					diff = i
					break
				}
			}
			switch {
			case diff >= 0:
				res.add(Anomaly{Kind: KindNodeMismatch, Partition: p, Offset: Int64(ref.recs[diff].Offset), Node: cp.node,
					Detail: fmt.Sprintf("node %s holds %q at record #%d, node %s holds %q", ref.node, ref.recs[diff].Value, diff, cp.node, cp.recs[diff].Value),
					Ops:    []int{ref.op, cp.op}})
			case len(ref.recs) != len(cp.recs):
				res.add(Anomaly{Kind: KindNodeMismatch, Partition: p, Node: cp.node,
					Detail: fmt.Sprintf("node %s holds %d records, node %s holds %d", ref.node, len(ref.recs), cp.node, len(cp.recs)),
					Ops:    []int{ref.op, cp.op}})
			}
		}
	}
}

// checkRetained wants every offset a consumer read, and every acknowledged
// offset, still held by each node at the end: a committed record never
// disappears. One anomaly per node and partition names the first missing
// offset and how many are missing.
func checkRetained(ops []Complete, at map[int]map[int64][]obs, res *Result) {
	held := map[int]map[string]map[int64]bool{} // partition -> node -> offsets
	nodeOp := map[string]int{}
	for _, c := range ops {
		if c.F == NodeRead && c.Type == OK {
			if held[c.Partition] == nil {
				held[c.Partition] = map[string]map[int64]bool{}
			}
			offs := map[int64]bool{}
			for _, r := range c.Done.Records {
				offs[r.Offset] = true
			}
			held[c.Partition][c.Done.Node] = offs
			nodeOp[fmt.Sprintf("%s/%d", c.Done.Node, c.Partition)] = c.Done.Index
		}
	}
	for _, p := range sortedKeys(held) {
		type need struct {
			value string
			op    int
		}
		needed := map[int64]need{}
		for o, ss := range at[p] {
			for _, s := range ss {
				if s.f == Consume {
					needed[o] = need{s.value, s.op}
					break
				}
			}
		}
		for _, c := range ops {
			if c.F == Produce && c.Partition == p && c.Type == OK && c.Done.Offset != nil {
				if _, ok := needed[*c.Done.Offset]; !ok {
					needed[*c.Done.Offset] = need{c.Value, c.Done.Index}
				}
			}
		}
		offs := sortedKeys(needed)
		for _, node := range sortedKeys(held[p]) {
			missing := 0
			first := int64(-1)
			for _, o := range offs {
				if !held[p][node][o] {
					missing++
					if first < 0 {
						first = o
					}
				}
			}
			if missing > 0 {
				n := needed[first]
				res.add(Anomaly{Kind: KindLost, Partition: p, Offset: Int64(first), Value: n.value, Node: node,
					Detail: fmt.Sprintf("node %s no longer holds %d offset(s) of partition %d that were read or acknowledged during the run, the first is %d", node, missing, p, first),
					Ops:    []int{n.op, nodeOp[fmt.Sprintf("%s/%d", node, p)]}})
			}
		}
	}
}

func hashRecords(recs []Record) string {
	h := sha256.New()
	for _, r := range recs {
		fmt.Fprintf(h, "%d\x00%s\n", r.Offset, r.Value)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// checkLifecycle wants one lifecycle history on every node, each request id
// applied at most once.
func checkLifecycle(ops []Complete, res *Result) {
	type hist struct {
		node    string
		op      int
		entries []LifecycleEntry
	}
	var hs []hist
	for _, c := range ops {
		if c.F == LifecycleHistory && c.Type == OK {
			hs = append(hs, hist{c.Done.Node, c.Done.Index, c.Done.Lifecycle})
		}
	}
	sort.Slice(hs, func(i, j int) bool { return hs[i].node < hs[j].node })
	for _, h := range hs {
		seen := map[string]uint64{}
		for _, e := range h.entries {
			if e.RequestID == "" {
				continue
			}
			if at, ok := seen[e.RequestID]; ok {
				res.add(Anomaly{Kind: KindLifecycle, Node: h.node, Ops: []int{h.op},
					Detail: fmt.Sprintf("node %s applied request %s twice: %s at index %d and %s at index %d", h.node, e.RequestID, e.Command, at, e.Command, e.Index)})
			}
			seen[e.RequestID] = e.Index
		}
	}
	for i := 1; i < len(hs); i++ {
		a, b := hs[0], hs[i]
		n := min(len(a.entries), len(b.entries))
		for j := 0; j < n; j++ {
			if a.entries[j] != b.entries[j] {
				res.add(Anomaly{Kind: KindLifecycle, Node: b.node, Ops: []int{a.op, b.op},
					Detail: fmt.Sprintf("lifecycle entry #%d differs: node %s has %+v, node %s has %+v", j, a.node, a.entries[j], b.node, b.entries[j])})
				break
			}
		}
		if len(a.entries) != len(b.entries) {
			res.add(Anomaly{Kind: KindLifecycle, Node: b.node, Ops: []int{a.op, b.op},
				Detail: fmt.Sprintf("node %s has %d lifecycle entries, node %s has %d", a.node, len(a.entries), b.node, len(b.entries))})
		}
	}
}

type ordered interface {
	~int | ~int64 | ~string
}

func sortedKeys[K ordered, V any](m map[K]V) []K {
	keys := make([]K, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool { return keys[i] < keys[j] })
	return keys
}
