package bench

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/weir-streaming/weir/api"
	"github.com/weir-streaming/weir/record"
)

// producerIDBytes is the randomness in a bench producer's id (hex-encoded,
// the same length as the CLI's).
const producerIDBytes = 16

// sendStampBytes is the size of the send timestamp (Unix ns, big endian) at
// the start of every value Produce writes; Consume reads it back for
// end-to-end latency.
const sendStampBytes = 8

// ProduceConfig is one produce run. Zero fields take the package defaults.
type ProduceConfig struct {
	// Addrs are API addresses (host:port); requests go round-robin over them.
	Addrs []string
	// Topic is created when missing, with Partitions partitions (1 when 0).
	// An existing topic is used as it is when Partitions is 0.
	Topic      string
	Partitions int
	// Records bounds the run by records sent; Duration by time. The run ends
	// at whichever comes first; neither set means DefaultDuration.
	Records  int
	Duration time.Duration
	// RecordSize is each value's size in bytes (records have no key). From 8
	// bytes on, a value starts with its send time for Consume.
	RecordSize int
	// Producers is how many idempotent producers run concurrently, each with
	// one request in flight; Batch the records per request.
	Producers int
	Batch     int
	// RatePerSec caps the records sent per second over all producers; 0
	// sends as fast as acknowledgements come back.
	RatePerSec int
	// Progress receives a line per second while the run lasts; nil: none.
	Progress io.Writer
}

// ProduceResult is what a produce run achieved. Latency is per acknowledged
// request, from its send (with a rate cap: from when it was due, so a
// cluster that falls behind shows it) to the 2xx answer, retries included.
type ProduceResult struct {
	Records       int64         `json:"records"`
	Bytes         int64         `json:"bytes"`
	Requests      int64         `json:"requests"`
	Elapsed       time.Duration `json:"elapsed_ns"`
	RecordsPerSec float64       `json:"records_per_sec"`
	MBPerSec      float64       `json:"mb_per_sec"`
	LatencyP50    time.Duration `json:"latency_p50_ns"`
	LatencyP99    time.Duration `json:"latency_p99_ns"`
	LatencyP999   time.Duration `json:"latency_p999_ns"`
	LatencyMax    time.Duration `json:"latency_max_ns"`
	// Errors counts failed attempts, each retried unchanged (same producer
	// sequence, so nothing is written twice) unless the cluster refused it
	// for good, which ends the run.
	Errors int64 `json:"errors"`
}

// String is one summary line in kafka-producer-perf-test's manner.
func (r ProduceResult) String() string {
	return fmt.Sprintf("%d records sent in %d requests, %.1f records/sec (%.2f MB/sec), %s p50, %s p99, %s p99.9, %s max latency, %d errors",
		r.Records, r.Requests, r.RecordsPerSec, r.MBPerSec, ms(r.LatencyP50), ms(r.LatencyP99), ms(r.LatencyP999), ms(r.LatencyMax), r.Errors)
}

func (c *ProduceConfig) setDefaults() {
	if c.Topic == "" {
		c.Topic = DefaultTopic
	}
	if c.RecordSize == 0 {
		c.RecordSize = DefaultRecordSize
	}
	if c.Producers == 0 {
		c.Producers = DefaultProducers
	}
	if c.Batch == 0 {
		c.Batch = DefaultBatch
	}
	if c.Records == 0 && c.Duration == 0 {
		c.Duration = DefaultDuration
	}
}

func (c *ProduceConfig) validate() error {
	switch {
	case c.RecordSize < 0 || c.RecordSize > record.MaxRecordBytes:
		return fmt.Errorf("%w: record size %d is outside 0..%d", ErrConfig, c.RecordSize, record.MaxRecordBytes)
	case c.Producers < 0, c.Batch < 0, c.Records < 0, c.Duration < 0, c.RatePerSec < 0, c.Partitions < 0:
		return fmt.Errorf("%w: negative count or duration", ErrConfig)
	case c.Partitions > api.MaxPartitions:
		return fmt.Errorf("%w: %d partitions, the limit is %d", ErrConfig, c.Partitions, api.MaxPartitions)
	case c.Batch*record.FrameSize(nil, make([]byte, c.RecordSize)) > record.MaxBatchBytes:
		return fmt.Errorf("%w: a batch of %d records of %d bytes is over the request limit of %d bytes", ErrConfig, c.Batch, c.RecordSize, record.MaxBatchBytes)
	}
	return nil
}

// Produce writes records as fast as the cluster acknowledges them (or at
// RatePerSec) and measures throughput and the latency of each acknowledged
// request. Each producer is idempotent (a random id, sequences 1, 2, ...)
// and keeps one request in flight; a request the cluster cannot take now is
// retried unchanged. When ctx ends, the result covers what was acknowledged
// and the error is ctx's.
func Produce(ctx context.Context, cfg ProduceConfig) (ProduceResult, error) {
	cfg.setDefaults()
	if err := cfg.validate(); err != nil {
		return ProduceResult{}, err
	}
	bases, err := baseURLs(cfg.Addrs)
	if err != nil {
		return ProduceResult{}, err
	}
	hc := newHTTPClient(cfg.Producers)
	defer hc.CloseIdleConnections()
	if err := ensureTopic(ctx, hc, bases, cfg.Topic, cfg.Partitions); err != nil {
		return ProduceResult{}, err
	}

	run := &produceRun{cfg: cfg, hc: hc, nodes: newNodeSet(bases), start: time.Now()}
	run.path = strings.Replace(api.PathProduce, "{name}", url.PathEscape(cfg.Topic), 1)
	run.filler = make([]byte, cfg.RecordSize)
	_, _ = rand.Read(run.filler) // incompressible payload
	if cfg.Duration > 0 {
		run.deadline = run.start.Add(cfg.Duration)
	}
	runCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)

	stopProgress := run.progress(runCtx)
	hists := make([]*histogram, cfg.Producers)
	var wg sync.WaitGroup
	for i := range hists {
		hists[i] = newHistogram()
		wg.Add(1)
		go func(h *histogram) {
			defer wg.Done()
			if err := run.producer(runCtx, h); err != nil {
				cancel(err)
			}
		}(hists[i])
	}
	wg.Wait()
	stopProgress()

	all := newHistogram()
	for _, h := range hists {
		all.merge(h)
	}
	res := ProduceResult{
		Records:     run.acked.Load(),
		Bytes:       run.acked.Load() * int64(cfg.RecordSize),
		Requests:    int64(all.count()),
		Elapsed:     run.end.Sub(run.start),
		LatencyP50:  all.quantile(0.50),
		LatencyP99:  all.quantile(0.99),
		LatencyP999: all.quantile(0.999),
		LatencyMax:  all.max,
		Errors:      run.errors.Load(),
	}
	if run.end.IsZero() {
		res.Elapsed = time.Since(run.start)
	}
	res.RecordsPerSec = perSec(res.Records, res.Elapsed)
	res.MBPerSec = perSec(res.Bytes, res.Elapsed) / mb
	if cause := context.Cause(runCtx); cause != nil && !errors.Is(cause, context.Canceled) {
		return res, cause
	}
	return res, ctx.Err()
}

// produceRun is the state the producers of one run share.
type produceRun struct {
	cfg      ProduceConfig
	hc       *http.Client
	nodes    *nodeSet
	path     string
	filler   []byte
	start    time.Time
	deadline time.Time // zero: none

	claimed atomic.Int64 // records handed out to producers
	acked   atomic.Int64 // records acknowledged
	errors  atomic.Int64

	// For progress lines: requests and their summed latency since the last.
	intervalReqs atomic.Int64
	intervalLat  atomic.Int64
	intervalMax  atomic.Int64

	endMu sync.Mutex
	end   time.Time // the last acknowledgement
}

// claim hands out the next request's record count and the time it is due,
// or 0 when the run is over.
func (r *produceRun) claim() (n int, due time.Time) {
	if !r.deadline.IsZero() && !time.Now().Before(r.deadline) {
		return 0, time.Time{}
	}
	batch := int64(r.cfg.Batch)
	first := r.claimed.Add(batch) - batch
	n = r.cfg.Batch
	if r.cfg.Records > 0 {
		left := int64(r.cfg.Records) - first
		if left <= 0 {
			return 0, time.Time{}
		}
		n = int(min(left, batch))
	}
	if r.cfg.RatePerSec > 0 {
		due = r.start.Add(time.Duration(float64(first) / float64(r.cfg.RatePerSec) * float64(time.Second)))
		if !r.deadline.IsZero() && !due.Before(r.deadline) {
			return 0, time.Time{} // due after the run ends
		}
	}
	return n, due
}

// producer is one idempotent producer: it sends its requests one at a time
// until the run is over.
func (r *produceRun) producer(ctx context.Context, h *histogram) error {
	id := make([]byte, producerIDBytes)
	_, _ = rand.Read(id)
	hdr := http.Header{}
	hdr.Set("Content-Type", api.ContentTypeRecords)
	hdr.Set("Accept", "application/json")
	hdr.Set(api.HeaderProducerID, hex.EncodeToString(id))
	val := append([]byte(nil), r.filler...) // this producer's: its stamp changes
	var body []byte
	for seq := uint64(1); ctx.Err() == nil; seq++ {
		n, due := r.claim()
		if n == 0 {
			return nil
		}
		if !due.IsZero() {
			if wait := time.Until(due); wait > 0 {
				pause(ctx, wait)
			}
		}
		sent := time.Now()
		if !due.IsZero() && due.Before(sent) {
			sent = due // latency from when the request was due
		}
		body = encodeRecords(body[:0], val, n, time.Now())
		hdr.Set(api.HeaderProducerSeq, strconv.FormatUint(seq, 10))
		if err := r.send(ctx, hdr, body); err != nil {
			return err
		}
		now := time.Now()
		lat := now.Sub(sent)
		h.record(lat)
		r.acked.Add(int64(n))
		r.intervalReqs.Add(1)
		r.intervalLat.Add(int64(lat))
		for {
			m := r.intervalMax.Load()
			if int64(lat) <= m || r.intervalMax.CompareAndSwap(m, int64(lat)) {
				break
			}
		}
		r.endMu.Lock()
		if now.After(r.end) {
			r.end = now
		}
		r.endMu.Unlock()
	}
	return nil
}

// encodeRecords appends n records of val to buf, each value starting with
// the send time when it is long enough to hold it.
func encodeRecords(buf, val []byte, n int, now time.Time) []byte {
	if len(val) >= sendStampBytes {
		binary.BigEndian.PutUint64(val, uint64(now.UnixNano()))
	}
	for range n {
		buf = record.Append(buf, nil, val)
	}
	return buf
}

// send posts one request until the cluster acknowledges it, retrying what
// may be retried; it fails on a refusal or when ctx ends. Every attempt goes
// to the next address in the round robin. After an address gave no answer
// the request goes to the next one at once (and the round robin skips that
// address for downFor); after the cluster asked to try again, it waits
// first, retryBackoff doubling up to retryBackoffMax. Sending again is safe:
// the producer id and sequence make the cluster write it once.
func (r *produceRun) send(ctx context.Context, hdr http.Header, body []byte) error {
	backoff := retryBackoff
	for {
		i, base := r.nodes.pick()
		_, _, err := do(ctx, r.hc, http.MethodPost, base+r.path, hdr, body)
		if err == nil {
			r.nodes.answered(i)
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		r.errors.Add(1)
		if !retryable(err) {
			return fmt.Errorf("produce to %s: %w", base, err)
		}
		var ae *APIError
		if !errors.As(err, &ae) && r.nodes.markDown(i) {
			continue // another address may answer: no wait
		}
		pause(ctx, backoff)
		backoff = nextBackoff(backoff)
	}
}

// nextBackoff is the wait after one of wait: twice as long, at most
// retryBackoffMax.
func nextBackoff(wait time.Duration) time.Duration {
	return min(2*wait, retryBackoffMax)
}

// nodeSet round-robins requests over the API addresses and skips, for
// downFor, an address that gave no answer. Safe for concurrent use.
type nodeSet struct {
	bases []string
	next  atomic.Uint64
	// downUntil is, per address, the time (Unix ns) until which pick skips
	// it; 0 when it is not skipped.
	downUntil []atomic.Int64
	now       func() time.Time // the clock (tests replace it)
}

func newNodeSet(bases []string) *nodeSet {
	return &nodeSet{bases: bases, downUntil: make([]atomic.Int64, len(bases)), now: time.Now}
}

// pick is the next address in the round robin that is not skipped, and its
// index; when every address is skipped, the next one anyway.
func (s *nodeSet) pick() (int, string) {
	now := s.now().UnixNano()
	n := uint64(len(s.bases))
	start := s.next.Add(1) - 1
	for k := range n {
		i := int((start + k) % n)
		if s.downUntil[i].Load() <= now {
			if k > 0 {
				s.next.Add(k) // the next pick starts after i
			}
			return i, s.bases[i]
		}
	}
	i := int(start % n)
	return i, s.bases[i]
}

// markDown skips address i for downFor from now and reports whether
// another address is not skipped (worth trying at once).
func (s *nodeSet) markDown(i int) bool {
	now := s.now()
	s.downUntil[i].Store(now.Add(downFor).UnixNano())
	for j := range s.downUntil {
		if j != i && s.downUntil[j].Load() <= now.UnixNano() {
			return true
		}
	}
	return false
}

// answered clears address i's skip: it answered.
func (s *nodeSet) answered(i int) {
	if s.downUntil[i].Load() != 0 {
		s.downUntil[i].Store(0)
	}
}

// progress writes a line per second until the returned stop is called.
func (r *produceRun) progress(ctx context.Context) (stop func()) {
	last, lastAt := int64(0), r.start
	return startProgress(ctx, r.cfg.Progress, func(now time.Time) string {
		acked := r.acked.Load()
		reqs, lat, mx := r.intervalReqs.Swap(0), r.intervalLat.Swap(0), r.intervalMax.Swap(0)
		avg := time.Duration(0)
		if reqs > 0 {
			avg = time.Duration(lat / reqs)
		}
		rate := perSec(acked-last, now.Sub(lastAt))
		last, lastAt = acked, now
		return fmt.Sprintf("%d records sent, %.1f records/sec (%.2f MB/sec), %s avg latency, %s max latency, %d errors",
			acked, rate, rate*float64(r.cfg.RecordSize)/mb, ms(avg), ms(time.Duration(mx)), r.errors.Load())
	})
}

// ensureTopic creates the topic when missing, with partitions partitions
// (1 when 0). An existing topic must have partitions partitions unless that
// is 0.
func ensureTopic(ctx context.Context, hc *http.Client, bases []string, topic string, partitions int) error {
	t, err := describeTopic(ctx, hc, bases, topic)
	var ae *APIError
	switch {
	case err == nil:
		if partitions != 0 && len(t.Partitions) != partitions {
			return fmt.Errorf("%w: topic %q has %d partitions, not %d; use another topic or --partitions %d",
				ErrConfig, topic, len(t.Partitions), partitions, len(t.Partitions))
		}
		return nil
	case !errors.As(err, &ae) || ae.Code != api.CodeUnknownTopic:
		return err
	}
	body := fmt.Sprintf(`{"name":%q,"partitions":%d}`, topic, max(partitions, 1))
	hdr := http.Header{"Content-Type": {"application/json"}}
	return retryRequest(ctx, func(base string) error {
		_, _, err := do(ctx, hc, http.MethodPost, base+api.PathTopics, hdr, []byte(body))
		return err
	}, bases)
}

// retryRequest sends an idempotent request round-robin over bases until it
// succeeds, is refused, or the request timeout passes.
func retryRequest(ctx context.Context, fn func(base string) error, bases []string) error {
	deadline := time.Now().Add(requestTimeout)
	for i := 0; ; i++ {
		err := fn(bases[i%len(bases)])
		if err == nil || !retryable(err) || ctx.Err() != nil || time.Now().After(deadline) {
			return err
		}
		pause(ctx, retryBackoff)
	}
}
