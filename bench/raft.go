package bench

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"github.com/weir-streaming/weir/fsm"
	"github.com/weir-streaming/weir/node"
	"github.com/weir-streaming/weir/record"
	"github.com/weir-streaming/weir/transport"
)

// The ceiling runs Raft exactly as a node does: node.OpenRaftStorage,
// node.NewRaftTransport and node.RaftConfig with the default timings.
const (
	// ceilingApplyTimeout is the enqueue timeout of one Apply, node's
	// applyTimeout.
	ceilingApplyTimeout = 10 * time.Second
	// ceilingLeaderTimeout bounds waiting for the ceiling cluster's leader.
	ceilingLeaderTimeout = 30 * time.Second
	// ceilingNodes is the ceiling cluster's size.
	ceilingNodes = 3
)

// RaftCeilingConfig is one ceiling run. Zero fields take the load
// generator's defaults, so a ceiling and a Produce with the same sizes make
// the same entries.
type RaftCeilingConfig struct {
	// Entries bounds the run by entries applied; Duration by time; the run
	// ends at whichever comes first; neither set means DefaultDuration.
	Entries  int
	Duration time.Duration
	// Batch records of RecordSize bytes make one entry, placed over
	// Partitions (1 when 0) as a node places an unkeyed request
	// (node.Place: one partition per request).
	Batch      int
	RecordSize int
	Partitions int
	// Producers is how many goroutines apply concurrently, each with one
	// Apply in flight.
	Producers int
	// RatePerSec caps the records applied per second over all producers,
	// as ProduceConfig's does (latency then counts from when an entry was
	// due); 0: as fast as Raft commits.
	RatePerSec int
	// Dir holds the nodes' data directories; empty: a temporary directory,
	// removed afterwards.
	Dir string
	// Logger receives Raft's logs; nil: errors only, to stderr.
	Logger hclog.Logger
	// Progress receives a line per second; nil: none.
	Progress io.Writer
}

// RaftCeilingResult is what raw Raft sustained. Byte rates count record
// payload, as ProduceResult's do; EntryBytes is the size of one entry as
// Raft stores it.
type RaftCeilingResult struct {
	Entries       int64         `json:"entries"`
	Records       int64         `json:"records"`
	Bytes         int64         `json:"bytes"`
	EntryBytes    int           `json:"entry_bytes"`
	Elapsed       time.Duration `json:"elapsed_ns"`
	EntriesPerSec float64       `json:"entries_per_sec"`
	RecordsPerSec float64       `json:"records_per_sec"`
	MBPerSec      float64       `json:"mb_per_sec"`
	ApplyP50      time.Duration `json:"apply_p50_ns"`
	ApplyP99      time.Duration `json:"apply_p99_ns"`
	ApplyP999     time.Duration `json:"apply_p999_ns"`
	ApplyMax      time.Duration `json:"apply_max_ns"`
	Errors        int64         `json:"errors"`
}

// String is one summary line.
func (r RaftCeilingResult) String() string {
	return fmt.Sprintf("raft ceiling: %d entries of %d bytes, %.1f entries/sec, %.1f records/sec (%.2f MB/sec), %s p50, %s p99, %s max apply latency, %d errors",
		r.Entries, r.EntryBytes, r.EntriesPerSec, r.RecordsPerSec, r.MBPerSec, ms(r.ApplyP50), ms(r.ApplyP99), ms(r.ApplyMax), r.Errors)
}

func (c *RaftCeilingConfig) setDefaults() {
	pc := ProduceConfig{Batch: c.Batch, RecordSize: c.RecordSize, Producers: c.Producers, Records: c.Entries, Duration: c.Duration}
	pc.setDefaults()
	c.Batch, c.RecordSize, c.Producers, c.Duration = pc.Batch, pc.RecordSize, pc.Producers, pc.Duration
	if c.Partitions == 0 {
		c.Partitions = 1
	}
	if c.Logger == nil {
		c.Logger = hclog.New(&hclog.LoggerOptions{Name: "raft", Level: hclog.Error})
	}
}

// RaftCeiling starts a 3-node hashicorp/raft cluster in this process on
// loopback TCP, configured as a Weir node configures Raft (raft-boltdb with
// fsync behind a 128-entry LogCache, fsm.SnapshotStore, the transport
// package's Mux as stream layer, BatchApplyCh, Weir's default timings) but
// with a state machine that does nothing, and applies produce entries of
// Batch records of RecordSize bytes from Producers goroutines: the most
// Weir could sustain on this machine if its own layers cost nothing.
func RaftCeiling(ctx context.Context, cfg RaftCeilingConfig) (RaftCeilingResult, error) {
	cfg.setDefaults()
	pc := ProduceConfig{RecordSize: cfg.RecordSize, Producers: cfg.Producers, Batch: cfg.Batch, Records: cfg.Entries,
		Duration: cfg.Duration, RatePerSec: cfg.RatePerSec, Partitions: cfg.Partitions}
	if err := pc.validate(); err != nil {
		return RaftCeilingResult{}, err
	}
	rc, err := startRaftCluster(ctx, cfg.Dir, cfg.Logger, nil)
	if err != nil {
		return RaftCeilingResult{}, err
	}
	defer rc.Close()
	return rc.run(ctx, cfg)
}

// raftCluster is the ceiling's Raft cluster.
type raftCluster struct {
	nodes  []*raftNode
	dir    string
	ownDir bool
}

type raftNode struct {
	mux   *transport.Mux
	store *raftboltdb.BoltStore
	raft  *raft.Raft
	fsm   raft.FSM
}

// stateMachine makes a node's state machine in its data directory; nil
// means noopFSM. The benchmarks swap in Weir's own to measure what it costs.
type stateMachine func(dir string) (raft.FSM, error)

func startRaftCluster(ctx context.Context, dir string, logger hclog.Logger, newFSM stateMachine) (*raftCluster, error) {
	c := &raftCluster{dir: dir}
	if dir == "" {
		d, err := os.MkdirTemp("", "weir-raft-ceiling-")
		if err != nil {
			return nil, err
		}
		c.dir, c.ownDir = d, true
	}
	var servers []raft.Server
	for i := 1; i <= ceilingNodes; i++ {
		id := fmt.Sprintf("r%d", i)
		rn, err := startRaftNode(filepath.Join(c.dir, id), id, logger.Named(id), newFSM)
		if rn != nil {
			c.nodes = append(c.nodes, rn)
		}
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("start raft node %s: %w", id, err)
		}
		servers = append(servers, raft.Server{Suffrage: raft.Voter, ID: raft.ServerID(id), Address: raft.ServerAddress(rn.mux.Addr().String())})
	}
	if err := c.nodes[0].raft.BootstrapCluster(raft.Configuration{Servers: servers}).Error(); err != nil {
		c.Close()
		return nil, fmt.Errorf("bootstrap raft ceiling cluster: %w", err)
	}
	if _, err := c.waitLeader(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// startRaftNode opens one node's storage and starts Raft as node.startRaft
// does. On error it returns what it started, for Close.
func startRaftNode(dir, id string, logger hclog.Logger, newFSM stateMachine) (*raftNode, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	var sm raft.FSM = noopFSM{}
	if newFSM != nil {
		var err error
		if sm, err = newFSM(dir); err != nil {
			return nil, err
		}
	}
	mux, err := transport.Listen(transport.Config{BindAddr: loopbackAny, Logger: logger.Named("transport")})
	if err != nil {
		if c, ok := sm.(io.Closer); ok {
			c.Close()
		}
		return nil, err
	}
	rn := &raftNode{mux: mux, fsm: sm}
	rs, err := node.OpenRaftStorage(dir, logger)
	if err != nil {
		return rn, err
	}
	rn.store = rs.Store
	trans := node.NewRaftTransport(mux.RaftLayer(), logger)
	conf := node.RaftConfig(node.Config{ID: id}, logger)
	rn.raft, err = raft.NewRaft(conf, sm, rs.Logs, rn.store, rs.Snaps, trans)
	if err != nil {
		_ = trans.Close()
		return rn, err
	}
	rs.ReleaseMapped()
	return rn, nil
}

// Close stops every node (Raft, then its transport and log store) and
// removes a temporary directory.
func (c *raftCluster) Close() error {
	var errs []error
	for _, rn := range c.nodes {
		if rn.raft != nil {
			errs = append(errs, rn.raft.Shutdown().Error())
		}
		errs = append(errs, rn.mux.Close())
		if rn.store != nil {
			errs = append(errs, rn.store.Close())
		}
		if c, ok := rn.fsm.(io.Closer); ok {
			errs = append(errs, c.Close())
		}
	}
	c.nodes = nil
	if c.ownDir {
		errs = append(errs, os.RemoveAll(c.dir))
	}
	return errors.Join(errs...)
}

// waitLeader returns the node that leads, waiting for an election.
func (c *raftCluster) waitLeader(ctx context.Context) (*raft.Raft, error) {
	ctx, cancel := context.WithTimeout(ctx, ceilingLeaderTimeout)
	defer cancel()
	for {
		for _, rn := range c.nodes {
			if rn.raft.State() == raft.Leader {
				return rn.raft, nil
			}
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("raft ceiling cluster: no leader: %w", ctx.Err())
		case <-time.After(clusterReadyPoll):
		}
	}
}

// run applies entries from cfg.Producers goroutines until cfg's bound.
func (c *raftCluster) run(ctx context.Context, cfg RaftCeilingConfig) (RaftCeilingResult, error) {
	cfg.setDefaults()
	leader, err := c.waitLeader(ctx)
	if err != nil {
		return RaftCeilingResult{}, err
	}
	var (
		leaderMu sync.Mutex
		claimed  atomic.Int64
		applied  atomic.Int64
		errCount atomic.Int64
		endMu    sync.Mutex
		end      time.Time
	)
	start := time.Now()
	deadline := time.Time{}
	if cfg.Duration > 0 {
		deadline = start.Add(cfg.Duration)
	}
	last, lastAt := int64(0), start
	stop := startProgress(ctx, cfg.Progress, func(now time.Time) string {
		n := applied.Load()
		rate := perSec(n-last, now.Sub(lastAt))
		last, lastAt = n, now
		return fmt.Sprintf("%d entries applied, %.1f entries/sec (%.2f MB/sec)", n, rate, rate*float64(cfg.Batch*cfg.RecordSize)/mb)
	})
	entries := make([][]byte, cfg.Producers)
	seqPos := make([]int, cfg.Producers)
	for i := range entries {
		if entries[i], seqPos[i], err = ceilingEntry(cfg, uint64(i+1)); err != nil {
			stop()
			return RaftCeilingResult{}, err
		}
	}
	hists := make([]*histogram, cfg.Producers)
	errs := make([]error, cfg.Producers)
	var wg sync.WaitGroup
	for i := range hists {
		hists[i] = newHistogram()
		entry := entries[i]
		wg.Add(1)
		go func(h *histogram) {
			defer wg.Done()
			seq := uint64(renumberBase)
			for ctx.Err() == nil {
				if !deadline.IsZero() && !time.Now().Before(deadline) {
					return
				}
				n := claimed.Add(1)
				if cfg.Entries > 0 && n > int64(cfg.Entries) {
					return
				}
				t0 := time.Now()
				if cfg.RatePerSec > 0 {
					due := start.Add(time.Duration(float64((n-1)*int64(cfg.Batch)) / float64(cfg.RatePerSec) * float64(time.Second)))
					if !deadline.IsZero() && !due.Before(deadline) {
						return
					}
					if wait := time.Until(due); wait > 0 {
						pause(ctx, wait)
					}
					t0 = due
				}
				leaderMu.Lock()
				r := leader
				leaderMu.Unlock()
				seq++
				data := renumber(entry, seqPos[i], seq)
				f := r.Apply(data, ceilingApplyTimeout)
				if err := f.Error(); err != nil {
					errCount.Add(1)
					if !errors.Is(err, raft.ErrNotLeader) && !errors.Is(err, raft.ErrLeadershipLost) {
						errs[i] = err
						return
					}
					nl, err := c.waitLeader(ctx)
					if err != nil {
						errs[i] = err
						return
					}
					leaderMu.Lock()
					leader = nl
					leaderMu.Unlock()
					claimed.Add(-1) // the entry is applied again, not counted again
					continue
				}
				if err, ok := f.Response().(error); ok { // the state machine refused it
					errCount.Add(1)
					errs[i] = err
					return
				}
				now := time.Now()
				h.record(now.Sub(t0))
				applied.Add(1)
				endMu.Lock()
				if now.After(end) {
					end = now
				}
				endMu.Unlock()
			}
		}(hists[i])
	}
	wg.Wait()
	stop()

	all := newHistogram()
	for _, h := range hists {
		all.merge(h)
	}
	res := RaftCeilingResult{
		Entries:    applied.Load(),
		EntryBytes: len(entries[0]),
		Elapsed:    end.Sub(start),
		ApplyP50:   all.quantile(0.50),
		ApplyP99:   all.quantile(0.99),
		ApplyP999:  all.quantile(0.999),
		ApplyMax:   all.max,
		Errors:     errCount.Load(),
	}
	if end.IsZero() {
		res.Elapsed = time.Since(start)
	}
	res.Records = res.Entries * int64(cfg.Batch)
	res.Bytes = res.Records * int64(cfg.RecordSize)
	res.EntriesPerSec = perSec(res.Entries, res.Elapsed)
	res.RecordsPerSec = perSec(res.Records, res.Elapsed)
	res.MBPerSec = perSec(res.Bytes, res.Elapsed) / mb
	if err := errors.Join(errs...); err != nil {
		return res, err
	}
	return res, ctx.Err()
}

// renumberBase makes msgpack encode every sequence in 9 bytes (0xcf and a
// big-endian u64), so an encoded entry can be renumbered in place.
const renumberBase = 1 << 32

// ceilingEntry is the Raft entry a node proposes for one request of Produce
// with cfg's sizes: a ProduceCommand of an idempotent producer whose unkeyed
// records are placed by node.Place, as a node places them, encoded with
// fsm.Encode. seqPos is where its sequence sits.
func ceilingEntry(cfg RaftCeilingConfig, producer uint64) (entry []byte, seqPos int, err error) {
	id := make([]byte, producerIDBytes)
	_, _ = rand.Read(id)
	val := make([]byte, cfg.RecordSize)
	_, _ = rand.Read(val)
	cmd := produceCommand(DefaultTopic, hex.EncodeToString(id), renumberBase+producer, cfg.Batch, cfg.Partitions, val)
	entry, err = fsm.Encode(fsm.ProduceType, cmd)
	if err != nil {
		return nil, 0, err
	}
	seqPos, err = sequenceOffset(entry)
	return entry, seqPos, err
}

// sequenceOffset finds the u64 of the Seq field in an encoded produce
// command whose sequence is at least renumberBase.
func sequenceOffset(entry []byte) (int, error) {
	marker := append([]byte{0xa3}, "Seq"...) // msgpack fixstr "Seq"
	i := bytes.Index(entry, marker)
	if i < 0 || i+len(marker)+9 > len(entry) || entry[i+len(marker)] != 0xcf {
		return 0, fmt.Errorf("bench: no 9-byte Seq field in the encoded produce command")
	}
	return i + len(marker) + 1, nil
}

// renumber is a copy of entry with sequence seq: every Apply gets its own
// bytes (Raft keeps them until they are stored) and a new sequence (Weir's
// state machine drops a producer's repeated sequence as a retry).
func renumber(entry []byte, seqPos int, seq uint64) []byte {
	out := append([]byte(nil), entry...)
	binary.BigEndian.PutUint64(out[seqPos:], seq)
	return out
}

// produceCommand builds the command a node makes of a request of n records
// of val.
func produceCommand(topic, producer string, seq uint64, n, partitions int, val []byte) fsm.ProduceCommand {
	recs := make([]record.Record, n)
	var body []byte
	for i := range recs {
		recs[i].Value = val
		body = record.Append(body, nil, val)
	}
	batches, _ := node.Place(node.Placement{
		Records: recs, Frames: body, Partitions: partitions, Pinned: -1,
		Sticky: node.StickyPartition(partitions, producer, seq, 0),
	})
	return fsm.ProduceCommand{Topic: topic, ProducerID: producer, Seq: seq, At: time.Now().UnixMilli(), Batches: batches}
}

// noopFSM is the ceiling's state machine: Raft's cost only.
type noopFSM struct{}

func (noopFSM) Apply(*raft.Log) interface{} { return nil }

// ApplyBatch makes noopFSM a raft.BatchingFSM, as Weir's FSM is.
func (noopFSM) ApplyBatch(logs []*raft.Log) []interface{} { return make([]interface{}, len(logs)) }

func (noopFSM) Snapshot() (raft.FSMSnapshot, error) { return noopSnapshot{}, nil }

func (noopFSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	_, err := io.Copy(io.Discard, rc)
	return err
}

type noopSnapshot struct{}

func (noopSnapshot) Persist(sink raft.SnapshotSink) error { return sink.Close() }
func (noopSnapshot) Release()                             {}

var _ raft.BatchingFSM = noopFSM{}
