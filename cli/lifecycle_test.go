package cli

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"hash/crc32"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weir-streaming/weir/api"
	"github.com/weir-streaming/weir/fsm"
)

// snapshotBytes writes a backup file's bytes as fsm lays them out: header
// (magic, format, cluster id, applied index, body length), body, CRC-32C.
func snapshotBytes(format uint16, clusterID string, applied uint64, body []byte) []byte {
	var b bytes.Buffer
	b.WriteString("WEIRSNAP")
	_ = binary.Write(&b, binary.BigEndian, format)
	b.WriteByte(byte(len(clusterID)))
	b.WriteString(clusterID)
	_ = binary.Write(&b, binary.BigEndian, applied)
	_ = binary.Write(&b, binary.BigEndian, uint64(len(body)))
	b.Write(body)
	sum := crc32.Checksum(b.Bytes(), crc32.MakeTable(crc32.Castagnoli))
	_ = binary.Write(&b, binary.BigEndian, sum)
	return b.Bytes()
}

func TestSnapshotBytes_MatchFSMFormat(t *testing.T) {
	path := filepath.Join(t.TempDir(), "b.snap")
	if err := os.WriteFile(path, snapshotBytes(1, "c1", 42, bytes.Repeat([]byte("x"), 1000)), 0o600); err != nil {
		t.Fatal(err)
	}
	h, err := fsm.ReadSnapshotFile(path)
	if err != nil || h.ClusterID != "c1" || h.AppliedIndex != 42 || h.BodyBytes != 1000 {
		t.Fatalf("header %+v, %v", h, err)
	}
}

// lifecycleServer is a fake node answering the lifecycle API from handlers
// a test sets; it records the lifecycle requests it gets.
type lifecycleServer struct {
	mu       sync.Mutex
	requests map[string][]api.LifecycleRequest
	handlers map[string]http.HandlerFunc // "METHOD /path"
}

func newLifecycleServer(t *testing.T) (*lifecycleServer, *httptest.Server) {
	ls := &lifecycleServer{requests: map[string][]api.LifecycleRequest{}, handlers: map[string]http.HandlerFunc{}}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			var req api.LifecycleRequest
			_ = json.NewDecoder(r.Body).Decode(&req)
			ls.mu.Lock()
			ls.requests[r.URL.Path] = append(ls.requests[r.URL.Path], req)
			ls.mu.Unlock()
		}
		ls.mu.Lock()
		h := ls.handlers[r.Method+" "+r.URL.Path]
		ls.mu.Unlock()
		if h == nil {
			writeEnvelope(w, http.StatusNotFound, api.CodeNotFound, "no route", "")
			return
		}
		h(w, r)
	}))
	t.Cleanup(srv.Close)
	return ls, srv
}

func (ls *lifecycleServer) handle(route string, h http.HandlerFunc) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	ls.handlers[route] = h
}

func (ls *lifecycleServer) posts(path string) []api.LifecycleRequest {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	return append([]api.LifecycleRequest(nil), ls.requests[path]...)
}

func answer(v any) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(v)
	}
}

func blockedPlan() api.UpgradePlan {
	return api.UpgradePlan{
		ClusterID: "c1", Phase: "running", ActiveVersion: "0.1.0", TargetVersion: "0.2.0",
		Nodes: []api.PlanNode{
			{ID: "node1", BinaryVersion: "0.2.0", MinCompatible: "0.1.0", Role: "leader", Health: "alive", Ready: true},
			{ID: "node2", BinaryVersion: "0.1.0", MinCompatible: "0.0.0", Role: "follower", Health: "alive"},
		},
		Blockers: []api.Blocker{
			{Code: api.CodeWrongPhase, Message: "the cluster is running", Hint: `run "weir cluster shutdown" first, or pass --force`},
			{Node: "node2", Code: api.CodeVersionRefused, Message: "node node2 runs weir 0.1.0, older than the upgrade target 0.2.0.", Hint: "install weir 0.2.0 on node node2 and restart it"},
		},
	}
}

func okPlan() api.UpgradePlan {
	p := blockedPlan()
	p.Phase, p.Blockers, p.OK = "shutdown", []api.Blocker{}, true
	p.Nodes[1].BinaryVersion, p.Nodes[1].MinCompatible, p.Nodes[1].Ready = "0.2.0", "0.1.0", true
	return p
}

func TestPrintPlan_NodesAndEveryBlockerWithItsFix(t *testing.T) {
	var out bytes.Buffer
	plan := blockedPlan()
	printPlan(&Printer{w: &out}, &plan)
	text := out.String()
	for _, want := range []string{
		"Upgrade plan for cluster c1 (phase running)",
		"active version:  0.1.0",
		"target version:  0.2.0",
		"NODE   ROLE      BINARY  RUNS ACTIVE  HEALTH  READY",
		"node1  leader    0.2.0   >= 0.1.0     alive   yes",
		"node2  follower  0.1.0   >= 0.0.0     alive   no",
		"Blockers (2)",
		"- [WRONG_PHASE] the cluster is running",
		`fix: run "weir cluster shutdown" first, or pass --force`,
		"- [VERSION_REFUSED] node2: node node2 runs weir 0.1.0",
		"fix: install weir 0.2.0 on node node2 and restart it",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("plan lacks %q:\n%s", want, text)
		}
	}
	out.Reset()
	plan = okPlan()
	printPlan(&Printer{w: &out}, &plan)
	if !strings.Contains(out.String(), "No blockers") || strings.Contains(out.String(), "fix:") {
		t.Errorf("ok plan:\n%s", out.String())
	}
}

func TestUpgrade_BlockedPlanRefusesWithoutMarking(t *testing.T) {
	ls, srv := newLifecycleServer(t)
	ls.handle("GET "+api.PathUpgrade, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Query().Get("to") != "0.2.0" || r.URL.Query().Get("force") != "false" {
			t.Errorf("plan asked with %s", r.URL.RawQuery)
		}
		answer(blockedPlan())(w, r)
	})
	for _, args := range [][]string{{"--dry-run"}, {"--yes"}} {
		status, stdout, stderr := run(t, "", append([]string{"--addr", srv.URL, "cluster", "upgrade", "--to", "0.2.0"}, args...)...)
		if status != ExitFailed || !strings.Contains(stdout, "[WRONG_PHASE]") ||
			!strings.Contains(stderr, "error: upgrade to 0.2.0 refused: the cluster is running (WRONG_PHASE); node node2 runs weir 0.1.0") ||
			!strings.Contains(stderr, `hint: run "weir cluster shutdown" first`) {
			t.Errorf("upgrade %v: exit %d\nstdout:\n%s\nstderr:\n%s", args, status, stdout, stderr)
		}
	}
	if posts := ls.posts(api.PathUpgrade); len(posts) != 0 {
		t.Fatalf("a blocked plan was marked: %+v", posts)
	}
}

func TestUpgrade_DryRunJSONIsThePlan(t *testing.T) {
	ls, srv := newLifecycleServer(t)
	ls.handle("GET "+api.PathUpgrade, answer(okPlan()))
	status, stdout, stderr := run(t, "", "--addr", srv.URL, "--output", "json", "cluster", "upgrade", "--to", "0.2.0", "--dry-run")
	var plan api.UpgradePlan
	if status != ExitOK || json.Unmarshal([]byte(stdout), &plan) != nil || !plan.OK || len(plan.Nodes) != 2 {
		t.Fatalf("exit %d, plan %+v\nstdout:\n%s\nstderr:\n%s", status, plan, stdout, stderr)
	}
	if len(ls.posts(api.PathUpgrade)) != 0 {
		t.Fatal("a dry run marked the upgrade")
	}
}

func TestUpgrade_MarksWithYes(t *testing.T) {
	ls, srv := newLifecycleServer(t)
	ls.handle("GET "+api.PathUpgrade, answer(okPlan()))
	ls.handle("POST "+api.PathUpgrade, answer(api.LifecycleResponse{Phase: "upgrade-marked", ActiveVersion: "0.1.0", TargetVersion: "0.2.0",
		Message: "upgrade: shutdown@0.1.0 -> upgrade-marked@0.1.0->0.2.0"}))
	// Standard input is not a terminal: no question even without --yes.
	status, stdout, stderr := run(t, "", "--addr", srv.URL, "cluster", "upgrade", "--to", "0.2.0")
	if status != ExitOK || !strings.Contains(stdout, "marked the cluster for upgrade: 0.1.0 → 0.2.0") || !strings.Contains(stdout, "next: weir cluster resume") {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", status, stdout, stderr)
	}
	posts := ls.posts(api.PathUpgrade)
	if len(posts) != 1 || posts[0].To != "0.2.0" || posts[0].Force || !strings.HasPrefix(posts[0].RequestID, "cli-") || !strings.Contains(posts[0].By, "@") {
		t.Fatalf("marked with %+v", posts)
	}
	run(t, "", "--addr", srv.URL, "cluster", "upgrade", "--to", "0.2.0", "--force")
	if posts := ls.posts(api.PathUpgrade); len(posts) != 2 || !posts[1].Force || posts[1].RequestID == posts[0].RequestID {
		t.Fatalf("second mark %+v: want --force and a new request id", posts)
	}
}

func TestUpgrade_RefusalFromTheNodeIsPrinted(t *testing.T) {
	ls, srv := newLifecycleServer(t)
	ls.handle("GET "+api.PathUpgrade, answer(okPlan()))
	ls.handle("POST "+api.PathUpgrade, func(w http.ResponseWriter, r *http.Request) {
		writeEnvelope(w, http.StatusConflict, api.CodeWrongPhase, "upgrade refused: the cluster is resuming", `let "weir cluster resume" finish`)
	})
	status, _, stderr := run(t, "", "--addr", srv.URL, "cluster", "upgrade", "--yes")
	if status != ExitFailed || !strings.Contains(stderr, "(WRONG_PHASE)") || !strings.Contains(stderr, "hint: let") {
		t.Fatalf("exit %d, stderr %q", status, stderr)
	}
}

func TestPrintHistory_Table(t *testing.T) {
	at := time.Date(2025, 3, 1, 12, 30, 0, 0, time.UTC).UnixMilli()
	var out bytes.Buffer
	printHistory(&Printer{w: &out}, []api.HistoryEntry{
		{Index: 9, Command: "shutdown", RequestID: "cli-1", By: "ann@box", At: at, From: "running@0.1.0", To: "shutdown@0.1.0"},
		{Index: 12, Command: "node-resumed", RequestID: "resumed-node2-19", By: "node1", At: at + 2000, From: "resuming@0.1.0->0.2.0", To: "resuming@0.1.0->0.2.0", Detail: "node node2"},
	})
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("history:\n%s", out.String())
	}
	for i, want := range [][]string{
		{"TIME", "COMMAND", "BY", "FROM → TO", "DETAIL", "REQUEST"},
		{"2025-03-01T12:30:00Z", "shutdown", "ann@box", "running@0.1.0 → shutdown@0.1.0", "-", "cli-1"},
		{"2025-03-01T12:30:02Z", "node-resumed", "node1", "resuming@0.1.0->0.2.0 → resuming@0.1.0->0.2.0", "node node2", "resumed-node2-19"},
	} {
		for _, w := range want {
			if !strings.Contains(lines[i], w) {
				t.Errorf("line %d %q lacks %q", i, lines[i], w)
			}
		}
	}
	out.Reset()
	printHistory(&Printer{w: &out}, nil)
	if !strings.Contains(out.String(), "no lifecycle command") {
		t.Errorf("empty history: %q", out.String())
	}
}

func TestShutdown_MissingVoterFails(t *testing.T) {
	ls, srv := newLifecycleServer(t)
	ls.handle("POST "+api.PathShutdown, answer(api.LifecycleResponse{Phase: "shutdown", ActiveVersion: "0.1.0",
		Message: "shutdown: running@0.1.0 -> shutdown@0.1.0", Quiesced: []string{"node1", "node2"}, Missing: []string{"node3"}}))
	status, stdout, stderr := run(t, "", "--addr", srv.URL, "cluster", "shutdown", "--timeout", "3s")
	if status != ExitFailed || !strings.Contains(stdout, "acknowledged by node1, node2") ||
		!strings.Contains(stderr, "not every voter acknowledged the shutdown within 3s: missing node3") {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", status, stdout, stderr)
	}
	if posts := ls.posts(api.PathShutdown); len(posts) != 1 || posts[0].WaitMs != 3000 {
		t.Fatalf("shutdown sent %+v", posts)
	}
}

func TestShutdown_AllAcknowledged(t *testing.T) {
	ls, srv := newLifecycleServer(t)
	ls.handle("POST "+api.PathShutdown, answer(api.LifecycleResponse{Phase: "shutdown", ActiveVersion: "0.1.0", Noop: true,
		Message: "the cluster is already shut down; nothing changed", Quiesced: []string{"node1"}}))
	status, stdout, _ := run(t, "", "--addr", srv.URL, "cluster", "shutdown")
	if status != ExitOK || !strings.Contains(stdout, "already shut down") || !strings.Contains(stdout, "weir cluster upgrade") {
		t.Fatalf("exit %d\n%s", status, stdout)
	}
}

// statusSequence answers GET /v1/status with each status in turn, then the
// last one forever.
func statusSequence(sts ...api.StatusResponse) http.HandlerFunc {
	var mu sync.Mutex
	i := 0
	return func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		st := sts[min(i, len(sts)-1)]
		i++
		mu.Unlock()
		answer(st)(w, r)
	}
}

func voters(ids ...string) []api.NodeStatus {
	out := make([]api.NodeStatus, len(ids))
	for i, id := range ids {
		out[i] = api.NodeStatus{ID: id, RaftSuffrage: "voter", GossipState: "alive", BinaryVersion: "0.2.0", Serving: true}
	}
	return out
}

func TestResume_PrintsProgressUntilRunning(t *testing.T) {
	ls, srv := newLifecycleServer(t)
	nodes := voters("node1", "node2", "node3")
	marked := api.StatusResponse{Phase: "upgrade-marked", ActiveVersion: "0.1.0", TargetVersion: "0.2.0", Leader: "node1", Nodes: nodes}
	resuming := func(resumed ...string) api.StatusResponse {
		return api.StatusResponse{Phase: "resuming", ActiveVersion: "0.1.0", TargetVersion: "0.2.0", Leader: "node1", Nodes: nodes, Resumed: resumed}
	}
	// The phase is running before node1's gossip says it serves again:
	// "resume complete" waits for that.
	lagging := voters("node1", "node2", "node3")
	lagging[0].Serving = false
	ls.handle("GET "+api.PathStatus, statusSequence(marked, resuming(), resuming("node2"), resuming("node2", "node3"),
		api.StatusResponse{Phase: "running", ActiveVersion: "0.2.0", Leader: "node2", Nodes: lagging, Gates: []string{"batch-crc32c"}},
		api.StatusResponse{Phase: "running", ActiveVersion: "0.2.0", Leader: "node2", Nodes: nodes, Gates: []string{"batch-crc32c"}}))
	ls.handle("POST "+api.PathResume, answer(api.LifecycleResponse{Phase: "resuming", ActiveVersion: "0.1.0", TargetVersion: "0.2.0",
		Message: "resume: upgrade-marked@0.1.0->0.2.0 -> resuming@0.1.0->0.2.0"}))
	status, stdout, stderr := run(t, "", "--addr", srv.URL, "cluster", "resume", "--gate-timeout", "90s")
	if status != ExitOK {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", status, stdout, stderr)
	}
	for _, want := range []string{"resumed node2 (1/3)", "resumed node3 (2/3)", "resumed node1 (3/3)", "resume complete: active version 0.2.0",
		"running version 0.2.0 (gates open: batch-crc32c)", "next:"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("stdout lacks %q:\n%s", want, stdout)
		}
	}
	if posts := ls.posts(api.PathResume); len(posts) != 1 || posts[0].GateTimeoutMs != 90000 {
		t.Fatalf("resume sent %+v", posts)
	}
}

func TestResume_HaltFailsWithReasonAndStaleHaltIsIgnored(t *testing.T) {
	ls, srv := newLifecycleServer(t)
	nodes := voters("node1", "node2", "node3")
	old := &api.Halt{Node: "node3", Reason: "node node3 is dead in gossip", At: 1}
	halted := api.StatusResponse{Phase: "resuming", TargetVersion: "0.2.0", Nodes: nodes, Halted: old, Resumed: []string{"node2"}}
	fresh := halted
	fresh.Halted = &api.Halt{Node: "node3", Reason: "node node3 runs weir 0.1.0, the target is 0.2.0", At: 2}
	// The status before the resume and one lagging answer after it still
	// show the old halt; only the new one ends the command.
	ls.handle("GET "+api.PathStatus, statusSequence(halted, halted, fresh))
	ls.handle("POST "+api.PathResume, answer(api.LifecycleResponse{Phase: "resuming", TargetVersion: "0.2.0", Message: "resume: continued"}))
	status, stdout, stderr := run(t, "", "--addr", srv.URL, "cluster", "resume")
	if status != ExitFailed || !strings.Contains(stderr, "the rolling resume halted at node node3: node node3 runs weir 0.1.0") ||
		!strings.Contains(stderr, `"weir cluster resume" to continue`) || strings.Contains(stdout+stderr, "dead in gossip") {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", status, stdout, stderr)
	}
}

func TestResume_TimeoutNamesNodesNotResumed(t *testing.T) {
	ls, srv := newLifecycleServer(t)
	st := api.StatusResponse{Phase: "resuming", TargetVersion: "0.2.0", Nodes: voters("node1", "node2", "node3"), Resumed: []string{"node2"}}
	ls.handle("GET "+api.PathStatus, answer(st))
	ls.handle("POST "+api.PathResume, answer(api.LifecycleResponse{Phase: "resuming", TargetVersion: "0.2.0"}))
	status, _, stderr := run(t, "", "--addr", srv.URL, "cluster", "resume", "--timeout", "1s")
	if status != ExitFailed || !strings.Contains(stderr, "not yet resumed: node1, node3") {
		t.Fatalf("exit %d, stderr %q", status, stderr)
	}
}

func TestResume_AlreadyRunningIsNoop(t *testing.T) {
	ls, srv := newLifecycleServer(t)
	ls.handle("GET "+api.PathStatus, answer(api.StatusResponse{Phase: "running", ActiveVersion: "0.2.0"}))
	ls.handle("POST "+api.PathResume, answer(api.LifecycleResponse{Phase: "running", ActiveVersion: "0.2.0", Noop: true,
		Message: "the cluster is already running version 0.2.0; nothing changed"}))
	status, stdout, _ := run(t, "", "--addr", srv.URL, "cluster", "resume")
	if status != ExitOK || !strings.Contains(stdout, "already running version 0.2.0") {
		t.Fatalf("exit %d, %q", status, stdout)
	}
}

func TestRollback_PrintsNextStep(t *testing.T) {
	ls, srv := newLifecycleServer(t)
	ls.handle("POST "+api.PathRollback, answer(api.LifecycleResponse{Phase: "shutdown", ActiveVersion: "0.1.0",
		Message: "rollback: upgrade-marked@0.1.0->0.2.0 -> shutdown@0.1.0"}))
	status, stdout, _ := run(t, "", "--addr", srv.URL, "cluster", "rollback")
	if status != ExitOK || !strings.Contains(stdout, "phase shutdown on version 0.1.0") || !strings.Contains(stdout, "next: weir cluster resume") {
		t.Fatalf("exit %d\n%s", status, stdout)
	}
	ls.handle("POST "+api.PathRollback, func(w http.ResponseWriter, r *http.Request) {
		writeEnvelope(w, http.StatusConflict, api.CodeWrongPhase, "cannot rollback: the cluster is running", `the upgrade is finalized; to go back, restore a backup taken before it with "weir cluster restore"`)
	})
	status, _, stderr := run(t, "", "--addr", srv.URL, "cluster", "rollback")
	if status != ExitFailed || !strings.Contains(stderr, "WRONG_PHASE") || !strings.Contains(stderr, "weir cluster restore") {
		t.Fatalf("exit %d, %q", status, stderr)
	}
}

// backupServer streams body as a backup; with declared > 0 it announces that
// Content-Length and closes the connection early.
func backupServer(t *testing.T, body []byte, declared int) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != api.PathBackup || r.URL.Query().Get(api.QueryConsistency) != api.ConsistencyStrong {
			writeEnvelope(w, http.StatusNotFound, api.CodeNotFound, "want a strong backup read", "")
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		if declared > 0 {
			w.Header().Set("Content-Length", strconv.Itoa(declared))
		}
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestBackup_VerifiesAndKeepsOnlyAGoodFile(t *testing.T) {
	good := snapshotBytes(1, "c1", 77, bytes.Repeat([]byte("state"), 20000))
	dir := t.TempDir()
	for _, tc := range []struct {
		name     string
		body     []byte
		declared int
		ok       bool
	}{
		{"whole", good, 0, true},
		{"truncated stream", good[:len(good)/2], 0, false},
		{"connection cut", good[:len(good)/2], len(good), false},
		{"checksum", append(append([]byte(nil), good[:len(good)-1]...), good[len(good)-1]^0xff), 0, false},
		{"not a backup", []byte("<html>hello</html>"), 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := backupServer(t, tc.body, tc.declared)
			out := filepath.Join(dir, strings.ReplaceAll(tc.name, " ", "-")+".snap")
			status, stdout, stderr := run(t, "", "--addr", srv.URL, "cluster", "backup", "--out", out)
			_, statErr := os.Stat(out)
			if _, err := os.Stat(out + ".tmp"); err == nil {
				t.Errorf("%s.tmp left behind", out)
			}
			if tc.ok {
				if status != ExitOK || statErr != nil || !strings.Contains(stdout, "cluster c1, applied index 77") || !strings.Contains(stdout, "weir cluster restore --from "+out) {
					t.Fatalf("exit %d, file %v\nstdout:\n%s\nstderr:\n%s", status, statErr, stdout, stderr)
				}
				if h, err := fsm.ReadSnapshotFile(out); err != nil || h.AppliedIndex != 77 {
					t.Fatalf("kept file: %+v %v", h, err)
				}
				return
			}
			if status != ExitFailed || statErr == nil || !strings.Contains(stderr, "hint: ") {
				t.Fatalf("exit %d, file left: %v\nstderr:\n%s", status, statErr == nil, stderr)
			}
		})
	}
	// An existing backup is not overwritten without --force.
	srv := backupServer(t, good, 0)
	out := filepath.Join(dir, "whole.snap")
	if status, _, stderr := run(t, "", "--addr", srv.URL, "cluster", "backup", "--out", out); status != ExitFailed || !strings.Contains(stderr, "--force") {
		t.Fatalf("overwrite: exit %d, %q", status, stderr)
	}
	if status, _, stderr := run(t, "", "--addr", srv.URL, "cluster", "backup", "--out", out, "--force"); status != ExitOK {
		t.Fatalf("--force: exit %d, %q", status, stderr)
	}
}

// stoppedLocalCluster records a local cluster of n stopped nodes whose
// addresses answer nothing, with data in each node's data dir.
func stoppedLocalCluster(t *testing.T, home string, n int, clusterID string) *LocalCluster {
	t.Helper()
	lc, err := newLocalCluster(home, localDir(home), "/bin/false", n)
	if err != nil {
		t.Fatal(err)
	}
	for i := range lc.Nodes {
		lc.Nodes[i].APIAddr = closedAddr(t)
		if err := os.MkdirAll(lc.Nodes[i].DataDir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(lc.Nodes[i].DataDir, "state.db"), []byte("precious"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	lc.ClusterID = clusterID
	if err := lc.save(); err != nil {
		t.Fatal(err)
	}
	return lc
}

func TestRestore_RefusesBadFilesAndChangesNothing(t *testing.T) {
	dir := t.TempDir()
	good := snapshotBytes(1, "c1", 5, bytes.Repeat([]byte("s"), 5000))
	files := map[string][]byte{
		"truncated":      good[:len(good)-100],
		"corrupt":        append(append([]byte(nil), good[:100]...), append([]byte{good[100] ^ 1}, good[101:]...)...),
		"unknown-format": snapshotBytes(9, "c1", 5, []byte("body")),
		"empty":          {},
	}
	for name, data := range files {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// No local cluster: nothing may be created.
	newHome := t.TempDir()
	for name := range files {
		status, _, stderr := run(t, "", "--home", newHome, "cluster", "restore", "--from", filepath.Join(dir, name))
		if status != ExitFailed || !strings.Contains(stderr, "is not a usable backup") || !strings.Contains(stderr, "nothing was changed") {
			t.Errorf("%s: exit %d, %q", name, status, stderr)
		}
	}
	emptyDir := filepath.Join(dir, "empty-dir") // a directory, but no pre-upgrade backup in it
	if err := os.Mkdir(emptyDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if status, _, stderr := run(t, "", "--home", newHome, "cluster", "restore", "--from", emptyDir); status != ExitFailed || !strings.Contains(stderr, "is not a usable backup") {
		t.Errorf("empty directory: exit %d, %q", status, stderr)
	}
	status, _, stderr := run(t, "", "--home", newHome, "cluster", "restore", "--from", filepath.Join(dir, "missing"))
	if status != ExitFailed || !strings.Contains(stderr, "cannot read the backup") {
		t.Errorf("missing file: exit %d, %q", status, stderr)
	}
	if _, err := os.Stat(localDir(newHome)); err == nil {
		t.Fatal("a refused restore created a local cluster")
	}

	// A recorded, stopped cluster keeps its data on every refusal.
	goodPath := filepath.Join(dir, "good.snap")
	if err := os.WriteFile(goodPath, good, 0o600); err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	lc := stoppedLocalCluster(t, home, 2, "other")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--from", filepath.Join(dir, "truncated")}, "is not a usable backup"},
		{[]string{"--from", goodPath}, "is a backup of cluster c1, but the local cluster is other (WRONG_CLUSTER)"},
		{[]string{"--from", goodPath, "--nodes", "3"}, "the local cluster has 2 nodes"},
	} {
		status, _, stderr := run(t, "", append([]string{"--home", home, "cluster", "restore"}, tc.args...)...)
		if status != ExitFailed || !strings.Contains(stderr, tc.want) {
			t.Errorf("restore %v: exit %d, want %q in %q", tc.args, status, tc.want, stderr)
		}
	}
	lc.ClusterID = ""
	if err := lc.save(); err != nil {
		t.Fatal(err)
	}
	if status, _, stderr := run(t, "", "--home", home, "cluster", "restore", "--from", goodPath); status != ExitFailed || !strings.Contains(stderr, "id is not recorded") {
		t.Errorf("unrecorded id: exit %d, %q", status, stderr)
	}
	for _, n := range lc.Nodes {
		if data, err := os.ReadFile(filepath.Join(n.DataDir, "state.db")); err != nil || string(data) != "precious" {
			t.Fatalf("%s's data changed by a refused restore: %q %v", n.ID, data, err)
		}
	}

	// --addr is not a local cluster.
	status, _, stderr = run(t, "", "--home", home, "--addr", closedAddr(t), "cluster", "restore", "--from", goodPath)
	if status != ExitFailed || !strings.Contains(stderr, "local cluster only") || !strings.Contains(stderr, "--restore-from") {
		t.Errorf("--addr: exit %d, %q", status, stderr)
	}
}

func TestStatus_StoppedAfterShutdownShowsLastKnownState(t *testing.T) {
	home := t.TempDir()
	lc := stoppedLocalCluster(t, home, 3, "c1")
	if err := lc.remember("", "shutdown", "0.1.0", ""); err != nil {
		t.Fatal(err)
	}
	status, stdout, stderr := run(t, "", "--home", home, "cluster", "status")
	if status != ExitOK || !strings.Contains(stdout, "cluster c1: phase shutdown, active version 0.1.0 (last known state") ||
		!strings.Contains(stdout, "the node processes are stopped") || !strings.Contains(stdout, "weir cluster upgrade") {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", status, stdout, stderr)
	}
	status, stdout, _ = run(t, "", "--home", home, "--output", "json", "cluster", "status")
	var raw map[string]any
	if status != ExitOK || json.Unmarshal([]byte(stdout), &raw) != nil || raw["phase"] != "shutdown" || raw["active_version"] != "0.1.0" || raw["processes"] != "stopped" {
		t.Fatalf("json: exit %d, %s", status, stdout)
	}

	// Commands that need a node say why none answers and what to run.
	status, _, stderr = run(t, "", "--home", home, "topic", "list")
	if status != ExitFailed || !strings.Contains(stderr, "hint: the local cluster is shut down (version 0.1.0)") {
		t.Fatalf("topic list: exit %d, %q", status, stderr)
	}
	// A second shutdown is a no-op that says so.
	status, stdout, _ = run(t, "", "--home", home, "cluster", "shutdown")
	if status != ExitOK || !strings.Contains(stdout, "already shut down") {
		t.Fatalf("second shutdown: exit %d, %q", status, stdout)
	}

	// A running cluster that was merely stopped is reported as a failure.
	if err := lc.remember("", "running", "0.1.0", ""); err != nil {
		t.Fatal(err)
	}
	status, _, stderr = run(t, "", "--home", home, "cluster", "status")
	if status != ExitFailed || !strings.Contains(stderr, "the local cluster is stopped") {
		t.Fatalf("stopped running cluster: exit %d, %q", status, stderr)
	}
}

func TestRemember_KeepsWhatOthersRecorded(t *testing.T) {
	home := t.TempDir()
	lc := stoppedLocalCluster(t, home, 1, "c1")
	other, err := loadLocalCluster(home)
	if err != nil {
		t.Fatal(err)
	}
	other.Nodes[0].PID = 4242 // another command started the node meanwhile
	if err := other.save(); err != nil {
		t.Fatal(err)
	}
	if err := lc.remember("", "shutdown", "0.1.0", ""); err != nil {
		t.Fatal(err)
	}
	got, err := loadLocalCluster(home)
	if err != nil || got.Nodes[0].PID != 4242 || got.ClusterID != "c1" || got.LastKnown == nil || got.LastKnown.Phase != "shutdown" {
		t.Fatalf("cluster.json after remember: %+v %v", got, err)
	}
}

func TestLogTail_OnlySinceTheLastStart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "node.log")
	log := "old line 1\nold line 2\n" + logStartMarker + "2025 starting: weir node run\nerror: refusing to start: too old\n"
	if err := os.WriteFile(path, []byte(log), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := logTail(path); got != "error: refusing to start: too old" {
		t.Fatalf("tail %q", got)
	}
}

func TestResume_LaggingShutdownIsNotARollback(t *testing.T) {
	ls, srv := newLifecycleServer(t)
	nodes := voters("node1")
	shut := api.StatusResponse{Phase: "shutdown", ActiveVersion: "0.1.0", Nodes: nodes}
	// A follower that has not applied the resume yet still says shutdown.
	ls.handle("GET "+api.PathStatus, statusSequence(shut, shut, shut,
		api.StatusResponse{Phase: "resuming", ActiveVersion: "0.1.0", TargetVersion: "0.1.0", Nodes: nodes},
		api.StatusResponse{Phase: "running", ActiveVersion: "0.1.0", Nodes: nodes}))
	ls.handle("GET "+api.PathHistory, answer(api.HistoryResponse{Entries: []api.HistoryEntry{{Command: "shutdown", RequestID: "cli-old"}}}))
	ls.handle("POST "+api.PathResume, answer(api.LifecycleResponse{Phase: "resuming", ActiveVersion: "0.1.0", TargetVersion: "0.1.0"}))
	if status, stdout, stderr := run(t, "", "--addr", srv.URL, "cluster", "resume"); status != ExitOK {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", status, stdout, stderr)
	}

	// Once the history holds this resume, shutdown means it was rolled back.
	ls.handle("GET "+api.PathStatus, answer(shut))
	ls.handle("GET "+api.PathHistory, func(w http.ResponseWriter, r *http.Request) {
		posts := ls.posts(api.PathResume)
		answer(api.HistoryResponse{Entries: []api.HistoryEntry{
			{Command: "resume", RequestID: posts[len(posts)-1].RequestID},
			{Command: "rollback", RequestID: "cli-other"},
		}})(w, r)
	})
	status, _, stderr := run(t, "", "--addr", srv.URL, "cluster", "resume", "--timeout", "10s")
	if status != ExitFailed || !strings.Contains(stderr, "the resume was aborted") {
		t.Fatalf("rolled back: exit %d, %q", status, stderr)
	}
}
