package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/weir-streaming/weir/api"
)

// TestNodeSet_SkipsAddressThatGaveNoAnswer: the round robin leaves out an
// address marked down until downFor has passed, answers clear a mark, and
// with every address marked it still hands one out.
func TestNodeSet_SkipsAddressThatGaveNoAnswer(t *testing.T) {
	s := newNodeSet([]string{"a", "b", "c"})
	clock := time.Unix(1_000_000, 0)
	s.now = func() time.Time { return clock }
	picks := func(n int) string {
		var out []string
		for range n {
			_, b := s.pick()
			out = append(out, b)
		}
		return strings.Join(out, "")
	}
	if got := picks(4); got != "abca" {
		t.Fatalf("round robin %q, want abca", got)
	}
	if !s.markDown(1) {
		t.Fatal("markDown(b) reported no other address to try")
	}
	if got := picks(4); got != "caca" {
		t.Fatalf("with b down: %q, want caca", got)
	}
	clock = clock.Add(downFor - time.Nanosecond)
	if got := picks(2); got != "ca" {
		t.Fatalf("just before downFor: %q, want ca", got)
	}
	clock = clock.Add(time.Nanosecond)
	if got := picks(3); got != "bca" {
		t.Fatalf("after downFor: %q, want bca", got)
	}

	// Every address down: markDown says so, and pick still answers, in turn.
	if !s.markDown(0) || !s.markDown(1) || s.markDown(2) {
		t.Fatal("markDown must report false only once every address is down")
	}
	if got := picks(3); got != "bca" {
		t.Fatalf("all down: %q, want bca", got)
	}
	s.answered(2)
	if got := picks(3); got != "ccc" {
		t.Fatalf("after c answered: %q, want ccc", got)
	}
}

// TestNextBackoff: the produce retry's wait doubles from retryBackoff and
// stops at retryBackoffMax.
func TestNextBackoff(t *testing.T) {
	var got []time.Duration
	for w := retryBackoff; len(got) < 6; w = nextBackoff(w) {
		got = append(got, w)
	}
	want := []time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 500 * time.Millisecond, 500 * time.Millisecond}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("backoffs %v, want %v", got, want)
	}
}

// TestProduce_SkipsDeadAddress runs Produce against a dead address (nothing
// listens) and a live one: after the dead address refused a connection the
// round robin sends nothing there for downFor, instead of every other
// request, and every record is acknowledged.
func TestProduce_SkipsDeadAddress(t *testing.T) {
	var produced atomic.Int64
	topicPath := strings.Replace(api.PathTopic, "{name}", DefaultTopic, 1)
	producePath := strings.Replace(api.PathProduce, "{name}", DefaultTopic, 1)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.Method == http.MethodGet && r.URL.Path == topicPath:
			_ = json.NewEncoder(w).Encode(api.Topic{Name: DefaultTopic, Partitions: []api.PartitionInfo{{Partition: 0}}})
		case r.Method == http.MethodPost && r.URL.Path == producePath:
			produced.Add(1)
			fmt.Fprint(w, `{}`)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := ln.Addr().String()
	ln.Close()

	const producers, requests = 2, 40
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	res, err := Produce(ctx, ProduceConfig{
		Addrs:      []string{srv.Listener.Addr().String(), dead},
		Records:    requests * 10,
		Batch:      10,
		Producers:  producers,
		RecordSize: 16,
	})
	if err != nil {
		t.Fatalf("Produce: %v", err)
	}
	if res.Records != requests*10 || res.Requests != requests || produced.Load() != requests {
		t.Fatalf("acknowledged %d records in %d requests, server took %d; want %d in %d",
			res.Records, res.Requests, produced.Load(), requests*10, requests)
	}
	// Each producer may reach the dead address once before it is marked,
	// and once more per downFor the run lasted. Without the skip, half the
	// requests would go there first.
	limit := int64(producers) * (2 + int64(res.Elapsed/downFor))
	if res.Errors < 1 || res.Errors > limit {
		t.Fatalf("%d failed attempts in %s, want 1..%d", res.Errors, res.Elapsed, limit)
	}
}
