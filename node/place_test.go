package node

import (
	"bytes"
	"fmt"
	"testing"

	"github.com/weir-streaming/weir/record"
)

func frames(recs []record.Record) []byte {
	var buf []byte
	for _, r := range recs {
		buf = record.Append(buf, r.Key, r.Value)
	}
	return buf
}

func unkeyed(n int) []record.Record {
	recs := make([]record.Record, n)
	for i := range recs {
		recs[i].Value = []byte(fmt.Sprint("v", i))
	}
	return recs
}

func TestPlace_UnkeyedRequestIsOneBatchOfItsOwnFrames(t *testing.T) {
	recs := unkeyed(5)
	body := frames(recs)
	batches, where := Place(Placement{Records: recs, Frames: body, Partitions: 4, Pinned: -1, Sticky: 2})
	if len(batches) != 1 || batches[0].Partition != 2 || batches[0].Count != 5 {
		t.Fatalf("batches = %+v, want one batch of 5 in partition 2", batches)
	}
	if &batches[0].Data[0] != &body[0] || len(batches[0].Data) != len(body) {
		t.Error("the request's frames were copied, not handed through")
	}
	for i, s := range where {
		if s != (Slot{0, i}) {
			t.Errorf("record %d at %+v, want batch 0 index %d", i, s, i)
		}
	}
	// A JSON request (no frames) makes the same batch.
	batches, _ = Place(Placement{Records: recs, Partitions: 4, Pinned: -1, Sticky: 2})
	if len(batches) != 1 || !bytes.Equal(batches[0].Data, body) {
		t.Fatalf("JSON request: batches = %+v, want the same frames", batches)
	}
}

func TestPlace_KeyedAndPinned(t *testing.T) {
	recs := []record.Record{
		{Key: []byte("a"), Value: []byte("1")},
		{Value: []byte("2")},
		{Key: []byte("b"), Value: []byte("3")},
		{Key: []byte("a"), Value: []byte("4")},
	}
	batches, where := Place(Placement{Records: recs, Frames: frames(recs), Partitions: 64, Pinned: -1, Sticky: 7})
	part := func(i int) int { return batches[where[i].Batch].Partition }
	if part(0) != part(3) {
		t.Errorf("records with key a went to partitions %d and %d", part(0), part(3))
	}
	if part(1) != 7 {
		t.Errorf("the unkeyed record went to %d, want the sticky partition 7", part(1))
	}
	if part(0) == part(2) {
		t.Errorf("keys a and b both hash to %d of 64; pick other keys", part(0))
	}
	// Every record is in its batch at its index, in request order.
	for i, s := range where {
		rd := record.NewReader(batches[s.Batch].Data)
		var got record.Record
		for range s.Index + 1 {
			got, _ = rd.Next()
		}
		if !bytes.Equal(got.Value, recs[i].Value) {
			t.Errorf("record %d: slot %+v holds %q", i, s, got.Value)
		}
	}
	// Pinned overrides keys.
	batches, _ = Place(Placement{Records: recs, Frames: frames(recs), Partitions: 64, Pinned: 3, Sticky: 7})
	if len(batches) != 1 || batches[0].Partition != 3 || batches[0].Count != 4 {
		t.Fatalf("pinned: batches = %+v, want one batch of 4 in partition 3", batches)
	}
}

func TestStickyPartition(t *testing.T) {
	// An idempotent retry lands where the first attempt did.
	if StickyPartition(4, "p1", 9, 0) != StickyPartition(4, "p1", 9, 123) {
		t.Error("the same producer and sequence picked different partitions")
	}
	// A producer's successive requests visit every partition.
	seen := map[int]bool{}
	for seq := uint64(1); seq <= 4; seq++ {
		seen[StickyPartition(4, "p1", seq, 0)] = true
	}
	if len(seen) != 4 {
		t.Errorf("four sequences visited partitions %v, want all four", seen)
	}
	// Other requests follow the node's round robin.
	if StickyPartition(4, "", 0, 6) != 2 {
		t.Error("round robin 6 of 4 partitions is not partition 2")
	}
}
