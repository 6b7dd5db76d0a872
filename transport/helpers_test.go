package transport

import (
	"io"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

// waitFor polls cond until it holds or timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond) // poll interval, not a wait for a state
	}
}

// testWriter sends log lines to t.Log until the test ends; goroutines that
// outlive the test (raft's) must not call t.Log afterwards.
type testWriter struct {
	t    *testing.T
	mu   sync.Mutex
	done bool
}

func newTestWriter(t *testing.T) *testWriter {
	w := &testWriter{t: t}
	t.Cleanup(func() {
		w.mu.Lock()
		w.done = true
		w.mu.Unlock()
	})
	return w
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimRight(string(p), "\n"))
	}
	return len(p), nil
}

func testLogger(t *testing.T, name string, level hclog.Level) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: name, Level: level, Output: io.Writer(newTestWriter(t))})
}

// newTestMux listens on a free loopback port and closes the Mux when the
// test ends.
func newTestMux(t *testing.T, faults *Faults) *Mux {
	t.Helper()
	m, err := Listen(Config{BindAddr: "127.0.0.1:0", Logger: testLogger(t, "mux", hclog.Debug), Faults: faults})
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

func newTestClient(t *testing.T, local string, faults *Faults) *Client {
	c := NewClient(local, faults, nil, testLogger(t, "client", hclog.Debug))
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// idleConns reports how many idle connections c holds for addr.
func (c *Client) idleConns(addr string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.idle[addr])
}
