package fsm

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
)

// topicDir is the segment directory of the topic now called topic.
func topicDir(t *testing.T, f *FSM, topic string) string {
	t.Helper()
	var dir string
	f.view(func(tx *bolt.Tx) error {
		tm, ok := readTopic(tx, topic)
		if !ok {
			t.Fatalf("no topic %q", topic)
		}
		dir = tm.segmentDir()
		return nil
	})
	return dir
}

// partDir is the directory of a partition's segment files.
func partDir(t *testing.T, f *FSM, topic string, p int) string {
	return f.segs.partitionDir(topicDir(t, f, topic), p)
}

// segmentFiles lists the segment files of a partition, by name.
func segmentFiles(t *testing.T, f *FSM, topic string, p int) []string {
	t.Helper()
	entries, err := os.ReadDir(partDir(t, f, topic, p))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}

func reopen(t *testing.T, a *applier) {
	t.Helper()
	if err := a.f.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := Open(a.f.path, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	a.f = f
}

func TestSegments_RecordsLiveOutsideTheIndex(t *testing.T) {
	a := newApplier(t)
	a.apply(CreateTopicType, CreateTopicCommand{Name: "t", Partitions: 2})
	value := strings.Repeat("v", 1024)
	for i := range 200 {
		vals := make([]string, 10)
		for j := range vals {
			vals[j] = fmt.Sprintf("%04d-%02d-%s", i, j, value)
		}
		if res, ok := a.apply(ProduceType, ProduceCommand{Topic: "t", Batches: []PartitionBatch{batch(i%2, vals...)}}).(ProduceResult); !ok || res.Bases[0] != uint64(i/2*10) {
			t.Fatalf("produce %d: %v", i, res)
		}
	}
	// 2 MB of values: in the partition's segment file, not in bbolt.
	var segBytes int64
	for p := range 2 {
		files := segmentFiles(t, a.f, "t", p)
		if len(files) != 1 {
			t.Fatalf("partition %d: segment files %v, want one", p, files)
		}
		st, err := os.Stat(filepath.Join(partDir(t, a.f, "t", p), files[0]))
		if err != nil {
			t.Fatal(err)
		}
		segBytes += st.Size()
	}
	if segBytes < 200*10*1024 {
		t.Fatalf("segments hold %d bytes, want at least the 2 MB of values", segBytes)
	}
	var leafBytes int
	a.f.view(func(tx *bolt.Tx) error {
		return partitionBucket(tx, "t", 0).ForEach(func(_, v []byte) error { leafBytes += len(v); return nil })
	})
	if leafBytes != 100*indexEntryBytes {
		t.Fatalf("the index holds %d bytes for 100 batches, want %d", leafBytes, 100*indexEntryBytes)
	}
	got := readAll(t, a.f, "t", 1, 995)
	if len(got) != 5 || !strings.HasPrefix(got[0], "995:0199-05-") || !strings.HasPrefix(got[4], "999:0199-09-") {
		t.Fatalf("read from the middle of the last batch: %d records, first %.8q", len(got), got)
	}
}

// A reopened store (a restart) never appends to a file it did not create:
// bytes a crashed process left after the last committed batch are ignored.
func TestSegments_ReopenStartsANewFileAndIgnoresUncommittedBytes(t *testing.T) {
	a := newApplier(t)
	a.apply(CreateTopicType, CreateTopicCommand{Name: "t", Partitions: 1})
	a.apply(ProduceType, ProduceCommand{Topic: "t", Batches: []PartitionBatch{batch(0, "a", "b")}})
	reopen(t, a)
	// A crash after the segment write and before the index commit: the
	// bytes are in the file, the index does not know them.
	first := filepath.Join(partDir(t, a.f, "t", 0), segmentFileName(0))
	fh, err := os.OpenFile(first, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	fh.Write(batch(0, "never-committed").Data)
	fh.Close()
	a.apply(ProduceType, ProduceCommand{Topic: "t", Batches: []PartitionBatch{batch(0, "c")}})
	if got := readAll(t, a.f, "t", 0, 0); fmt.Sprint(got) != "[0:a 1:b 2:c]" {
		t.Fatalf("records %v", got)
	}
	if files := segmentFiles(t, a.f, "t", 0); !slices.Equal(files, []string{segmentFileName(0), segmentFileName(2)}) {
		t.Fatalf("segment files %v: want the first and one started at offset 2 after the reopen", files)
	}
}

func TestSegments_SnapshotRollsEveryActiveSegment(t *testing.T) {
	a := newApplier(t)
	a.apply(CreateTopicType, CreateTopicCommand{Name: "t", Partitions: 1})
	a.apply(ProduceType, ProduceCommand{Topic: "t", Batches: []PartitionBatch{batch(0, "a")}})
	snap, err := a.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	snap.Release()
	a.apply(ProduceType, ProduceCommand{Topic: "t", Batches: []PartitionBatch{batch(0, "b")}})
	if files := segmentFiles(t, a.f, "t", 0); len(files) != 2 {
		t.Fatalf("segment files %v: the snapshot's file must not be appended to", files)
	}
}

func TestSegments_CorruptSegmentIsDetected(t *testing.T) {
	a := newApplier(t)
	a.apply(CreateTopicType, CreateTopicCommand{Name: "t", Partitions: 1})
	finalize(a)
	a.apply(ProduceType, ProduceCommand{Topic: "t", Batches: []PartitionBatch{batch(0, "payload")}})
	path := filepath.Join(partDir(t, a.f, "t", 0), segmentFileName(0))
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)-1] ^= 1
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, err = a.f.Read("t", 0, 0, ReadLimits{MaxRecords: 10, MaxBytes: 1 << 20}, func(Rec) {})
	if !errors.Is(err, ErrCorruptBatch) {
		t.Fatalf("read of a flipped bit: %v, want ErrCorruptBatch", err)
	}
}

// finalize runs the lifecycle to active version 0.2.0 (the batch-crc32c gate
// opens).
func finalize(a *applier) {
	resumeTo(a, "0.2.0")
	a.apply(ResumeCompleteType, ResumeCompleteCommand{lc("c")})
}

// resumeTo runs the lifecycle up to a resume to version to that every node
// (n1) has joined but that is not finalized yet.
func resumeTo(a *applier, to string) {
	a.apply(ShutdownType, ShutdownCommand{lc("s")})
	a.apply(UpgradeMarkType, UpgradeMarkCommand{Lifecycle: lc("u"), To: to})
	a.apply(ResumeType, ResumeCommand{Lifecycle: lc("r")})
	a.apply(NodeResumedType, NodeResumedCommand{lc("n"), "n1"})
}

func TestSegments_DeleteTopicRemovesItsFiles(t *testing.T) {
	a := newApplier(t)
	a.apply(CreateTopicType, CreateTopicCommand{Name: "t", Partitions: 1})
	a.apply(ProduceType, ProduceCommand{Topic: "t", Batches: []PartitionBatch{batch(0, "old-1", "old-2")}})
	old := topicDir(t, a.f, "t")
	// Delete, create and write again in one batch of entries, as Raft may
	// hand them over: the new topic has a directory of its own.
	a.f.ApplyBatch([]*raft.Log{
		a.log(DeleteTopicType, DeleteTopicCommand{Name: "t"}),
		a.log(CreateTopicType, CreateTopicCommand{Name: "t", Partitions: 1}),
		a.log(ProduceType, ProduceCommand{Topic: "t", Batches: []PartitionBatch{batch(0, "new")}}),
	})
	if dir := topicDir(t, a.f, "t"); dir == old {
		t.Fatalf("the new topic reuses the deleted one's directory %s", dir)
	}
	if got := readAll(t, a.f, "t", 0, 0); fmt.Sprint(got) != "[0:new]" {
		t.Fatalf("records of the new topic: %v", got)
	}
	a.apply(DeleteTopicType, DeleteTopicCommand{Name: "t"})
	entries, err := os.ReadDir(a.f.segs.dir)
	if err != nil || len(entries) != 0 {
		t.Fatalf("segment directory after the delete: %v %v", entries, err)
	}
}

// A snapshot being written when a topic is deleted still holds the topic's
// records: the deleted topic's files are removed only once nothing that
// could still see them reads.
func TestSegments_DeleteWaitsForSnapshotsInProgress(t *testing.T) {
	a := newApplier(t)
	a.apply(CreateTopicType, CreateTopicCommand{Name: "t", Partitions: 1})
	a.apply(ProduceType, ProduceCommand{Topic: "t", Batches: []PartitionBatch{batch(0, "a", "b")}})
	dir := filepath.Join(a.f.segs.dir, topicDir(t, a.f, "t"))
	want, _ := a.f.StateHash()
	snap, err := a.f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	release := sync.OnceFunc(snap.Release) // a failing test must release it too
	defer release()
	a.apply(DeleteTopicType, DeleteTopicCommand{Name: "t"})
	var buf bytes.Buffer
	sink := &bufferSink{Buffer: &buf}
	if err := snap.Persist(sink); err != nil {
		t.Fatalf("snapshot taken before the delete: %v", err)
	}
	release()
	b := newTestFSM(t)
	if err := b.Restore(nopCloser(buf.Bytes())); err != nil {
		t.Fatal(err)
	}
	if got, _ := b.StateHash(); got != want {
		t.Fatal("the snapshot does not hold the state it was taken of")
	}
	if _, err := os.Stat(dir); !os.IsNotExist(err) {
		t.Fatalf("the deleted topic's files after the snapshot was released: %v", err)
	}
}

// bufferSink is a raft.SnapshotSink writing to memory.
type bufferSink struct{ *bytes.Buffer }

func (bufferSink) ID() string    { return "buffer" }
func (bufferSink) Cancel() error { return nil }
func (bufferSink) Close() error  { return nil }

func TestSegments_OpenSweepsFilesTheIndexDoesNotKnow(t *testing.T) {
	a := newApplier(t)
	a.apply(CreateTopicType, CreateTopicCommand{Name: "kept", Partitions: 1})
	a.apply(ProduceType, ProduceCommand{Topic: "kept", Batches: []PartitionBatch{batch(0, "x")}})
	for _, d := range []string{topicDirName("never-committed", 99) + "/0", topicDirName("kept", 1) + "/0"} {
		if err := os.MkdirAll(filepath.Join(a.f.segs.dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	reopen(t, a)
	entries, _ := os.ReadDir(a.f.segs.dir)
	if len(entries) != 1 || entries[0].Name() != topicDir(t, a.f, "kept") {
		t.Fatalf("segment directory after open: %v", entries)
	}
	if got := readAll(t, a.f, "kept", 0, 0); fmt.Sprint(got) != "[0:x]" {
		t.Fatalf("records %v", got)
	}
}

// A store written before segments holds its batches inline (formats 1 and
// 2); it is read as it is and appended to with segments.
func TestSegments_InlineBatchesOfOlderStoresAreRead(t *testing.T) {
	a := newApplier(t)
	a.apply(CreateTopicType, CreateTopicCommand{Name: "t", Partitions: 1})
	err := a.f.db.Update(func(tx *bolt.Tx) error {
		pb := partitionBucket(tx, "t", 0)
		if err := pb.Put(offsetKey(0), encodeBatch(5, batch(0, "v1-a", "v1-b"), false)); err != nil {
			return err
		}
		return pb.Put(offsetKey(2), encodeBatch(6, batch(0, "v2-c"), true))
	})
	if err != nil {
		t.Fatal(err)
	}
	res := a.apply(ProduceType, ProduceCommand{Topic: "t", Batches: []PartitionBatch{batch(0, "v3-d")}})
	if r, ok := res.(ProduceResult); !ok || r.Bases[0] != 3 {
		t.Fatalf("produce after inline batches: %v", res)
	}
	if got := readAll(t, a.f, "t", 0, 0); fmt.Sprint(got) != "[0:v1-a 1:v1-b 2:v2-c 3:v3-d]" {
		t.Fatalf("records %v", got)
	}
	// And a snapshot of the mixed store restores to the same state.
	want, _ := a.f.StateHash()
	b := newTestFSM(t)
	if err := b.Restore(nopCloser(snapshotBytes(t, a.f))); err != nil {
		t.Fatal(err)
	}
	if got, _ := b.StateHash(); got != want {
		t.Fatal("restored mixed store differs")
	}
	if got := readAll(t, b, "t", 0, 0); fmt.Sprint(got) != "[0:v1-a 1:v1-b 2:v2-c 3:v3-d]" {
		t.Fatalf("restored records %v", got)
	}
}

// A store without segment files is written as snapshot format 1, which a
// binary from before segments reads; one with them as format 2.
func TestSnapshot_FormatFollowsTheStore(t *testing.T) {
	a := newApplier(t)
	a.apply(CreateTopicType, CreateTopicCommand{Name: "t", Partitions: 1})
	if h, err := readHeader(bytes.NewReader(snapshotBytes(t, a.f))); err != nil || h.Format != snapshotFormatV1 {
		t.Fatalf("no records: format %d, %v", h.Format, err)
	}
	a.apply(ProduceType, ProduceCommand{Topic: "t", Batches: []PartitionBatch{batch(0, "x")}})
	if h, err := readHeader(bytes.NewReader(snapshotBytes(t, a.f))); err != nil || h.Format != snapshotFormatV2 {
		t.Fatalf("records: format %d, %v", h.Format, err)
	}
}

// A restored snapshot writes only inside the segment directory, whatever
// paths the stream names.
func TestParseSegmentPath_RefusesAnythingElse(t *testing.T) {
	good := segmentRef{dir: topicDirName("orders", 17), partition: 3, id: 1200}
	if r, err := parseSegmentPath(good.relPath()); err != nil || r != good {
		t.Fatalf("%s: %v %v", good.relPath(), r, err)
	}
	for _, bad := range []string{
		"", "../x/0/00000000000000000000.seg", topicDirName("t", 1) + "/../../00000000000000000000.seg",
		topicDirName("t", 1) + "/0/../00000000000000000000.seg", topicDirName("t", 1) + "/-1/00000000000000000000.seg",
		topicDirName("t", 1) + "/01/00000000000000000000.seg", topicDirName("t", 1) + "/0/0.seg",
		"/etc/0/00000000000000000000.seg", topicDirName("t", 1) + "/0/00000000000000000000.txt",
		"zz-1/0/00000000000000000000.seg", "/0/00000000000000000000.seg", "74/0/00000000000000000000.seg",
		"74-01/0/00000000000000000000.seg", "74--1/0/00000000000000000000.seg", "-1/0/00000000000000000000.seg",
	} {
		if _, err := parseSegmentPath(bad); !errors.Is(err, ErrBadSnapshot) {
			t.Errorf("%q accepted", bad)
		}
	}
}
