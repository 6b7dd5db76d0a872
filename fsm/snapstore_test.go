package fsm

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/hashicorp/raft"
)

// snapshotInto takes a snapshot of f into store, as Raft does.
func snapshotInto(t *testing.T, f *FSM, store raft.SnapshotStore, index uint64) string {
	t.Helper()
	snap, err := f.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer snap.Release()
	sink, err := store.Create(1, index, 1, raft.Configuration{}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := snap.Persist(sink); err != nil {
		t.Fatal(err)
	}
	return sink.ID()
}

// streamOf reads a stored snapshot's stream and checks it has the length
// its meta says (Raft sends exactly meta.Size bytes to a follower).
func streamOf(t *testing.T, store raft.SnapshotStore, id string) []byte {
	t.Helper()
	meta, rc, err := store.Open(id)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(b)) != meta.Size {
		t.Fatalf("stream of %d bytes, meta.Size %d", len(b), meta.Size)
	}
	if _, err := copySnapshot(bytes.NewReader(b), io.Discard, nil); err != nil {
		t.Fatalf("stream does not verify: %v", err)
	}
	return b
}

func TestSnapshotStore_LinksSegmentsInsteadOfCopying(t *testing.T) {
	a := populated(t)
	a.apply(ProduceType, ProduceCommand{Topic: "orders", Batches: []PartitionBatch{batch(1, "more")}})
	store, err := NewSnapshotStore(t.TempDir(), 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	id := snapshotInto(t, a.f, store, a.index)
	m, err := store.readMeta(id)
	if err != nil || !m.Linked || len(m.Segments) == 0 {
		t.Fatalf("meta %+v, %v: want linked segments", m, err)
	}
	for _, s := range m.Segments {
		ref, _ := parseSegmentPath(s.Path)
		live, err1 := os.Stat(a.f.segs.segmentPath(ref.dir, ref.partition, ref.id))
		linked, err2 := os.Stat(filepath.Join(store.dir, id, snapSegmentDir, s.Path))
		if err1 != nil || err2 != nil || !os.SameFile(live, linked) {
			t.Fatalf("segment %s is not a link to the live file: %v %v", s.Path, err1, err2)
		}
	}
	want, _ := a.f.StateHash()
	stream := streamOf(t, store, id)

	// Writes after the snapshot go to new files: the snapshot does not change.
	a.apply(ProduceType, ProduceCommand{Topic: "orders", Batches: []PartitionBatch{batch(1, "after")}})
	if again := streamOf(t, store, id); sha256.Sum256(again) != sha256.Sum256(stream) {
		t.Fatal("the snapshot's stream changed with writes after it")
	}

	// As a follower receives it: the stream.
	b := newTestFSM(t)
	if err := b.Restore(nopCloser(stream)); err != nil {
		t.Fatal(err)
	}
	if got, _ := b.StateHash(); got != want {
		t.Fatal("state restored from the stream differs")
	}
	// On this machine: by links.
	c := newTestFSM(t)
	_, rc, err := store.Open(id)
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := rc.(*linkedReader); !ok {
		t.Fatalf("Open returned %T", rc)
	}
	if err := c.Restore(rc); err != nil {
		t.Fatal(err)
	}
	if got, _ := c.StateHash(); got != want {
		t.Fatal("state restored by links differs")
	}
}

// A snapshot received from a leader (or seeded from a backup) is written as
// a stream and read back as it came.
func TestSnapshotStore_KeepsAStreamAsItCame(t *testing.T) {
	a := populated(t)
	stream := snapshotBytes(t, a.f)
	store, err := NewSnapshotStore(t.TempDir(), 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	sink, err := store.Create(1, 9, 2, raft.Configuration{}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(sink, bytes.NewReader(stream)); err != nil {
		t.Fatal(err)
	}
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	if got := streamOf(t, store, sink.ID()); !bytes.Equal(got, stream) {
		t.Fatal("stream changed in the store")
	}
}

func TestSnapshotStore_RetainsTheNewestAndDropsUnfinished(t *testing.T) {
	a := populated(t)
	dir := t.TempDir()
	store, err := NewSnapshotStore(dir, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	snapshotInto(t, a.f, store, 5)
	a.apply(ProduceType, ProduceCommand{Topic: "orders", Batches: []PartitionBatch{batch(0, "x")}})
	newest := snapshotInto(t, a.f, store, 9)
	cancelled, err := store.Create(1, 12, 1, raft.Configuration{}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	cancelled.Write([]byte("half"))
	cancelled.Cancel()
	metas, err := store.List()
	if err != nil || len(metas) != 1 || metas[0].ID != newest || metas[0].Index != 9 {
		t.Fatalf("List: %v %v", metas, err)
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 || entries[0].Name() != newest {
		t.Fatalf("snapshot directory holds %v, want only %s", entries, newest)
	}
}

// A data directory written with raft.FileSnapshotStore keeps its snapshots.
func TestSnapshotStore_ReadsFileSnapshotStoreSnapshots(t *testing.T) {
	a := populated(t)
	stream := snapshotBytes(t, a.f)
	base := t.TempDir()
	old, err := raft.NewFileSnapshotStore(base, 1, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	sink, err := old.Create(1, 7, 3, raft.Configuration{}, 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	sink.Write(stream)
	if err := sink.Close(); err != nil {
		t.Fatal(err)
	}
	store, err := NewSnapshotStore(filepath.Join(base, "snapshots"), 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	metas, err := store.List()
	if err != nil || len(metas) != 1 || metas[0].Index != 7 || metas[0].Term != 3 {
		t.Fatalf("List: %v %v", metas, err)
	}
	if got := streamOf(t, store, metas[0].ID); !bytes.Equal(got, stream) {
		t.Fatal("stream differs")
	}
}

// Raft may still be sending a snapshot to a follower when a newer one
// reaps it: what Open returned keeps working.
func TestSnapshotStore_OpenSnapshotOutlivesItsReaping(t *testing.T) {
	a := populated(t)
	store, err := NewSnapshotStore(t.TempDir(), 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	old := snapshotInto(t, a.f, store, 5)
	want := streamOf(t, store, old)
	_, rc, err := store.Open(old)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	a.apply(ProduceType, ProduceCommand{Topic: "orders", Batches: []PartitionBatch{batch(0, "newer")}})
	snapshotInto(t, a.f, store, 9)
	if _, err := os.Stat(filepath.Join(store.dir, old)); !os.IsNotExist(err) {
		t.Fatalf("the old snapshot was not reaped: %v", err)
	}
	got, err := io.ReadAll(rc)
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("stream of the reaped snapshot: %d bytes (want %d), %v", len(got), len(want), err)
	}
}

// Export links a snapshot into another directory, which outlives the
// snapshot's reaping and reads back (OpenBackup) as the same stream; a
// second export replaces the first.
func TestSnapshotStore_ExportLinksABackup(t *testing.T) {
	a := populated(t)
	store, err := NewSnapshotStore(t.TempDir(), 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	id := snapshotInto(t, a.f, store, a.index)
	want := streamOf(t, store, id)
	backup := filepath.Join(t.TempDir(), "pre-upgrade")
	meta, err := store.Export(id, backup)
	if err != nil {
		t.Fatal(err)
	}
	if meta.Size != int64(len(want)) {
		t.Fatalf("exported meta size %d, stream %d bytes", meta.Size, len(want))
	}
	m, _ := store.readMeta(id)
	for _, s := range m.Segments {
		orig, err1 := os.Stat(filepath.Join(store.dir, id, snapSegmentDir, s.Path))
		exported, err2 := os.Stat(filepath.Join(backup, id, snapSegmentDir, s.Path))
		if err1 != nil || err2 != nil || !os.SameFile(orig, exported) {
			t.Fatalf("segment %s is not a link to the snapshot's: %v %v", s.Path, err1, err2)
		}
	}
	// A newer snapshot reaps the exported one; the export stays whole.
	a.apply(ProduceType, ProduceCommand{Topic: "orders", Batches: []PartitionBatch{batch(1, "later")}})
	id2 := snapshotInto(t, a.f, store, a.index)
	if _, err := os.Stat(filepath.Join(store.dir, id)); !os.IsNotExist(err) {
		t.Fatalf("premise: snapshot %s should be reaped: %v", id, err)
	}
	read := func() []byte {
		t.Helper()
		rc, size, err := OpenBackup(backup)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		if err != nil || int64(len(b)) != size {
			t.Fatalf("read %d of %d bytes: %v", len(b), size, err)
		}
		return b
	}
	if got := read(); sha256.Sum256(got) != sha256.Sum256(want) {
		t.Fatal("the exported backup's stream differs from the snapshot's")
	}
	if h, err := ReadSnapshotFile(backup); err != nil || h.AppliedIndex == 0 {
		t.Fatalf("ReadSnapshotFile of the export: %+v, %v", h, err)
	}
	// A second export holds only the newer snapshot.
	if _, err := store.Export(id2, backup); err != nil {
		t.Fatal(err)
	}
	entries, _ := os.ReadDir(backup)
	if len(entries) != 1 || entries[0].Name() != id2 {
		t.Fatalf("after a second export the backup holds %v, want only %s", entries, id2)
	}
	if got := read(); sha256.Sum256(got) != sha256.Sum256(streamOf(t, store, id2)) {
		t.Fatal("the second export reads back differently")
	}
	// Import takes it into another store under new Raft metadata, by links.
	other, err := NewSnapshotStore(t.TempDir(), 1, nil)
	if err != nil {
		t.Fatal(err)
	}
	imported, err := other.Import(backup, 99, 3, raft.Configuration{}, 99)
	if err != nil {
		t.Fatal(err)
	}
	if imported.Index != 99 || imported.Term != 3 {
		t.Fatalf("imported meta %+v, want index 99 term 3", imported)
	}
	if got := streamOf(t, other, imported.ID); sha256.Sum256(got) != sha256.Sum256(streamOf(t, store, id2)) {
		t.Fatal("the imported snapshot's stream differs")
	}
	// An empty directory is not a backup.
	if _, _, err := OpenBackup(t.TempDir()); !errors.Is(err, ErrBadSnapshot) {
		t.Fatalf("empty directory: %v, want ErrBadSnapshot", err)
	}
	if _, err := other.Import(t.TempDir(), 1, 1, raft.Configuration{}, 1); !errors.Is(err, ErrBadSnapshot) {
		t.Fatalf("import of an empty directory: %v, want ErrBadSnapshot", err)
	}
}
