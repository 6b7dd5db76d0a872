package node

import (
	"hash/fnv"

	"github.com/weir-streaming/weir/fsm"
	"github.com/weir-streaming/weir/record"
)

// Placement says where a produce request's records go. Records is the
// request in order; Frames, when set, is the same records as one validated
// binary body (record package frames), handed through untouched when every
// record lands in one partition.
type Placement struct {
	Records []record.Record
	Frames  []byte

	Partitions int // the topic's partition count
	Pinned     int // ?partition=N, or -1
	// Sticky is the partition every unkeyed record of the request goes to
	// when none is pinned (StickyPartition).
	Sticky int
}

// Slot is where one record of a request went: its batch in the command and
// its index within that batch.
type Slot struct{ Batch, Index int }

// Place splits a request into one batch per partition, in order of first
// use, and says where each record went.
//
// A pinned request goes to its partition; otherwise a keyed record goes to
// fnv32a(key) mod partitions and every unkeyed record of the request to the
// one Sticky partition (Kafka's sticky partitioner, KIP-480): a request of
// unkeyed records is one batch, one stored value and no re-encoding.
func Place(p Placement) ([]fsm.PartitionBatch, []Slot) {
	where := make([]Slot, len(p.Records))
	partOf := func(rec record.Record) int {
		switch {
		case p.Pinned >= 0:
			return p.Pinned
		case rec.Key != nil:
			h := fnv.New32a()
			h.Write(rec.Key)
			return int(h.Sum32() % uint32(p.Partitions))
		}
		return p.Sticky
	}
	// Each record's partition, once; the common case is one partition for
	// the whole request.
	parts := make([]int, len(p.Records))
	one := true
	for i, rec := range p.Records {
		parts[i] = partOf(rec)
		one = one && parts[i] == parts[0]
	}
	if one {
		data := p.Frames
		if data == nil {
			for _, rec := range p.Records {
				data = record.Append(data, rec.Key, rec.Value)
			}
		}
		for i := range where {
			where[i] = Slot{0, i}
		}
		return []fsm.PartitionBatch{{Partition: parts[0], Count: len(p.Records), Data: data}}, where
	}
	batchOf := map[int]int{}
	var batches []fsm.PartitionBatch
	for i, rec := range p.Records {
		part := parts[i]
		b, ok := batchOf[part]
		if !ok {
			b = len(batches)
			batchOf[part] = b
			batches = append(batches, fsm.PartitionBatch{Partition: part})
		}
		where[i] = Slot{b, batches[b].Count}
		batches[b].Count++
		batches[b].Data = record.Append(batches[b].Data, rec.Key, rec.Value)
	}
	return batches, where
}

// StickyPartition picks the partition for a request's unkeyed records. An
// idempotent producer's pick follows its id and sequence, so a retry lands
// where the first attempt did and concurrent producers start apart; other
// requests take the next partition of the node's round robin, rr.
func StickyPartition(partitions int, producer string, seq, rr uint64) int {
	if producer == "" {
		return int(rr % uint64(partitions))
	}
	h := fnv.New32a()
	h.Write([]byte(producer))
	return int((uint64(h.Sum32()) + seq) % uint64(partitions))
}
