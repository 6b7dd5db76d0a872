package checker

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// The histories under testdata/ are made by hand: clean.jsonl is a small
// correct run (a concurrent read, a definitely failed produce, an info
// produce that did land, a stale local read, a read past the end, three
// nodes' final states and lifecycle histories); each other file is
// clean.jsonl with one fault written in.
func TestCheck_HandMadeHistories(t *testing.T) {
	cases := []struct {
		file string
		// kinds must each be reported; nothing else may be.
		kinds []string
		// linear is porcupine's verdict on partition 0.
		linear string
	}{
		{"clean.jsonl", nil, "Ok"},
		{"lost.jsonl", []string{KindLost}, "Illegal"},
		{"duplicate.jsonl", []string{KindDuplicate}, "Ok"},
		{"gap.jsonl", []string{KindGap, KindWrongOffset, KindLost}, "Illegal"},
		{"stale-read.jsonl", nil, "Illegal"},
		{"phantom.jsonl", []string{KindPhantom}, "Ok"},
		{"failed-visible.jsonl", []string{KindFailedVisible}, "Ok"},
		{"node-mismatch.jsonl", []string{KindNodeMismatch, KindLost}, "Ok"},
		{"divergent.jsonl", []string{KindDivergent, KindNodeMismatch, KindPhantom}, "Ok"},
		{"lifecycle.jsonl", []string{KindLifecycle}, "Ok"},
	}
	for _, tc := range cases {
		t.Run(strings.TrimSuffix(tc.file, ".jsonl"), func(t *testing.T) {
			h, err := ReadFile(filepath.Join("testdata", tc.file))
			if err != nil {
				t.Fatal(err)
			}
			res := Check(h)
			for _, a := range res.Anomalies {
				t.Logf("found %s", a)
			}
			want := map[string]bool{}
			for _, k := range tc.kinds {
				want[k] = true
				if res.ByKind[k] == 0 {
					t.Errorf("%s not caught", k)
				}
			}
			for k := range res.ByKind {
				if !want[k] {
					t.Errorf("unexpected %s reported", k)
				}
			}
			if res.Valid != (len(tc.kinds) == 0) {
				t.Errorf("Valid = %v with %d anomalies", res.Valid, len(res.Anomalies))
			}

			dir := t.TempDir()
			lin, err := CheckLinearizable(h, LinearOptions{VisualizeDir: dir, Timeout: 10 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			if len(lin) != 1 || lin[0].Result != tc.linear {
				t.Fatalf("linearizability = %+v, want %s on partition 0", lin, tc.linear)
			}
			if tc.linear == "Illegal" {
				if len(lin[0].Illegal) == 0 || len(lin[0].Illegal[0].Stuck) == 0 {
					t.Fatalf("an illegal partition names no window or no stuck op: %+v", lin[0])
				}
				t.Logf("linearized until %v; stuck at %v", lin[0].Illegal[0].Linearized, lin[0].Illegal[0].Stuck)
			}
			if lin[0].HTML == "" {
				t.Errorf("no visualization written: %s", lin[0].Detail)
			} else if fi, err := os.Stat(filepath.Join(dir, lin[0].HTML)); err != nil || fi.Size() == 0 {
				t.Errorf("visualization %s: %v", lin[0].HTML, err)
			}
		})
	}
}

func TestCheck_CleanCounts(t *testing.T) {
	h, err := ReadFile(filepath.Join("testdata", "clean.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	res := Check(h)
	p := res.Counts[Produce]
	if p == nil || p.OK != 3 || p.Fail != 1 || p.Info != 1 {
		t.Errorf("produce counts = %+v, want ok 3, fail 1, info 1", p)
	}
	if res.Acked != 3 || res.Read != 4 {
		t.Errorf("acked %d, read %d; want 3 and 4", res.Acked, res.Read)
	}
	if len(res.NodeHash) != 3 || res.NodeHash["weir1/0"] != res.NodeHash["weir3/0"] {
		t.Errorf("node hashes = %v, want 3 equal ones", res.NodeHash)
	}
}

func TestRead_RoundTrip(t *testing.T) {
	h, err := ReadFile(filepath.Join("testdata", "clean.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := Write(&buf, h); err != nil {
		t.Fatal(err)
	}
	h2, err := Read(&buf)
	if err != nil {
		t.Fatal(err)
	}
	a, _ := json.Marshal(h)
	b, _ := json.Marshal(h2)
	if !bytes.Equal(a, b) {
		t.Errorf("round trip changed the history")
	}
	if _, err := Read(strings.NewReader("{\"process\":1,\"type\":\"ok\",\"f\":\"produce\"}\n")); err != nil {
		t.Fatal(err)
	}
	res := Check(History{{Process: 1, Type: OK, F: Produce}})
	if res.Valid || res.ByKind[KindMalformed] != 1 {
		t.Errorf("a completion without invocation should be malformed: %+v", res.ByKind)
	}
}

// simulate builds a correct history of a log with concurrent producers and
// strong readers, with random latencies, so that windows cut through
// concurrent operations. stale makes one read, late in the run, miss the
// append acknowledged just before it began.
func simulate(seed int64, producers, readers, appends int, stale bool) History {
	rng := rand.New(rand.NewSource(seed))
	type ev struct {
		t  int64
		op Op
	}
	var evs []ev
	// Appends: each producer serial; linearization point inside the interval.
	type point struct {
		t     int64
		value string
	}
	var points []point
	var pending []struct {
		inv, done Op
		lin       int64
	}
	clock := make([]int64, producers)
	for i := 0; i < appends; i++ {
		p := i % producers
		call := clock[p] + int64(rng.Intn(5))
		lin := call + 1 + int64(rng.Intn(20))
		ret := lin + 1 + int64(rng.Intn(20))
		clock[p] = ret + 1
		v := fmt.Sprintf("p%d-%d", p, i)
		points = append(points, point{lin, v})
		pending = append(pending, struct {
			inv, done Op
			lin       int64
		}{Op{Process: p, Type: Invoke, F: Produce, Time: call, Value: v}, Op{Process: p, Type: OK, F: Produce, Time: ret, Value: v}, lin})
	}
	sort.Slice(points, func(i, j int) bool { return points[i].t < points[j].t })
	offsetOf := map[string]int64{}
	var log []string
	for i, pt := range points {
		offsetOf[pt.value] = int64(i)
		log = append(log, pt.value)
	}
	for i := range pending {
		pe := &pending[i]
		pe.done.Offset = Int64(offsetOf[pe.inv.Value])
		evs = append(evs, ev{pe.inv.Time, pe.inv}, ev{pe.done.Time, pe.done})
	}
	end := clock[0]
	for _, c := range clock {
		end = max(end, c)
	}
	lenAt := func(t int64) int64 {
		n := int64(0)
		for _, pt := range points {
			if pt.t <= t {
				n++
			}
		}
		return n
	}
	staleDone := false
	for r := 0; r < readers; r++ {
		proc := producers + r
		for t := int64(rng.Intn(10)); t < end; {
			call := t
			lin := call + 1 + int64(rng.Intn(10))
			ret := lin + 1 + int64(rng.Intn(10))
			k := lenAt(lin)
			from := int64(0)
			if k > 0 {
				from = rng.Int63n(k + 1)
			}
			const maxRecs = 5
			inv := Op{Process: proc, Type: Invoke, F: Consume, Time: call, Offset: Int64(from), Max: maxRecs, Consistency: Strong}
			done := Op{Process: proc, Type: OK, F: Consume, Time: ret, Offset: Int64(from), Max: maxRecs, HighWatermark: Int64(k)}
			n := min(int64(maxRecs), k-from)
			if stale && !staleDone && call > end/2 {
				// Begin after an acknowledged append, see the log without it.
				for _, pe := range pending {
					if pe.done.Time < call && *pe.done.Offset == k-1 && k > 0 {
						from, n = k-1, 0
						inv.Offset, done.Offset, done.HighWatermark = Int64(from), Int64(from), Int64(from)
						staleDone = true
						break
					}
				}
			}
			for i := int64(0); i < n; i++ {
				done.Records = append(done.Records, Record{Offset: from + i, Value: log[from+i]})
			}
			evs = append(evs, ev{call, inv}, ev{ret, done})
			t = ret + 1
		}
	}
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].t < evs[j].t })
	var h History
	for _, e := range evs {
		e.op.Index = len(h)
		h = append(h, e.op)
	}
	recs := make([]Record, len(log))
	for i, v := range log {
		recs[i] = Record{Offset: int64(i), Value: v}
	}
	for _, n := range []string{"n1", "n2", "n3"} {
		h = append(h, Op{Index: len(h), Process: -2, Type: OK, F: NodeRead, Time: end + 10, Node: n, Records: recs, HighWatermark: Int64(int64(len(recs)))})
	}
	return h
}

func TestCheckLinearizable_Windows(t *testing.T) {
	for seed := int64(1); seed <= 5; seed++ {
		h := simulate(seed, 5, 3, 400, false)
		if res := Check(h); !res.Valid {
			t.Fatalf("seed %d: simulated clean history invalid: %v", seed, res.Anomalies)
		}
		lin, err := CheckLinearizable(h, LinearOptions{WindowOps: 50, Timeout: 20 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if lin[0].Result != "Ok" || lin[0].Windows < 5 {
			t.Fatalf("seed %d: clean history: %+v", seed, lin[0])
		}
	}
	for seed := int64(1); seed <= 5; seed++ {
		h := simulate(seed, 5, 3, 400, true)
		lin, err := CheckLinearizable(h, LinearOptions{WindowOps: 50, Timeout: 20 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if lin[0].Result != "Illegal" {
			t.Fatalf("seed %d: the stale read was not caught: %+v", seed, lin[0])
		}
		if res := Check(h); !res.Valid {
			t.Fatalf("seed %d: only porcupine should see a stale read: %v", seed, res.Anomalies)
		}
	}
}
