package transport

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestFaults_Blocked(t *testing.T) {
	f := NewFaults()
	f.Partition([]string{"a", "b"}, []string{"c"})
	f.Isolate("e")
	cases := []struct {
		from, to string
		blocked  bool
	}{
		{"a", "b", false},
		{"a", "c", true},
		{"c", "a", true},
		{"a", "d", false}, // d is in no group: reachable by all
		{"d", "c", false},
		{"e", "d", true},
		{"d", "e", true},
		{"e", "e", false},
	}
	for _, tc := range cases {
		if got := f.Blocked(tc.from, tc.to); got != tc.blocked {
			t.Errorf("Blocked(%s, %s) = %v, want %v", tc.from, tc.to, got, tc.blocked)
		}
	}
	f.Heal()
	for _, tc := range cases {
		if f.Blocked(tc.from, tc.to) {
			t.Errorf("Blocked(%s, %s) after Heal", tc.from, tc.to)
		}
	}
	var none *Faults
	if none.Blocked("a", "b") {
		t.Error("nil Faults blocks")
	}
}

func TestFaults_PartitionRefusesAndClosesConns(t *testing.T) {
	f := NewFaults()
	a, b := newTestMux(t, f), newTestMux(t, f)
	b.ServeRPC(echoHandler)
	aAddr, bAddr := a.Addr().String(), b.Addr().String()
	c := newTestClient(t, aAddr, f)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	if _, err := c.Call(ctx, bAddr, 1, nil); err != nil {
		t.Fatalf("call before partition: %v", err)
	}
	f.mu.Lock()
	tracked := len(f.conns)
	f.mu.Unlock()
	if tracked != 1 {
		t.Fatalf("tracked conns = %d, want 1", tracked)
	}

	f.Partition([]string{aAddr}, []string{bAddr})
	f.mu.Lock()
	tracked = len(f.conns)
	f.mu.Unlock()
	if tracked != 0 {
		t.Fatalf("tracked conns after partition = %d, want 0 (closed)", tracked)
	}
	// The pooled conn was closed by the cut; a new dial is refused.
	if _, err := c.Call(ctx, bAddr, 1, nil); !errors.Is(err, ErrPartitioned) {
		t.Fatalf("call across the cut = %v, want ErrPartitioned", err)
	}

	f.Heal()
	if _, err := c.Call(ctx, bAddr, 1, nil); err != nil {
		t.Fatalf("call after heal: %v", err)
	}
	// A pooled conn closed by a cut while idle is skipped, not an error.
	f.Isolate(bAddr)
	f.Heal()
	if _, err := c.Call(ctx, bAddr, 1, nil); err != nil {
		t.Fatalf("call on a pool emptied by a cut: %v", err)
	}
}

func TestFaults_Delay(t *testing.T) {
	f := NewFaults()
	a, b := newTestMux(t, f), newTestMux(t, f)
	b.ServeRPC(echoHandler)
	c := newTestClient(t, a.Addr().String(), f)
	const delay = 20 * time.Millisecond
	f.SetDelay(delay)
	start := time.Now()
	if _, err := c.Call(context.Background(), b.Addr().String(), 1, []byte("x")); err != nil {
		t.Fatalf("call: %v", err)
	}
	if took := time.Since(start); took < delay {
		t.Fatalf("call took %s with a %s write delay", took, delay)
	}
}
