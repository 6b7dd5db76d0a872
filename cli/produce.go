package cli

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/weir-streaming/weir/api"
	"github.com/weir-streaming/weir/record"
)

// Batching of produce requests: a request closes at whichever limit comes
// first. One record larger than maxBatchBytes travels alone.
const (
	maxBatchRecords = 1000
	maxBatchBytes   = 1 << 20
	// readBufferBytes is the input buffer; longer lines are assembled.
	readBufferBytes = 64 << 10
	// maxLineBytes is the longest line that can be sent at all: one record
	// alone in a request.
	maxLineBytes = record.MaxBatchBytes
	// producerIDBytes is the randomness in a producer id.
	producerIDBytes = 16
)

// ProduceCmd is `weir produce TOPIC`.
type ProduceCmd struct {
	Topic        string        `arg:"" help:"Topic to write to."`
	KeySeparator string        `help:"Split each line at the first S into key and value; a line without S has no key." placeholder:"S"`
	File         string        `short:"f" help:"Read records from this file instead of standard input." placeholder:"FILE" type:"path"`
	Partition    *int          `short:"p" help:"Write every record to this partition (default: by key, else round-robin)." placeholder:"N"`
	Timeout      time.Duration `default:"60s" help:"How long to keep retrying one request the cluster cannot take now (no leader, leader lost, commit timeout)."`
	Verbose      bool          `short:"v" help:"Print where each batch landed."`
}

// Run writes one record per input line, in batches, as an idempotent
// producer: requests go one at a time, numbered, and a request is retried
// unchanged until the cluster takes it, so no record is written twice.
func (c *ProduceCmd) Run(g *Globals, s *Streams, cl *Client, p *Printer) error {
	in := s.In
	if c.File != "" {
		f, err := os.Open(c.File)
		if err != nil {
			return failf("check the path given to --file", "cannot read records: %v", err)
		}
		defer f.Close()
		in = f
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	pr, err := newProducer(cl, c.Topic, c.Partition, c.Timeout)
	if err != nil {
		return err
	}
	if c.Verbose {
		pr.onBatch = func(seq uint64, n int, offsets []api.RecordPosition) {
			p.Linef("batch %d: %d record%s at %s", seq, n, plural(n), formatPositions(offsets))
		}
		cl.OnRetry = func(err error, wait time.Duration) {
			fmt.Fprintf(s.Err, "retrying batch %d in %s: %v\n", pr.seq, wait.Round(time.Millisecond), err)
		}
	}
	err = splitBatches(in, []byte(c.KeySeparator), func(b *batch) error { return pr.send(ctx, b) })
	if err != nil {
		return err
	}
	if g.JSON() {
		return p.JSON(struct {
			Records int `json:"records"`
			Batches int `json:"batches"`
		}{pr.records, pr.batches})
	}
	return nil
}

// batch is the records of one produce request, encoded.
type batch struct {
	buf   []byte
	n     int
	first int // input line number of the first record
}

// fits reports whether a record of frameSize encoded bytes may join b.
func (b *batch) fits(frameSize int) bool {
	return b.n == 0 || (b.n < maxBatchRecords && len(b.buf)+frameSize <= maxBatchBytes)
}

// splitBatches reads r one line at a time, each line one record (see
// lineReader), and hands the records to send in batches, in order.
func splitBatches(r io.Reader, sep []byte, send func(*batch) error) error {
	lr := newLineReader(r)
	b := &batch{first: 1}
	for lineNo := 1; ; lineNo++ {
		line, err := lr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return fmt.Errorf("reading line %d: %w", lineNo, err)
		}
		key, value := splitKey(line, sep)
		if !b.fits(record.FrameSize(key, value)) {
			if err := send(b); err != nil {
				return err
			}
			*b = batch{buf: b.buf[:0], first: lineNo}
		}
		b.buf = record.Append(b.buf, key, value)
		b.n++
	}
	if b.n == 0 {
		return nil
	}
	return send(b)
}

// splitKey splits a line at the first sep into key and value. Without sep,
// or when the line has no sep, the record has no key (nil).
func splitKey(line, sep []byte) (key, value []byte) {
	if len(sep) == 0 {
		return nil, line
	}
	i := bytes.Index(line, sep)
	if i < 0 {
		return nil, line
	}
	return line[:i:i], line[i+len(sep):]
}

// lineReader reads lines byte-exact: it strips the trailing "\n" and nothing
// else ("\r" stays, invalid UTF-8 stays), and a last line without "\n" is a
// line too.
type lineReader struct {
	br  *bufio.Reader
	buf []byte
}

func newLineReader(r io.Reader) *lineReader {
	return &lineReader{br: bufio.NewReaderSize(r, readBufferBytes)}
}

// errLineTooLong refuses a line that no request could carry.
var errLineTooLong = fmt.Errorf("line is longer than %d bytes, the most one request can carry", maxLineBytes)

// Next returns the next line without its "\n", or io.EOF. The line is valid
// until the next call.
func (r *lineReader) Next() ([]byte, error) {
	r.buf = r.buf[:0]
	for {
		chunk, err := r.br.ReadSlice('\n')
		if err == bufio.ErrBufferFull {
			r.buf = append(r.buf, chunk...)
			if len(r.buf) > maxLineBytes {
				return nil, errLineTooLong
			}
			continue
		}
		if err != nil && err != io.EOF {
			return nil, err
		}
		line := chunk
		if len(r.buf) > 0 {
			r.buf = append(r.buf, chunk...)
			line = r.buf
		}
		if err == io.EOF {
			if len(line) == 0 {
				return nil, io.EOF
			}
			if len(line) > maxLineBytes {
				return nil, errLineTooLong
			}
			return line, nil
		}
		line = line[:len(line)-1]
		if len(line) > maxLineBytes {
			return nil, errLineTooLong
		}
		return line, nil
	}
}

// producer sends batches to one topic as an idempotent producer.
type producer struct {
	client  *Client
	path    string
	query   url.Values
	id      string
	seq     uint64
	timeout time.Duration

	records, batches int // acknowledged so far
	onBatch          func(seq uint64, n int, offsets []api.RecordPosition)
}

func newProducer(cl *Client, topic string, partition *int, timeout time.Duration) (*producer, error) {
	raw := make([]byte, producerIDBytes)
	if _, err := rand.Read(raw); err != nil {
		return nil, fmt.Errorf("making a producer id: %w", err)
	}
	pr := &producer{
		client:  cl,
		path:    partitionPath(api.PathProduce, topic, 0),
		id:      "cli-" + hex.EncodeToString(raw),
		timeout: timeout,
	}
	if partition != nil {
		pr.query = url.Values{api.QueryPartition: {strconv.Itoa(*partition)}}
	}
	return pr, nil
}

// send writes one batch under the next sequence number, retrying the same
// request while the cluster asks to try again and the timeout allows.
func (pr *producer) send(ctx context.Context, b *batch) error {
	pr.seq++
	hdr := http.Header{}
	hdr.Set("Content-Type", api.ContentTypeRecords)
	hdr.Set(api.HeaderProducerID, pr.id)
	hdr.Set(api.HeaderProducerSeq, strconv.FormatUint(pr.seq, 10))
	resp, err := pr.client.Retry(ctx, pr.timeout, Request{
		Method: http.MethodPost, Path: pr.path, Query: pr.query, Header: hdr, Body: b.buf,
	})
	if err == nil {
		var out api.ProduceResponse
		if err = decodeJSON(resp, &out); err == nil && len(out.Offsets) != b.n {
			err = fmt.Errorf("%s acknowledged %d records of %d", hostOf(resp.Addr), len(out.Offsets), b.n)
		}
		if err == nil {
			pr.records += b.n
			pr.batches++
			if pr.onBatch != nil {
				pr.onBatch(pr.seq, b.n, out.Offsets)
			}
			return nil
		}
	}
	last := b.first + b.n - 1
	fate := "were not written"
	if IsRetryable(err) || errors.Is(err, context.Canceled) {
		fate = "may or may not be written (gave up waiting)"
	}
	msg := fmt.Sprintf("lines %d-%d %s", b.first, last, fate)
	if b.first > 1 {
		msg += fmt.Sprintf("; lines 1-%d are written", b.first-1)
	}
	return &batchError{err: err, msg: msg}
}

// batchError says which input lines a failed request held.
type batchError struct {
	err error
	msg string
}

func (e *batchError) Error() string { return e.err.Error() + "; " + e.msg }
func (e *batchError) Unwrap() error { return e.err }

// formatPositions summarizes where a batch landed: partition and offset
// range per partition.
func formatPositions(offsets []api.RecordPosition) string {
	type span struct{ lo, hi uint64 }
	spans := map[int]*span{}
	for _, o := range offsets {
		s, ok := spans[o.Partition]
		if !ok {
			spans[o.Partition] = &span{o.Offset, o.Offset}
			continue
		}
		s.lo, s.hi = min(s.lo, o.Offset), max(s.hi, o.Offset)
	}
	parts := make([]int, 0, len(spans))
	for p := range spans {
		parts = append(parts, p)
	}
	sort.Ints(parts)
	out := make([]string, len(parts))
	for i, p := range parts {
		s := spans[p]
		if s.lo == s.hi {
			out[i] = fmt.Sprintf("partition %d offset %d", p, s.lo)
		} else {
			out[i] = fmt.Sprintf("partition %d offsets %d-%d", p, s.lo, s.hi)
		}
	}
	return strings.Join(out, ", ")
}
