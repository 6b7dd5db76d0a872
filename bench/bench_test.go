package bench

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
)

const testTimeout = 60 * time.Second

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

func newTestCluster(t *testing.T) *LocalCluster {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a 3-node cluster")
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	logger := hclog.New(&hclog.LoggerOptions{Name: t.Name(), Level: hclog.Warn, Output: newTestWriter(t)})
	lc, err := StartLocalCluster(ctx, LocalClusterConfig{Dir: t.TempDir(), Logger: logger})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lc.Close() })
	return lc
}

// TestProduceConsume_CountsMatch checks the load generator's bookkeeping
// against a real cluster: what Produce reports acknowledged, Consume reads
// back, and a follow measures end-to-end latency from the send stamps.
func TestProduceConsume_CountsMatch(t *testing.T) {
	lc := newTestCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	pres, err := Produce(ctx, ProduceConfig{
		Addrs: lc.APIAddrs(), Topic: "t", Partitions: 3, Records: 2050, RecordSize: 100, Producers: 3, Batch: 100,
	})
	if err != nil {
		t.Fatal(err)
	}
	if pres.Records != 2050 || pres.Bytes != 205000 || pres.Requests != 21 || pres.Errors != 0 {
		t.Fatalf("produce: %+v", pres)
	}
	if pres.LatencyP50 <= 0 || pres.LatencyP99 < pres.LatencyP50 || pres.LatencyMax < pres.LatencyP999 {
		t.Fatalf("produce latencies: %+v", pres)
	}
	t.Log(pres)

	cres, err := Consume(ctx, ConsumeConfig{Addrs: lc.APIAddrs(), Topic: "t", MaxBytes: 64 << 10})
	if err != nil {
		t.Fatal(err)
	}
	if cres.Records != 2050 || cres.Bytes != 205000 {
		t.Fatalf("consume: %+v", cres)
	}
	t.Log(cres)

	// Follow while a rate-capped producer writes.
	var wg sync.WaitGroup
	wg.Add(1)
	var perr error
	go func() {
		defer wg.Done()
		_, perr = Produce(ctx, ProduceConfig{
			Addrs: lc.APIAddrs(), Topic: "t", Records: 1000, RecordSize: 64, Producers: 1, Batch: 10, RatePerSec: 500,
		})
	}()
	cres, err = Consume(ctx, ConsumeConfig{Addrs: lc.APIAddrs(), Topic: "t", Follow: 3 * time.Second})
	wg.Wait()
	if err != nil || perr != nil {
		t.Fatal(err, perr)
	}
	if cres.E2ERecords == 0 || cres.E2ESource != E2ESourceSend || cres.E2EP50 <= 0 {
		t.Fatalf("follow: %+v", cres)
	}
	t.Log(cres)
}

func TestProduce_RefusesTopicWithOtherPartitions(t *testing.T) {
	lc := newTestCluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	cfg := ProduceConfig{Addrs: lc.APIAddrs(), Topic: "t", Partitions: 2, Records: 1, Batch: 1}
	if _, err := Produce(ctx, cfg); err != nil {
		t.Fatal(err)
	}
	cfg.Partitions = 3
	if _, err := Produce(ctx, cfg); !errors.Is(err, ErrConfig) {
		t.Fatalf("got %v, want ErrConfig", err)
	}
}

func TestProduce_RejectsOversizedBatch(t *testing.T) {
	_, err := Produce(context.Background(), ProduceConfig{Addrs: []string{"127.0.0.1:1"}, RecordSize: 1 << 20, Batch: 9})
	if !errors.Is(err, ErrConfig) {
		t.Fatalf("got %v, want ErrConfig", err)
	}
}

func TestRaftCeiling_AppliesEveryEntry(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a 3-node Raft cluster")
	}
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	res, err := RaftCeiling(ctx, RaftCeilingConfig{
		Entries: 20, Batch: 10, RecordSize: 100, Partitions: 3, Producers: 2, Dir: t.TempDir(),
		Logger: hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Warn, Output: newTestWriter(t)}),
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.Entries != 20 || res.Records != 200 || res.Bytes != 20000 || res.Errors != 0 || res.EntryBytes < 1000 || res.ApplyP50 <= 0 {
		t.Fatalf("ceiling: %+v", res)
	}
	t.Log(res)
}
