package bench

import (
	"context"
	"encoding/binary"
	"encoding/json"
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

// sendStampTolerance is how far a value's leading send time may be from the
// record's stored timestamp for Consume to trust it as Produce's stamp.
const sendStampTolerance = time.Minute

// E2E sources: what a follow's end-to-end latency was measured from.
const (
	// E2ESourceSend: the send time Produce puts in the first 8 bytes of
	// every value (Unix ns), so the figure is produce request sent → record
	// received by the consumer, at nanosecond resolution.
	E2ESourceSend = "send"
	// E2ESourceTimestamp: the record's stored timestamp (the clock of the
	// node that proposed the write, Unix ms), for records not written by
	// Produce: it misses the client-to-node leg and has ms resolution.
	E2ESourceTimestamp = "timestamp"
	// E2ESourceMixed: some records of each.
	E2ESourceMixed = "mixed"
)

// ConsumeConfig is one consume run.
type ConsumeConfig struct {
	// Addrs are API addresses; partition p is read from Addrs[p%len(Addrs)].
	Addrs []string
	Topic string
	// MaxBytes bounds one response (max_bytes); 0 takes the API default.
	MaxBytes int
	// Follow, when positive, follows every partition from where the
	// catch-up ended for that long and measures end-to-end latency.
	Follow time.Duration
	// SkipCatchUp starts the follow at each partition's high watermark
	// instead of reading the partition first.
	SkipCatchUp bool
	// Progress receives a line per second; nil: none.
	Progress io.Writer
}

// ConsumeResult is what a consume run achieved. Records, Bytes and the rates
// are the catch-up read: every partition from its log start to the high
// watermark it had when the run began, partitions in parallel.
type ConsumeResult struct {
	Records       int64         `json:"records"`
	Bytes         int64         `json:"bytes"`
	Elapsed       time.Duration `json:"elapsed_ns"`
	RecordsPerSec float64       `json:"records_per_sec"`
	MBPerSec      float64       `json:"mb_per_sec"`
	// Follow mode: records received while following, and the end-to-end
	// latency of each from its send (see E2ESource) to its receipt.
	E2ERecords int64         `json:"e2e_records,omitempty"`
	E2EP50     time.Duration `json:"e2e_p50_ns,omitempty"`
	E2EP99     time.Duration `json:"e2e_p99_ns,omitempty"`
	E2EMax     time.Duration `json:"e2e_max_ns,omitempty"`
	E2ESource  string        `json:"e2e_source,omitempty"`
	// Errors counts failed requests, each retried.
	Errors int64 `json:"errors"`
}

// String is one summary line.
func (r ConsumeResult) String() string {
	s := fmt.Sprintf("%d records read in %s, %.1f records/sec (%.2f MB/sec), %d errors",
		r.Records, r.Elapsed.Round(time.Millisecond), r.RecordsPerSec, r.MBPerSec, r.Errors)
	if r.E2ERecords > 0 {
		s += fmt.Sprintf("; followed %d records: end-to-end %s p50, %s p99, %s max (from %s time)",
			r.E2ERecords, ms(r.E2EP50), ms(r.E2EP99), ms(r.E2EMax), r.E2ESource)
	}
	return s
}

// Consume reads every partition of a topic from its start to its high
// watermark as fast as the cluster serves it (the catch-up rate), then, with
// Follow, follows new records and measures their end-to-end latency. When
// ctx ends, the result covers what was read and the error is ctx's.
func Consume(ctx context.Context, cfg ConsumeConfig) (ConsumeResult, error) {
	if cfg.Topic == "" {
		cfg.Topic = DefaultTopic
	}
	if cfg.MaxBytes == 0 {
		cfg.MaxBytes = api.DefaultConsumeMaxBytes
	}
	if cfg.MaxBytes < 0 || cfg.MaxBytes > record.MaxBatchBytes || cfg.Follow < 0 {
		return ConsumeResult{}, fmt.Errorf("%w: max bytes %d outside 1..%d, or a negative follow", ErrConfig, cfg.MaxBytes, record.MaxBatchBytes)
	}
	bases, err := baseURLs(cfg.Addrs)
	if err != nil {
		return ConsumeResult{}, err
	}
	hc := newHTTPClient(1)
	topic, err := describeTopic(ctx, hc, bases, cfg.Topic)
	hc.CloseIdleConnections()
	if err != nil {
		return ConsumeResult{}, err
	}
	parts := topic.Partitions
	hc = newHTTPClient(len(parts)/len(bases) + 1)
	defer hc.CloseIdleConnections()

	run := &consumeRun{cfg: cfg, hc: hc, bases: bases, start: time.Now()}
	stopProgress := run.progress(ctx)
	defer stopProgress()

	// Catch-up: every partition to the high watermark it has now (with
	// SkipCatchUp, only where that is).
	next := make([]uint64, len(parts))
	errs := make([]error, len(parts))
	var wg sync.WaitGroup
	for i, p := range parts {
		if cfg.SkipCatchUp {
			// The end as the node that serves the partition sees it: a
			// follower may be a little behind the node that described
			// the topic.
			wg.Add(1)
			go func() {
				defer wg.Done()
				var pi api.PartitionInfo
				pi, errs[i] = run.partition(ctx, p.Partition)
				next[i] = pi.HighWatermark
			}()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			next[i], errs[i] = run.catchUp(ctx, p)
		}()
	}
	wg.Wait()
	res := ConsumeResult{Records: run.records.Load(), Bytes: run.bytes.Load(), Elapsed: time.Since(run.start)}
	res.RecordsPerSec = perSec(res.Records, res.Elapsed)
	res.MBPerSec = perSec(res.Bytes, res.Elapsed) / mb
	if err := errors.Join(errs...); err != nil {
		res.Errors = run.errors.Load()
		return res, err
	}

	if cfg.Follow > 0 {
		fctx, cancel := context.WithTimeout(ctx, cfg.Follow)
		hists := make([]*e2eHistogram, len(parts))
		for i, p := range parts {
			hists[i] = &e2eHistogram{h: newHistogram()}
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = run.follow(fctx, p.Partition, next[i], hists[i])
			}()
		}
		wg.Wait()
		cancel()
		all := &e2eHistogram{h: newHistogram()}
		for _, h := range hists {
			all.h.merge(h.h)
			all.fromSend += h.fromSend
			all.fromTimestamp += h.fromTimestamp
		}
		res.E2ERecords = int64(all.h.count())
		res.E2EP50, res.E2EP99, res.E2EMax = all.h.quantile(0.50), all.h.quantile(0.99), all.h.max
		switch {
		case all.fromTimestamp == 0 && all.fromSend > 0:
			res.E2ESource = E2ESourceSend
		case all.fromSend == 0 && all.fromTimestamp > 0:
			res.E2ESource = E2ESourceTimestamp
		case all.fromSend > 0:
			res.E2ESource = E2ESourceMixed
		}
	}
	res.Errors = run.errors.Load()
	if err := errors.Join(errs...); err != nil && ctx.Err() == nil {
		return res, err
	}
	return res, ctx.Err()
}

// consumeRun is the state the partition readers of one run share.
type consumeRun struct {
	cfg   ConsumeConfig
	hc    *http.Client
	bases []string
	start time.Time

	records atomic.Int64 // catch-up records read
	bytes   atomic.Int64
	follows atomic.Int64 // records received while following
	errors  atomic.Int64
}

// e2eHistogram is one partition's end-to-end latencies and their sources.
type e2eHistogram struct {
	h                       *histogram
	fromSend, fromTimestamp int64
}

// fetch is one consume request's outcome.
type fetch struct {
	body []byte
	next uint64
}

// read asks partition p for records from offset, waiting up to waitMillis
// for new ones, retrying what may be retried.
func (r *consumeRun) read(ctx context.Context, p int, offset uint64, waitMillis int) (fetch, error) {
	rp := strings.NewReplacer("{name}", url.PathEscape(r.cfg.Topic), "{p}", strconv.Itoa(p))
	q := url.Values{}
	q.Set(api.QueryOffset, strconv.FormatUint(offset, 10))
	q.Set(api.QueryMaxRecords, strconv.Itoa(api.MaxConsumeMaxRecords))
	q.Set(api.QueryMaxBytes, strconv.Itoa(r.cfg.MaxBytes))
	if waitMillis > 0 {
		q.Set(api.QueryWaitMillis, strconv.Itoa(waitMillis))
	}
	hdr := http.Header{"Accept": {api.ContentTypeRecords}}
	for i := 0; ; i++ {
		base := r.bases[(p+i)%len(r.bases)]
		resp, body, err := do(ctx, r.hc, http.MethodGet, base+rp.Replace(api.PathConsume)+"?"+q.Encode(), hdr, nil)
		if err == nil {
			next, perr := strconv.ParseUint(resp.Header.Get(api.HeaderNextOffset), 10, 64)
			if perr != nil {
				return fetch{}, fmt.Errorf("consume from %s: bad %s header: %w", base, api.HeaderNextOffset, perr)
			}
			return fetch{body: body, next: next}, nil
		}
		if ctx.Err() != nil {
			return fetch{}, ctx.Err()
		}
		r.errors.Add(1)
		if !retryable(err) {
			return fetch{}, fmt.Errorf("consume partition %d from %s: %w", p, base, err)
		}
		pause(ctx, retryBackoff)
	}
}

// partition describes partition p as the node that serves its reads sees it.
func (r *consumeRun) partition(ctx context.Context, p int) (api.PartitionInfo, error) {
	t, err := describeTopic(ctx, r.hc, []string{r.bases[p%len(r.bases)]}, r.cfg.Topic)
	if err != nil {
		return api.PartitionInfo{}, err
	}
	for _, pi := range t.Partitions {
		if pi.Partition == p {
			return pi, nil
		}
	}
	return api.PartitionInfo{}, fmt.Errorf("%w: topic %q has no partition %d on %s", ErrRefused, r.cfg.Topic, p, r.bases[p%len(r.bases)])
}

// catchUp reads a partition from its log start to its high watermark and
// returns the offset after the last record read. A node behind the one that
// reported the high watermark (a follower that has not applied the newest
// entries yet) is waited for with a long poll.
func (r *consumeRun) catchUp(ctx context.Context, p api.PartitionInfo) (uint64, error) {
	offset := p.LogStart
	stalled := time.Time{}
	for offset < p.HighWatermark {
		f, err := r.read(ctx, p.Partition, offset, followPollMillis)
		if err != nil {
			return offset, err
		}
		cr := record.NewConsumedReader(f.body)
		var n, size int64
		for rec, ok := cr.Next(); ok; rec, ok = cr.Next() {
			n++
			size += int64(len(rec.Key) + len(rec.Value))
		}
		if err := cr.Err(); err != nil {
			return offset, fmt.Errorf("consume partition %d at %d: %w", p.Partition, offset, err)
		}
		if f.next <= offset {
			if stalled.IsZero() {
				stalled = time.Now()
			} else if time.Since(stalled) > requestTimeout {
				return offset, fmt.Errorf("consume partition %d at %d: no progress for %s below the high watermark %d", p.Partition, offset, requestTimeout, p.HighWatermark)
			}
			continue
		}
		stalled = time.Time{}
		r.records.Add(n)
		r.bytes.Add(size)
		offset = f.next
	}
	return offset, nil
}

// follow long-polls a partition from offset until ctx ends and records the
// end-to-end latency of every record it receives.
func (r *consumeRun) follow(ctx context.Context, p int, offset uint64, e *e2eHistogram) error {
	for {
		wait := followPollMillis
		if dl, ok := ctx.Deadline(); ok {
			wait = min(wait, int(time.Until(dl)/time.Millisecond))
		}
		if wait <= 0 {
			return nil
		}
		f, err := r.read(ctx, p, offset, wait)
		if err != nil {
			if ctx.Err() != nil {
				return nil // the follow time is over
			}
			return err
		}
		now := time.Now()
		cr := record.NewConsumedReader(f.body)
		var n int64
		for rec, ok := cr.Next(); ok; rec, ok = cr.Next() {
			n++
			if sent, ok := sendStamp(rec); ok {
				e.h.record(now.Sub(sent))
				e.fromSend++
			} else {
				e.h.record(now.Sub(time.UnixMilli(rec.Timestamp)))
				e.fromTimestamp++
			}
		}
		if err := cr.Err(); err != nil {
			return fmt.Errorf("consume partition %d at %d: %w", p, offset, err)
		}
		r.follows.Add(n)
		offset = f.next
	}
}

// sendStamp reads the send time Produce put at the start of a value, when
// the value has one: it must lie near the record's stored timestamp.
func sendStamp(rec record.Consumed) (time.Time, bool) {
	if len(rec.Value) < sendStampBytes {
		return time.Time{}, false
	}
	sent := time.Unix(0, int64(binary.BigEndian.Uint64(rec.Value)))
	d := sent.Sub(time.UnixMilli(rec.Timestamp))
	if d < -sendStampTolerance || d > sendStampTolerance {
		return time.Time{}, false
	}
	return sent, true
}

// progress writes a line per second until the returned stop is called.
func (r *consumeRun) progress(ctx context.Context) (stop func()) {
	last, lastAt := int64(0), r.start
	return startProgress(ctx, r.cfg.Progress, func(now time.Time) string {
		total := r.records.Load() + r.follows.Load()
		rate := perSec(total-last, now.Sub(lastAt))
		last, lastAt = total, now
		return fmt.Sprintf("%d records read, %.1f records/sec, %d errors", total, rate, r.errors.Load())
	})
}

// describeTopic reads a topic's partitions, retrying what may be retried.
func describeTopic(ctx context.Context, hc *http.Client, bases []string, topic string) (api.Topic, error) {
	var t api.Topic
	path := strings.Replace(api.PathTopic, "{name}", url.PathEscape(topic), 1)
	err := retryRequest(ctx, func(base string) error {
		_, body, err := do(ctx, hc, http.MethodGet, base+path, nil, nil)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(body, &t); err != nil {
			return fmt.Errorf("%w: %s answered a topic that is not the API's JSON: %v", ErrRefused, base, err)
		}
		return nil
	}, bases)
	return t, err
}
