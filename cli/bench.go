package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/weir-streaming/weir/bench"
)

// BenchCmd is `weir bench`: figures, never pass/fail timings.
type BenchCmd struct {
	Produce BenchProduceCmd `cmd:"" help:"Measure produce throughput and acknowledged-request latency (kafka-producer-perf-test style)."`
	Consume BenchConsumeCmd `cmd:"" help:"Measure catch-up read rate from offset 0, and end-to-end latency while following."`
	Raft    BenchRaftCmd    `cmd:"" help:"Measure the raw-Raft ceiling: 3 hashicorp/raft nodes in this process with Weir's log store, fsync and transport, a no-op state machine, and produce-sized entries."`
}

// benchTarget is what every bench subcommand shares: where to run.
type benchTarget struct {
	Local bool   `help:"Start a throw-away 3-node cluster in this process (temporary data, removed afterwards) instead of using --addr."`
	Topic string `help:"Topic to use (created when missing)." default:"bench"`
}

// run starts the local cluster when asked (else uses --addr), runs fn and
// prints its result.
func (t benchTarget) run(g *Globals, s *Streams, p *Printer, fn func(ctx context.Context, addrs []string) (fmt.Stringer, error)) error {
	ctx, cancel := signalContext()
	defer cancel()
	addrs, stop, err := t.addrs(ctx, g, s)
	if err != nil {
		return err
	}
	defer stop()
	res, err := fn(ctx, addrs)
	if err != nil {
		return err
	}
	return printResult(p, res)
}

// addrs starts the local cluster when asked, else resolves --addr; stop
// undoes what it started.
func (t benchTarget) addrs(ctx context.Context, g *Globals, s *Streams) (addrs []string, stop func(), err error) {
	if !t.Local {
		a, _, err := g.addrs()
		return a, func() {}, err
	}
	lc, err := bench.StartLocalCluster(ctx, bench.LocalClusterConfig{
		Logger: hclog.New(&hclog.LoggerOptions{Name: "bench", Level: hclog.Off, Output: s.Err}),
	})
	if err != nil {
		return nil, nil, failf("see the error above; a local bench cluster needs free loopback ports and a writable temp dir", "starting a local bench cluster: %v", err)
	}
	return lc.APIAddrs(), func() { lc.Close() }, nil
}

// BenchProduceCmd is `weir bench produce`.
type BenchProduceCmd struct {
	benchTarget
	Records    int           `help:"Records to send (0: run for --duration)." default:"0"`
	Duration   time.Duration `help:"How long to send (10s when neither this nor --records is set); with --records, a time limit as well."`
	RecordSize int           `help:"Bytes per record value." default:"1024"`
	Producers  int           `help:"Concurrent idempotent producers, one request in flight each." default:"4"`
	Partitions int           `help:"Partitions of the topic when it is created." default:"3"`
	Batch      int           `help:"Records per produce request." default:"100"`
	Rate       int           `help:"Cap on records per second over all producers (0: as fast as acks come back)." default:"0"`
}

// Run runs the produce benchmark and prints one summary line (or JSON).
func (c *BenchProduceCmd) Run(g *Globals, s *Streams, p *Printer) error {
	// Records alone run until they are all sent; Duration alone (or
	// neither: bench.DefaultDuration) for that long.
	return c.run(g, s, p, func(ctx context.Context, addrs []string) (fmt.Stringer, error) {
		return bench.Produce(ctx, bench.ProduceConfig{
			Addrs: addrs, Topic: c.Topic, Partitions: c.Partitions, Records: c.Records, Duration: c.Duration,
			RecordSize: c.RecordSize, Producers: c.Producers, Batch: c.Batch, RatePerSec: c.Rate, Progress: progress(g, s),
		})
	})
}

// BenchConsumeCmd is `weir bench consume`.
type BenchConsumeCmd struct {
	benchTarget
	Follow  time.Duration `help:"After catching up, follow new records this long and report end-to-end latency (needs a producer, e.g. weir bench produce, running meanwhile)." default:"0s"`
	Records int           `help:"With --local: records to produce first, so there is something to read." default:"100000"`
}

// Run runs the consume benchmark.
func (c *BenchConsumeCmd) Run(g *Globals, s *Streams, p *Printer) error {
	return c.run(g, s, p, func(ctx context.Context, addrs []string) (fmt.Stringer, error) {
		if c.Local {
			if _, err := bench.Produce(ctx, bench.ProduceConfig{Addrs: addrs, Topic: c.Topic, Partitions: 3, Records: c.Records,
				RecordSize: 1024, Producers: 4, Batch: 100}); err != nil {
				return nil, err
			}
		}
		return bench.Consume(ctx, bench.ConsumeConfig{Addrs: addrs, Topic: c.Topic, Follow: c.Follow, Progress: progress(g, s)})
	})
}

// BenchRaftCmd is `weir bench raft`.
type BenchRaftCmd struct {
	Duration   time.Duration `help:"How long to apply entries." default:"20s"`
	RecordSize int           `help:"Bytes per record in each entry." default:"1024"`
	Batch      int           `help:"Records per entry (as one produce request)." default:"100"`
	Partitions int           `help:"Partitions an entry's records are spread over." default:"3"`
	Producers  int           `help:"Concurrent appliers, one Apply in flight each." default:"4"`
	Rate       int           `help:"Cap on records per second over all appliers, as bench produce's --rate (0: as fast as Raft commits)." default:"0"`
}

// Run measures the raw-Raft ceiling.
func (c *BenchRaftCmd) Run(g *Globals, s *Streams, p *Printer) error {
	ctx, cancel := signalContext()
	defer cancel()
	res, err := bench.RaftCeiling(ctx, bench.RaftCeilingConfig{
		Duration: c.Duration, RecordSize: c.RecordSize, Batch: c.Batch, Partitions: c.Partitions, Producers: c.Producers,
		RatePerSec: c.Rate, Progress: progress(g, s),
	})
	if err != nil {
		return err
	}
	return printResult(p, res)
}

// printResult prints a benchmark's summary line, or its JSON.
func printResult(p *Printer, res fmt.Stringer) error {
	if p.json {
		return p.JSON(res)
	}
	p.Linef("%s", res)
	return nil
}

// progress shows a line per second on a terminal, and nothing in JSON mode.
func progress(g *Globals, s *Streams) io.Writer {
	if g.JSON() {
		return nil
	}
	if f, ok := s.Err.(*os.File); ok && isTerminal(f) {
		return s.Err
	}
	return nil
}

// signalContext ends on SIGINT or SIGTERM, so an interrupted benchmark still
// prints what it measured.
func signalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
}
