package node

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/weir-streaming/weir/api"
	"github.com/weir-streaming/weir/transport"
)

const (
	testTimeout = 20 * time.Second
	fastRaft    = 50 * time.Millisecond
)

func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// testWriter sends logs to t.Log until the test ends, and drops them after
// (a goroutine that logs late must not panic the test binary).
type testWriter struct {
	t    *testing.T
	done *atomic.Bool
}

func newTestWriter(t *testing.T) testWriter {
	w := testWriter{t: t, done: new(atomic.Bool)}
	t.Cleanup(func() { w.done.Store(true) })
	return w
}

func (w testWriter) Write(p []byte) (int, error) {
	if !w.done.Load() {
		w.t.Log(string(bytes.TrimRight(p, "\n")))
	}
	return len(p), nil
}

func testConfig(t *testing.T, id string) Config {
	return Config{
		ID:                 id,
		DataDir:            t.TempDir(),
		APIAddr:            "127.0.0.1:0",
		ClusterAddr:        "127.0.0.1:0",
		GossipAddr:         "127.0.0.1:0",
		HeartbeatTimeout:   fastRaft,
		ElectionTimeout:    fastRaft,
		LeaderLeaseTimeout: fastRaft,
		CommitTimeout:      5 * time.Millisecond,
		GossipInterval:     20 * time.Millisecond,
		Logger:             hclog.New(&hclog.LoggerOptions{Name: id, Level: testLogLevel, Output: newTestWriter(t)}),
	}
}

func newTestNode(t *testing.T, id string, mod func(*Config)) *Node {
	t.Helper()
	cfg := testConfig(t, id)
	if mod != nil {
		mod(&cfg)
	}
	n, err := New(cfg)
	if err != nil {
		t.Fatalf("start %s: %v", id, err)
	}
	t.Cleanup(func() { n.Close() })
	return n
}

type testCluster struct {
	t      *testing.T
	nodes  []*Node
	faults *transport.Faults
}

// newTestCluster starts n nodes that find each other by gossip and bootstrap
// with --bootstrap-expect n.
func newTestCluster(t *testing.T, size int) *testCluster {
	t.Helper()
	c := &testCluster{t: t, faults: transport.NewFaults()}
	first := newTestNode(t, "n1", func(cfg *Config) { cfg.BootstrapExpect = size; cfg.Faults = c.faults })
	c.nodes = append(c.nodes, first)
	for i := 2; i <= size; i++ {
		c.nodes = append(c.nodes, newTestNode(t, fmt.Sprint("n", i), func(cfg *Config) {
			cfg.BootstrapExpect = size
			cfg.Join = []string{first.GossipAddr()}
			cfg.Faults = c.faults
		}))
	}
	c.waitReady(c.nodes)
	return c
}

// waitReady waits until every node knows a leader, the cluster is
// initialized and every node serves.
func (c *testCluster) waitReady(nodes []*Node) {
	c.t.Helper()
	waitFor(c.t, testTimeout, "every node serving", func() bool {
		for _, n := range nodes {
			cs, _ := n.fsm.Cluster()
			if !n.serving(cs) {
				return false
			}
		}
		return true
	})
}

func (c *testCluster) leader(among []*Node) *Node {
	c.t.Helper()
	var l *Node
	waitFor(c.t, testTimeout, "a leader", func() bool {
		for _, n := range among {
			if n.raft.State() == raft.Leader {
				l = n
				return true
			}
		}
		return false
	})
	return l
}

func (c *testCluster) followers(leader *Node) []*Node {
	var out []*Node
	for _, n := range c.nodes {
		if n != leader {
			out = append(out, n)
		}
	}
	return out
}

func do(t *testing.T, method, url string, body any, out any) (int, api.ErrorBody) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, url, rd)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, _ := io.ReadAll(resp.Body)
	if resp.StatusCode >= 300 {
		var e api.ErrorResponse
		if err := json.Unmarshal(data, &e); err != nil || e.Error.Code == "" {
			t.Fatalf("%s %s: status %d without an error envelope: %s", method, url, resp.StatusCode, data)
		}
		return resp.StatusCode, e.Error
	}
	if out != nil {
		if err := json.Unmarshal(data, out); err != nil {
			t.Fatalf("%s %s: %v: %s", method, url, err, data)
		}
	}
	return resp.StatusCode, api.ErrorBody{}
}

func apiURL(n *Node, path string) string { return "http://" + n.APIAddr() + path }

func createTopic(t *testing.T, n *Node, name string, parts int) {
	t.Helper()
	if st, e := do(t, "POST", apiURL(n, "/v1/topics"), api.CreateTopicRequest{Name: name, Partitions: parts}, nil); st != http.StatusCreated {
		t.Fatalf("create topic: %d %+v", st, e)
	}
}

func produce(t *testing.T, n *Node, topic string, values ...string) api.ProduceResponse {
	t.Helper()
	var req api.ProduceRequest
	for _, v := range values {
		req.Records = append(req.Records, api.ProduceRecord{Value: v})
	}
	var out api.ProduceResponse
	if st, e := do(t, "POST", apiURL(n, "/v1/topics/"+topic+"/records"), req, &out); st != http.StatusOK {
		t.Fatalf("produce via %s: %d %+v", n.ID(), st, e)
	}
	return out
}

// consumeAll reads every record of every partition from one node.
func consumeAll(t *testing.T, n *Node, topic string, parts int) map[int][]string {
	t.Helper()
	out := map[int][]string{}
	for p := 0; p < parts; p++ {
		off := uint64(0)
		for {
			var res api.ConsumeResponse
			st, e := do(t, "GET", apiURL(n, fmt.Sprintf("/v1/topics/%s/partitions/%d/records?offset=%d", topic, p, off)), nil, &res)
			if st != http.StatusOK {
				t.Fatalf("consume from %s: %d %+v", n.ID(), st, e)
			}
			for _, r := range res.Records {
				if r.Offset != off {
					t.Fatalf("partition %d: offset %d where %d was next", p, r.Offset, off)
				}
				out[p] = append(out[p], r.Value)
				off++
			}
			if len(res.Records) == 0 {
				break
			}
		}
	}
	return out
}

func TestCluster_ElectsLeaderAndInitializes(t *testing.T) {
	c := newTestCluster(t, 3)
	l := c.leader(c.nodes)
	id := l.clusterID()
	if len(id) != 32 {
		t.Fatalf("cluster id %q", id)
	}
	for _, n := range c.nodes {
		if n.clusterID() != id {
			t.Fatalf("%s has cluster id %q, leader %q", n.ID(), n.clusterID(), id)
		}
	}
	var st api.StatusResponse
	do(t, "GET", apiURL(c.nodes[1], "/v1/status"), nil, &st)
	if st.Phase != "running" || st.Leader != l.ID() || len(st.Nodes) != 3 || st.ActiveVersion == "" {
		t.Fatalf("status %+v", st)
	}
	voters := 0
	for _, ns := range st.Nodes {
		if ns.RaftSuffrage == "voter" {
			voters++
		}
	}
	if voters != 3 {
		t.Fatalf("%d voters in %+v", voters, st.Nodes)
	}
}

func TestCluster_WritesThroughFollower(t *testing.T) {
	c := newTestCluster(t, 3)
	f := c.followers(c.leader(c.nodes))[0]
	createTopic(t, f, "events", 3)
	res := produce(t, f, "events", "a", "b", "c", "d")
	if len(res.Offsets) != 4 {
		t.Fatalf("offsets %+v", res.Offsets)
	}
	// Idempotent create through another follower.
	var ct api.CreateTopicResponse
	if st, _ := do(t, "POST", apiURL(c.nodes[2], "/v1/topics"), api.CreateTopicRequest{Name: "events", Partitions: 3}, &ct); st != http.StatusOK || ct.Created {
		t.Fatalf("re-create with the same settings: %d %+v", st, ct)
	}
	if st, e := do(t, "POST", apiURL(c.nodes[2], "/v1/topics"), api.CreateTopicRequest{Name: "events", Partitions: 2}, nil); st != http.StatusConflict || e.Code != api.CodeTopicExists || e.Hint == "" {
		t.Fatalf("re-create with other settings: %d %+v", st, e)
	}
	waitEqualState(t, c.nodes)
	for _, n := range c.nodes {
		got := consumeAll(t, n, "events", 3)
		total := len(got[0]) + len(got[1]) + len(got[2])
		if total != 4 {
			t.Fatalf("%s holds %d records: %v", n.ID(), total, got)
		}
	}
}

func waitEqualState(t *testing.T, nodes []*Node) {
	t.Helper()
	waitFor(t, testTimeout, "equal state on every node", func() bool {
		want := ""
		for i, n := range nodes {
			h, err := n.fsm.StateHash()
			if err != nil {
				return false
			}
			if i == 0 {
				want = h
			} else if h != want {
				return false
			}
		}
		return true
	})
}

func TestCluster_KillLeaderKeepWriting(t *testing.T) {
	c := newTestCluster(t, 3)
	l := c.leader(c.nodes)
	createTopic(t, l, "t", 1)
	produce(t, l, "t", "before")
	rest := c.followers(l)
	l.Close()
	c.leader(rest)
	res := produce(t, rest[0], "t", "after")
	if res.Offsets[0].Offset != 1 {
		t.Fatalf("offset after failover %+v", res.Offsets)
	}
	waitEqualState(t, rest)
	if got := consumeAll(t, rest[1], "t", 1)[0]; fmt.Sprint(got) != "[before after]" {
		t.Fatalf("records %v", got)
	}
}

// restartConfig reuses a stopped node's data dir and addresses.
func restartConfig(n *Node) func(*Config) {
	return func(cfg *Config) {
		old := n.cfg
		cfg.DataDir = old.DataDir
		cfg.APIAddr = n.APIAddr()
		cfg.ClusterAddr = n.ClusterAddr()
		cfg.GossipAddr = n.GossipAddr()
		cfg.Join = old.Join
		cfg.BootstrapExpect = old.BootstrapExpect
		cfg.Faults = old.Faults
	}
}

func TestCluster_RestartedNodeCatchesUp(t *testing.T) {
	c := newTestCluster(t, 3)
	l := c.leader(c.nodes)
	createTopic(t, l, "t", 2)
	f := c.followers(l)[0]
	produce(t, l, "t", "1", "2")
	waitEqualState(t, c.nodes)
	f.Close()
	for i := 0; i < 20; i++ {
		produce(t, l, "t", strconv.Itoa(i))
	}
	back := newTestNode(t, f.ID(), restartConfig(f))
	nodes := append(c.followers(f), back)
	waitEqualState(t, nodes)
	got := consumeAll(t, back, "t", 2)
	if len(got[0])+len(got[1]) != 22 {
		t.Fatalf("restarted node holds %v", got)
	}
}

func TestCluster_PartitionedLeaderReplaced(t *testing.T) {
	c := newTestCluster(t, 3)
	l := c.leader(c.nodes)
	createTopic(t, l, "t", 1)
	c.faults.Isolate(l.ClusterAddr())
	rest := c.followers(l)
	nl := c.leader(rest)
	produce(t, nl, "t", "during")
	c.faults.Heal()
	waitEqualState(t, c.nodes)
	if got := consumeAll(t, l, "t", 1)[0]; fmt.Sprint(got) != "[during]" {
		t.Fatalf("old leader holds %v after healing", got)
	}
}

func TestCluster_NodeOfAnotherClusterRefused(t *testing.T) {
	c := newTestCluster(t, 3)
	other := newTestNode(t, "x1", nil) // a single-node cluster of its own
	c.waitReady([]*Node{other})
	// The seed must know its cluster's id from gossip before a stranger
	// comes: until then there is nothing to compare (and the leader still
	// would never add a node with another cluster id as a voter).
	waitFor(t, testTimeout, "cluster ids in the seed's gossip view", func() bool {
		id, n := c.nodes[0].clusterID(), 0
		for _, p := range c.nodes[0].peers() {
			if p.ClusterID == id {
				n++
			}
		}
		return n == 3
	})
	if other.clusterID() == c.nodes[0].clusterID() {
		t.Fatal("two clusters share an id")
	}
	dir := other.cfg.DataDir
	other.Close()
	cfg := testConfig(t, "x1")
	cfg.DataDir = dir
	cfg.Join = []string{c.nodes[0].GossipAddr()}
	n, err := New(cfg)
	if err == nil {
		n.Close()
		t.Fatal("a node of another cluster joined")
	}
	if !errors.Is(err, ErrWrongCluster) {
		t.Fatalf("refusal %v, want ErrWrongCluster", err)
	}
	t.Logf("refused as expected: %v", err)
}

func TestConfig_Refusals(t *testing.T) {
	cfg := testConfig(t, "n")
	cfg.APIAddr = "0.0.0.0:0"
	if _, err := New(cfg); !errors.Is(err, ErrConfig) {
		t.Fatalf("0.0.0.0 without advertise: %v", err)
	}
	cfg = testConfig(t, "n")
	cfg.DataDir = "/proc/weir-cannot-write"
	if _, err := New(cfg); !errors.Is(err, ErrConfig) {
		t.Fatalf("unwritable data dir: %v", err)
	}
}

func TestAPI_BadInput(t *testing.T) {
	n := newTestNode(t, "n1", nil)
	(&testCluster{t: t}).waitReady([]*Node{n})
	createTopic(t, n, "t", 1)
	post := func(path, ctype string, body []byte) (int, api.ErrorBody) {
		resp, err := http.Post(apiURL(n, path), ctype, bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var e api.ErrorResponse
		json.NewDecoder(resp.Body).Decode(&e)
		return resp.StatusCode, e.Error
	}
	for _, tc := range []struct {
		name, path, ctype, body string
		code                    string
	}{
		{"malformed json", "/v1/topics", "application/json", `{"name":`, api.CodeBadRequest},
		{"unknown field", "/v1/topics", "application/json", `{"nme":"x","partitions":1}`, api.CodeBadRequest},
		{"bad name", "/v1/topics", "application/json", `{"name":"a b","partitions":1}`, api.CodeInvalidTopicName},
		{"zero partitions", "/v1/topics", "application/json", `{"name":"z","partitions":0}`, api.CodeInvalidPartitions},
		{"unknown topic", "/v1/topics/nope/records", "application/json", `{"records":[{"value":"x"}]}`, api.CodeUnknownTopic},
		{"unknown partition", "/v1/topics/t/records?partition=3", "application/json", `{"records":[{"value":"x"}]}`, api.CodeUnknownPartition},
		{"truncated binary", "/v1/topics/t/records", api.ContentTypeRecords, "\x05ab", api.CodeCorruptBatch},
		{"empty", "/v1/topics/t/records", "application/json", `{"records":[]}`, api.CodeBadRequest},
		{"record too large", "/v1/topics/t/records", "application/json", `{"records":[{"value":"` + string(bytes.Repeat([]byte("x"), 1<<20+1)) + `"}]}`, api.CodeRecordTooLarge},
	} {
		st, e := post(tc.path, tc.ctype, []byte(tc.body))
		if e.Code != tc.code || st < 400 || e.Message == "" {
			t.Errorf("%s: %d %+v, want %s", tc.name, st, e, tc.code)
		}
	}
	for _, tc := range []struct{ path, code string }{
		{"/v1/topics/t/partitions/0/records?offset=5", api.CodeOffsetOutOfRange},
		{"/v1/topics/t/partitions/9/records?offset=0", api.CodeUnknownPartition},
		{"/v1/topics/t/partitions/0/records?offset=x", api.CodeBadRequest},
		{"/v1/nope", api.CodeNotFound},
	} {
		if st, e := do(t, "GET", apiURL(n, tc.path), nil, nil); e.Code != tc.code {
			t.Errorf("GET %s: %d %+v, want %s", tc.path, st, e, tc.code)
		}
	}
	if got := consumeAll(t, n, "t", 1)[0]; len(got) != 0 {
		t.Fatalf("bad input wrote %v", got)
	}
}

// testLogLevel is Warn; WEIR_TEST_LOG=info|debug shows more.
var testLogLevel = func() hclog.Level {
	if l := hclog.LevelFromString(os.Getenv("WEIR_TEST_LOG")); l != hclog.NoLevel {
		return l
	}
	return hclog.Warn
}()
