package node

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/weir-streaming/weir/api"
	"github.com/weir-streaming/weir/fsm"
)

func lifecycle(t *testing.T, n *Node, path string, req api.LifecycleRequest) (int, api.LifecycleResponse, api.ErrorBody) {
	t.Helper()
	var out api.LifecycleResponse
	st, e := do(t, "POST", apiURL(n, path), req, &out)
	return st, out, e
}

func mustLifecycle(t *testing.T, n *Node, path string, req api.LifecycleRequest) api.LifecycleResponse {
	t.Helper()
	st, out, e := lifecycle(t, n, path, req)
	if st != http.StatusOK {
		t.Fatalf("POST %s: %d %+v", path, st, e)
	}
	return out
}

func status(t *testing.T, n *Node) api.StatusResponse {
	t.Helper()
	var st api.StatusResponse
	do(t, "GET", apiURL(n, "/v1/status"), nil, &st)
	return st
}

func waitPhase(t *testing.T, n *Node, phase fsm.Phase) fsm.ClusterState {
	t.Helper()
	var cs fsm.ClusterState
	waitFor(t, testTimeout, "phase "+string(phase), func() bool {
		cs, _ = n.fsm.Cluster()
		return cs.Phase == phase
	})
	return cs
}

// lifecycleCluster is a 3-node cluster with a short resume stabilization.
func lifecycleCluster(t *testing.T) *testCluster {
	c := &testCluster{t: t}
	c.nodes = nil
	return c.start(3, func(cfg *Config) { cfg.ResumeStabilize = 100 * time.Millisecond })
}

func (c *testCluster) start(size int, mod func(*Config)) *testCluster {
	c.t.Helper()
	var first *Node
	for i := 1; i <= size; i++ {
		n := newTestNode(c.t, fmt.Sprint("n", i), func(cfg *Config) {
			cfg.BootstrapExpect = size
			if first != nil {
				cfg.Join = []string{first.GossipAddr()}
			}
			if mod != nil {
				mod(cfg)
			}
		})
		if first == nil {
			first = n
		}
		c.nodes = append(c.nodes, n)
	}
	c.waitReady(c.nodes)
	return c
}

// restartAll stops every node and starts it again on the same data and
// addresses, as binary version v; it is how a test installs a new build.
func (c *testCluster) restartAll(v string) {
	c.t.Helper()
	old := c.nodes
	for _, n := range old {
		n.Close()
	}
	c.nodes = nil
	for _, n := range old {
		c.nodes = append(c.nodes, c.restart(n, v))
	}
	// Shut down, the nodes do not serve; wait until each knows the leader.
	waitFor(c.t, testTimeout, "every restarted node to know the leader", func() bool {
		for _, n := range c.nodes {
			if addr, _ := n.raft.LeaderWithID(); addr == "" {
				return false
			}
		}
		return true
	})
}

func (c *testCluster) restart(n *Node, v string) *Node {
	c.t.Helper()
	stab := n.cfg.ResumeStabilize
	// The node rejoins its remembered peers (peers.json) even without --join.
	return newTestNode(c.t, n.ID(), func(cfg *Config) {
		restartConfig(n)(cfg)
		cfg.BinaryVersion = v
		cfg.ResumeStabilize = stab
	})
}

func TestLifecycle_ShutdownUpgradeResume(t *testing.T) {
	c := lifecycleCluster(t)
	l := c.leader(c.nodes)
	createTopic(t, l, "t", 2)
	produce(t, l, "t", "a", "b", "c")

	// Upgrade refused while running.
	if st, _, e := lifecycle(t, c.nodes[1], api.PathUpgrade, api.LifecycleRequest{RequestID: "u0", To: "0.2.0"}); st == http.StatusOK || e.Code != api.CodeWrongPhase {
		t.Fatalf("upgrade while running: %d %+v", st, e)
	}
	res := mustLifecycle(t, c.nodes[1], api.PathShutdown, api.LifecycleRequest{RequestID: "s1", By: "test"})
	if res.Phase != "shutdown" || len(res.Missing) != 0 || len(res.Quiesced) != 3 {
		t.Fatalf("shutdown: %+v", res)
	}
	again := mustLifecycle(t, c.nodes[2], api.PathShutdown, api.LifecycleRequest{RequestID: "s2"})
	if !again.Noop || !strings.Contains(again.Message, "already") {
		t.Fatalf("second shutdown: %+v", again)
	}
	for _, n := range c.nodes {
		if _, err := os.Stat(filepath.Join(n.cfg.DataDir, backupDir, PreUpgradeBackup)); err != nil {
			t.Fatalf("%s has no pre-upgrade backup: %v", n.ID(), err)
		}
		var pr api.ProduceResponse
		st, e := do(t, "POST", apiURL(n, "/v1/topics/t/records"), api.ProduceRequest{Records: []api.ProduceRecord{{Value: "x"}}}, &pr)
		if st != http.StatusServiceUnavailable || e.Code != api.CodeClusterShutDown || e.Hint == "" {
			t.Fatalf("produce after shutdown via %s: %d %+v", n.ID(), st, e)
		}
	}

	// The upgrade is refused until every node runs the new binary, naming them.
	st, _, e := lifecycle(t, c.nodes[0], api.PathUpgrade, api.LifecycleRequest{RequestID: "u1", To: "0.2.0"})
	if st == http.StatusOK || e.Code != api.CodeVersionRefused || !strings.Contains(e.Message, "n1") {
		t.Fatalf("upgrade with old binaries: %d %+v", st, e)
	}
	c.restartAll("0.2.0")
	c.leader(c.nodes)
	var plan api.UpgradePlan
	do(t, "GET", apiURL(c.nodes[0], api.PathUpgrade+"?to=0.2.0"), nil, &plan)
	if !plan.OK || len(plan.Nodes) != 3 || plan.ActiveVersion != "0.1.0" {
		t.Fatalf("plan %+v", plan)
	}
	if st, _, e := lifecycle(t, c.nodes[0], api.PathUpgrade, api.LifecycleRequest{RequestID: "u2", To: "0.0.9"}); st == http.StatusOK || e.Code != api.CodeVersionRefused {
		t.Fatalf("downgrade: %d %+v", st, e)
	}
	mustLifecycle(t, c.nodes[0], api.PathUpgrade, api.LifecycleRequest{RequestID: "u3", To: "0.2.0"})
	mustLifecycle(t, c.nodes[2], api.PathResume, api.LifecycleRequest{RequestID: "r1"})
	for _, n := range c.nodes {
		cs := waitPhase(t, n, fsm.PhaseRunning)
		if cs.ActiveVersion != "0.2.0" {
			t.Fatalf("%s: active %s", n.ID(), cs.ActiveVersion)
		}
	}
	c.waitReady(c.nodes)
	produce(t, c.nodes[1], "t", "d")
	waitEqualState(t, c.nodes)
	got := consumeAll(t, c.nodes[2], "t", 2)
	if len(got[0])+len(got[1]) != 4 {
		t.Fatalf("records after upgrade %v", got)
	}
	var hist api.HistoryResponse
	do(t, "GET", apiURL(c.nodes[0], api.PathHistory), nil, &hist)
	var cmds []string
	for _, h := range hist.Entries {
		cmds = append(cmds, h.Command)
	}
	if s := strings.Join(cmds, ","); s != "shutdown,node-quiesced,node-quiesced,node-quiesced,upgrade,resume,node-resumed,node-resumed,node-resumed,resume-complete" {
		t.Fatalf("history %s", s)
	}
}

func TestResume_LeaderKilledMidResumeNewLeaderFinishes(t *testing.T) {
	c := &testCluster{t: t}
	c.start(3, func(cfg *Config) { cfg.ResumeStabilize = 300 * time.Millisecond })
	mustLifecycle(t, c.nodes[0], api.PathShutdown, api.LifecycleRequest{RequestID: "s"})
	mustLifecycle(t, c.nodes[0], api.PathResume, api.LifecycleRequest{RequestID: "r"})
	l := c.leader(c.nodes)
	waitFor(t, testTimeout, "one node resumed", func() bool {
		cs, _ := l.fsm.Cluster()
		return len(cs.Resumed) >= 1
	})
	l.Close()
	rest := c.followers(l)
	c.leader(rest)
	// The new leader carries on from the committed progress; the old leader
	// is a voter that must come back to finish the roll.
	back := c.restart(l, l.cfg.BinaryVersion)
	all := append(rest, back)
	for _, n := range all {
		waitPhase(t, n, fsm.PhaseRunning)
	}
	c.waitReady(all)
}

func TestResume_GateFailureHaltsAndResumeContinues(t *testing.T) {
	c := lifecycleCluster(t)
	mustLifecycle(t, c.nodes[0], api.PathShutdown, api.LifecycleRequest{RequestID: "s"})
	l := c.leader(c.nodes)
	down := c.followers(l)[1]
	down.Close()
	mustLifecycle(t, l, api.PathResume, api.LifecycleRequest{RequestID: "r", GateTimeoutMs: 300})
	var cs fsm.ClusterState
	waitFor(t, testTimeout, "the roll to halt", func() bool {
		cs, _ = l.fsm.Cluster()
		return cs.Halted != nil
	})
	if cs.Halted.Node != down.ID() || cs.Phase != fsm.PhaseResuming {
		t.Fatalf("halt %+v in %s", cs.Halted, cs.Phase)
	}
	if st := status(t, l); st.Halted == nil || st.Halted.Node != down.ID() {
		t.Fatalf("status does not show the halt: %+v", st.Halted)
	}
	back := c.restart(down, down.cfg.BinaryVersion)
	mustLifecycle(t, l, api.PathResume, api.LifecycleRequest{RequestID: "r2", GateTimeoutMs: 5000})
	waitPhase(t, back, fsm.PhaseRunning)
}

func TestRollback_MidResumeThenResumeOnOldVersion(t *testing.T) {
	c := &testCluster{t: t}
	c.start(3, func(cfg *Config) { cfg.ResumeStabilize = 400 * time.Millisecond })
	mustLifecycle(t, c.nodes[0], api.PathShutdown, api.LifecycleRequest{RequestID: "s"})
	c.restartAll("0.2.0")
	c.leader(c.nodes)
	mustLifecycle(t, c.nodes[0], api.PathUpgrade, api.LifecycleRequest{RequestID: "u", To: "0.2.0"})
	mustLifecycle(t, c.nodes[0], api.PathResume, api.LifecycleRequest{RequestID: "r"})
	waitFor(t, testTimeout, "one node resumed", func() bool {
		cs, _ := c.nodes[0].fsm.Cluster()
		return len(cs.Resumed) >= 1
	})
	res := mustLifecycle(t, c.nodes[1], api.PathRollback, api.LifecycleRequest{RequestID: "rb"})
	if res.Phase != "shutdown" || res.ActiveVersion != "0.1.0" {
		t.Fatalf("rollback: %+v", res)
	}
	// The old binary resumes as before.
	c.restartAll("0.1.0")
	c.leader(c.nodes)
	mustLifecycle(t, c.nodes[2], api.PathResume, api.LifecycleRequest{RequestID: "r2"})
	for _, n := range c.nodes {
		if cs := waitPhase(t, n, fsm.PhaseRunning); cs.ActiveVersion != "0.1.0" {
			t.Fatalf("active %s after rollback and resume", cs.ActiveVersion)
		}
	}
	// Rollback after finalization is refused.
	if st, _, e := lifecycle(t, c.nodes[0], api.PathRollback, api.LifecycleRequest{RequestID: "rb2"}); st == http.StatusOK || e.Code != api.CodeWrongPhase || !strings.Contains(e.Hint, "restore") {
		t.Fatalf("rollback after finalization: %d %+v", st, e)
	}
}

func TestFence_OldBinaryRefusesFinalizedCluster(t *testing.T) {
	n := newTestNode(t, "n1", func(cfg *Config) { cfg.BinaryVersion = "0.2.0"; cfg.ResumeStabilize = time.Millisecond })
	(&testCluster{t: t}).waitReady([]*Node{n})
	dir := n.cfg.DataDir
	n.Close()
	cfg := testConfig(t, "n1")
	cfg.DataDir = dir
	cfg.BinaryVersion = "0.1.0"
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "refusing to start") {
		t.Fatalf("0.1.0 on a 0.2.0 cluster: %v", err)
	}
}

func TestRestore_BackupIntoNewCluster(t *testing.T) {
	c := &testCluster{t: t}
	c.start(3, nil)
	l := c.leader(c.nodes)
	createTopic(t, l, "t", 2)
	produce(t, l, "t", "a", "b", "c", "d", "e")
	waitEqualState(t, c.nodes) // the backup below is read from a follower
	backup := filepath.Join(t.TempDir(), "backup.snap")
	resp, err := http.Get(apiURL(c.nodes[1], api.PathBackup))
	if err != nil {
		t.Fatal(err)
	}
	fh, _ := os.Create(backup)
	io.Copy(fh, resp.Body)
	resp.Body.Close()
	fh.Close()
	want := consumeAll(t, c.nodes[1], "t", 2)
	origID := l.clusterID()

	// A new 3-node cluster: the first node is seeded from the backup, the
	// others join it empty and receive the state from the leader.
	r := &testCluster{t: t}
	seed := newTestNode(t, "r1", func(cfg *Config) { cfg.RestoreFrom = backup; cfg.BootstrapExpect = 3 })
	r.nodes = []*Node{seed}
	for _, id := range []string{"r2", "r3"} {
		r.nodes = append(r.nodes, newTestNode(t, id, func(cfg *Config) { cfg.BootstrapExpect = 3; cfg.Join = []string{seed.GossipAddr()} }))
	}
	r.waitReady(r.nodes)
	waitFor(t, testTimeout, "3 voters", func() bool { v, _ := seed.voters(); return len(v) == 3 })
	waitEqualState(t, r.nodes)
	for _, n := range r.nodes {
		if got := consumeAll(t, n, "t", 2); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("%s after restore: %v, want %v", n.ID(), got, want)
		}
		if n.clusterID() != origID {
			t.Fatalf("%s cluster id %s, want the backup's %s", n.ID(), n.clusterID(), origID)
		}
	}
	produce(t, r.nodes[2], "t", "f")
	// The joiners entered the configuration as non-voters and were promoted
	// once caught up (reconcile): the seed's log holds both changes.
	for _, id := range []string{"r2", "r3"} {
		if got := suffrageChanges(t, seed, id); len(got) < 2 || got[0] != raft.Nonvoter || got[len(got)-1] != raft.Voter {
			t.Fatalf("%s's suffrage in the seed's configuration entries: %v, want Nonvoter first and Voter last", id, got)
		}
	}
}

// suffrageChanges lists id's suffrage in every configuration entry of n's
// Raft log that names it, oldest first.
func suffrageChanges(t *testing.T, n *Node, id string) []raft.ServerSuffrage {
	t.Helper()
	first, err := n.logStore.FirstIndex()
	if err != nil {
		t.Fatal(err)
	}
	last, err := n.logStore.LastIndex()
	if err != nil {
		t.Fatal(err)
	}
	var out []raft.ServerSuffrage
	for i := first; i <= last && i > 0; i++ {
		var l raft.Log
		if err := n.logStore.GetLog(i, &l); err != nil || l.Type != raft.LogConfiguration {
			continue
		}
		for _, s := range raft.DecodeConfiguration(l.Data).Servers {
			if string(s.ID) == id {
				out = append(out, s.Suffrage)
			}
		}
	}
	return out
}

func TestRestore_Refusals(t *testing.T) {
	n := newTestNode(t, "n1", nil)
	(&testCluster{t: t}).waitReady([]*Node{n})
	dir := n.cfg.DataDir
	good := filepath.Join(t.TempDir(), "good.snap")
	writeBackupFile(t, n, good)
	n.Close()
	data, _ := os.ReadFile(good)
	bad := filepath.Join(t.TempDir(), "truncated.snap")
	os.WriteFile(bad, data[:len(data)/2], 0o600)
	for name, tc := range map[string]struct{ dir, file string }{
		"node with state": {dir, good},
		"truncated file":  {t.TempDir(), bad},
		"missing file":    {t.TempDir(), filepath.Join(t.TempDir(), "nope")},
	} {
		cfg := testConfig(t, "x")
		cfg.DataDir, cfg.RestoreFrom = tc.dir, tc.file
		if nn, err := New(cfg); err == nil {
			nn.Close()
			t.Errorf("%s: restore accepted", name)
		} else {
			t.Logf("%s: %v", name, err)
		}
	}
}

func TestRestore_OldBinaryRefusesNewerBackup(t *testing.T) {
	n := newTestNode(t, "n1", func(cfg *Config) { cfg.BinaryVersion = "0.2.0" })
	(&testCluster{t: t}).waitReady([]*Node{n})
	backup := filepath.Join(t.TempDir(), "b.snap")
	writeBackupFile(t, n, backup)
	cfg := testConfig(t, "r1")
	cfg.BinaryVersion, cfg.RestoreFrom = "0.1.0", backup
	if nn, err := New(cfg); err == nil || !strings.Contains(err.Error(), "refusing to start") {
		if nn != nil {
			nn.Close()
		}
		t.Fatalf("0.1.0 restoring a 0.2.0 backup: %v", err)
	}
}

// TestDurability_StoreRebuiltAfterOSCrash: the state store skips fsync
// (the Raft log has every entry), so after an operating-system crash it is
// not trusted: a marker from another boot makes the node rebuild it from the
// Raft snapshot and log. Here the store and its segment files are even
// garbage.
func TestDurability_StoreRebuiltAfterOSCrash(t *testing.T) {
	if len(bootID()) == 0 {
		t.Skip("no boot id on this system: the state store fsyncs every commit, nothing to rebuild")
	}
	n := newTestNode(t, "n1", func(cfg *Config) { cfg.SnapshotThreshold = 4; cfg.TrailingLogs = 2 })
	(&testCluster{t: t}).waitReady([]*Node{n})
	createTopic(t, n, "t", 1)
	for i := 0; i < 10; i++ {
		produce(t, n, "t", fmt.Sprint("v", i))
	}
	if err := n.raft.Snapshot().Error(); err != nil {
		t.Fatal(err)
	}
	produce(t, n, "t", "after-snapshot")
	want := consumeAll(t, n, "t", 1)[0]
	dir := n.cfg.DataDir
	n.Close()
	// What an OS crash leaves: the open marker of another boot, and a store
	// whose unsynced pages never reached the disk.
	os.WriteFile(filepath.Join(dir, stateOpenMarker), []byte("another-boot"), 0o600)
	os.WriteFile(filepath.Join(dir, stateFile), []byte("torn"), 0o600)
	segs := fsm.SegmentDir(filepath.Join(dir, stateFile))
	// Segment files a snapshot links were synced when it was taken and are
	// never written again; those written after it were not synced.
	torn := 0
	filepath.WalkDir(segs, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if st, err := os.Stat(path); err == nil && st.Sys().(*syscall.Stat_t).Nlink == 1 {
			torn++
			return os.Truncate(path, 1)
		}
		return nil
	})
	if torn == 0 {
		t.Fatalf("no segment file written after the snapshot under %s", segs)
	}
	back := newTestNode(t, "n1", restartConfig(n))
	(&testCluster{t: t}).waitReady([]*Node{back})
	waitFor(t, testTimeout, "the rebuilt store to hold every record", func() bool {
		return fmt.Sprint(consumeAll(t, back, "t", 1)[0]) == fmt.Sprint(want)
	})
	// The torn files are kept aside for inspection, not reused.
	aside, _ := filepath.Glob(segs + ".after-os-crash-*")
	if len(aside) != 1 {
		t.Fatalf("segments moved aside: %v", aside)
	}
}

// TestDurability_CleanCloseRemovesMarker: after a clean close nothing is
// rebuilt, whatever the boot.
func TestDurability_CleanCloseRemovesMarker(t *testing.T) {
	n := newTestNode(t, "n1", nil)
	(&testCluster{t: t}).waitReady([]*Node{n})
	dir := n.cfg.DataDir
	n.Close()
	if _, err := os.Stat(filepath.Join(dir, stateOpenMarker)); !os.IsNotExist(err) {
		t.Fatalf("marker after a clean close: %v", err)
	}
}

// writeBackupFile writes n's state to path as `cluster backup` does.
func writeBackupFile(t *testing.T, n *Node, path string) {
	t.Helper()
	fh, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	if err := n.fsm.WriteSnapshot(fh); err != nil {
		t.Fatal(err)
	}
}

// The pre-upgrade backup is the newest Raft snapshot by links: no record is
// copied, it reads back as a whole backup, and a new cluster restores from
// it.
func TestShutdown_PreUpgradeBackupLinksAndRestores(t *testing.T) {
	c := &testCluster{t: t}
	c.start(3, nil)
	l := c.leader(c.nodes)
	createTopic(t, l, "t", 2)
	produce(t, l, "t", "a", "b", "c", "d", "e")
	waitEqualState(t, c.nodes)
	want := consumeAll(t, c.nodes[1], "t", 2)
	origID := l.clusterID()
	mustLifecycle(t, c.nodes[1], api.PathShutdown, api.LifecycleRequest{RequestID: "s1", By: "test"})
	n := c.nodes[2]
	backup := filepath.Join(n.cfg.DataDir, backupDir, PreUpgradeBackup)
	h, err := fsm.ReadSnapshotFile(backup)
	if err != nil {
		t.Fatalf("pre-upgrade backup of %s: %v", n.ID(), err)
	}
	if h.ClusterID != origID || h.AppliedIndex == 0 {
		t.Fatalf("pre-upgrade backup header %+v, want cluster %s", h, origID)
	}
	// Every segment file in it is a link (the node's store or its Raft
	// snapshot holds the same inode), not a copy.
	segs := 0
	filepath.WalkDir(backup, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".seg") {
			return err
		}
		segs++
		var st syscall.Stat_t
		if err := syscall.Stat(path, &st); err != nil || st.Nlink < 2 {
			t.Errorf("%s: %d links (%v), want a link to the node's segment", path, st.Nlink, err)
		}
		return nil
	})
	if segs == 0 {
		t.Fatalf("no segment file in %s", backup)
	}
	// A new one-node cluster from it, in the phase the backup was taken in.
	seed := newTestNode(t, "r1", func(cfg *Config) { cfg.RestoreFrom = backup })
	waitPhase(t, seed, fsm.PhaseShutdown)
	mustLifecycle(t, seed, api.PathResume, api.LifecycleRequest{RequestID: "r1"})
	waitPhase(t, seed, fsm.PhaseRunning)
	(&testCluster{t: t}).waitReady([]*Node{seed})
	if got := consumeAll(t, seed, "t", 2); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("restored from the pre-upgrade backup: %v, want %v", got, want)
	}
	// The seed took the backup's segment files by link, not by copy.
	var theirs []os.FileInfo
	filepath.WalkDir(backup, func(path string, d os.DirEntry, err error) error {
		if err == nil && strings.HasSuffix(path, ".seg") {
			if fi, err := os.Stat(path); err == nil {
				theirs = append(theirs, fi)
			}
		}
		return err
	})
	shared := 0
	filepath.WalkDir(fsm.SegmentDir(filepath.Join(seed.cfg.DataDir, stateFile)), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		mine, err := os.Stat(path)
		for _, fi := range theirs {
			if err == nil && os.SameFile(mine, fi) {
				shared++
			}
		}
		return nil
	})
	if shared == 0 {
		t.Fatal("the seeded node's segment files are copies of the backup's, not links")
	}
}
