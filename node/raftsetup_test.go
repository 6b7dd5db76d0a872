package node

import (
	"encoding/binary"
	"testing"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

func TestChunkedCompaction_DeletesPrefixesAndSuffixes(t *testing.T) {
	rs, err := OpenRaftStorage(t.TempDir(), hclog.NewNullLogger())
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Store.Close()
	const n = 5*compactionChunk + 17
	logs := make([]*raft.Log, n)
	for i := range logs {
		logs[i] = &raft.Log{Index: uint64(i + 1), Term: 1, Type: raft.LogCommand, Data: binary.BigEndian.AppendUint64(nil, uint64(i+1))}
	}
	if err := rs.Logs.StoreLogs(logs); err != nil {
		t.Fatal(err)
	}
	bounds := func() (uint64, uint64) {
		t.Helper()
		first, err := rs.Logs.FirstIndex()
		if err != nil {
			t.Fatal(err)
		}
		last, err := rs.Logs.LastIndex()
		if err != nil {
			t.Fatal(err)
		}
		return first, last
	}
	// A compaction (a prefix over several chunks) leaves exactly the rest.
	if err := rs.Logs.DeleteRange(1, 4*compactionChunk+3); err != nil {
		t.Fatal(err)
	}
	if first, last := bounds(); first != 4*compactionChunk+4 || last != n {
		t.Fatalf("after compaction the log is %d..%d, want %d..%d", first, last, 4*compactionChunk+4, n)
	}
	var l raft.Log
	if err := rs.Logs.GetLog(4*compactionChunk+4, &l); err != nil || binary.BigEndian.Uint64(l.Data) != 4*compactionChunk+4 {
		t.Fatalf("first kept entry: %v, %+v", err, l)
	}
	// A follower's truncation of a conflicting suffix.
	if err := rs.Logs.DeleteRange(n-10, n); err != nil {
		t.Fatal(err)
	}
	if first, last := bounds(); first != 4*compactionChunk+4 || last != n-11 {
		t.Fatalf("after truncation the log is %d..%d, want %d..%d", first, last, 4*compactionChunk+4, n-11)
	}
}
