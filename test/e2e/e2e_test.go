// Package e2e drives the real weir binary as processes: a local cluster
// started by `weir cluster start`, fed and read by `weir produce` and
// `weir consume`, with nodes killed underneath.
package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weir-streaming/weir/test/testenv"
)

// weirBin is the binary TestMain builds; binDir is the directory it is
// in, where tests may build other versions (see builds).
var weirBin, binDir string

// commandTimeout bounds one weir invocation; cluster start waits up to 60s
// and produce retries up to 60s per request.
const commandTimeout = 3 * time.Minute

func TestMain(m *testing.M) {
	flag.Parse()
	if testing.Short() {
		os.Exit(m.Run()) // every test here skips
	}
	dir, err := os.MkdirTemp("", "weir-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binDir, weirBin = dir, filepath.Join(dir, "weir")
	root, err := testenv.RepoRoot()
	if err == nil {
		build := exec.Command("go", "build", "-o", weirBin, "./cmd/weir")
		build.Dir = root
		var out []byte
		if out, err = build.CombinedOutput(); err != nil {
			err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// local is a local cluster under its own WEIR_HOME.
type local struct {
	t    *testing.T
	home string
}

// result is one weir invocation's outcome.
type result struct {
	code           int
	stdout, stderr []byte
}

// newLocal makes a WEIR_HOME whose cluster is stopped, and its stray
// processes killed, when the test ends however it ends.
func newLocal(t *testing.T) *local {
	t.Helper()
	if testing.Short() {
		t.Skip("e2e: runs real node processes")
	}
	l := &local{t: t, home: t.TempDir()}
	t.Cleanup(func() {
		if r := l.run(nil, "cluster", "stop"); r.code != 0 {
			t.Logf("cleanup: cluster stop: exit %d: %s", r.code, r.stderr)
		}
		for _, n := range l.nodes() {
			if alive(n.PID, n.ID) {
				t.Logf("cleanup: killing %s (pid %d)", n.ID, n.PID)
				_ = syscall.Kill(n.PID, syscall.SIGKILL)
			}
		}
		if t.Failed() {
			l.dumpLogs()
		}
	})
	return l
}

// run runs weir with stdin (nil: none) and returns its outcome.
func (l *local) run(stdin []byte, args ...string) result {
	l.t.Helper()
	return l.runBin(weirBin, stdin, args...)
}

// runBin is run with another weir binary.
func (l *local) runBin(bin string, stdin []byte, args ...string) result {
	l.t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(withoutEnv(os.Environ(), "WEIR_ADDR", "WEIR_HOME"), "WEIR_HOME="+l.home)
	if stdin != nil {
		cmd.Stdin = bytes.NewReader(stdin)
	}
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Start(); err != nil {
		l.t.Fatalf("weir %s: %v", strings.Join(args, " "), err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(commandTimeout):
		_ = cmd.Process.Kill()
		<-done
		l.t.Fatalf("weir %s: still running after %s; stderr:\n%s", strings.Join(args, " "), commandTimeout, errb.Bytes())
	}
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		l.t.Fatalf("weir %s: %v", strings.Join(args, " "), err)
	}
	return result{code: code, stdout: out.Bytes(), stderr: errb.Bytes()}
}

// must runs weir and fails the test unless it exits 0.
func (l *local) must(stdin []byte, args ...string) []byte {
	l.t.Helper()
	return l.mustBin(weirBin, stdin, args...)
}

// mustBin is must with another weir binary.
func (l *local) mustBin(bin string, stdin []byte, args ...string) []byte {
	l.t.Helper()
	start := time.Now()
	r := l.runBin(bin, stdin, args...)
	name := filepath.Base(bin)
	if r.code != 0 {
		l.t.Fatalf("%s %s: exit %d\nstdout:\n%s\nstderr:\n%s", name, strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	l.t.Logf("%s %s: ok in %s", name, strings.Join(args, " "), time.Since(start).Round(time.Millisecond))
	return r.stdout
}

// localNode is the part of cluster.json the tests read.
type localNode struct {
	ID      string `json:"id"`
	PID     int    `json:"pid"`
	Log     string `json:"log"`
	APIAddr string `json:"api_addr"`
}

func (l *local) nodes() []localNode {
	data, err := os.ReadFile(filepath.Join(l.home, "local", "cluster.json"))
	if err != nil {
		return nil
	}
	var lc struct {
		Nodes []localNode `json:"nodes"`
	}
	if err := json.Unmarshal(data, &lc); err != nil {
		l.t.Errorf("cluster.json: %v", err)
	}
	return lc.Nodes
}

// leader asks `cluster status` for the leader's id and finds its pid.
func (l *local) leader() (string, int) {
	l.t.Helper()
	var st struct {
		Leader string `json:"leader"`
	}
	if err := json.Unmarshal(l.must(nil, "cluster", "status", "--output", "json"), &st); err != nil || st.Leader == "" {
		l.t.Fatalf("status: leader %q, %v", st.Leader, err)
	}
	for _, n := range l.nodes() {
		if n.ID == st.Leader {
			return n.ID, n.PID
		}
	}
	l.t.Fatalf("leader %s is not in cluster.json", st.Leader)
	return "", 0
}

func (l *local) dumpLogs() {
	for _, n := range l.nodes() {
		data, err := os.ReadFile(n.Log)
		if err != nil {
			continue
		}
		if len(data) > 8<<10 {
			data = data[len(data)-8<<10:]
		}
		l.t.Logf("--- end of %s's log:\n%s", n.ID, data)
	}
}

// alive reports whether pid still runs node id (not a zombie, not reused).
func alive(pid int, id string) bool {
	if pid <= 0 || syscall.Kill(pid, 0) != nil {
		return false
	}
	if stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); err == nil {
		if i := bytes.LastIndexByte(stat, ')'); i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z' {
			return false
		}
	}
	if cmdline, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline"); err == nil {
		return bytes.Contains(cmdline, []byte("\x00--id\x00"+id+"\x00"))
	}
	return true
}

func withoutEnv(env []string, names ...string) []string {
	out := env[:0:0]
next:
	for _, kv := range env {
		for _, n := range names {
			if strings.HasPrefix(kv, n+"=") {
				continue next
			}
		}
		out = append(out, kv)
	}
	return out
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, deadline time.Duration, what string, cond func() bool) {
	t.Helper()
	end := time.Now().Add(deadline)
	for !cond() {
		if time.Now().After(end) {
			t.Fatalf("after %s: %s", deadline, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// values are the lines v-<from> .. v-<to>, each ending in "\n".
func values(from, to int) []byte {
	var b bytes.Buffer
	for i := from; i <= to; i++ {
		fmt.Fprintf(&b, "v-%06d\n", i)
	}
	return b.Bytes()
}

// checkConsumed asserts that a `consume -B -d --output json` holds v-1..v-n
// exactly once each, with offsets dense from 0 in every partition.
func checkConsumed(t *testing.T, out []byte, n, partitions int) {
	t.Helper()
	seen := make(map[string]bool, n)
	next := make(map[int]uint64)
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		var r struct {
			Partition int    `json:"partition"`
			Offset    uint64 `json:"offset"`
			Value     string `json:"value"`
		}
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("consume printed %q: %v", sc.Bytes(), err)
		}
		if r.Partition < 0 || r.Partition >= partitions {
			t.Fatalf("record in partition %d of %d", r.Partition, partitions)
		}
		if r.Offset != next[r.Partition] {
			t.Fatalf("partition %d: offset %d where %d was due (gap or repeat)", r.Partition, r.Offset, next[r.Partition])
		}
		next[r.Partition]++
		if seen[r.Value] {
			t.Fatalf("%s read twice", r.Value)
		}
		seen[r.Value] = true
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	missing := 0
	for i := 1; i <= n; i++ {
		if !seen[fmt.Sprintf("v-%06d", i)] {
			if missing < 5 {
				t.Errorf("v-%06d is missing", i)
			}
			missing++
		}
	}
	if missing > 0 || len(seen) != n {
		t.Fatalf("%d of %d values missing, %d read", missing, n, len(seen))
	}
	t.Logf("read %d values once each; per partition %v", n, next)
}

func TestLocalCluster_KillLeaderNoLossNoDup(t *testing.T) {
	const (
		half       = 20000
		partitions = 3
	)
	l := newLocal(t)
	l.must(nil, "cluster", "start", "--nodes", "3")
	l.must(nil, "topic", "create", "events", "-p", strconv.Itoa(partitions))
	l.must(values(1, half), "produce", "events")

	id, pid := l.leader()
	t.Logf("killing the leader %s (pid %d)", id, pid)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the killed leader still runs", func() bool { return !alive(pid, id) })

	// The CLI fails over to the survivors and retries through the election.
	l.must(values(half+1, 2*half), "produce", "events")
	checkConsumed(t, l.must(nil, "consume", "events", "-B", "-d", "--output", "json"), 2*half, partitions)

	// Stop everything, start it again on the same data: all of it is back.
	l.must(nil, "cluster", "stop")
	for _, n := range l.nodes() {
		if n.PID != 0 {
			t.Fatalf("%s still recorded with pid %d after cluster stop", n.ID, n.PID)
		}
	}
	l.must(nil, "cluster", "start")
	checkConsumed(t, l.must(nil, "consume", "events", "-B", "-d", "--output", "json"), 2*half, partitions)
}

func TestCLI_BadInput(t *testing.T) {
	l := newLocal(t)
	for _, tc := range []struct {
		args []string
		code int
	}{
		{[]string{"--no-such-flag"}, 2},
		{[]string{"topic", "create", "x", "-p", "abc"}, 2},
	} {
		if r := l.run(nil, tc.args...); r.code != tc.code {
			t.Errorf("weir %s: exit %d, want %d\n%s", strings.Join(tc.args, " "), r.code, tc.code, r.stderr)
		}
	}

	l.must(nil, "cluster", "start", "--nodes", "1")
	for _, tc := range []struct {
		args []string
		code string
	}{
		{[]string{"topic", "create", "bad name"}, "INVALID_TOPIC_NAME"},
		{[]string{"topic", "create", "x", "-p", "0"}, "INVALID_PARTITIONS"},
	} {
		r := l.run(nil, tc.args...)
		if r.code != 1 || !bytes.Contains(r.stderr, []byte(tc.code)) || !bytes.Contains(r.stderr, []byte("hint: ")) {
			t.Errorf("weir %s: exit %d, want 1 with %s and a hint\n%s", strings.Join(tc.args, " "), r.code, tc.code, r.stderr)
		}
	}
	// Refusals changed nothing.
	if out := l.must(nil, "topic", "list", "--output", "json"); bytes.Contains(out, []byte(`"x"`)) {
		t.Errorf("a refused topic exists: %s", out)
	}
}
