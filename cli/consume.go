package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/weir-streaming/weir/api"
	"github.com/weir-streaming/weir/record"
)

// Consume tuning.
const (
	// consumeWaitMillis is the long poll of a following consume.
	consumeWaitMillis = 10000
	// consumeIdlePause is the least time between two empty reads of one
	// partition.
	consumeIdlePause = 200 * time.Millisecond
	// writeBufferBytes buffers standard output.
	writeBufferBytes = 64 << 10
)

// ConsumeCmd is `weir consume TOPIC`.
type ConsumeCmd struct {
	Topic         string        `arg:"" help:"Topic to read."`
	FromBeginning bool          `short:"B" xor:"start" help:"Start at each partition's log start."`
	Start         *uint64       `xor:"start" placeholder:"OFFSET" help:"Start at this offset in each partition read."`
	Tail          *uint64       `short:"T" xor:"start" placeholder:"N" help:"Start N records before each partition's end."`
	Partition     *int          `short:"p" placeholder:"N" help:"Read only this partition (default: all)."`
	Drain         bool          `short:"d" help:"Exit once every partition is read to its end, partition 0 first; without it, follow new records until interrupted."`
	Timeout       time.Duration `default:"60s" help:"How long to keep retrying a read the cluster cannot serve now."`
}

// Run reads the topic. Values are written byte-exact, one per line; with
// --output json, one object per line with partition, offset, timestamp, key
// and value.
func (c *ConsumeCmd) Run(g *Globals, s *Streams, cl *Client) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	parts, err := c.partitions(ctx, cl)
	if err != nil {
		return err
	}
	out := newRecordWriter(s.Out, g.JSON())
	defer out.Flush()
	cons := &consumer{client: cl, topic: c.Topic, timeout: c.Timeout, out: out}
	if c.Drain {
		cons.strong = true
		for _, pi := range parts {
			if err := cons.drain(ctx, pi.Partition, c.startOffset(pi)); err != nil {
				return quietOnInterrupt(ctx, err)
			}
		}
		return out.Flush()
	}
	return quietOnInterrupt(ctx, cons.follow(ctx, parts, c.startOffset))
}

// partitions are the partitions to read with their extents at start.
func (c *ConsumeCmd) partitions(ctx context.Context, cl *Client) ([]api.PartitionInfo, error) {
	if c.Partition != nil {
		var pi api.PartitionInfo
		_, err := cl.GetJSON(ctx, partitionPath(api.PathPartitions, c.Topic, *c.Partition), &pi)
		return []api.PartitionInfo{pi}, err
	}
	var t api.Topic
	if _, err := cl.GetJSON(ctx, topicPath(c.Topic), &t); err != nil {
		return nil, err
	}
	return t.Partitions, nil
}

// startOffset is where to start reading a partition: by default its end, so
// only new records are read.
func (c *ConsumeCmd) startOffset(pi api.PartitionInfo) uint64 {
	switch {
	case c.FromBeginning:
		return pi.LogStart
	case c.Start != nil:
		return *c.Start
	case c.Tail != nil:
		if pi.HighWatermark < pi.LogStart || pi.HighWatermark-pi.LogStart <= *c.Tail {
			return pi.LogStart
		}
		return pi.HighWatermark - *c.Tail
	}
	return pi.HighWatermark
}

// quietOnInterrupt turns the cancellation of an interrupted consume into a
// clean exit.
func quietOnInterrupt(ctx context.Context, err error) error {
	if err != nil && ctx.Err() != nil && errors.Is(err, context.Canceled) {
		return nil
	}
	return err
}

// consumer reads partitions of one topic.
type consumer struct {
	client  *Client
	topic   string
	timeout time.Duration
	strong  bool // read through the leader, so that the end is the committed end
	out     *recordWriter
}

// fetched is one consume answer.
type fetched struct {
	records        []record.Consumed
	next, highMark uint64
}

// fetch reads records of partition p from offset, waiting up to waitMillis
// at the end of the log.
func (c *consumer) fetch(ctx context.Context, p int, offset uint64, waitMillis int) (fetched, error) {
	q := url.Values{api.QueryOffset: {strconv.FormatUint(offset, 10)}}
	if waitMillis > 0 {
		q.Set(api.QueryWaitMillis, strconv.Itoa(waitMillis))
	}
	if c.strong {
		q.Set(api.QueryConsistency, api.ConsistencyStrong)
	}
	resp, err := c.client.Retry(ctx, c.timeout, Request{
		Method:  http.MethodGet,
		Path:    partitionPath(api.PathConsume, c.topic, p),
		Query:   q,
		Header:  http.Header{"Accept": {api.ContentTypeRecords}},
		Timeout: requestTimeout + time.Duration(waitMillis)*time.Millisecond,
	})
	if err != nil {
		return fetched{}, err
	}
	return decodeFetch(resp, p)
}

// decodeFetch decodes a consume answer, binary or (from a node that did not
// honour Accept) JSON.
func decodeFetch(resp *Response, p int) (fetched, error) {
	ct := resp.Header.Get("Content-Type")
	if strings.HasPrefix(ct, "application/json") {
		var cr api.ConsumeResponse
		if err := decodeJSON(resp, &cr); err != nil {
			return fetched{}, err
		}
		f := fetched{next: cr.NextOffset, highMark: cr.HighWatermark}
		for _, r := range cr.Records {
			rec := record.Consumed{Offset: r.Offset, Timestamp: r.Timestamp, Record: record.Record{Value: []byte(r.Value)}}
			if r.Key != nil {
				rec.Key = []byte(*r.Key)
			}
			f.records = append(f.records, rec)
		}
		return f, nil
	}
	next, err1 := headerUint(resp, api.HeaderNextOffset)
	hw, err2 := headerUint(resp, api.HeaderHighWatermark)
	if err := errors.Join(err1, err2); err != nil {
		return fetched{}, err
	}
	f := fetched{next: next, highMark: hw}
	rd := record.NewConsumedReader(resp.Body)
	for {
		rec, ok := rd.Next()
		if !ok {
			break
		}
		f.records = append(f.records, rec)
	}
	if err := rd.Err(); err != nil {
		return fetched{}, fmt.Errorf("partition %d: answer from %s does not decode: %w", p, hostOf(resp.Addr), err)
	}
	if n := resp.Header.Get(api.HeaderRecordCount); n != "" && n != strconv.Itoa(len(f.records)) {
		return fetched{}, fmt.Errorf("partition %d: %s announced %s records and sent %d", p, hostOf(resp.Addr), n, len(f.records))
	}
	return f, nil
}

func headerUint(resp *Response, name string) (uint64, error) {
	v, err := strconv.ParseUint(resp.Header.Get(name), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s answered without a valid %s header", hostOf(resp.Addr), name)
	}
	return v, nil
}

// drain reads partition p from offset until a read returns no records and
// the next offset is the high watermark.
func (c *consumer) drain(ctx context.Context, p int, offset uint64) error {
	for {
		f, err := c.fetch(ctx, p, offset, 0)
		if err != nil {
			return err
		}
		if err := c.out.Write(p, f.records); err != nil {
			return err
		}
		if len(f.records) == 0 {
			if f.next >= f.highMark {
				return nil
			}
			if f.next <= offset {
				return fmt.Errorf("partition %d: a read at offset %d returned nothing before the end (%d)", p, offset, f.highMark)
			}
		}
		offset = f.next
	}
}

// follow reads every partition concurrently with long polls until ctx ends.
func (c *consumer) follow(ctx context.Context, parts []api.PartitionInfo, start func(api.PartitionInfo) uint64) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, len(parts))
	var wg sync.WaitGroup
	for _, pi := range parts {
		wg.Add(1)
		go func(p int, offset uint64) {
			defer wg.Done()
			for ctx.Err() == nil {
				began := time.Now()
				f, err := c.fetch(ctx, p, offset, consumeWaitMillis)
				if err == nil {
					err = c.out.WriteFlush(p, f.records)
				}
				if err != nil {
					errc <- err
					cancel()
					return
				}
				offset = f.next
				if len(f.records) == 0 {
					// A node that answers an empty read at once (no long
					// poll) is not asked again in a tight loop.
					pause(ctx, consumeIdlePause-time.Since(began))
				}
			}
		}(pi.Partition, start(pi))
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		if !errors.Is(err, context.Canceled) {
			return err
		}
	}
	return ctx.Err()
}

// recordWriter writes consumed records to standard output, buffered.
type recordWriter struct {
	mu   sync.Mutex
	w    *bufio.Writer
	enc  *json.Encoder
	json bool
}

func newRecordWriter(w io.Writer, asJSON bool) *recordWriter {
	bw := bufio.NewWriterSize(w, writeBufferBytes)
	enc := json.NewEncoder(bw)
	enc.SetEscapeHTML(false)
	return &recordWriter{w: bw, enc: enc, json: asJSON}
}

// jsonRecord is one line of `consume --output json`: what the binary
// consume answer carries, named as in api.ConsumedRecord.
type jsonRecord struct {
	Partition int     `json:"partition"`
	Offset    uint64  `json:"offset"`
	Timestamp int64   `json:"timestamp"`
	Key       *string `json:"key,omitempty"`
	Value     string  `json:"value"`
}

// Write writes the records of partition p: the value and "\n", byte-exact;
// or, as JSON, one jsonRecord per line (JSON strings cannot carry invalid
// UTF-8, which is replaced).
func (rw *recordWriter) Write(p int, recs []record.Consumed) error {
	rw.mu.Lock()
	defer rw.mu.Unlock()
	return rw.write(p, recs)
}

// WriteFlush writes and flushes, for a consume that follows the log.
func (rw *recordWriter) WriteFlush(p int, recs []record.Consumed) error {
	rw.mu.Lock()
	defer rw.mu.Unlock()
	if err := rw.write(p, recs); err != nil {
		return err
	}
	return rw.w.Flush()
}

func (rw *recordWriter) write(p int, recs []record.Consumed) error {
	for _, r := range recs {
		if rw.json {
			cr := jsonRecord{Partition: p, Offset: r.Offset, Timestamp: r.Timestamp, Value: string(r.Value)}
			if r.Key != nil {
				k := string(r.Key)
				cr.Key = &k
			}
			if err := rw.enc.Encode(cr); err != nil {
				return err
			}
			continue
		}
		if _, err := rw.w.Write(r.Value); err != nil {
			return err
		}
		if err := rw.w.WriteByte('\n'); err != nil {
			return err
		}
	}
	return nil
}

// Flush writes out what is buffered.
func (rw *recordWriter) Flush() error {
	rw.mu.Lock()
	defer rw.mu.Unlock()
	return rw.w.Flush()
}

// pause waits for d or until ctx ends.
func pause(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
