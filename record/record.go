// Package record is the binary encoding of a batch of records. The same bytes
// travel from the client (the CLI, `weir bench`) through the Raft log into the
// state store, so a produce never re-encodes a payload and the hot path never
// base64-encodes one.
//
// A batch is a sequence of frames, one per record:
//
//	uvarint(len(key)+1) key   (0 means "no key")
//	uvarint(len(value)) value
//
// The state store keeps each batch verbatim behind a small header of its own
// (fsm/records.go).
package record

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// Limits on what a single record and a single request may hold. They are part
// of the API contract and documented in docs/api.md.
const (
	// MaxRecordBytes is the largest key+value of one record.
	MaxRecordBytes = 1 << 20 // 1 MiB
	// MaxBatchBytes is the largest encoded batch of one produce request. It
	// bounds the size of one Raft log entry.
	MaxBatchBytes = 8 << 20 // 8 MiB
)

var (
	// ErrCorrupt means a batch does not decode: truncated frames or lengths
	// that run past the end of the buffer.
	ErrCorrupt = errors.New("record: corrupt batch")
	// ErrTooLarge means a record is over MaxRecordBytes.
	ErrTooLarge = errors.New("record: record too large")
)

// Record is one key/value pair. Key is nil when the record has none.
type Record struct {
	Key   []byte
	Value []byte
}

// Append appends one frame for (key, value) to buf and returns it.
func Append(buf []byte, key, value []byte) []byte {
	if key == nil {
		buf = binary.AppendUvarint(buf, 0)
	} else {
		buf = binary.AppendUvarint(buf, uint64(len(key))+1)
		buf = append(buf, key...)
	}
	buf = binary.AppendUvarint(buf, uint64(len(value)))
	return append(buf, value...)
}

// FrameSize is the encoded size of one frame, without encoding it.
func FrameSize(key, value []byte) int {
	n := uvarintLen(uint64(len(value))) + len(value)
	if key == nil {
		return n + 1
	}
	return n + uvarintLen(uint64(len(key))+1) + len(key)
}

func uvarintLen(x uint64) int {
	n := 1
	for x >= 0x80 {
		x >>= 7
		n++
	}
	return n
}

// Reader walks the frames of a batch without copying: the Key and Value it
// returns alias the underlying buffer.
type Reader struct {
	buf []byte
	err error
}

// NewReader returns a Reader over an encoded batch.
func NewReader(buf []byte) *Reader { return &Reader{buf: buf} }

// Next decodes the next frame. It returns false at the end of the batch or on
// a malformed frame; Err tells which.
func (r *Reader) Next() (Record, bool) {
	if r.err != nil || len(r.buf) == 0 {
		return Record{}, false
	}
	kl, n := binary.Uvarint(r.buf)
	if n <= 0 || kl > uint64(len(r.buf)-n)+1 {
		r.err = fmt.Errorf("%w: bad key length", ErrCorrupt)
		return Record{}, false
	}
	r.buf = r.buf[n:]
	var rec Record
	if kl > 0 {
		rec.Key = r.buf[: kl-1 : kl-1]
		r.buf = r.buf[kl-1:]
	}
	vl, n := binary.Uvarint(r.buf)
	if n <= 0 || vl > uint64(len(r.buf)-n) {
		r.err = fmt.Errorf("%w: bad value length", ErrCorrupt)
		return Record{}, false
	}
	r.buf = r.buf[n:]
	rec.Value = r.buf[:vl:vl]
	r.buf = r.buf[vl:]
	return rec, true
}

// Err is the decoding error that stopped Next, if any.
func (r *Reader) Err() error { return r.err }

// Validate checks that buf is a well-formed batch whose records are each at
// most MaxRecordBytes, and returns the number of records.
func Validate(buf []byte) (int, error) {
	r := NewReader(buf)
	count := 0
	for {
		rec, ok := r.Next()
		if !ok {
			break
		}
		if len(rec.Key)+len(rec.Value) > MaxRecordBytes {
			return 0, fmt.Errorf("%w: record %d is %d bytes, the limit is %d", ErrTooLarge, count, len(rec.Key)+len(rec.Value), MaxRecordBytes)
		}
		count++
	}
	return count, r.Err()
}

// AppendConsumed appends one record of a consume response: uvarint(offset),
// varint(timestamp in Unix ms), then the record's frame.
func AppendConsumed(buf []byte, offset uint64, timestamp int64, key, value []byte) []byte {
	buf = binary.AppendUvarint(buf, offset)
	buf = binary.AppendVarint(buf, timestamp)
	return Append(buf, key, value)
}

// Consumed is one record of a consume response.
type Consumed struct {
	Offset    uint64
	Timestamp int64
	Record
}

// ConsumedReader walks a consume response body. Key and Value alias the
// buffer.
type ConsumedReader struct {
	r Reader
}

// NewConsumedReader returns a reader over a consume response body.
func NewConsumedReader(buf []byte) *ConsumedReader { return &ConsumedReader{r: Reader{buf: buf}} }

// Next decodes the next record; false at the end or on a malformed body.
func (c *ConsumedReader) Next() (Consumed, bool) {
	if c.r.err != nil || len(c.r.buf) == 0 {
		return Consumed{}, false
	}
	off, n := binary.Uvarint(c.r.buf)
	if n <= 0 {
		c.r.err = fmt.Errorf("%w: bad offset", ErrCorrupt)
		return Consumed{}, false
	}
	c.r.buf = c.r.buf[n:]
	ts, n := binary.Varint(c.r.buf)
	if n <= 0 {
		c.r.err = fmt.Errorf("%w: bad timestamp", ErrCorrupt)
		return Consumed{}, false
	}
	c.r.buf = c.r.buf[n:]
	rec, ok := c.r.Next()
	if !ok {
		if c.r.err == nil {
			c.r.err = fmt.Errorf("%w: truncated record", ErrCorrupt)
		}
		return Consumed{}, false
	}
	return Consumed{Offset: off, Timestamp: ts, Record: rec}, true
}

// Err is the decoding error that stopped Next, if any.
func (c *ConsumedReader) Err() error { return c.r.err }
