package node

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// mappedResident is how many bytes of path's mappings are resident in this
// process (/proc/self/smaps "Rss:" of the file's regions).
func mappedResident(t *testing.T, path string) int64 {
	t.Helper()
	m, err := newMappedPages(path)
	if err != nil {
		t.Fatal(err)
	}
	regions, err := m.regions()
	if err != nil {
		t.Fatal(err)
	}
	if len(regions) == 0 {
		t.Fatalf("%s is not mapped", path)
	}
	b, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	var total int64
	inRegion := false
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := sc.Bytes()
		if f := bytes.Fields(line); len(f) >= 5 && bytes.IndexByte(f[0], '-') > 0 {
			start, _ := strconv.ParseUint(string(f[0][:bytes.IndexByte(f[0], '-')]), 16, 64)
			inRegion = false
			for _, r := range regions {
				inRegion = inRegion || r.start == start
			}
			continue
		}
		if inRegion && bytes.HasPrefix(line, []byte("Rss:")) {
			kb, err := strconv.ParseInt(string(bytes.Fields(line)[1]), 10, 64)
			if err != nil {
				t.Fatalf("smaps: %q: %v", line, err)
			}
			total += kb << 10
		}
	}
	return total
}

// raft.db's pages that bbolt read through its map leave the node's resident
// set every releaseEvery bytes of entries, and the log reads back the same.
func TestRaftLog_GivesBackMappedPages(t *testing.T) {
	dir := t.TempDir()
	rs, err := OpenRaftStorage(dir, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Store.Close()
	path := filepath.Join(dir, raftFile)
	const entry = 100 << 10
	var want [][]byte
	batch := func(index uint64) []*raft.Log {
		logs := make([]*raft.Log, 4)
		for i := range logs {
			data := make([]byte, entry)
			rand.Read(data)
			want = append(want, data)
			logs[i] = &raft.Log{Index: index + uint64(i), Term: 1, Type: raft.LogCommand, Data: data}
		}
		return logs
	}
	next := uint64(1)
	// Straight into bbolt, and read back through its map: resident.
	for ; next <= 200; next += 4 {
		if err := rs.Store.StoreLogs(batch(next)); err != nil {
			t.Fatal(err)
		}
	}
	var l raft.Log
	for i := uint64(1); i < next; i++ {
		if err := rs.Store.GetLog(i, &l); err != nil {
			t.Fatal(err)
		}
	}
	before := mappedResident(t, path)
	if before < 15<<20 {
		t.Fatalf("premise: 20 MiB of entries read through bbolt's map, but only %d bytes of raft.db are resident", before)
	}
	// Through Raft's log store, up to the batch that crosses releaseEvery.
	for moved := 0; moved < releaseEvery; moved += 4 * entry {
		if err := rs.Logs.StoreLogs(batch(next)); err != nil {
			t.Fatal(err)
		}
		next += 4
	}
	if after := mappedResident(t, path); after > 1<<20 {
		t.Fatalf("after %d MiB through the log store, %d bytes of raft.db are still resident (%d before)", releaseEvery>>20, after, before)
	}
	for i := uint64(1); i < next; i++ {
		if err := rs.Store.GetLog(i, &l); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(l.Data, want[i-1]) {
			t.Fatalf("entry %d reads back different after the release", i)
		}
	}
	// Compaction reads most of what it deletes through the map, and gives
	// it back too.
	if r := mappedResident(t, path); r < 15<<20 {
		t.Fatalf("premise: the log was just read back, but only %d bytes of raft.db are resident", r)
	}
	if err := rs.Logs.DeleteRange(1, 2*compactionChunk); err != nil {
		t.Fatal(err)
	}
	if after := mappedResident(t, path); after > 1<<20 {
		t.Fatalf("after compaction %d bytes of raft.db are still resident", after)
	}
	if err := rs.Store.GetLog(2*compactionChunk+1, &l); err != nil || !bytes.Equal(l.Data, want[2*compactionChunk]) {
		t.Fatalf("first entry after compaction: %v", err)
	}
}

// Reopening a long log reads much of it through the map (bbolt's freelist
// walk); OpenRaftStorage gives it back.
func TestOpenRaftStorage_LeavesTheLogUnmapped(t *testing.T) {
	dir := t.TempDir()
	rs, err := OpenRaftStorage(dir, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, 100<<10)
	rand.Read(data)
	for i := uint64(1); i <= 400; i++ {
		if err := rs.Store.StoreLogs([]*raft.Log{{Index: i, Term: 1, Type: raft.LogCommand, Data: data}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := rs.Store.Close(); err != nil {
		t.Fatal(err)
	}
	rs, err = OpenRaftStorage(dir, hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Store.Close()
	if r := mappedResident(t, filepath.Join(dir, raftFile)); r > 1<<20 {
		t.Fatalf("right after opening, %d bytes of raft.db are resident", r)
	}
	var l raft.Log
	if err := rs.Logs.GetLog(400, &l); err != nil || !bytes.Equal(l.Data, data) {
		t.Fatalf("last entry after reopening: %v", err)
	}
}
