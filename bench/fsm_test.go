package bench

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/raft"
	"github.com/weir-streaming/weir/fsm"
	"github.com/weir-streaming/weir/record"
	bolt "go.etcd.io/bbolt"
)

// Benchmarks of the state machine and the encodings on the produce and
// consume paths, with the sizes of BenchmarkWeirProduce (1 KiB records,
// 4 partitions). Every op of an Apply benchmark is one Raft entry: one
// produce request.

// raftApplyBatch is how many committed entries hashicorp/raft hands the FSM
// at most in one ApplyBatch (its MaxAppendEntries default, which Weir keeps).
const raftApplyBatch = 64

// benchProducerID is 32 characters, as a bench or CLI producer's id.
const benchProducerID = "0123456789abcdef0123456789abcdef"

// fsmBench is a state store with a cluster and a topic, fed entries at
// increasing indexes.
type fsmBench struct {
	f      *fsm.FSM
	index  uint64
	entry  []byte
	seqPos int // offset of the u64 sequence in entry
	seq    uint64
}

func newFSMBench(b *testing.B, batch int) *fsmBench {
	b.Helper()
	f, err := fsm.Open(filepath.Join(b.TempDir(), "state.db"), nil)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { f.Close() })
	fb := &fsmBench{f: f, seq: renumberBase}
	fb.mustApply(b, fsm.InitType, fsm.InitCommand{ClusterID: "bench", Version: "0.1.0", By: "n1", At: 1})
	fb.mustApply(b, fsm.CreateTopicType, fsm.CreateTopicCommand{Name: benchTopic, Partitions: benchPartitions, At: 1})
	fb.entry, fb.seqPos = encodedProduce(b, batch)
	return fb
}

func (fb *fsmBench) mustApply(b *testing.B, t fsm.MessageType, msg any) {
	buf, err := fsm.Encode(t, msg)
	if err != nil {
		b.Fatal(err)
	}
	fb.index++
	if res := fb.f.Apply(&raft.Log{Index: fb.index, Term: 1, Type: raft.LogCommand, Data: buf}); res != nil {
		if err, ok := res.(error); ok {
			b.Fatal(err)
		}
	}
}

// encodedProduce is a produce entry of batch 1 KiB records and where its
// sequence number sits.
func encodedProduce(b *testing.B, batch int) ([]byte, int) {
	val := bytes.Repeat([]byte{0xa5}, benchRecordSize)
	buf, err := fsm.Encode(fsm.ProduceType, produceCommand(benchTopic, benchProducerID, renumberBase, batch, benchPartitions, val))
	if err != nil {
		b.Fatal(err)
	}
	pos, err := sequenceOffset(buf)
	if err != nil {
		b.Fatal(err)
	}
	return buf, pos
}

// next is the next entry: the same records from the same producer, one
// sequence on.
func (fb *fsmBench) next() *raft.Log {
	fb.seq++
	fb.index++
	binary.BigEndian.PutUint64(fb.entry[fb.seqPos:], fb.seq)
	return &raft.Log{Index: fb.index, Term: 1, Type: raft.LogCommand, Data: fb.entry}
}

func reportRecords(b *testing.B, records int) {
	s := b.Elapsed().Seconds()
	if s > 0 {
		b.ReportMetric(float64(records)/s, "records/s")
		b.ReportMetric(float64(records)*benchRecordSize/s/mb, "MiB/s")
	}
}

// BenchmarkFSMApply applies one produce entry per state store transaction
// (one bbolt commit, one fsync): the FSM's cost when entries commit one at a
// time.
func BenchmarkFSMApply(b *testing.B) {
	for _, batch := range benchBatches {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			fb := newFSMBench(b, batch)
			b.ReportAllocs()
			b.ResetTimer()
			disk := startDiskMeter()
			for range b.N {
				if res, ok := fb.f.Apply(fb.next()).(fsm.ProduceResult); !ok || res.Duplicate {
					b.Fatalf("apply: %#v", res)
				}
			}
			b.StopTimer()
			disk.report(b, int64(b.N*batch*benchRecordSize))
			reportRecords(b, b.N*batch)
		})
	}
}

// BenchmarkFSMApplyBatch applies entries raftApplyBatch at a time, as
// hashicorp/raft does under load: one transaction and fsync per group.
// ns/op and allocs/op are per entry.
func BenchmarkFSMApplyBatch(b *testing.B) {
	for _, batch := range benchBatches {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			fb := newFSMBench(b, batch)
			logs := make([]*raft.Log, 0, raftApplyBatch)
			entries := make([][]byte, raftApplyBatch) // each log its own bytes: Apply may keep them until commit
			for i := range entries {
				entries[i] = append([]byte(nil), fb.entry...)
			}
			b.ReportAllocs()
			b.ResetTimer()
			disk := startDiskMeter()
			for done := 0; done < b.N; {
				logs = logs[:0]
				for i := 0; i < raftApplyBatch && done < b.N; i++ {
					l := fb.next()
					copy(entries[i], l.Data)
					l.Data = entries[i]
					logs = append(logs, l)
					done++
				}
				for _, res := range fb.f.ApplyBatch(logs) {
					if r, ok := res.(fsm.ProduceResult); !ok || r.Duplicate {
						b.Fatalf("apply: %#v", res)
					}
				}
			}
			b.StopTimer()
			disk.report(b, int64(b.N*batch*benchRecordSize))
			reportRecords(b, b.N*batch)
		})
	}
}

// BenchmarkFSMRead reads a partition of stored 100-record batches from
// offset 0 in reads of the API's default size (4 MiB), encoding each as a
// binary consume response: the node's share of a consume catch-up without
// HTTP. ns/op is per record.
func BenchmarkFSMRead(b *testing.B) {
	const batch = 100
	fb := newFSMBench(b, batch)
	logs := make([]*raft.Log, 0, raftApplyBatch)
	// A fixed data set of 80 000 records, read round and round: the
	// set-up must not grow with b.N (it writes with fsync).
	for range 80000 / batch / raftApplyBatch {
		logs = logs[:0]
		for range raftApplyBatch {
			l := fb.next()
			l.Data = append([]byte(nil), l.Data...)
			logs = append(logs, l)
		}
		fb.f.ApplyBatch(logs)
	}
	// Entries are placed as a node places them (one partition per request
	// of unkeyed records), so read the partition that got the most.
	ti, err := fb.f.Topic(benchTopic)
	if err != nil {
		b.Fatal(err)
	}
	part, stored := 0, uint64(0)
	for _, p := range ti.Partitions {
		if p.HighWatermark > stored {
			part, stored = p.Partition, p.HighWatermark
		}
	}
	lim := fsm.ReadLimits{MaxRecords: 100000, MaxBytes: 4 << 20}
	b.ReportAllocs()
	b.ResetTimer()
	var offset uint64
	var body []byte
	read := 0
	for read < b.N {
		body = body[:0]
		_, next, err := fb.f.Read(benchTopic, part, offset, lim, func(r fsm.Rec) {
			body = record.AppendConsumed(body, r.Offset, r.Timestamp, r.Key, r.Value)
		})
		if err != nil {
			b.Fatal(err)
		}
		read += int(next - offset)
		offset = next
		if offset >= stored {
			offset = 0
		}
	}
	b.StopTimer()
	reportRecords(b, read)
}

// BenchmarkStoreLayout isolates what the state store's layout costs: one
// produce entry of 100 records of 1 KiB spread over 4 partitions, stored per
// op and made durable, as
//   - bbolt: one value per partition batch in bbolt (fsm's layout before
//     segments, with its options: map freelist, no freelist sync), one
//     commit (bbolt fdatasyncs twice per commit: pages, then meta);
//   - bbolt-nosync: the same without fsync (durability from the Raft log);
//   - segment: the four batches appended to one file and fsync'd once: the
//     layout fsm/segments.go now implements, without its small index.
//
// It is the measurement that chose segments (docs/performance.md).
// disk_B/payload_B is the write amplification (Linux only).
func BenchmarkStoreLayout(b *testing.B) {
	const parts, perPart = benchPartitions, 100 / benchPartitions
	val := bytes.Repeat([]byte{3}, perPart*record.FrameSize(nil, make([]byte, benchRecordSize))+13) // frames and header
	payload := int64(parts * perPart * benchRecordSize)
	b.Run("bbolt", func(b *testing.B) { benchBolt(b, false, parts, val, payload) })
	b.Run("bbolt-nosync", func(b *testing.B) { benchBolt(b, true, parts, val, payload) })
	b.Run("segment", func(b *testing.B) {
		f, err := os.Create(filepath.Join(b.TempDir(), "data.seg"))
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		b.ResetTimer()
		disk := startDiskMeter()
		for range b.N {
			for range parts {
				if _, err := f.Write(val); err != nil {
					b.Fatal(err)
				}
			}
			if err := f.Sync(); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		disk.report(b, int64(b.N)*payload)
		reportRecords(b, b.N*parts*perPart)
	})
}

func benchBolt(b *testing.B, noSync bool, parts int, val []byte, payload int64) {
	db, err := bolt.Open(filepath.Join(b.TempDir(), "state.db"), 0o600, &bolt.Options{
		InitialMmapSize: 256 << 20, FreelistType: bolt.FreelistMapType, NoFreelistSync: true,
	})
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	db.NoSync = noSync
	err = db.Update(func(tx *bolt.Tx) error {
		for p := range parts {
			if _, err := tx.CreateBucket(partitionName(p)); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	disk := startDiskMeter()
	for i := range b.N {
		err := db.Update(func(tx *bolt.Tx) error {
			var k [8]byte
			binary.BigEndian.PutUint64(k[:], uint64(i))
			for p := range parts {
				if err := tx.Bucket(partitionName(p)).Put(k[:], val); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	disk.report(b, int64(b.N)*payload)
	reportRecords(b, b.N*len(val)/benchRecordSize*parts)
}

func partitionName(p int) []byte { return binary.BigEndian.AppendUint32(nil, uint32(p)) }

// BenchmarkEncodeProduceCommand is fsm.Encode of a produce entry: the
// msgpack a node writes for every produce request.
func BenchmarkEncodeProduceCommand(b *testing.B) {
	for _, batch := range benchBatches {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			cmd := produceCommand(benchTopic, benchProducerID, 1, batch, benchPartitions, bytes.Repeat([]byte{1}, benchRecordSize))
			b.ReportAllocs()
			b.SetBytes(int64(batch * benchRecordSize))
			for range b.N {
				if _, err := fsm.Encode(fsm.ProduceType, cmd); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDecodeProduceCommand decodes a produce entry's msgpack body with
// the library and settings fsm's decode uses (its decode is unexported; a
// decoding handle's Canonical flag does not change decoding).
func BenchmarkDecodeProduceCommand(b *testing.B) {
	for _, batch := range benchBatches {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			buf, _ := encodedProduce(b, batch)
			h := &codec.MsgpackHandle{}
			h.Canonical = true
			b.ReportAllocs()
			b.SetBytes(int64(batch * benchRecordSize))
			for range b.N {
				var cmd fsm.ProduceCommand
				if err := codec.NewDecoderBytes(buf[1:], h).Decode(&cmd); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// benchBatch is 100 encoded records of 1 KiB without keys.
func benchBatch() []byte {
	val := bytes.Repeat([]byte{7}, benchRecordSize)
	var buf []byte
	for range 100 {
		buf = record.Append(buf, nil, val)
	}
	return buf
}

// BenchmarkRecordAppend encodes a 100-record batch (what Produce and the
// CLI send). ns/op is per batch.
func BenchmarkRecordAppend(b *testing.B) {
	val := bytes.Repeat([]byte{7}, benchRecordSize)
	buf := make([]byte, 0, 128<<10)
	b.ReportAllocs()
	b.SetBytes(100 * benchRecordSize)
	for range b.N {
		buf = buf[:0]
		for range 100 {
			buf = record.Append(buf, nil, val)
		}
	}
}

// BenchmarkRecordReader decodes a 100-record batch without copying (what a
// node does with every produce body and every stored batch it serves).
func BenchmarkRecordReader(b *testing.B) {
	buf := benchBatch()
	b.ReportAllocs()
	b.SetBytes(int64(len(buf)))
	for range b.N {
		r := record.NewReader(buf)
		n := 0
		for _, ok := r.Next(); ok; _, ok = r.Next() {
			n++
		}
		if n != 100 || r.Err() != nil {
			b.Fatal(n, r.Err())
		}
	}
}

// BenchmarkRecordValidate is the check every produce body passes first.
func BenchmarkRecordValidate(b *testing.B) {
	buf := benchBatch()
	b.ReportAllocs()
	b.SetBytes(int64(len(buf)))
	for range b.N {
		if n, err := record.Validate(buf); n != 100 || err != nil {
			b.Fatal(n, err)
		}
	}
}

// BenchmarkConsumedRoundTrip encodes 100 records as a binary consume
// response and decodes it, as the node and Consume do.
func BenchmarkConsumedRoundTrip(b *testing.B) {
	val := bytes.Repeat([]byte{7}, benchRecordSize)
	buf := make([]byte, 0, 128<<10)
	b.ReportAllocs()
	b.SetBytes(100 * benchRecordSize)
	for range b.N {
		buf = buf[:0]
		for i := range 100 {
			buf = record.AppendConsumed(buf, uint64(i), 1700000000000, nil, val)
		}
		r := record.NewConsumedReader(buf)
		n := 0
		for _, ok := r.Next(); ok; _, ok = r.Next() {
			n++
		}
		if n != 100 {
			b.Fatal(n, r.Err())
		}
	}
}
