package fsm

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	"github.com/weir-streaming/weir/record"
)

func newTestFSM(t *testing.T) *FSM {
	t.Helper()
	f, err := Open(filepath.Join(t.TempDir(), "state.db"), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// applier feeds commands at increasing Raft indexes.
type applier struct {
	t     *testing.T
	f     *FSM
	index uint64
}

func (a *applier) apply(mt MessageType, cmd any) interface{} {
	a.t.Helper()
	return a.f.Apply(a.log(mt, cmd))
}

// log is the next Raft entry carrying cmd.
func (a *applier) log(mt MessageType, cmd any) *raft.Log {
	buf, err := Encode(mt, cmd)
	if err != nil {
		panic(err) // test commands always encode
	}
	a.index++
	return &raft.Log{Index: a.index, Term: 1, Type: raft.LogCommand, Data: buf}
}

func newApplier(t *testing.T) *applier {
	a := &applier{t: t, f: newTestFSM(t)}
	if res := a.apply(InitType, InitCommand{ClusterID: "c1", Version: "0.1.0", By: "n1", At: 1}); res != nil {
		t.Fatalf("init: %v", res)
	}
	return a
}

func batch(p int, values ...string) PartitionBatch {
	var data []byte
	for _, v := range values {
		data = record.Append(data, nil, []byte(v))
	}
	return PartitionBatch{Partition: p, Count: len(values), Data: data}
}

func readAll(t *testing.T, f *FSM, topic string, p int, from uint64) []string {
	t.Helper()
	var out []string
	_, _, err := f.Read(topic, p, from, ReadLimits{MaxRecords: 1 << 20, MaxBytes: 1 << 30}, func(r Rec) {
		out = append(out, fmt.Sprintf("%d:%s", r.Offset, r.Value))
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func wantKind(t *testing.T, res interface{}, kind error) {
	t.Helper()
	err, ok := res.(error)
	if !ok || !errors.Is(err, kind) {
		t.Fatalf("got %#v, want error %v", res, kind)
	}
	var fe *Error
	if !errors.As(err, &fe) || fe.Hint == "" {
		t.Fatalf("error %v has no hint", err)
	}
}

func TestInit_FirstWins(t *testing.T) {
	a := newApplier(t)
	a.apply(InitType, InitCommand{ClusterID: "c2", Version: "9.9.9"})
	cs, err := a.f.Cluster()
	if err != nil {
		t.Fatal(err)
	}
	if cs.ClusterID != "c1" || cs.Phase != PhaseRunning || cs.ActiveVersion != "0.1.0" {
		t.Fatalf("cluster state %+v", cs)
	}
}

func TestCreateTopic(t *testing.T) {
	a := newApplier(t)
	if res := a.apply(CreateTopicType, CreateTopicCommand{Name: "events", Partitions: 3}); res != (CreateTopicResult{Created: true}) {
		t.Fatalf("create: %#v", res)
	}
	if res := a.apply(CreateTopicType, CreateTopicCommand{Name: "events", Partitions: 3}); res != (CreateTopicResult{Created: false}) {
		t.Fatalf("same settings again: %#v", res)
	}
	wantKind(t, a.apply(CreateTopicType, CreateTopicCommand{Name: "events", Partitions: 4}), ErrTopicExists)
	ti, err := a.f.Topic("events")
	if err != nil || len(ti.Partitions) != 3 {
		t.Fatalf("describe: %+v %v", ti, err)
	}
}

func TestCreateTopic_BadInputChangesNothing(t *testing.T) {
	a := newApplier(t)
	before, _ := a.f.StateHash()
	long := string(bytes.Repeat([]byte("a"), 250))
	for _, tc := range []struct {
		name  string
		parts int
		kind  error
	}{
		{"", 1, ErrInvalidTopicName},
		{".", 1, ErrInvalidTopicName},
		{"..", 1, ErrInvalidTopicName},
		{long, 1, ErrInvalidTopicName},
		{"a/b", 1, ErrInvalidTopicName},
		{"a b", 1, ErrInvalidTopicName},
		{"a\x00b", 1, ErrInvalidTopicName},
		{"ok", 0, ErrInvalidPartitions},
		{"ok", -1, ErrInvalidPartitions},
		{"ok", MaxPartitions + 1, ErrInvalidPartitions},
	} {
		wantKind(t, a.apply(CreateTopicType, CreateTopicCommand{Name: tc.name, Partitions: tc.parts}), tc.kind)
	}
	if err := ValidateTopicName(string(bytes.Repeat([]byte("a"), 249))); err != nil {
		t.Fatalf("249 characters refused: %v", err)
	}
	after, _ := a.f.StateHash()
	if before != after {
		t.Fatal("a refused command changed the state")
	}
}

func TestDeleteTopic(t *testing.T) {
	a := newApplier(t)
	a.apply(CreateTopicType, CreateTopicCommand{Name: "t", Partitions: 1})
	a.apply(ProduceType, ProduceCommand{Topic: "t", Batches: []PartitionBatch{batch(0, "x")}})
	if res := a.apply(DeleteTopicType, DeleteTopicCommand{Name: "t"}); res != nil {
		t.Fatalf("delete: %v", res)
	}
	if _, err := a.f.Topic("t"); !errors.Is(err, ErrUnknownTopic) {
		t.Fatalf("describe after delete: %v", err)
	}
	wantKind(t, a.apply(DeleteTopicType, DeleteTopicCommand{Name: "t"}), ErrUnknownTopic)
	// Re-created, it starts empty at offset 0.
	a.apply(CreateTopicType, CreateTopicCommand{Name: "t", Partitions: 1})
	res := a.apply(ProduceType, ProduceCommand{Topic: "t", Batches: []PartitionBatch{batch(0, "y")}}).(ProduceResult)
	if res.Bases[0] != 0 {
		t.Fatalf("base after re-create: %d", res.Bases[0])
	}
}

func TestProduce_DenseOffsetsPerPartition(t *testing.T) {
	a := newApplier(t)
	a.apply(CreateTopicType, CreateTopicCommand{Name: "t", Partitions: 2})
	r1 := a.apply(ProduceType, ProduceCommand{Topic: "t", At: 100, Batches: []PartitionBatch{batch(0, "a", "b"), batch(1, "c")}}).(ProduceResult)
	r2 := a.apply(ProduceType, ProduceCommand{Topic: "t", At: 200, Batches: []PartitionBatch{batch(0, "d")}}).(ProduceResult)
	if fmt.Sprint(r1.Bases, r2.Bases) != "[0 0] [2]" {
		t.Fatalf("bases %v %v", r1.Bases, r2.Bases)
	}
	if got := fmt.Sprint(readAll(t, a.f, "t", 0, 0)); got != "[0:a 1:b 2:d]" {
		t.Fatalf("partition 0: %s", got)
	}
	if got := fmt.Sprint(readAll(t, a.f, "t", 0, 1)); got != "[1:b 2:d]" {
		t.Fatalf("partition 0 from 1 (inside a batch): %s", got)
	}
	if got := fmt.Sprint(readAll(t, a.f, "t", 1, 0)); got != "[0:c]" {
		t.Fatalf("partition 1: %s", got)
	}
	var ts []int64
	a.f.Read("t", 0, 0, ReadLimits{MaxRecords: 10, MaxBytes: 100}, func(r Rec) { ts = append(ts, r.Timestamp) })
	if fmt.Sprint(ts) != "[100 100 200]" {
		t.Fatalf("timestamps %v", ts)
	}
	ti, _ := a.f.Topic("t")
	if ti.Partitions[0].HighWatermark != 3 || ti.Partitions[1].HighWatermark != 1 || ti.Partitions[0].LogStart != 0 {
		t.Fatalf("extent %+v", ti.Partitions)
	}
}

func TestProduce_Rejections(t *testing.T) {
	a := newApplier(t)
	a.apply(CreateTopicType, CreateTopicCommand{Name: "t", Partitions: 1})
	wantKind(t, a.apply(ProduceType, ProduceCommand{Topic: "nope", Batches: []PartitionBatch{batch(0, "a")}}), ErrUnknownTopic)
	wantKind(t, a.apply(ProduceType, ProduceCommand{Topic: "t", Batches: []PartitionBatch{batch(1, "a")}}), ErrUnknownPartition)
	// The unknown partition in the second batch leaves the first unwritten.
	wantKind(t, a.apply(ProduceType, ProduceCommand{Topic: "t", Batches: []PartitionBatch{batch(0, "a"), batch(5, "b")}}), ErrUnknownPartition)
	if got := readAll(t, a.f, "t", 0, 0); len(got) != 0 {
		t.Fatalf("rejected produce wrote %v", got)
	}
}

func TestRead_Errors(t *testing.T) {
	a := newApplier(t)
	a.apply(CreateTopicType, CreateTopicCommand{Name: "t", Partitions: 1})
	a.apply(ProduceType, ProduceCommand{Topic: "t", Batches: []PartitionBatch{batch(0, "a", "b")}})
	noop := func(Rec) {}
	lim := ReadLimits{MaxRecords: 10, MaxBytes: 10}
	if _, _, err := a.f.Read("t", 0, 3, lim, noop); !errors.Is(err, ErrOffsetOutOfRange) {
		t.Fatalf("past the end: %v", err)
	}
	if _, next, err := a.f.Read("t", 0, 2, lim, noop); err != nil || next != 2 {
		t.Fatalf("at the end: next %d err %v", next, err)
	}
	if _, _, err := a.f.Read("t", 1, 0, lim, noop); !errors.Is(err, ErrUnknownPartition) {
		t.Fatalf("unknown partition: %v", err)
	}
	if _, _, err := a.f.Read("x", 0, 0, lim, noop); !errors.Is(err, ErrUnknownTopic) {
		t.Fatalf("unknown topic: %v", err)
	}
	// Limits: one record at a time, and a record over MaxBytes still comes alone.
	_, next, _ := a.f.Read("t", 0, 0, ReadLimits{MaxRecords: 1, MaxBytes: 10}, noop)
	if next != 1 {
		t.Fatalf("max records 1: next %d", next)
	}
	_, next, _ = a.f.Read("t", 0, 0, ReadLimits{MaxRecords: 10, MaxBytes: 0}, noop)
	if next != 1 {
		t.Fatalf("max bytes 0: next %d", next)
	}
}

func TestProduce_IdempotentProducer(t *testing.T) {
	a := newApplier(t)
	a.apply(CreateTopicType, CreateTopicCommand{Name: "t", Partitions: 1})
	cmd := ProduceCommand{Topic: "t", ProducerID: "p1", Seq: 1, Batches: []PartitionBatch{batch(0, "a")}}
	r1 := a.apply(ProduceType, cmd).(ProduceResult)
	r2 := a.apply(ProduceType, cmd).(ProduceResult)
	if !r2.Duplicate || r2.Bases[0] != r1.Bases[0] {
		t.Fatalf("retry: %+v, first %+v", r2, r1)
	}
	cmd.Seq = 2
	a.apply(ProduceType, cmd)
	cmd.Seq = 1
	wantKind(t, a.apply(ProduceType, cmd), ErrStaleSequence)
	cmd.Seq = 4 // 3 was never written
	wantKind(t, a.apply(ProduceType, cmd), ErrSequenceGap)
	cmd.Seq = 3
	if r := a.apply(ProduceType, cmd).(ProduceResult); r.Duplicate {
		t.Fatal("the next sequence after a gap refusal was taken as a retry")
	}
	// A producer the state does not know (new, or forgotten) may start anywhere.
	if _, ok := a.apply(ProduceType, ProduceCommand{Topic: "t", ProducerID: "p9", Seq: 7, Batches: []PartitionBatch{batch(0, "x")}}).(ProduceResult); !ok {
		t.Fatal("an unknown producer starting at 7 was refused")
	}
	if got := readAll(t, a.f, "t", 0, 0); len(got) != 4 {
		t.Fatalf("records %v, want 4", got)
	}
}

func TestProducers_OldestForgotten(t *testing.T) {
	a := newApplier(t)
	a.apply(CreateTopicType, CreateTopicCommand{Name: "t", Partitions: 1})
	for i := 0; i <= maxProducers; i++ {
		a.apply(ProduceType, ProduceCommand{Topic: "t", ProducerID: fmt.Sprint("p", i), Seq: 1, Batches: []PartitionBatch{batch(0, "v")}})
	}
	// p0 was forgotten: its retry writes again; p1 is remembered.
	if r := a.apply(ProduceType, ProduceCommand{Topic: "t", ProducerID: "p1", Seq: 1, Batches: []PartitionBatch{batch(0, "v")}}).(ProduceResult); !r.Duplicate {
		t.Fatal("p1 forgotten too early")
	}
	if r := a.apply(ProduceType, ProduceCommand{Topic: "t", ProducerID: "p0", Seq: 1, Batches: []PartitionBatch{batch(0, "v")}}).(ProduceResult); r.Duplicate {
		t.Fatal("p0 still remembered past the limit")
	}
}

func TestApply_ReplayAppliesNothingTwice(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "state.db")
	f, err := Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	a := &applier{t: t, f: f}
	a.apply(InitType, InitCommand{ClusterID: "c", Version: "0.1.0"})
	a.apply(CreateTopicType, CreateTopicCommand{Name: "t", Partitions: 1})
	prod, _ := Encode(ProduceType, ProduceCommand{Topic: "t", Batches: []PartitionBatch{batch(0, "a")}})
	logs := []*raft.Log{{Index: 3, Type: raft.LogCommand, Data: prod}, {Index: 4, Type: raft.LogCommand, Data: prod}}
	f.ApplyBatch(logs)
	f.Close()

	f, err = Open(path, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if f.AppliedIndex() != 4 {
		t.Fatalf("applied index after reopen: %d", f.AppliedIndex())
	}
	// Raft replays the whole log after a restart; nothing is applied twice.
	f.ApplyBatch(logs)
	f.ApplyBatch(append(logs, &raft.Log{Index: 5, Type: raft.LogCommand, Data: prod}))
	if got := readAll(t, f, "t", 0, 0); len(got) != 3 {
		t.Fatalf("records after replay %v, want 3", got)
	}
}

func TestApply_UnknownType(t *testing.T) {
	a := newApplier(t)
	before, _ := a.f.StateHash()
	if res := a.apply(IgnoreUnknownTypeFlag|0x33, struct{}{}); res != nil {
		t.Fatalf("skippable type: %v", res)
	}
	after, _ := a.f.StateHash()
	if before != after {
		t.Fatal("a skipped command changed the state")
	}
	defer func() {
		if recover() == nil {
			t.Fatal("an unknown type without the skip flag applied silently")
		}
	}()
	a.apply(0x33, struct{}{})
}

func populated(t *testing.T) *applier {
	a := newApplier(t)
	a.apply(CreateTopicType, CreateTopicCommand{Name: "t", Partitions: 3})
	for i := 0; i < 50; i++ {
		a.apply(ProduceType, ProduceCommand{Topic: "t", ProducerID: "p", Seq: uint64(i + 1), At: int64(i),
			Batches: []PartitionBatch{batch(i%3, fmt.Sprint("v", i), fmt.Sprint("w", i))}})
	}
	return a
}

func snapshotBytes(t *testing.T, f *FSM) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := f.WriteSnapshot(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestSnapshot_RoundTripEqualHash(t *testing.T) {
	a := populated(t)
	want, _ := a.f.StateHash()
	snap := snapshotBytes(t, a.f)

	b := newTestFSM(t)
	if err := b.Restore(io.NopCloser(bytes.NewReader(snap))); err != nil {
		t.Fatal(err)
	}
	got, _ := b.StateHash()
	if got != want {
		t.Fatalf("hash after restore %s, want %s", got, want)
	}
	if b.AppliedIndex() != a.index {
		t.Fatalf("applied index after restore %d, want %d", b.AppliedIndex(), a.index)
	}
	if len(readAll(t, b, "t", 1, 0)) != 34 {
		t.Fatal("records missing after restore")
	}
	h, err := readHeader(bytes.NewReader(snap))
	if err != nil || h.ClusterID != "c1" {
		t.Fatalf("header %+v %v", h, err)
	}
}

func TestSnapshot_RaftSinkRoundTrip(t *testing.T) {
	a := populated(t)
	want, _ := a.f.StateHash()
	store := raft.NewInmemSnapshotStore()
	id := snapshotInto(t, a.f, store, a.index)
	_, rc, err := store.Open(id)
	if err != nil {
		t.Fatal(err)
	}
	b := newTestFSM(t)
	if err := b.Restore(rc); err != nil {
		t.Fatal(err)
	}
	if got, _ := b.StateHash(); got != want {
		t.Fatal("hash differs after a raft snapshot round trip")
	}
}

func TestRestore_BadSnapshotChangesNothing(t *testing.T) {
	a := populated(t)
	snap := snapshotBytes(t, a.f)
	b := populated(t)
	b.apply(CreateTopicType, CreateTopicCommand{Name: "only-here", Partitions: 1})
	before, _ := b.f.StateHash()

	corrupt := append([]byte(nil), snap...)
	corrupt[len(corrupt)/2] ^= 0xff
	badFormat := append([]byte(nil), snap...)
	badFormat[len(snapshotMagic)+1] = 9
	for name, data := range map[string][]byte{
		"truncated":  snap[:len(snap)-100],
		"corrupted":  corrupt,
		"bad magic":  append([]byte("NOTASNAP"), snap[8:]...),
		"bad format": badFormat,
		"empty":      nil,
	} {
		err := b.f.Restore(io.NopCloser(bytes.NewReader(data)))
		if !errors.Is(err, ErrBadSnapshot) {
			t.Errorf("%s: %v, want ErrBadSnapshot", name, err)
		}
		if after, _ := b.f.StateHash(); after != before {
			t.Fatalf("%s: a refused restore changed the state", name)
		}
	}
}

func TestStateHash_IgnoresAppliedIndexOnly(t *testing.T) {
	a, b := populated(t), populated(t)
	ha, _ := a.f.StateHash()
	hb, _ := b.f.StateHash()
	if ha != hb {
		t.Fatal("same commands, different hashes")
	}
	b.apply(ProduceType, ProduceCommand{Topic: "t", Batches: []PartitionBatch{batch(0, "x")}})
	if hb2, _ := b.f.StateHash(); hb2 == hb {
		t.Fatal("hash did not change with a record")
	}
}

func nopCloser(b []byte) io.ReadCloser { return io.NopCloser(bytes.NewReader(b)) }

func TestGate_BatchCRCOnlyAfterFinalization(t *testing.T) {
	a := newApplier(t) // active 0.1.0: the gate is closed
	a.apply(CreateTopicType, CreateTopicCommand{Name: "t", Partitions: 1})
	a.apply(ProduceType, ProduceCommand{Topic: "t", Batches: []PartitionBatch{batch(0, "old")}})
	resumeTo(a, "0.2.0")
	// Resuming, not finalized: still format 1.
	a.apply(ProduceType, ProduceCommand{Topic: "t", Batches: []PartitionBatch{batch(0, "during")}})
	a.apply(ResumeCompleteType, ResumeCompleteCommand{lc("c")})
	a.apply(ProduceType, ProduceCommand{Topic: "t", Batches: []PartitionBatch{batch(0, "new")}})
	var got []string
	a.f.Read("t", 0, 0, ReadLimits{MaxRecords: 10, MaxBytes: 1000}, func(r Rec) {
		got = append(got, fmt.Sprintf("%s:%v", r.Value, r.Checksummed))
	})
	if fmt.Sprint(got) != "[old:false during:false new:true]" {
		t.Fatalf("records %v", got)
	}
}

func TestGate_CorruptChecksummedBatchDetected(t *testing.T) {
	val := encodeBatch(1, batch(0, "payload"), true)
	if _, _, ok, err := decodeBatch(val); err != nil || !ok {
		t.Fatalf("intact batch: %v", err)
	}
	val[len(val)-1] ^= 1
	if _, _, _, err := decodeBatch(val); !errors.Is(err, ErrCorruptBatch) {
		t.Fatalf("flipped bit: %v", err)
	}
	if _, _, _, err := decodeBatch([]byte{9, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}); !errors.Is(err, ErrCorruptBatch) {
		t.Fatalf("unknown format: %v", err)
	}
}

// FuzzReadHeader: a snapshot header from disk or the network never panics.
func FuzzReadHeader(f *testing.F) {
	f.Add(encodeHeader(SnapshotHeader{Format: 1, ClusterID: "c", AppliedIndex: 3, BodyBytes: 10}))
	f.Add([]byte("WEIRSNAP\x00\x01\xff"))
	f.Fuzz(func(t *testing.T, data []byte) {
		copySnapshot(bytes.NewReader(data), io.Discard, nil)
	})
}

// TestEncodeProduceFitsItsHint: Encode writes a produce entry in place only
// when the hint is an upper bound of its size, so check it is across sizes.
func TestEncodeProduceFitsItsHint(t *testing.T) {
	for _, n := range []int{0, 1, 10, 100, 1000} {
		cmd := ProduceCommand{Topic: "topic", ProducerID: strings.Repeat("p", 64), Seq: math.MaxUint64, At: math.MinInt64}
		for p := range 4 {
			var data []byte
			for range n {
				data = record.Append(data, []byte("key"), bytes.Repeat([]byte{'v'}, 1024))
			}
			cmd.Batches = append(cmd.Batches, PartitionBatch{Partition: p + 1<<30, Count: n + 1<<30, Data: data})
		}
		buf, err := Encode(ProduceType, cmd)
		if err != nil {
			t.Fatal(err)
		}
		if len(buf)-1 > encodedSizeHint(cmd) {
			t.Errorf("%d records per batch: encoded %d bytes, hint %d", n, len(buf)-1, encodedSizeHint(cmd))
		}
		var back ProduceCommand
		if err := decode(buf[1:], &back); err != nil || !reflect.DeepEqual(back, cmd) {
			t.Fatalf("%d records per batch: round trip differs (err %v)", n, err)
		}
	}
}

// TestApply_GoesOnWhileASnapshotHoldsTheStore: a snapshot holds a read
// transaction for as long as it copies the store; the store growing past its
// first mapping meanwhile must not stop Apply (bbolt remaps only when the
// file outgrows the mapping, and a remap waits for every reader).
func TestApply_GoesOnWhileASnapshotHoldsTheStore(t *testing.T) {
	a := newApplier(t)
	a.apply(CreateTopicType, CreateTopicCommand{Name: "t", Partitions: 1})
	snap, err := a.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()

	const target = 300 << 20 // past the 256 MiB a remap used to start at
	value := bytes.Repeat([]byte{'v'}, 1<<20)
	done := make(chan error, 1)
	go func() {
		for written := 0; written < target; written += len(value) {
			if _, ok := a.f.Apply(a.log(ProduceType, ProduceCommand{Topic: "t", Batches: []PartitionBatch{{Count: 1, Data: record.Append(nil, nil, value)}}})).(ProduceResult); !ok {
				done <- fmt.Errorf("produce at %d MiB failed", written>>20)
				return
			}
		}
		done <- nil
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Minute):
		t.Fatal("Apply stopped while the snapshot held the store (a remap waiting for the reader?)")
	}
}

// TestClose_WritesTheFreelist: commits leave the freelist out (NoFreelistSync)
// and Close writes it once, so an open after a clean close reads it instead
// of walking every page. Checked in the file: the newest meta page's
// freelist page id (bbolt's format: 16-byte page header, then magic,
// version, page size, flags, root bucket (16 bytes), freelist pgid).
func TestClose_WritesTheFreelist(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state.db")
	f, err := Open(path, nil, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	a := &applier{t: t, f: f}
	a.apply(InitType, InitCommand{ClusterID: "c1", Version: "0.1.0", By: "n1", At: 1})
	a.apply(CreateTopicType, CreateTopicCommand{Name: "t", Partitions: 1})
	for range 20 {
		a.apply(ProduceType, ProduceCommand{Topic: "t", Batches: []PartitionBatch{batch(0, strings.Repeat("v", 10000))}})
	}
	freelistOfNewestMeta := func() uint64 {
		t.Helper()
		buf, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		pageSize := int(binary.LittleEndian.Uint32(buf[16+8:]))
		var txid, freelist uint64
		for _, off := range []int{0, pageSize} {
			m := buf[off+16:]
			if id := binary.LittleEndian.Uint64(m[48:]); id >= txid {
				txid, freelist = id, binary.LittleEndian.Uint64(m[32:])
			}
		}
		return freelist
	}
	const noFreelist = math.MaxUint64
	if got := freelistOfNewestMeta(); got != noFreelist {
		t.Fatalf("a commit wrote the freelist (page %d); commits should leave it out", got)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	if got := freelistOfNewestMeta(); got == noFreelist {
		t.Fatal("Close did not write the freelist: the next open walks every page")
	}
	g, err := Open(path, nil, Options{NoSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	if g.AppliedIndex() != a.index {
		t.Fatalf("reopened at applied index %d, want %d", g.AppliedIndex(), a.index)
	}
}

// encodeBatch is a batch as stores written before segments held it (formats
// 1 and 2), which Read still reads.
func encodeBatch(at int64, b PartitionBatch, crc bool) []byte {
	hdr := batchHeaderBytes
	if crc {
		hdr += 4
	}
	val := make([]byte, hdr+len(b.Data))
	val[0] = batchFormatV1
	binary.BigEndian.PutUint64(val[1:], uint64(at))
	binary.BigEndian.PutUint32(val[9:], uint32(b.Count))
	if crc {
		val[0] = batchFormatV2
		binary.BigEndian.PutUint32(val[batchHeaderBytes:], crc32.Checksum(b.Data, castagnoli))
	}
	copy(val[hdr:], b.Data)
	return val
}
