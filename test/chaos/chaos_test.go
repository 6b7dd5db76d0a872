package chaos

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/weir-streaming/weir/test/testenv"
)

// Environment of the chaos tests (docs/chaos.md):
//
//	WEIR_CHAOS_SEED      the schedule's seed (Short: 1; Long: the clock)
//	WEIR_CHAOS_NODES     3 (default) or 5
//	WEIR_CHAOS_FAULTS    comma-separated fault mix (default per test)
//	WEIR_CHAOS_DURATION  workload duration, e.g. 90s
//	WEIR_CHAOS_IMAGE     use this image as is instead of building weir-chaos:0.1.0
//	WEIR_CHAOS_ARTIFACTS root of the artifact directories (default test/chaos/artifacts)
//	WEIR_CHAOS_LONG=1    run TestChaos_Long and TestChaos_Lifecycle
//	WEIR_CHAOS_LIFECYCLE=1 run TestChaos_Lifecycle
//	WEIR_CHAOS_ALLOW     anomaly kinds reported but not failing (known bugs), e.g. not-linearizable
const (
	envSeed      = "WEIR_CHAOS_SEED"
	envNodes     = "WEIR_CHAOS_NODES"
	envFaults    = "WEIR_CHAOS_FAULTS"
	envDuration  = "WEIR_CHAOS_DURATION"
	envImage     = "WEIR_CHAOS_IMAGE"
	envArtifacts = "WEIR_CHAOS_ARTIFACTS"
	envLong      = "WEIR_CHAOS_LONG"
	envLifecycle = "WEIR_CHAOS_LIFECYCLE"
	envAllow     = "WEIR_CHAOS_ALLOW"

	imageRepo     = "weir-chaos"
	imageVersion  = "0.1.0"
	targetVersion = "0.2.0"                      // the lifecycle test upgrades to it
	imageBin      = "bin/weir-linux-amd64-chaos" // .dockerignore lets bin/weir-linux-* in
	buildTimeout  = 10 * time.Minute
	shortDuration = 120 * time.Second
	longDuration  = 10 * time.Minute
	lockFile      = "weir-chaos.lock"
	shortSeed     = 1
)

// shortFaults is the mix of the run in `make test`: kills and partitions.
var shortFaults = []string{FaultKillLeader, FaultKillRandom, FaultPartitionLeader, FaultPartitionHalves, FaultPauseLeader}

// TestChaos_Short is the seeded run of `make test`: about two minutes of
// kill -9, pause and partition faults on a 3-node cluster, then every
// check. A failure names the artifact directory and the check that failed.
func TestChaos_Short(t *testing.T) {
	runFromEnv(t, shortSeed, shortDuration, shortFaults)
}

// TestChaos_Long is the long run (scripts/chaos.sh long, WEIR_CHAOS_LONG=1
// make chaos): ten minutes of every fault, a new seed
// each run (printed), behind WEIR_CHAOS_LONG=1.
func TestChaos_Long(t *testing.T) {
	if os.Getenv(envLong) != "1" {
		t.Skipf("long chaos run skipped: set %s=1 (scripts/chaos.sh long, or WEIR_CHAOS_LONG=1 make chaos)", envLong)
	}
	runFromEnv(t, time.Now().UnixNano()%1_000_000, longDuration, AllFaults)
}

// TestChaos_Lifecycle is the lifecycle under faults: data on 0.1.0 under
// kills and partitions, then shutdown → image swap to 0.2.0 → upgrade →
// resume with a node killed or the leader partitioned during each step,
// then data on 0.2.0 under faults; zero lost or duplicated records, every
// node running 0.2.0. Behind WEIR_CHAOS_LIFECYCLE=1 or WEIR_CHAOS_LONG=1.
func TestChaos_Lifecycle(t *testing.T) {
	if os.Getenv(envLong) != "1" && os.Getenv(envLifecycle) != "1" {
		t.Skipf("lifecycle chaos run skipped: set %s=1 or %s=1 (scripts/chaos.sh lifecycle)", envLifecycle, envLong)
	}
	if testing.Short() {
		t.Skip("chaos test skipped in -short mode")
	}
	if err := DockerAvailable(t.Context()); err != nil {
		t.Skipf("docker engine not reachable: %v", err)
	}
	seed := int64(shortSeed)
	if v := os.Getenv(envSeed); v != "" {
		s, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: %v", envSeed, v, err)
		}
		seed = s
	}
	duration := 40 * time.Second
	if v := os.Getenv(envDuration); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("%s=%q: %v", envDuration, v, err)
		}
		duration = d
	}
	lock(t)
	root := mustRoot(t)
	image := ensureImage(t, root, imageVersion)
	target := ensureImage(t, root, targetVersion)
	dir := artifactDir(t, seed)
	t.Logf("chaos lifecycle: seed %d, %s -> %s, data phases of %v, artifacts in %s", seed, image, target, duration, dir)
	logf := func(format string, args ...any) { t.Logf(format, args...) }
	nodes := 3
	if v := os.Getenv(envNodes); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || (n != 3 && n != 5) {
			t.Fatalf("%s=%q: want 3 or 5", envNodes, v)
		}
		nodes = n
	}
	c, err := NewCluster(t.Context(), ClusterConfig{Nodes: nodes, Image: image, Dir: dir, Logf: logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Down(dir) })
	if err := c.Up(t.Context()); err != nil {
		t.Fatal(err)
	}
	faults := []string{FaultKillLeader, FaultKillRandom, FaultPartitionLeader}
	sum, err := RunLifecycle(t.Context(), c, Config{Seed: seed, Duration: duration, Faults: faults, Dir: dir, Logf: logf, Test: t.Name(), Allow: allowFromEnv()}, targetVersion, target)
	if err != nil {
		t.Fatalf("lifecycle chaos run (seed %d) did not get going: %v; artifacts in %s", seed, err, dir)
	}
	t.Logf("chaos lifecycle: seed %d valid=%v produce ok/fail/info=%s acked=%d lost=%d duplicated=%d wall=%s dir=%s",
		sum.Seed, sum.Valid, countsText(sum), sum.Acked, len(sum.Lost), len(sum.Duplicated), sum.Wall, sum.Dir)
	if !sum.Valid {
		t.Fatal(sum.Failure())
	}
}

func runFromEnv(t *testing.T, seed int64, duration time.Duration, faults []string) {
	if testing.Short() {
		t.Skip("chaos test skipped in -short mode")
	}
	if err := DockerAvailable(t.Context()); err != nil {
		t.Skipf("docker engine not reachable: %v", err)
	}
	nodes := 3
	if v := os.Getenv(envSeed); v != "" {
		s, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			t.Fatalf("%s=%q: %v", envSeed, v, err)
		}
		seed = s
	}
	if v := os.Getenv(envNodes); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || (n != 3 && n != 5) {
			t.Fatalf("%s=%q: want 3 or 5", envNodes, v)
		}
		nodes = n
	}
	if v := os.Getenv(envFaults); v != "" {
		faults = nil
		known := map[string]bool{}
		for _, f := range AllFaults {
			known[f] = true
		}
		for _, f := range strings.Split(v, ",") {
			f = strings.TrimSpace(f)
			if !known[f] {
				t.Fatalf("%s: unknown fault %q; known: %s", envFaults, f, strings.Join(AllFaults, ","))
			}
			faults = append(faults, f)
		}
	}
	if v := os.Getenv(envDuration); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("%s=%q: %v", envDuration, v, err)
		}
		duration = d
	}
	t.Logf("chaos: seed %d, %d nodes, %v, faults %s", seed, nodes, duration, strings.Join(faults, ","))
	sum := runChaos(t, seed, nodes, duration, faults)
	t.Logf("chaos: seed %d valid=%v produce ok/fail/info=%s acked=%d lost=%d duplicated=%d retired=%d wall=%s dir=%s",
		sum.Seed, sum.Valid, countsText(sum), sum.Acked, len(sum.Lost), len(sum.Duplicated), sum.Retired, sum.Wall, sum.Dir)
	if !sum.Valid {
		t.Fatal(sum.Failure())
	}
}

// allowFromEnv is WEIR_CHAOS_ALLOW split on commas.
func allowFromEnv() []string {
	var out []string
	for _, k := range strings.Split(os.Getenv(envAllow), ",") {
		if k = strings.TrimSpace(k); k != "" {
			out = append(out, k)
		}
	}
	return out
}

func countsText(s *Summary) string {
	if c := s.Counts["produce"]; c != nil {
		return fmt.Sprintf("%d/%d/%d", c.OK, c.Fail, c.Info)
	}
	return "0/0/0"
}

// runChaos builds the image, starts the cluster (torn down in Cleanup
// whatever happens) and runs one seeded chaos run.
func runChaos(t *testing.T, seed int64, nodes int, duration time.Duration, faults []string) *Summary {
	t.Helper()
	lock(t)
	root := mustRoot(t)
	image := ensureImage(t, root, imageVersion)
	dir := artifactDir(t, seed)
	t.Logf("chaos: artifacts in %s", dir)
	logf := func(format string, args ...any) { t.Logf(format, args...) }
	c, err := NewCluster(t.Context(), ClusterConfig{Nodes: nodes, Image: image, Dir: dir, Logf: logf})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Down(dir) })
	if err := c.Up(t.Context()); err != nil {
		t.Fatal(err)
	}
	sum, err := Run(t.Context(), c, Config{Seed: seed, Duration: duration, Faults: faults, Dir: dir, Logf: logf, Test: t.Name(), Allow: allowFromEnv()})
	if err != nil {
		t.Fatalf("chaos run (seed %d) did not get going: %v; artifacts in %s", seed, err, dir)
	}
	return sum
}

// ensureImage builds weir-chaos:VERSION with `make image` (its own tag and
// binary path, so it never races the compose test's build), unless
// WEIR_CHAOS_IMAGE names an image to use as is.
func ensureImage(t *testing.T, root, version string) string {
	t.Helper()
	if img := os.Getenv(envImage); img != "" && version == imageVersion {
		return img
	}
	start := time.Now()
	out, err := run(t.Context(), buildTimeout, root, nil, "make", "image", "IMAGE="+imageRepo, "VERSION="+version, "IMAGE_BIN="+imageBin)
	if err != nil {
		t.Fatalf("make image VERSION=%s: %v\n%s", version, err, out)
	}
	t.Logf("chaos: image %s:%s built in %v", imageRepo, version, time.Since(start).Round(time.Second))
	return imageRepo + ":" + version
}

// lock serializes chaos runs on one host: they share a project name,
// subnet and ports.
func lock(t *testing.T) {
	f, err := os.OpenFile(filepath.Join(os.TempDir(), lockFile), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		t.Logf("chaos: another chaos run holds %s; waiting for it", f.Name())
		if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX); err != nil {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { f.Close() })
}

func artifactDir(t *testing.T, seed int64) string {
	root := os.Getenv(envArtifacts)
	if root == "" {
		root = "artifacts"
	}
	dir, err := filepath.Abs(filepath.Join(root, fmt.Sprintf("%s-seed%d", time.Now().Format("20060102-150405"), seed)))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

func mustRoot(t *testing.T) string {
	t.Helper()
	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	return root
}
