package fsm

import (
	"encoding/binary"
	"fmt"
	"hash/crc32"

	"github.com/weir-streaming/weir/record"
	"github.com/weir-streaming/weir/version"
	bolt "go.etcd.io/bbolt"
)

// A partition holds one bbolt value per produce batch, not per record, keyed
// by its base offset (u64 big endian). New batches are index entries
// pointing into segment files (formats 3 and 4, segments.go); stores written
// before segments held the records in the value itself, and are still read:
//
//	format 1: [1B format][8B timestamp, Unix ms][4B count][record frames]
//	format 2: [1B format][8B timestamp, Unix ms][4B count][4B CRC-32C of the frames][record frames]
//
// The CRC (formats 2 and 4) is written once the "batch-crc32c" version gate
// is open (active version 0.2.0 and later); every format is read, so batches
// written before and after an upgrade coexist in a partition.
const (
	batchFormatV1     = 1
	batchFormatV2     = 2
	batchHeaderBytes  = 1 + 8 + 4 // format 1; format 2 adds 4 bytes of CRC
	maxProducers      = 10000     // idempotent producers remembered; the oldest is forgotten first
	producerIndexSize = 8
)

var (
	bucketProducerAge = []byte("producer_age") // last index (u64 BE) -> producer id
	keyProducerCount  = []byte("producers")
)

type producerState struct {
	Seq   uint64
	Bases []uint64
	Index uint64
}

func applyProduce(tx *bolt.Tx, segs *segmentStore, index uint64, body []byte) interface{} {
	var cmd ProduceCommand
	mustDecode(body, &cmd)
	if err := dataPlaneCheck(tx); err != nil {
		return err
	}
	tm, ok := readTopic(tx, cmd.Topic)
	if !ok {
		return reject(ErrUnknownTopic, fmt.Sprintf(`create it with "weir topic create %s"`, cmd.Topic), "topic %q does not exist", cmd.Topic)
	}
	for _, b := range cmd.Batches {
		if b.Partition < 0 || b.Partition >= tm.Partitions {
			return reject(ErrUnknownPartition, fmt.Sprintf("topic %q has partitions 0 to %d", cmd.Topic, tm.Partitions-1),
				"partition %d of topic %q does not exist", b.Partition, cmd.Topic)
		}
		if b.Count <= 0 {
			panic(fmt.Sprintf("fsm: produce batch with %d records at index %d", b.Count, index))
		}
	}
	var prev producerState
	if cmd.ProducerID != "" {
		prev, ok = readProducer(tx, cmd.ProducerID)
		if ok && cmd.Seq == prev.Seq {
			return ProduceResult{Bases: prev.Bases, Duplicate: true}
		}
		if ok && cmd.Seq < prev.Seq {
			return reject(ErrStaleSequence, "a producer sends its requests one at a time; start a new producer id",
				"producer %q sent sequence %d after %d", cmd.ProducerID, cmd.Seq, prev.Seq)
		}
		if ok && cmd.Seq > prev.Seq+1 {
			return reject(ErrSequenceGap, fmt.Sprintf("send sequence %d next (a sequence advances only when its request was written), or start a new producer id", prev.Seq+1),
				"producer %q sent sequence %d after %d: %d to %d are missing", cmd.ProducerID, cmd.Seq, prev.Seq, prev.Seq+1, cmd.Seq-1)
		}
	}
	crc := version.Enabled(GateBatchCRC, readCluster(tx).ActiveVersion)
	res := ProduceResult{Bases: make([]uint64, len(cmd.Batches))}
	dir := tm.segmentDir()
	for i, b := range cmd.Batches {
		pb := partitionBucket(tx, cmd.Topic, b.Partition)
		_, end := extent(pb)
		seg, pos, err := segs.append(dir, b.Partition, end, b.Data)
		must(err)
		e := indexEntry{sum: crc, ts: cmd.At, count: uint32(b.Count), segment: seg, pos: pos, length: uint32(len(b.Data))}
		if crc {
			e.crc = crc32.Checksum(b.Data, castagnoli)
		}
		must(pb.Put(offsetKey(end), e.encode()))
		res.Bases[i] = end
	}
	if cmd.ProducerID != "" {
		writeProducer(tx, cmd.ProducerID, producerState{Seq: cmd.Seq, Bases: res.Bases, Index: index}, prev)
	}
	return res
}

// GateBatchCRC names the version gate that turns on format 2.
const GateBatchCRC = "batch-crc32c"

// decodeBatch returns a stored batch's timestamp and frames, verifying the
// checksum of a format 2 batch.
func decodeBatch(v []byte) (ts int64, frames []byte, checksummed bool, err error) {
	if len(v) < batchHeaderBytes {
		return 0, nil, false, fmt.Errorf("%w: stored batch of %d bytes", ErrCorruptBatch, len(v))
	}
	ts = int64(binary.BigEndian.Uint64(v[1:]))
	switch v[0] {
	case batchFormatV1:
		return ts, v[batchHeaderBytes:], false, nil
	case batchFormatV2:
		if len(v) < batchHeaderBytes+4 {
			return 0, nil, false, fmt.Errorf("%w: stored batch of %d bytes", ErrCorruptBatch, len(v))
		}
		frames = v[batchHeaderBytes+4:]
		if crc32.Checksum(frames, castagnoli) != binary.BigEndian.Uint32(v[batchHeaderBytes:]) {
			return 0, nil, true, fmt.Errorf("%w: stored batch fails its CRC-32C", ErrCorruptBatch)
		}
		return ts, frames, true, nil
	}
	return 0, nil, false, fmt.Errorf("%w: stored batch format %d is unknown to this binary", ErrCorruptBatch, v[0])
}

func offsetKey(o uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], o)
	return b[:]
}

// extent is the partition's [log start, high watermark).
func extent(b *bolt.Bucket) (start, end uint64) {
	if b == nil {
		return 0, 0
	}
	c := b.Cursor()
	k, _ := c.First()
	if k == nil {
		return 0, 0
	}
	start = binary.BigEndian.Uint64(k)
	k, v := c.Last()
	return start, binary.BigEndian.Uint64(k) + uint64(batchCount(v))
}

func batchCount(v []byte) uint32 {
	if len(v) < batchHeaderBytes {
		panic("fsm: corrupt stored batch")
	}
	return binary.BigEndian.Uint32(v[9:])
}

func readProducer(tx *bolt.Tx, id string) (producerState, bool) {
	v := tx.Bucket(bucketProducers).Get([]byte(id))
	if v == nil {
		return producerState{}, false
	}
	var ps producerState
	if err := decode(v, &ps); err != nil {
		panic("fsm: corrupt producer state: " + err.Error())
	}
	return ps, true
}

// writeProducer stores a producer's last sequence and forgets the least
// recently written producer beyond maxProducers. Everything it reads is in
// the store, so every node forgets the same producers.
func writeProducer(tx *bolt.Tx, id string, ps producerState, prev producerState) {
	buf, err := Encode(0, ps)
	must(err)
	pb := tx.Bucket(bucketProducers)
	age, err := tx.Bucket(bucketMeta).CreateBucketIfNotExists(bucketProducerAge)
	must(err)
	meta := tx.Bucket(bucketMeta)
	count := uint64(0)
	if v := meta.Get(keyProducerCount); len(v) == 8 {
		count = binary.BigEndian.Uint64(v)
	}
	if prev.Index != 0 {
		must(age.Delete(offsetKey(prev.Index)))
	} else {
		count++
	}
	must(pb.Put([]byte(id), buf[1:]))
	must(age.Put(offsetKey(ps.Index), []byte(id)))
	for count > maxProducers {
		k, v := age.Cursor().First()
		must(pb.Delete(v))
		must(age.Delete(k))
		count--
	}
	must(meta.Put(keyProducerCount, offsetKey(count)))
}

// ReadLimits bound one Read.
type ReadLimits struct {
	MaxRecords int
	MaxBytes   int // key+value bytes; at least one record is always returned
}

// Rec is one record as Read hands it out. Key and Value are valid only
// during the callback. Checksummed says its batch carries a CRC-32C, which
// was verified.
type Rec struct {
	Offset      uint64
	Timestamp   int64
	Key, Value  []byte
	Checksummed bool
}

// Read calls fn for each record of a partition from offset on, in order,
// until the limits or the end. It returns the partition's extent and the
// offset to read next.
func (f *FSM) Read(topic string, partition int, offset uint64, lim ReadLimits, fn func(Rec)) (PartitionInfo, uint64, error) {
	var pi PartitionInfo
	next := offset
	err := f.view(func(tx *bolt.Tx) error {
		tm, ok := readTopic(tx, topic)
		if !ok {
			return reject(ErrUnknownTopic, `list topics with "weir topic list"`, "topic %q does not exist", topic)
		}
		if partition < 0 || partition >= tm.Partitions {
			return reject(ErrUnknownPartition, fmt.Sprintf("topic %q has partitions 0 to %d", topic, tm.Partitions-1),
				"partition %d of topic %q does not exist", partition, topic)
		}
		pb := partitionBucket(tx, topic, partition)
		start, end := extent(pb)
		pi = PartitionInfo{Partition: partition, LogStart: start, HighWatermark: end}
		if offset < start || offset > end {
			return reject(ErrOffsetOutOfRange, fmt.Sprintf("read from an offset between %d and %d", start, end),
				"offset %d is outside partition %d of %q, which holds [%d, %d)", offset, partition, topic, start, end)
		}
		if offset == end {
			return nil
		}
		sr := f.segs.reader(tm.segmentDir(), partition)
		defer sr.close()
		c := pb.Cursor()
		k, v := c.Seek(offsetKey(offset))
		if k == nil || binary.BigEndian.Uint64(k) > offset {
			k, v = c.Prev()
		}
		records, bytes := 0, 0
		for ; k != nil; k, v = c.Next() {
			base := binary.BigEndian.Uint64(k)
			ts, frames, sum, err := sr.batch(v)
			if err != nil {
				return fmt.Errorf("partition %d of %q at base %d: %w", partition, topic, base, err)
			}
			r := record.NewReader(frames)
			for o := base; ; o++ {
				rec, ok := r.Next()
				if !ok {
					break
				}
				if o < offset {
					continue
				}
				size := len(rec.Key) + len(rec.Value)
				if records > 0 && (records >= lim.MaxRecords || bytes+size > lim.MaxBytes) {
					return nil
				}
				fn(Rec{Offset: o, Timestamp: ts, Key: rec.Key, Value: rec.Value, Checksummed: sum})
				records++
				bytes += size
				next = o + 1
			}
			if err := r.Err(); err != nil {
				return fmt.Errorf("partition %d of %q at base %d: %w", partition, topic, base, err)
			}
		}
		return nil
	})
	return pi, next, err
}
