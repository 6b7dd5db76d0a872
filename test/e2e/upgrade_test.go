package e2e

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weir-streaming/weir/test/testenv"
)

// The two releases the upgrade tests run: the same source built twice with
// different versions, as `make build VERSION=...` does.
const (
	oldVersion = "0.1.0"
	newVersion = "0.2.0"
)

// Sizes of the upgrade test's data.
const (
	linesPerFile     = 5000
	partitionsTested = 3
)

var (
	buildsOnce     sync.Once
	oldBin, newBin string
	buildsErr      error
)

// builds compiles weir-0.1.0 and weir-0.2.0 once for the package.
func builds(t *testing.T) (older, newer string) {
	t.Helper()
	if testing.Short() {
		t.Skip("e2e: runs real node processes")
	}
	buildsOnce.Do(func() {
		root, err := testenv.RepoRoot()
		if err != nil {
			buildsErr = err
			return
		}
		for _, b := range []struct {
			version string
			out     *string
		}{{oldVersion, &oldBin}, {newVersion, &newBin}} {
			path := filepath.Join(binDir, "weir-"+b.version)
			cmd := exec.Command("go", "build", "-ldflags", "-X github.com/weir-streaming/weir/version.Version="+b.version, "-o", path, "./cmd/weir")
			cmd.Dir = root
			if out, err := cmd.CombinedOutput(); err != nil {
				buildsErr = fmt.Errorf("go build %s: %v\n%s", b.version, err, out)
				return
			}
			*b.out = path
		}
	})
	if buildsErr != nil {
		t.Fatal(buildsErr)
	}
	return oldBin, newBin
}

// dataFile is a file of unique random printable lines, one record each.
type dataFile struct {
	path  string
	lines []string
	sum   string // SHA-256 of the file
}

// writeDataFile writes n random lines (printable ASCII, 1 to 120 bytes,
// none repeated, none shared with taken) to a file under dir.
func writeDataFile(t *testing.T, dir, name string, n int, rng *rand.Rand, taken map[string]bool) *dataFile {
	t.Helper()
	df := &dataFile{path: filepath.Join(dir, name)}
	var buf bytes.Buffer
	for len(df.lines) < n {
		b := make([]byte, 1+rng.IntN(120))
		for i := range b {
			b[i] = byte(0x20 + rng.IntN(0x7f-0x20))
		}
		line := string(b)
		if taken[line] {
			continue
		}
		taken[line] = true
		df.lines = append(df.lines, line)
		buf.WriteString(line)
		buf.WriteByte('\n')
	}
	if err := os.WriteFile(df.path, buf.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	df.sum = digest(buf.Bytes())
	t.Logf("%s: %d lines, %d bytes, sha256 %s", name, n, buf.Len(), df.sum)
	return df
}

func digest(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:])
}

// sortedDigest is the SHA-256 of lines sorted and joined by "\n": equal for
// two multisets of lines, whatever the order.
func sortedDigest(lines []string) string {
	s := slices.Clone(lines)
	sort.Strings(s)
	return digest([]byte(strings.Join(s, "\n")))
}

// consumed is one record of `consume --output json`.
type consumed struct {
	Partition int    `json:"partition"`
	Offset    uint64 `json:"offset"`
	Value     string `json:"value"`
}

func parseConsumed(t *testing.T, out []byte) []consumed {
	t.Helper()
	var recs []consumed
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var r consumed
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("consume printed %q: %v", sc.Bytes(), err)
		}
		recs = append(recs, r)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return recs
}

// checkTopic reads the topic back twice and checks that it holds exactly
// the lines of files: as text, the same multiset of lines (each file's
// lines, put back in file order, hash to the file's SHA-256); as JSON,
// offsets dense from 0 in every partition and, within each partition, the
// records in production order (the files in order, each file's lines in
// order).
func (l *local) checkTopic(bin, topic string, files ...*dataFile) {
	t := l.t
	t.Helper()
	var all []string
	type pos struct{ file, line int }
	where := map[string]pos{}
	for fi, f := range files {
		all = append(all, f.lines...)
		for li, line := range f.lines {
			where[line] = pos{fi, li}
		}
	}
	text := strings.Split(strings.TrimSuffix(string(l.mustBin(bin, nil, "consume", topic, "-B", "-d")), "\n"), "\n")
	if len(text) != len(all) || sortedDigest(text) != sortedDigest(all) {
		t.Fatalf("%s: consume read %d lines (sorted sha256 %s), produced %d (sorted sha256 %s)", topic, len(text), sortedDigest(text), len(all), sortedDigest(all))
	}

	recs := parseConsumed(t, l.mustBin(bin, nil, "consume", topic, "-B", "-d", "--output", "json"))
	if len(recs) != len(all) {
		t.Fatalf("%s: consume --output json read %d records, produced %d", topic, len(recs), len(all))
	}
	next := map[int]uint64{}
	last := map[int]pos{}
	rebuilt := make([][]string, len(files))
	for i := range files {
		rebuilt[i] = make([]string, len(files[i].lines))
	}
	for _, r := range recs {
		p, ok := where[r.Value]
		if !ok {
			t.Fatalf("%s: partition %d offset %d holds %q, which was never produced", topic, r.Partition, r.Offset, r.Value)
		}
		if r.Offset != next[r.Partition] {
			t.Fatalf("%s: partition %d: offset %d where %d was due", topic, r.Partition, r.Offset, next[r.Partition])
		}
		if prev, seen := last[r.Partition]; seen && (p.file < prev.file || (p.file == prev.file && p.line <= prev.line)) {
			t.Fatalf("%s: partition %d offset %d holds file %d line %d after file %d line %d: out of production order",
				topic, r.Partition, r.Offset, p.file+1, p.line+1, prev.file+1, prev.line+1)
		}
		if rebuilt[p.file][p.line] != "" {
			t.Fatalf("%s: file %d line %d read twice", topic, p.file+1, p.line+1)
		}
		rebuilt[p.file][p.line] = r.Value
		next[r.Partition]++
		last[r.Partition] = p
	}
	for i, f := range files {
		if got := digest([]byte(strings.Join(rebuilt[i], "\n") + "\n")); got != f.sum {
			t.Fatalf("%s: file %d read back with sha256 %s, produced %s", topic, i+1, got, f.sum)
		}
	}
	t.Logf("%s: %d records read back byte-identical, in production order per partition %v", topic, len(recs), next)
}

// status is the part of `cluster status --output json` the tests check.
type status struct {
	ClusterID     string   `json:"cluster_id"`
	Phase         string   `json:"phase"`
	ActiveVersion string   `json:"active_version"`
	TargetVersion string   `json:"target_version"`
	Leader        string   `json:"leader"`
	Gates         []string `json:"gates"`
	Processes     string   `json:"processes"`
	Nodes         []struct {
		ID            string `json:"id"`
		BinaryVersion string `json:"binary_version"`
		RaftSuffrage  string `json:"raft_suffrage"`
		Serving       bool   `json:"serving"`
	} `json:"nodes"`
}

func (l *local) status(bin string) status {
	l.t.Helper()
	var st status
	if err := json.Unmarshal(l.mustBin(bin, nil, "cluster", "status", "--output", "json"), &st); err != nil {
		l.t.Fatalf("cluster status --output json: %v", err)
	}
	return st
}

// refused runs weir, which must exit 1 with want in its standard error.
func (l *local) refused(bin string, want string, args ...string) result {
	l.t.Helper()
	r := l.runBin(bin, nil, args...)
	if r.code != 1 || !bytes.Contains(r.stderr, []byte(want)) || !bytes.Contains(r.stderr, []byte("hint: ")) {
		l.t.Fatalf("%s %s: exit %d, want 1 with %q and a hint\nstdout:\n%s\nstderr:\n%s",
			filepath.Base(bin), strings.Join(args, " "), r.code, want, r.stdout, r.stderr)
	}
	l.t.Logf("%s %s: refused as expected: %s", filepath.Base(bin), strings.Join(args, " "), firstLine(r.stderr))
	return r
}

func firstLine(b []byte) string {
	line, _, _ := strings.Cut(string(b), "\n")
	return line
}

// noNodeRuns fails the test if a node process of the local cluster runs.
func (l *local) noNodeRuns() {
	l.t.Helper()
	for _, n := range l.nodes() {
		if alive(n.PID, n.ID) {
			l.t.Fatalf("%s still runs (pid %d)", n.ID, n.PID)
		}
	}
}

// checksummed reads partition p of topic through the JSON API of a node
// and returns, per value, whether its batch carried a verified CRC-32C.
func (l *local) checksummed(topic string, p int) map[string]bool {
	l.t.Helper()
	nodes := l.nodes()
	if len(nodes) == 0 {
		l.t.Fatal("no node recorded")
	}
	u := fmt.Sprintf("http://%s/v1/topics/%s/partitions/%d/records?offset=0&max_records=100000", nodes[0].APIAddr, topic, p)
	resp, err := http.Get(u)
	if err != nil {
		l.t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Records []struct {
			Value       string `json:"value"`
			Checksummed bool   `json:"checksummed"`
		} `json:"records"`
		NextOffset    uint64 `json:"next_offset"`
		HighWatermark uint64 `json:"high_watermark"`
	}
	if resp.StatusCode != http.StatusOK {
		l.t.Fatalf("GET %s: %s", u, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		l.t.Fatalf("GET %s: %v", u, err)
	}
	if body.NextOffset != body.HighWatermark || uint64(len(body.Records)) != body.HighWatermark {
		l.t.Fatalf("GET %s: %d records, next offset %d, high watermark %d: not the whole partition", u, len(body.Records), body.NextOffset, body.HighWatermark)
	}
	out := make(map[string]bool, len(body.Records))
	for _, r := range body.Records {
		out[r.Value] = r.Checksummed
	}
	return out
}

// TestUpgrade_TwoBuilds is the operator's flow of DESIGN §1 across two real
// builds: data produced on 0.1.0 reads back byte-identical on 0.2.0, new
// records append in order, the 0.2.0 gate is on for new records only, and
// the old binary can neither resume nor downgrade the upgraded cluster.
func TestUpgrade_TwoBuilds(t *testing.T) {
	v1, v2 := builds(t)
	l := newLocal(t)
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	taken := map[string]bool{}
	dir := t.TempDir()
	first := writeDataFile(t, dir, "first.txt", linesPerFile, rng, taken)

	// 0.1.0: a running cluster with data.
	l.mustBin(v1, nil, "cluster", "start")
	l.mustBin(v1, nil, "topic", "create", "events", "-p", strconv.Itoa(partitionsTested))
	l.mustBin(v1, nil, "produce", "events", "--file", first.path)
	l.checkTopic(v1, "events", first)
	before := l.status(v1)
	if before.Phase != "running" || before.ActiveVersion != oldVersion || before.ClusterID == "" {
		t.Fatalf("new cluster: %+v", before)
	}

	// The new binary refuses to mark a running cluster; nothing changes.
	l.refused(v2, "WRONG_PHASE", "cluster", "upgrade", "--yes")
	if st := l.status(v1); st.Phase != "running" || st.ActiveVersion != oldVersion {
		t.Fatalf("a refused upgrade changed the cluster: %+v", st)
	}

	// Shutdown: every voter acknowledges, the local processes stop, status
	// still reports the committed phase.
	out := l.mustBin(v1, nil, "cluster", "shutdown")
	if !bytes.Contains(out, []byte("acknowledged by node1, node2, node3")) || !bytes.Contains(out, []byte("weir cluster upgrade")) {
		t.Fatalf("cluster shutdown printed:\n%s", out)
	}
	l.noNodeRuns()
	if st := l.status(v1); st.Phase != "shutdown" || st.ActiveVersion != oldVersion || st.Processes != "stopped" {
		t.Fatalf("status after shutdown: %+v", st)
	}
	l.refused(v1, "the local cluster is shut down", "produce", "events", "--timeout", "1s", "--file", first.path)

	// Nodes started in phase shutdown keep the data plane closed.
	l.mustBin(v1, nil, "cluster", "start")
	l.refused(v1, "CLUSTER_SHUT_DOWN", "produce", "events", "--file", first.path)
	l.refused(v1, "CLUSTER_SHUT_DOWN", "consume", "events", "-B", "-d", "--timeout", "2s")
	l.mustBin(v1, nil, "cluster", "stop")

	// 0.2.0: plan (starts the stopped nodes on 0.2.0), mark, resume.
	plan := l.mustBin(v2, nil, "cluster", "upgrade", "--dry-run")
	for _, want := range []string{"Upgrade plan for cluster " + before.ClusterID, "active version:  " + oldVersion, "target version:  " + newVersion, "No blockers", "dry run"} {
		if !bytes.Contains(plan, []byte(want)) {
			t.Fatalf("upgrade --dry-run lacks %q:\n%s", want, plan)
		}
	}
	if st := l.status(v2); st.Phase != "shutdown" {
		t.Fatalf("a dry run changed the phase: %+v", st)
	}
	out = l.mustBin(v2, nil, "cluster", "upgrade", "--yes")
	if !bytes.Contains(out, []byte("marked the cluster for upgrade: 0.1.0 → 0.2.0")) || !bytes.Contains(out, []byte("next: weir cluster resume")) {
		t.Fatalf("cluster upgrade printed:\n%s", out)
	}
	out = l.mustBin(v2, nil, "cluster", "resume")
	for _, want := range []string{"(1/3)", "(3/3)", "resume complete: active version 0.2.0"} {
		if !bytes.Contains(out, []byte(want)) {
			t.Fatalf("cluster resume lacks %q:\n%s", want, out)
		}
	}
	st := l.status(v2)
	if st.Phase != "running" || st.ActiveVersion != newVersion || st.TargetVersion != "" || !slices.Contains(st.Gates, "batch-crc32c") || len(st.Nodes) != 3 {
		t.Fatalf("status after resume: %+v", st)
	}
	for _, n := range st.Nodes {
		if n.BinaryVersion != newVersion || n.RaftSuffrage != "voter" || !n.Serving {
			t.Fatalf("node after resume: %+v", n)
		}
	}

	// Everything from before reads back; new records append in order.
	l.checkTopic(v2, "events", first)
	second := writeDataFile(t, dir, "second.txt", linesPerFile, rng, taken)
	l.mustBin(v2, nil, "produce", "events", "--file", second.path)
	l.checkTopic(v2, "events", first, second)
	fresh := writeDataFile(t, dir, "fresh.txt", 200, rng, taken)
	l.mustBin(v2, nil, "topic", "create", "after", "-p", "2")
	l.mustBin(v2, nil, "produce", "after", "--file", fresh.path)
	l.checkTopic(v2, "after", fresh)

	// The 0.2.0 gate: batches written after finalization carry a CRC-32C.
	before010, after020 := map[string]bool{}, map[string]bool{}
	for _, line := range first.lines {
		before010[line] = true
	}
	for _, line := range second.lines {
		after020[line] = true
	}
	var nOld, nNew int
	for p := range partitionsTested {
		for value, sum := range l.checksummed("events", p) {
			switch {
			case before010[value] && sum:
				t.Fatalf("partition %d: a record produced on 0.1.0 reads as checksummed: %q", p, value)
			case after020[value] && !sum:
				t.Fatalf("partition %d: a record produced on 0.2.0 reads as not checksummed: %q", p, value)
			case before010[value]:
				nOld++
			case after020[value]:
				nNew++
			}
		}
	}
	if nOld != len(first.lines) || nNew != len(second.lines) {
		t.Fatalf("JSON API read %d old and %d new records, want %d and %d", nOld, nNew, len(first.lines), len(second.lines))
	}

	// Shut down again: the old binary cannot resume or downgrade the
	// finalized cluster, and changes nothing trying.
	l.mustBin(v2, nil, "cluster", "shutdown")
	l.noNodeRuns()
	r := l.refused(v1, "refusing to start", "cluster", "resume")
	if !bytes.Contains(r.stderr, []byte(newVersion)) {
		t.Fatalf("the refusal does not name the active version %s:\n%s", newVersion, r.stderr)
	}
	l.noNodeRuns()
	l.refused(v1, "refusing to start", "cluster", "upgrade", "--to", oldVersion)
	l.noNodeRuns()
	if st := l.status(v2); st.Phase != "shutdown" || st.ActiveVersion != newVersion {
		t.Fatalf("status after the refusals: %+v", st)
	}

	// 0.2.0 resumes, with the data intact.
	l.mustBin(v2, nil, "cluster", "resume")
	if st := l.status(v2); st.Phase != "running" || st.ActiveVersion != newVersion {
		t.Fatalf("status after the second resume: %+v", st)
	}
	l.checkTopic(v2, "events", first, second)

	var hist struct {
		Entries []struct {
			Command string `json:"command"`
		} `json:"entries"`
	}
	if err := json.Unmarshal(l.mustBin(v2, nil, "cluster", "history", "--output", "json"), &hist); err != nil {
		t.Fatal(err)
	}
	var cmds []string
	for _, e := range hist.Entries {
		if !strings.HasPrefix(e.Command, "node-") {
			cmds = append(cmds, e.Command)
		}
	}
	want := []string{"shutdown", "upgrade", "resume", "resume-complete", "shutdown", "resume", "resume-complete"}
	if !slices.Equal(cmds, want) {
		t.Fatalf("history %v, want %v", cmds, want)
	}
}

// TestBackup_RestoreIntoNewCluster takes a backup of a running 0.1.0 cluster
// and rebuilds a new local cluster from it; a truncated copy is refused and
// changes nothing.
func TestBackup_RestoreIntoNewCluster(t *testing.T) {
	v1, _ := builds(t)
	dir := t.TempDir()
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 2))
	data := writeDataFile(t, dir, "data.txt", 2000, rng, map[string]bool{})

	src := newLocal(t)
	src.mustBin(v1, nil, "cluster", "start")
	src.mustBin(v1, nil, "topic", "create", "events", "-p", strconv.Itoa(partitionsTested))
	src.mustBin(v1, nil, "produce", "events", "--file", data.path)
	backup := filepath.Join(dir, "events.snap")
	out := src.mustBin(v1, nil, "cluster", "backup", "--out", backup)
	if !bytes.Contains(out, []byte("CRC-32C verified")) {
		t.Fatalf("cluster backup printed:\n%s", out)
	}
	want := parseConsumed(t, src.mustBin(v1, nil, "consume", "events", "-B", "-d", "--output", "json"))
	srcStatus := src.status(v1)

	// A running cluster is not restored over.
	src.refused(v1, `run "weir cluster stop" first`, "cluster", "restore", "--from", backup)
	src.mustBin(v1, nil, "cluster", "stop")

	whole, err := os.ReadFile(backup)
	if err != nil {
		t.Fatal(err)
	}
	truncated := filepath.Join(dir, "truncated.snap")
	if err := os.WriteFile(truncated, whole[:len(whole)/2], 0o600); err != nil {
		t.Fatal(err)
	}

	dst := newLocal(t)
	dst.refused(v1, "is not a usable backup", "cluster", "restore", "--from", truncated)
	if _, err := os.Stat(filepath.Join(dst.home, "local")); err == nil {
		t.Fatal("a refused restore created a local cluster")
	}
	out = dst.mustBin(v1, nil, "cluster", "restore", "--from", backup)
	if !bytes.Contains(out, []byte("restored cluster "+srcStatus.ClusterID)) {
		t.Fatalf("cluster restore printed:\n%s", out)
	}
	st := dst.status(v1)
	if st.ClusterID != srcStatus.ClusterID || st.Phase != "running" || len(st.Nodes) != 3 {
		t.Fatalf("restored status: %+v", st)
	}
	got := parseConsumed(t, dst.mustBin(v1, nil, "consume", "events", "-B", "-d", "--output", "json"))
	if !slices.Equal(got, want) {
		t.Fatalf("restored cluster reads %d records, the original %d (or they differ)", len(got), len(want))
	}
	dst.checkTopic(v1, "events", data)

	// A stopped restored cluster refuses the truncated copy and keeps its data.
	dst.mustBin(v1, nil, "cluster", "stop")
	dst.refused(v1, "is not a usable backup", "cluster", "restore", "--from", truncated)
	dst.mustBin(v1, nil, "cluster", "start")
	if got := parseConsumed(t, dst.mustBin(v1, nil, "consume", "events", "-B", "-d", "--output", "json")); !slices.Equal(got, want) {
		t.Fatal("a refused restore changed the data")
	}
	// The restored cluster takes new writes.
	more := writeDataFile(t, dir, "more.txt", 100, rng, map[string]bool{})
	dst.mustBin(v1, nil, "topic", "create", "more", "-p", "1")
	dst.mustBin(v1, nil, "produce", "more", "--file", more.path)
	dst.checkTopic(v1, "more", more)
}
