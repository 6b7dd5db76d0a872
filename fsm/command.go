package fsm

import (
	"fmt"

	"github.com/hashicorp/go-msgpack/v2/codec"
)

// MessageType is the first byte of every command in the Raft log.
type MessageType uint8

// IgnoreUnknownTypeFlag on a type byte means "a node that does not know this
// type may skip it" (Consul's rule). Any other unknown type refuses to apply.
const IgnoreUnknownTypeFlag MessageType = 0x80

// Command types. Never renumber: they are in every Raft log on disk.
const (
	InitType        MessageType = 1 // the first entry of a cluster: its id and version
	CreateTopicType MessageType = 2
	DeleteTopicType MessageType = 3
	ProduceType     MessageType = 4
)

// msgpackHandle encodes maps in sorted key order, so every node stores the
// same bytes for the same state (state hashes compare equal).
var msgpackHandle = func() *codec.MsgpackHandle {
	h := &codec.MsgpackHandle{}
	h.Canonical = true
	return h
}()

// Encode writes a command: its type byte followed by the msgpack body, in
// one allocation sized for the command (a produce entry carries up to
// record.MaxBatchBytes of frames; growing a buffer to that copies it over
// and over).
func Encode(t MessageType, msg any) ([]byte, error) {
	buf := make([]byte, 1, 1+encodedSizeHint(msg))
	buf[0] = byte(t)
	body := buf[1:1] // the encoder appends here, in buf's array while it fits
	if err := codec.NewEncoderBytes(&body, msgpackHandle).Encode(msg); err != nil {
		return nil, fmt.Errorf("encode command %d: %w", t, err)
	}
	if cap(body) == cap(buf)-1 { // it fit: body is buf[1:]
		return buf[:1+len(body)], nil
	}
	return append(buf, body...), nil
}

// encodedSizeHint is at least the msgpack size of a produce command (field
// names, headers and frames) and a small guess for every other command.
func encodedSizeHint(msg any) int {
	const overhead = 128
	cmd, ok := msg.(ProduceCommand)
	if !ok {
		return overhead
	}
	n := overhead + len(cmd.Topic) + len(cmd.ProducerID)
	for _, b := range cmd.Batches {
		n += 48 + len(b.Data)
	}
	return n
}

// decode reads a command body; a body that does not decode is a bug in the
// writer, so callers panic on the error.
func decode(buf []byte, out any) error {
	return codec.NewDecoderBytes(buf, msgpackHandle).Decode(out)
}

// InitCommand is committed once by the first leader of a new cluster.
type InitCommand struct {
	ClusterID string
	Version   string // the bootstrapping binary's version becomes the active version
	By        string // node id
	At        int64  // leader's wall clock, Unix ms
}

// CreateTopicCommand creates a topic; the same settings again are a no-op.
type CreateTopicCommand struct {
	Name       string
	Partitions int
	At         int64
}

// DeleteTopicCommand removes a topic and all its records.
type DeleteTopicCommand struct {
	Name string
}

// ProduceCommand appends batches to partitions of one topic. The node splits
// a request by partition before proposing, so Apply never parses records.
type ProduceCommand struct {
	Topic      string
	ProducerID string // empty: not idempotent
	Seq        uint64
	At         int64 // leader's wall clock, Unix ms: the records' timestamp
	Batches    []PartitionBatch
}

// PartitionBatch is the records of one produce for one partition, in the
// record package's encoding.
type PartitionBatch struct {
	Partition int
	Count     int
	Data      []byte
}

// CreateTopicResult says whether a create made the topic.
type CreateTopicResult struct {
	Created bool
}

// ProduceResult holds the base offset of each batch, in command order.
type ProduceResult struct {
	Bases     []uint64
	Duplicate bool // a retry of the producer's last sequence: nothing written
}
