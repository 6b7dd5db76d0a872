package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	"github.com/weir-streaming/weir/fsm"
	"github.com/weir-streaming/weir/node"
	"github.com/weir-streaming/weir/version"
)

// The shape of the benchmarks' load (issue 5's: 1 KiB records, 4
// producers), and the batch sizes compared. Each batch size is one entry
// size; BenchmarkRaftCeiling and BenchmarkWeirProduce run the same cases, so
// `go test -bench . ./bench/` prints the ceiling and Weir side by side.
const (
	benchRecordSize = 1024
	benchProducers  = 4
	benchPartitions = 4
	benchTopic      = "bench"
)

var benchBatches = []int{1, 10, 100}

// Results earlier benchmarks of this run leave for later ones: the
// ceiling's records/s per batch size (pct_of_ceiling), and Weir's produce
// records/s per batch size with addrs=all (BenchmarkWeirConsume's
// x_produce).
var ceilings, weirMax sync.Map // int -> float64

// The consume and half-rate benchmarks' sizes.
const (
	// catchUpRecords is the data set a catch-up reads: 50 000 records of
	// 1 KiB in the benchmark's partitions.
	catchUpRecords = 50000
	catchUpTopic   = "bench-catchup"
	halfRateBatch  = 100
	e2eTopic       = "bench-e2e"
	// followMargin is how much longer a follow lasts than its producer.
	followMargin = time.Second
	// halfRateProbe is how long BenchmarkWeirHalfRate measures the maximum
	// before producing at half of it.
	halfRateProbe = 3 * time.Second
	// pairChunkEntries is how many entries BenchmarkCeilingRatio runs on
	// one side before switching to the other.
	pairChunkEntries = 100
)

// fixture is the one cluster (or pair) the benchmarks keep between their
// b.N rounds (a cluster takes seconds to start). Switching to another closes
// it, so two benchmarks' clusters never run side by side; TestMain closes
// the last.
var fixture struct {
	mu     sync.Mutex
	name   string
	value  io.Closer
	closed bool
}

func useFixture[T io.Closer](b *testing.B, name string, start func() (T, error)) T {
	b.Helper()
	fixture.mu.Lock()
	defer fixture.mu.Unlock()
	if fixture.name == name {
		return fixture.value.(T)
	}
	closeFixtureLocked()
	v, err := start()
	if err != nil {
		b.Fatalf("start %s: %v", name, err)
	}
	fixture.name, fixture.value = name, v
	return v
}

func closeFixtureLocked() {
	if fixture.value != nil {
		if err := fixture.value.Close(); err != nil {
			fmt.Fprintf(os.Stderr, "close %s: %v\n", fixture.name, err)
		}
	}
	fixture.name, fixture.value = "", nil
}

func TestMain(m *testing.M) {
	code := m.Run()
	fixture.mu.Lock()
	closeFixtureLocked()
	fixture.mu.Unlock()
	os.Exit(code)
}

// benchLogger keeps cluster logs to errors.
func benchLogger(name string) hclog.Logger {
	return hclog.New(&hclog.LoggerOptions{Name: name, Level: hclog.Error, Output: os.Stderr})
}

// BenchmarkRaftCeiling applies b.N produce-sized entries to a no-op 3-node
// Raft cluster with Weir's Raft settings. ns/op is per entry.
func BenchmarkRaftCeiling(b *testing.B) {
	for _, batch := range benchBatches {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			rc := useFixture(b, "raft-ceiling", func() (*raftCluster, error) {
				return startRaftCluster(context.Background(), "", benchLogger("raft"), nil)
			})
			b.ResetTimer()
			disk := startDiskMeter()
			res, err := rc.run(context.Background(), RaftCeilingConfig{
				Entries: b.N, Batch: batch, RecordSize: benchRecordSize, Partitions: benchPartitions, Producers: benchProducers,
			})
			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			disk.report(b, res.Bytes)
			ceilings.Store(batch, res.RecordsPerSec)
			b.ReportMetric(res.RecordsPerSec, "records/s")
			b.ReportMetric(res.MBPerSec, "MiB/s")
			b.ReportMetric(float64(res.ApplyP50.Microseconds())/1000, "p50_ms")
			b.ReportMetric(float64(res.ApplyP99.Microseconds())/1000, "p99_ms")
		})
	}
}

// BenchmarkRaftWithFSM is BenchmarkRaftCeiling with Weir's state machine
// (fsm.FSM on bbolt, as a node opens it) in place of the no-op: between the
// ceiling and BenchmarkWeirProduce, it splits Weir's overhead into the state
// machine's share and the node's (HTTP, forwarding, encoding) share.
func BenchmarkRaftWithFSM(b *testing.B) {
	for _, batch := range benchBatches {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			rc := useFixture(b, "raft-with-fsm", func() (*raftCluster, error) {
				return startRaftWithFSM(context.Background(), benchLogger("raft"))
			})
			b.ResetTimer()
			disk := startDiskMeter()
			res, err := rc.run(context.Background(), RaftCeilingConfig{
				Entries: b.N, Batch: batch, RecordSize: benchRecordSize, Partitions: benchPartitions, Producers: benchProducers,
			})
			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			disk.report(b, res.Bytes)
			b.ReportMetric(res.RecordsPerSec, "records/s")
			b.ReportMetric(res.MBPerSec, "MiB/s")
			b.ReportMetric(float64(res.ApplyP50.Microseconds())/1000, "p50_ms")
			b.ReportMetric(float64(res.ApplyP99.Microseconds())/1000, "p99_ms")
			if c, ok := ceilings.Load(batch); ok && c.(float64) > 0 {
				b.ReportMetric(100*res.RecordsPerSec/c.(float64), "pct_of_ceiling")
			}
		})
	}
}

// startRaftWithFSM is the ceiling's cluster with fsm.FSM, initialized and
// holding the benchmark topic, so produce entries are applied for real.
func startRaftWithFSM(ctx context.Context, logger hclog.Logger) (*raftCluster, error) {
	rc, err := startRaftCluster(ctx, "", logger, func(dir string) (raft.FSM, error) {
		// As a node opens it after a clean start (node/durability.go).
		return fsm.Open(filepath.Join(dir, "state.db"), logger.Named("fsm"), fsm.Options{NoSync: true})
	})
	if err != nil {
		return nil, err
	}
	leader, err := rc.waitLeader(ctx)
	if err == nil {
		for _, c := range []struct {
			t   fsm.MessageType
			msg any
		}{
			{fsm.InitType, fsm.InitCommand{ClusterID: "bench", Version: version.Version, By: "r1", At: time.Now().UnixMilli()}},
			{fsm.CreateTopicType, fsm.CreateTopicCommand{Name: DefaultTopic, Partitions: benchPartitions, At: time.Now().UnixMilli()}},
		} {
			var buf []byte
			if buf, err = fsm.Encode(c.t, c.msg); err != nil {
				break
			}
			f := leader.Apply(buf, ceilingApplyTimeout)
			if err = f.Error(); err != nil {
				break
			}
			if rerr, ok := f.Response().(error); ok {
				err = rerr
				break
			}
		}
	}
	if err != nil {
		rc.Close()
		return nil, err
	}
	return rc, nil
}

// BenchmarkWeirProduce sends b.N produce requests of the ceiling's sizes to
// a real 3-node Weir cluster in this process, round-robin over every node
// (addrs=all: two requests in three are forwarded to the leader) or to the
// leader only. ns/op is per request, which is one Raft entry.
func BenchmarkWeirProduce(b *testing.B) {
	for _, batch := range benchBatches {
		for _, addrs := range []string{"all", "leader"} {
			b.Run(fmt.Sprintf("batch=%d/addrs=%s", batch, addrs), func(b *testing.B) {
				lc := weirFixture(b)
				targets := lc.APIAddrs()
				if addrs == "leader" {
					leader, err := lc.LeaderAPIAddr(context.Background())
					if err != nil {
						b.Fatal(err)
					}
					targets = []string{leader}
				}
				b.ResetTimer()
				disk := startDiskMeter()
				res, err := Produce(context.Background(), ProduceConfig{
					Addrs: targets, Topic: benchTopic, Partitions: benchPartitions,
					Records: b.N * batch, RecordSize: benchRecordSize, Producers: benchProducers, Batch: batch,
				})
				b.StopTimer()
				if err != nil {
					b.Fatal(err)
				}
				disk.report(b, res.Bytes)
				b.ReportMetric(res.RecordsPerSec, "records/s")
				b.ReportMetric(res.MBPerSec, "MiB/s")
				b.ReportMetric(float64(res.LatencyP50.Microseconds())/1000, "p50_ms")
				b.ReportMetric(float64(res.LatencyP99.Microseconds())/1000, "p99_ms")
				if addrs == "all" {
					weirMax.Store(batch, res.RecordsPerSec)
				}
				if c, ok := ceilings.Load(batch); ok && c.(float64) > 0 {
					b.ReportMetric(100*res.RecordsPerSec/c.(float64), "pct_of_ceiling")
				}
			})
		}
	}
}

func weirFixture(b *testing.B) *LocalCluster {
	return useFixture(b, "weir", func() (*LocalCluster, error) {
		return StartLocalCluster(context.Background(), LocalClusterConfig{Logger: benchLogger("weir")})
	})
}

// BenchmarkWeirConsume reads a topic of catchUpRecords 1 KiB records from
// offset 0 to its end, every partition in parallel, through every node: the
// catch-up rate. One op is one whole catch-up; x_produce compares it with
// BenchmarkWeirProduce's batch=100 rate of this run.
func BenchmarkWeirConsume(b *testing.B) {
	lc := weirFixture(b)
	ctx := context.Background()
	// The data set, written once per cluster.
	hc := newHTTPClient(1)
	bases, _ := baseURLs(lc.APIAddrs())
	have := 0
	if t, err := describeTopic(ctx, hc, bases, catchUpTopic); err == nil {
		for _, p := range t.Partitions {
			have += int(p.HighWatermark - p.LogStart)
		}
	}
	if have < catchUpRecords {
		if _, err := Produce(ctx, ProduceConfig{
			Addrs: lc.APIAddrs(), Topic: catchUpTopic, Partitions: benchPartitions, Records: catchUpRecords - have,
			RecordSize: benchRecordSize, Producers: benchProducers, Batch: halfRateBatch,
		}); err != nil {
			b.Fatal(err)
		}
	}
	b.ResetTimer()
	var records int64
	var elapsed time.Duration
	for range b.N {
		res, err := Consume(ctx, ConsumeConfig{Addrs: lc.APIAddrs(), Topic: catchUpTopic})
		if err != nil {
			b.Fatal(err)
		}
		if res.Records < catchUpRecords {
			b.Fatalf("read %d records, want %d", res.Records, catchUpRecords)
		}
		records += res.Records
		elapsed += res.Elapsed
	}
	b.StopTimer()
	rate := perSec(records, elapsed)
	b.ReportMetric(rate, "records/s")
	b.ReportMetric(rate*benchRecordSize/mb, "MiB/s")
	if p, ok := weirMax.Load(halfRateBatch); ok && p.(float64) > 0 {
		b.ReportMetric(rate/p.(float64), "x_produce")
	}
}

// BenchmarkWeirHalfRate measures Weir's maximum with 100-record requests
// for halfRateProbe, then produces b.N requests at half that rate and
// reports the latency percentiles there (the "p99 at half of max").
// Latency counts from when a request was due, so a cluster that falls
// behind the rate shows it. follow=true also follows the topic with Consume
// from every node and reports end-to-end latency, send to receipt.
func BenchmarkWeirHalfRate(b *testing.B) {
	for _, follow := range []bool{false, true} {
		b.Run(fmt.Sprintf("follow=%v", follow), func(b *testing.B) {
			lc := weirFixture(b)
			ctx := context.Background()
			cfg := ProduceConfig{
				Addrs: lc.APIAddrs(), Topic: benchTopic, Partitions: benchPartitions,
				RecordSize: benchRecordSize, Producers: benchProducers, Batch: halfRateBatch,
			}
			if follow {
				cfg.Topic = e2eTopic
			}
			probe := cfg
			probe.Duration = halfRateProbe
			peak, err := Produce(ctx, probe)
			if err != nil {
				b.Fatal(err)
			}
			rate := int(peak.RecordsPerSec / 2)
			cfg.Records, cfg.RatePerSec = b.N*halfRateBatch, rate
			var (
				wg   sync.WaitGroup
				cres ConsumeResult
				cerr error
			)
			if follow {
				d := time.Duration(float64(cfg.Records)/float64(rate)*float64(time.Second)) + followMargin
				wg.Add(1)
				go func() {
					defer wg.Done()
					cres, cerr = Consume(ctx, ConsumeConfig{Addrs: lc.APIAddrs(), Topic: e2eTopic, Follow: d, SkipCatchUp: true})
				}()
			}
			b.ResetTimer()
			res, err := Produce(ctx, cfg)
			b.StopTimer()
			wg.Wait()
			if err != nil || cerr != nil {
				b.Fatal(err, cerr)
			}
			b.ReportMetric(peak.RecordsPerSec, "max_records/s")
			b.ReportMetric(res.RecordsPerSec, "records/s")
			b.ReportMetric(float64(res.LatencyP50.Microseconds())/1000, "p50_ms")
			b.ReportMetric(float64(res.LatencyP99.Microseconds())/1000, "p99_ms")
			b.ReportMetric(float64(res.LatencyP999.Microseconds())/1000, "p999_ms")
			if follow {
				b.ReportMetric(float64(cres.E2EP50.Microseconds())/1000, "e2e_p50_ms")
				b.ReportMetric(float64(cres.E2EP99.Microseconds())/1000, "e2e_p99_ms")
			}
		})
	}
}

// ratioPair is the ceiling's cluster and a Weir cluster, both up.
type ratioPair struct {
	rc *raftCluster
	lc *LocalCluster
}

func (p ratioPair) Close() error { return errors.Join(p.rc.Close(), p.lc.Close()) }

// BenchmarkRaftHalfRate is BenchmarkWeirHalfRate on the raw-Raft ceiling:
// its maximum with 100-record entries for halfRateProbe, then b.N entries
// at half of it, latency from when each was due. Raft's own tail at half
// rate on this machine, the floor under Weir's.
func BenchmarkRaftHalfRate(b *testing.B) {
	rc := useFixture(b, "raft-ceiling", func() (*raftCluster, error) {
		return startRaftCluster(context.Background(), "", benchLogger("raft"), nil)
	})
	ctx := context.Background()
	cfg := RaftCeilingConfig{Batch: halfRateBatch, RecordSize: benchRecordSize, Partitions: benchPartitions, Producers: benchProducers}
	probe := cfg
	probe.Duration = halfRateProbe
	peak, err := rc.run(ctx, probe)
	if err != nil {
		b.Fatal(err)
	}
	cfg.Entries, cfg.RatePerSec = b.N, int(peak.RecordsPerSec/2)
	b.ResetTimer()
	res, err := rc.run(ctx, cfg)
	b.StopTimer()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(peak.RecordsPerSec, "max_records/s")
	b.ReportMetric(res.RecordsPerSec, "records/s")
	b.ReportMetric(float64(res.ApplyP50.Microseconds())/1000, "p50_ms")
	b.ReportMetric(float64(res.ApplyP99.Microseconds())/1000, "p99_ms")
	b.ReportMetric(float64(res.ApplyP999.Microseconds())/1000, "p999_ms")
}

// BenchmarkCeilingRatio runs the ceiling and Weir (addrs=all) in
// alternating chunks of pairChunkEntries entries, b.N entries each, so both
// see the same moments of a shared machine: the ratio with the least noise.
// ns/op is per pair of entries.
func BenchmarkCeilingRatio(b *testing.B) {
	for _, batch := range benchBatches {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			pair := useFixture(b, "ratio-pair", func() (ratioPair, error) {
				rc, err := startRaftCluster(context.Background(), "", benchLogger("raft"), nil)
				if err != nil {
					return ratioPair{}, err
				}
				lc, err := StartLocalCluster(context.Background(), LocalClusterConfig{Logger: benchLogger("weir")})
				if err != nil {
					rc.Close()
					return ratioPair{}, err
				}
				return ratioPair{rc, lc}, nil
			})
			ctx := context.Background()
			var raftRecords, weirRecords int64
			var raftTime, weirTime time.Duration
			b.ResetTimer()
			for done := 0; done < b.N; {
				n := min(pairChunkEntries, b.N-done)
				rres, err := pair.rc.run(ctx, RaftCeilingConfig{
					Entries: n, Batch: batch, RecordSize: benchRecordSize, Partitions: benchPartitions, Producers: benchProducers,
				})
				if err != nil {
					b.Fatal(err)
				}
				wres, err := Produce(ctx, ProduceConfig{
					Addrs: pair.lc.APIAddrs(), Topic: benchTopic, Partitions: benchPartitions,
					Records: n * batch, RecordSize: benchRecordSize, Producers: benchProducers, Batch: batch,
				})
				if err != nil {
					b.Fatal(err)
				}
				raftRecords, raftTime = raftRecords+rres.Records, raftTime+rres.Elapsed
				weirRecords, weirTime = weirRecords+wres.Records, weirTime+wres.Elapsed
				done += n
			}
			b.StopTimer()
			c, w := perSec(raftRecords, raftTime), perSec(weirRecords, weirTime)
			b.ReportMetric(c, "ceiling_records/s")
			b.ReportMetric(w, "weir_records/s")
			if c > 0 {
				b.ReportMetric(100*w/c, "pct_of_ceiling")
			}
		})
	}
}

// diskWritten is the bytes this process has caused to be written to storage
// (Linux /proc/self/io write_bytes, counted when a page is dirtied), or
// false where that is not available.
func diskWritten() (uint64, bool) {
	data, err := os.ReadFile("/proc/self/io")
	if err != nil {
		return 0, false
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "write_bytes: "); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 10, 64)
			return n, err == nil
		}
	}
	return 0, false
}

// diskMeter reports disk bytes written per payload byte over a benchmark:
// the write amplification of every node in this process together.
type diskMeter struct {
	start uint64
	ok    bool
}

func startDiskMeter() diskMeter {
	n, ok := diskWritten()
	return diskMeter{start: n, ok: ok}
}

func (m diskMeter) report(b *testing.B, payloadBytes int64) {
	n, ok := diskWritten()
	if m.ok && ok && payloadBytes > 0 {
		b.ReportMetric(float64(n-m.start)/float64(payloadBytes), "disk_B/payload_B")
	}
}

// BenchmarkRaftLogStore appends 100 KiB entries (a 100-record request) to a
// node's Raft log store (node.OpenRaftStorage: raft-boltdb, fsync), k
// entries per append as Raft batches them. disk_B/payload_B shows what the
// log writes per byte of entry on one node: bbolt rewrites the last leaf,
// which holds two to four such entries, on every append, so the fewer
// entries an append carries the more of the earlier ones it writes again.
func BenchmarkRaftLogStore(b *testing.B) {
	for _, k := range []int{1, 4, 16} {
		b.Run(fmt.Sprintf("entries_per_append=%d", k), func(b *testing.B) {
			rs, err := node.OpenRaftStorage(b.TempDir(), hclog.NewNullLogger())
			if err != nil {
				b.Fatal(err)
			}
			defer rs.Store.Close()
			data := bytes.Repeat([]byte{7}, halfRateBatch*benchRecordSize)
			logs := make([]*raft.Log, k)
			index := uint64(0)
			b.ResetTimer()
			disk := startDiskMeter()
			for range b.N {
				for i := range logs {
					index++
					logs[i] = &raft.Log{Index: index, Term: 1, Type: raft.LogCommand, Data: data}
				}
				if err := rs.Logs.StoreLogs(logs); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			payload := int64(b.N) * int64(k) * int64(len(data))
			disk.report(b, payload)
			b.ReportMetric(float64(payload)/mb/b.Elapsed().Seconds(), "MiB/s")
		})
	}
}
