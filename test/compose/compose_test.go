// Package compose runs the docker compose deployment end to end: it builds the
// static binary and the FROM-scratch image, starts the three nodes of
// docker-compose.yml, and produces and consumes through the published API
// ports with the real weir command line.
//
// The test skips itself when no Docker engine or no compose command answers,
// so `go test ./...` stays green on machines without Docker.
package compose

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/weir-streaming/weir/test/testenv"
)

const (
	// composeProject isolates the test's containers, network and volumes
	// from a `make up` cluster started from the same checkout.
	composeProject = "weirtest"
	// imageTag is the tag the test builds and composes (WEIR_VERSION).
	imageTag = "compose-test"
	// binaryVersion is compiled into the test binary with -ldflags.
	binaryVersion = "0.1.0"

	// addrs are the API ports docker-compose.yml publishes on the host.
	addrs = "127.0.0.1:17071,127.0.0.1:17072,127.0.0.1:17073"

	nodeCount     = 3
	topicName     = "smoke"
	partitions    = 3
	recordCount   = 1000
	probeTimeout  = 20 * time.Second
	buildTimeout  = 5 * time.Minute
	upTimeout     = 3 * time.Minute
	downTimeout   = 2 * time.Minute
	readyDeadline = 90 * time.Second
	readDeadline  = 30 * time.Second
	cliTimeout    = 30 * time.Second
	pollInterval  = 500 * time.Millisecond
)

// clusterStatus is the part of `weir cluster status --output json` this test
// reads (DESIGN §6).
type clusterStatus struct {
	Leader json.RawMessage `json:"leader"`
	Nodes  []struct {
		ID      string `json:"id"`
		Serving bool   `json:"serving"`
	} `json:"nodes"`
}

func TestCompose_ProduceConsume(t *testing.T) {
	if testing.Short() {
		t.Skip("compose test skipped in -short mode")
	}
	if out, err := run(t.Context(), probeTimeout, "", nil, "docker", "info", "--format", "{{.ServerVersion}}"); err != nil {
		t.Skipf("docker engine not reachable: docker info: %v: %s", err, firstLine(out))
	}
	compose, err := testenv.FindCompose(t.Context())
	if err != nil {
		t.Skipf("docker engine not reachable: %v", err)
	}

	root, err := testenv.RepoRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join("bin", "weir-linux-"+runtime.GOARCH)
	weir := filepath.Join(root, bin)
	env := append(os.Environ(), "WEIR_VERSION="+imageTag)
	// Keep the CLI away from any local cluster recorded under ~/.weir.
	t.Setenv("WEIR_HOME", t.TempDir())
	composeArgs := func(args ...string) []string {
		argv := append([]string{}, compose[1:]...)
		argv = append(argv, "-f", filepath.Join(root, "docker-compose.yml"), "-p", composeProject)
		return append(argv, args...)
	}

	// Build the static binary the image and the host-side CLI share.
	buildEnv := append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	ldflags := "-s -w -X github.com/weir-streaming/weir/version.Version=" + binaryVersion
	if out, err := run(t.Context(), buildTimeout, root, buildEnv,
		"go", "build", "-trimpath", "-ldflags", ldflags, "-o", bin, "./cmd/weir"); err != nil {
		t.Fatalf("go build ./cmd/weir: %v\n%s", err, out)
	}
	start := time.Now()
	if out, err := run(t.Context(), buildTimeout, root, nil,
		"docker", "build", "-f", "deploy/Dockerfile", "--build-arg", "WEIR_BIN="+bin,
		"--build-arg", "VERSION="+binaryVersion, "-t", "weir:"+imageTag, "."); err != nil {
		t.Fatalf("docker build: %v\n%s", err, out)
	}
	t.Logf("image weir:%s built in %v", imageTag, time.Since(start).Round(time.Millisecond))

	// Leftovers of an aborted run would hold another cluster's state.
	_, _ = run(t.Context(), downTimeout, root, env, compose[0], composeArgs("down", "-v", "--remove-orphans")...)
	t.Cleanup(func() {
		// t.Context is already cancelled when cleanups run.
		ctx := context.Background()
		if t.Failed() {
			out, err := run(ctx, downTimeout, root, env, compose[0], composeArgs("logs", "--no-color")...)
			t.Logf("compose logs (err=%v):\n%s", err, out)
		}
		if out, err := run(ctx, downTimeout, root, env, compose[0], composeArgs("down", "-v", "--remove-orphans")...); err != nil {
			t.Errorf("compose down -v: %v\n%s", err, out)
		}
		_, _ = run(ctx, probeTimeout, "", nil, "docker", "image", "rm", "weir:"+imageTag)
	})
	if out, err := run(t.Context(), upTimeout, root, env, compose[0], composeArgs("up", "-d")...); err != nil {
		t.Fatalf("compose up -d: %v\n%s", err, out)
	}

	waitFor(t, readyDeadline, "a leader and 3 serving nodes", func() (bool, string) {
		out, err := cli(t, weir, nil, "cluster", "status", "--output", "json")
		if err != nil {
			return false, fmt.Sprintf("cluster status: %v: %s", err, firstLine(out))
		}
		var st clusterStatus
		if err := json.Unmarshal(out, &st); err != nil {
			return false, fmt.Sprintf("cluster status: bad JSON: %v: %s", err, firstLine(out))
		}
		serving := 0
		for _, n := range st.Nodes {
			if n.Serving {
				serving++
			}
		}
		leader := strings.TrimSpace(string(st.Leader))
		hasLeader := leader != "" && leader != "null" && leader != `""` && leader != "{}"
		return hasLeader && len(st.Nodes) == nodeCount && serving == nodeCount,
			fmt.Sprintf("leader=%s nodes=%d serving=%d", leader, len(st.Nodes), serving)
	})

	if out, err := cli(t, weir, nil, "topic", "create", topicName, "-p", fmt.Sprint(partitions)); err != nil {
		t.Fatalf("topic create: %v\n%s", err, out)
	}

	want := make([]string, recordCount)
	for i := range want {
		want[i] = fmt.Sprintf("compose-record-%04d", i)
	}
	input := strings.Join(want, "\n") + "\n"
	if out, err := cli(t, weir, strings.NewReader(input), "produce", topicName); err != nil {
		t.Fatalf("produce: %v\n%s", err, out)
	}

	// Every produced record is committed, but the node that serves the read
	// may still be applying the tail: read again until all of it is there.
	var got []string
	waitFor(t, readDeadline, fmt.Sprintf("%d records consumed", recordCount), func() (bool, string) {
		out, err := cli(t, weir, nil, "consume", topicName, "-B", "-d")
		if err != nil {
			return false, fmt.Sprintf("consume: %v: %s", err, firstLine(out))
		}
		got = nonEmptyLines(out)
		if len(got) > recordCount {
			t.Fatalf("consume returned %d records, want %d (duplicates?)", len(got), recordCount)
		}
		return len(got) == recordCount, fmt.Sprintf("%d of %d records", len(got), recordCount)
	})

	// Partitions interleave: compare as multisets.
	sort.Strings(got)
	sort.Strings(want)
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("consumed records differ from produced ones: first difference at sorted index %d: got %q, want %q",
				i, got[i], want[i])
		}
	}
}

// cli runs the host-side weir binary against the published API ports and
// returns its stdout (stderr is appended when the command fails).
func cli(t *testing.T, weir string, stdin *strings.Reader, args ...string) ([]byte, error) {
	t.Helper()
	full := append([]string{"--addr", addrs}, args...)
	ctx, cancel := context.WithTimeout(t.Context(), cliTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, weir, full...)
	if stdin != nil {
		cmd.Stdin = stdin
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return append(stdout.Bytes(), stderr.Bytes()...), fmt.Errorf("weir %s: %w", strings.Join(args, " "), err)
	}
	return stdout.Bytes(), nil
}

// run executes name with args in dir and returns its combined output. A nil
// env inherits the test's environment.
func run(parent context.Context, timeout time.Duration, dir string, env []string, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(parent, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	cmd.Env = env
	out, err := cmd.CombinedOutput()
	if ctx.Err() == context.DeadlineExceeded {
		err = fmt.Errorf("%s %s: timed out after %v: %w", name, strings.Join(args, " "), timeout, err)
	}
	return out, err
}

// waitFor polls cond until it holds or the deadline passes; the last status
// cond reported goes into the failure message.
func waitFor(t *testing.T, deadline time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), deadline)
	defer cancel()
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		ok, status := cond()
		if ok {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("waited %v for %s; last: %s", deadline, what, status)
		case <-tick.C:
		}
	}
}

func nonEmptyLines(b []byte) []string {
	var lines []string
	for _, l := range strings.Split(string(b), "\n") {
		if l = strings.TrimRight(l, "\r"); l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

func firstLine(b []byte) string {
	s := strings.TrimSpace(string(b))
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " ..."
	}
	return s
}
