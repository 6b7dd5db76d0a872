package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/weir-streaming/weir/api"
	"github.com/weir-streaming/weir/record"
)

// run runs the weir command line in-process.
func run(t *testing.T, stdin string, args ...string) (status int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	status = Run(args, Streams{In: strings.NewReader(stdin), Out: &out, Err: &errb})
	return status, out.String(), errb.String()
}

func TestExitCodes_Usage(t *testing.T) {
	home := t.TempDir()
	for _, args := range [][]string{
		{},
		{"--bogus"},
		{"topic", "create", "x", "-p", "abc"},
		{"topic", "create"},
		{"consume", "t", "-B", "--start", "3"}, // start positions exclude each other
		{"consume", "t", "-T", "-1"},
		{"produce", "t", "--timeout", "soon"},
		{"--output", "yaml", "topic", "list"},
		{"cluster", "frobnicate"},
	} {
		status, _, stderr := run(t, "", append([]string{"--home", home}, args...)...)
		if status != ExitUsage {
			t.Errorf("weir %s: exit %d, want %d (stderr %q)", strings.Join(args, " "), status, ExitUsage, stderr)
		}
	}
}

func TestExitCodes_VersionAndHelp(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}, {"--help"}, {"topic", "create", "--help"}} {
		status, stdout, _ := run(t, "", args...)
		if status != ExitOK || stdout == "" {
			t.Errorf("weir %s: exit %d, output %q", strings.Join(args, " "), status, stdout)
		}
	}
	_, stdout, _ := run(t, "", "version")
	if !strings.HasPrefix(stdout, "weir ") {
		t.Errorf("version printed %q", stdout)
	}
}

func TestExitCodes_UnreachableIsFailure(t *testing.T) {
	status, _, stderr := run(t, "", "--addr", closedAddr(t), "topic", "list")
	if status != ExitFailed || !strings.Contains(stderr, "error: no node answered") || !strings.Contains(stderr, "hint: ") {
		t.Fatalf("exit %d, stderr %q", status, stderr)
	}
}

func TestTopicCreate_RefusalPrintsCodeAndHint(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req api.CreateTopicRequest
		_ = json.NewDecoder(r.Body).Decode(&req)
		if req.Partitions < 1 {
			writeEnvelope(w, http.StatusBadRequest, api.CodeInvalidPartitions, "partition count 0 is out of range", "use 1 to 1024")
			return
		}
		w.WriteHeader(http.StatusCreated)
		_ = json.NewEncoder(w).Encode(api.CreateTopicResponse{Topic: api.Topic{Name: req.Name, Partitions: make([]api.PartitionInfo, req.Partitions)}, Created: true})
	}))
	defer srv.Close()
	status, _, stderr := run(t, "", "--addr", srv.URL, "topic", "create", "x", "-p", "0")
	if status != ExitFailed || !strings.Contains(stderr, "INVALID_PARTITIONS") || !strings.Contains(stderr, "hint: use 1 to 1024") {
		t.Fatalf("exit %d, stderr %q", status, stderr)
	}
	status, stdout, _ := run(t, "", "--addr", srv.URL, "topic", "create", "x", "-p", "3")
	if status != ExitOK || !strings.Contains(stdout, "created topic x with 3 partitions") {
		t.Fatalf("exit %d, stdout %q", status, stdout)
	}
}

func TestClusterDelete_RefusesWithoutTerminal(t *testing.T) {
	home := t.TempDir()
	status, stdout, _ := run(t, "", "--home", home, "cluster", "delete")
	if status != ExitOK || !strings.Contains(stdout, "nothing to delete") {
		t.Fatalf("no cluster: exit %d, %q", status, stdout)
	}
	lc, err := newLocalCluster(home, localDir(home), "/bin/false", 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := lc.save(); err != nil {
		t.Fatal(err)
	}
	status, _, stderr := run(t, "", "--home", home, "cluster", "delete")
	if status != ExitFailed || !strings.Contains(stderr, "--force") {
		t.Fatalf("exit %d, stderr %q", status, stderr)
	}
	status, _, stderr = run(t, "", "--home", home, "cluster", "delete", "--force")
	if status != ExitOK {
		t.Fatalf("--force: exit %d, stderr %q", status, stderr)
	}
	if lc, _ := loadLocalCluster(home); lc != nil {
		t.Fatal("cluster.json still there")
	}
}

// fakeNode is an in-memory stand-in for a node's produce and consume API,
// for one topic, with an idempotent producer table like the real one.
type fakeNode struct {
	mu       sync.Mutex
	parts    [][]record.Record
	last     map[string]fakeSeq // producer id → last sequence and its answer
	rr       int
	loseAcks map[uint64]bool // sequences whose first answer is lost (504 after applying)
	requests int
}

type fakeSeq struct {
	seq  uint64
	resp api.ProduceResponse
}

func newFakeNode(partitions int) *fakeNode {
	return &fakeNode{parts: make([][]record.Record, partitions), last: map[string]fakeSeq{}, loseAcks: map[uint64]bool{}}
}

func (f *fakeNode) handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/topics/{name}", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		t := api.Topic{Name: r.PathValue("name")}
		for i, p := range f.parts {
			t.Partitions = append(t.Partitions, api.PartitionInfo{Partition: i, HighWatermark: uint64(len(p))})
		}
		_ = json.NewEncoder(w).Encode(t)
	})
	mux.HandleFunc("GET /v1/topics/{name}/partitions/{p}", func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		p, _ := strconv.Atoi(r.PathValue("p"))
		_ = json.NewEncoder(w).Encode(api.PartitionInfo{Partition: p, HighWatermark: uint64(len(f.parts[p]))})
	})
	mux.HandleFunc("POST /v1/topics/{name}/records", f.produce)
	mux.HandleFunc("GET /v1/topics/{name}/partitions/{p}/records", f.consume)
	return mux
}

func (f *fakeNode) produce(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.requests++
	if r.Header.Get("Content-Type") != api.ContentTypeRecords {
		writeEnvelope(w, 400, api.CodeBadRequest, "content type", "")
		return
	}
	id := r.Header.Get(api.HeaderProducerID)
	seq, err := strconv.ParseUint(r.Header.Get(api.HeaderProducerSeq), 10, 64)
	if id == "" || err != nil {
		writeEnvelope(w, 400, api.CodeBadRequest, "producer headers", "")
		return
	}
	if prev, ok := f.last[id]; ok {
		if seq == prev.seq {
			_ = json.NewEncoder(w).Encode(prev.resp) // a retry: the original offsets
			return
		}
		if seq < prev.seq || seq != prev.seq+1 {
			writeEnvelope(w, 400, api.CodeStaleSequence, "stale", "")
			return
		}
	}
	body, _ := io.ReadAll(r.Body)
	rd := record.NewReader(body)
	var resp api.ProduceResponse
	for {
		rec, ok := rd.Next()
		if !ok {
			break
		}
		p := f.rr % len(f.parts)
		if q := r.URL.Query().Get(api.QueryPartition); q != "" {
			p, _ = strconv.Atoi(q)
		} else {
			f.rr++
		}
		f.parts[p] = append(f.parts[p], record.Record{Key: clone(rec.Key), Value: clone(rec.Value)})
		resp.Offsets = append(resp.Offsets, api.RecordPosition{Partition: p, Offset: uint64(len(f.parts[p]) - 1)})
	}
	if rd.Err() != nil {
		writeEnvelope(w, 400, api.CodeCorruptBatch, rd.Err().Error(), "")
		return
	}
	f.last[id] = fakeSeq{seq, resp}
	if f.loseAcks[seq] {
		delete(f.loseAcks, seq)
		writeEnvelope(w, http.StatusGatewayTimeout, api.CodeTimeout, "outcome unknown", "retry")
		return
	}
	_ = json.NewEncoder(w).Encode(resp)
}

func clone(b []byte) []byte {
	if b == nil {
		return nil
	}
	return append([]byte{}, b...)
}

func (f *fakeNode) consume(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p, _ := strconv.Atoi(r.PathValue("p"))
	off, _ := strconv.ParseUint(r.URL.Query().Get(api.QueryOffset), 10, 64)
	recs := f.parts[p]
	end := min(uint64(len(recs)), off+3) // small pages: several fetches per partition
	var body []byte
	for o := off; o < end; o++ {
		body = record.AppendConsumed(body, o, 1700000000000+int64(o), recs[o].Key, recs[o].Value)
	}
	w.Header().Set("Content-Type", api.ContentTypeRecords)
	w.Header().Set(api.HeaderNextOffset, strconv.FormatUint(max(end, off), 10))
	w.Header().Set(api.HeaderHighWatermark, strconv.Itoa(len(recs)))
	w.Header().Set(api.HeaderLogStart, "0")
	w.Header().Set(api.HeaderRecordCount, strconv.FormatUint(max(end, off)-off, 10))
	_, _ = w.Write(body)
}

func TestProduceConsume_ByteExactRoundTrip(t *testing.T) {
	fake := newFakeNode(1)
	srv := httptest.NewServer(fake.handler())
	defer srv.Close()
	input := "plain\n\ncrlf\r\n\xff\xfe not utf-8\n  spaced  \nlast without newline"
	status, stdout, stderr := run(t, input, "--addr", srv.URL, "produce", "t")
	if status != ExitOK || stdout != "" || stderr != "" {
		t.Fatalf("produce: exit %d, stdout %q, stderr %q", status, stdout, stderr)
	}
	status, stdout, stderr = run(t, "", "--addr", srv.URL, "consume", "t", "-B", "-d")
	if status != ExitOK {
		t.Fatalf("consume: exit %d, stderr %q", status, stderr)
	}
	if want := input + "\n"; stdout != want {
		t.Fatalf("consumed %q, want %q", stdout, want)
	}
}

func TestProduce_RetriesLostAckWithoutDuplicates(t *testing.T) {
	fake := newFakeNode(3)
	fake.loseAcks[2] = true // the second request is applied but its answer lost
	srv := httptest.NewServer(fake.handler())
	defer srv.Close()
	var in strings.Builder
	for i := 1; i <= 2500; i++ {
		fmt.Fprintf(&in, "v-%06d\n", i)
	}
	status, stdout, stderr := run(t, in.String(), "--addr", srv.URL, "--output", "json", "produce", "t")
	if status != ExitOK {
		t.Fatalf("produce: exit %d, stderr %q", status, stderr)
	}
	var sum struct{ Records, Batches int }
	if err := json.Unmarshal([]byte(stdout), &sum); err != nil || sum.Records != 2500 || sum.Batches != 3 {
		t.Fatalf("summary %q (%v)", stdout, err)
	}
	if fake.requests != 4 {
		t.Fatalf("%d requests, want 4 (3 batches, 1 retry)", fake.requests)
	}

	status, stdout, stderr = run(t, "", "--addr", srv.URL, "--output", "json", "consume", "t", "-B", "-d")
	if status != ExitOK {
		t.Fatalf("consume: exit %d, stderr %q", status, stderr)
	}
	seen := map[string]int{}
	next := map[int]uint64{}
	lastPartition := 0
	for _, line := range strings.Split(strings.TrimSuffix(stdout, "\n"), "\n") {
		var r api.ConsumedRecord
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		if r.Partition < lastPartition {
			t.Fatalf("partition %d after %d: -d reads partitions in order", r.Partition, lastPartition)
		}
		lastPartition = r.Partition
		if r.Offset != next[r.Partition] {
			t.Fatalf("partition %d: offset %d, want %d", r.Partition, r.Offset, next[r.Partition])
		}
		next[r.Partition]++
		seen[r.Value]++
	}
	if len(seen) != 2500 {
		t.Fatalf("%d distinct values, want 2500", len(seen))
	}
	for v, n := range seen {
		if n != 1 {
			t.Fatalf("%s read %d times", v, n)
		}
	}
}

func TestConsume_TailAndPartition(t *testing.T) {
	fake := newFakeNode(2)
	srv := httptest.NewServer(fake.handler())
	defer srv.Close()
	if status, _, stderr := run(t, "a\nb\nc\nd\ne\n", "--addr", srv.URL, "produce", "t", "-p", "1"); status != ExitOK {
		t.Fatalf("produce: %s", stderr)
	}
	fake.mu.Lock()
	n := len(fake.parts[1])
	fake.mu.Unlock()
	if n != 5 {
		t.Fatalf("partition 1 holds %d records", n)
	}
	status, stdout, stderr := run(t, "", "--addr", srv.URL, "consume", "t", "-T", "2", "-d")
	if status != ExitOK || stdout != "d\ne\n" {
		t.Fatalf("-T 2: exit %d, %q, %q", status, stdout, stderr)
	}
	status, stdout, _ = run(t, "", "--addr", srv.URL, "consume", "t", "--start", "3", "-d")
	if status != ExitOK || stdout != "d\ne\n" {
		t.Fatalf("--start 3: exit %d, %q", status, stdout)
	}
	status, stdout, _ = run(t, "", "--addr", srv.URL, "consume", "t", "-p", "1", "-B", "-d")
	if status != ExitOK || stdout != "a\nb\nc\nd\ne\n" {
		t.Fatalf("-p 1 -B: exit %d, %q", status, stdout)
	}
	status, stdout, _ = run(t, "", "--addr", srv.URL, "consume", "t", "-d")
	if status != ExitOK || stdout != "" {
		t.Fatalf("default start is the end: exit %d, %q", status, stdout)
	}
}
