package node

import (
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	raftboltdb "github.com/hashicorp/raft-boltdb/v2"
	"github.com/weir-streaming/weir/fsm"
	bolt "go.etcd.io/bbolt"
)

// How a node runs Raft, in one place: the node uses these, and so does the
// bench package's raw-Raft ceiling, which must run Raft exactly as a node
// does to be a ceiling of Weir.

// RaftStorage is a node's Raft storage: the bbolt log (also the stable
// store), the cache in front of it and the snapshot store.
type RaftStorage struct {
	Store *raftboltdb.BoltStore
	Logs  raft.LogStore
	Snaps *fsm.SnapshotStore
	log   *raftLog
}

// ReleaseMapped gives back the raft.db pages this process has mapped (see
// raftLog). Opening the log reads most of it through the map (bbolt
// rebuilds its freelist by a walk, and raft.NewRaft reads the entries after
// the newest snapshot), so a node calls it once Raft has started: without
// it a restarted idle node showed 874 MiB of raft.db in its VmRSS.
func (rs *RaftStorage) ReleaseMapped() { rs.log.release() }

// OpenRaftStorage opens (creating) the Raft storage in dir.
//
// The log's bbolt file keeps its freelist as a map and does not write it on
// every commit (rebuilt by a scan on open instead), as Consul offers with
// raft_boltdb.NoFreelistSync: log compaction frees thousands of pages, and
// bbolt's default (an array, rewritten by every commit) makes each append
// pay for all of them. Every append is still fsynced. The first mmap is
// sized as the state store's (address space, not memory), so the log is not
// remapped, which waits for every reader, each time it doubles while small,
// and so its pages can be given back in place (raftLog).
// raftOpenTimeout bounds waiting for the log's file lock (another process
// using the same data directory).
const raftOpenTimeout = 2 * time.Second

// raftInitialMmapBytes is raft.db's first mapping (fsm's initialMmapBytes):
// 64 GiB of address space on 64-bit systems.
const raftInitialMmapBytes = 64<<30*(strconv.IntSize/64) + 256<<20*(1-strconv.IntSize/64)

func OpenRaftStorage(dir string, logger hclog.Logger) (*RaftStorage, error) {
	path := filepath.Join(dir, raftFile)
	store, err := raftboltdb.New(raftboltdb.Options{Path: path, BoltOptions: &bolt.Options{
		Timeout:         raftOpenTimeout,
		FreelistType:    bolt.FreelistMapType,
		NoFreelistSync:  true,
		InitialMmapSize: raftInitialMmapBytes,
	}})
	if err != nil {
		return nil, fmt.Errorf("open raft log %s: %w", path, err)
	}
	pages, err := newMappedPages(path)
	if err != nil {
		store.Close()
		return nil, err
	}
	rl := &raftLog{BoltStore: store, pages: pages, logger: logger}
	logs, err := raft.NewLogCache(logCacheEntries, rl)
	if err != nil {
		store.Close()
		return nil, err
	}
	// raft.FileSnapshotStore's layout (it adds a "snapshots" level), so a
	// data directory written before fsm.SnapshotStore keeps its snapshots.
	snaps, err := fsm.NewSnapshotStore(filepath.Join(dir, snapshotDir, "snapshots"), snapshotsRetained, logger)
	if err != nil {
		store.Close()
		return nil, fmt.Errorf("open snapshot store: %w", err)
	}
	rl.release()
	return &RaftStorage{Store: store, Logs: logs, Snaps: snaps, log: rl}, nil
}

// NewRaftTransport is a node's Raft transport over stream.
func NewRaftTransport(stream raft.StreamLayer, logger hclog.Logger) *raft.NetworkTransport {
	return raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: stream, MaxPool: raftMaxPool, Timeout: raftIOTimeout, Logger: logger,
	})
}

// RaftConfig is the raft.Config a node with cfg runs (cfg's zero timings
// take the defaults).
func RaftConfig(cfg Config, logger hclog.Logger) *raft.Config {
	cfg.setDefaults()
	rc := raft.DefaultConfig()
	rc.LocalID = raft.ServerID(cfg.ID)
	rc.Logger = logger
	rc.HeartbeatTimeout = cfg.HeartbeatTimeout
	rc.ElectionTimeout = cfg.ElectionTimeout
	rc.LeaderLeaseTimeout = cfg.LeaderLeaseTimeout
	rc.CommitTimeout = cfg.CommitTimeout
	rc.SnapshotThreshold = cfg.SnapshotThreshold
	rc.TrailingLogs = cfg.TrailingLogs
	rc.SnapshotInterval = cfg.SnapshotInterval
	// The state store holds every applied entry with its index, so a
	// restart replays nothing it has (see fsm's package doc).
	rc.NoSnapshotRestoreOnStart = true
	// Concurrent produce requests share log writes and fsyncs.
	rc.BatchApplyCh = true
	return rc
}

// compactionChunk is how many log entries one transaction deletes when Raft
// compacts the log after a snapshot.
const compactionChunk = 256

// releaseEvery is how many bytes of entries go through raft.db's mapping
// (appended or read) between two releases of its mapped pages.
const releaseEvery = 32 << 20

// raftLog is the log store under Raft's cache: raft-boltdb with compaction
// in chunks, and raft.db's mapped pages given back (mappedPages) after
// every releaseEvery bytes of entries appended or read and after every
// chunk compacted (bbolt reads most of a deleted entry's pages through the
// map: 87 MiB for 1 024 entries of 100 KiB). That bounds what the log adds
// to the node's resident set by what it moved recently, not by the log's
// length (docs/performance.md, Capacity). The pages stay in the page cache.
type raftLog struct {
	*raftboltdb.BoltStore
	pages  *mappedPages
	logger hclog.Logger

	moved     atomic.Int64 // entry bytes since the last release
	releasing sync.Mutex
	failed    atomic.Bool
}

func (l *raftLog) StoreLog(log *raft.Log) error {
	return l.StoreLogs([]*raft.Log{log})
}

func (l *raftLog) StoreLogs(logs []*raft.Log) error {
	err := l.BoltStore.StoreLogs(logs)
	n := 0
	for _, log := range logs {
		n += len(log.Data)
	}
	if l.moved.Add(int64(n)) >= releaseEvery {
		l.release()
	}
	return err
}

func (l *raftLog) GetLog(index uint64, log *raft.Log) error {
	err := l.BoltStore.GetLog(index, log)
	if l.moved.Add(int64(len(log.Data))) >= releaseEvery {
		l.release()
	}
	return err
}

// DeleteRange deletes a prefix of the log in transactions of
// compactionChunk entries. raft-boltdb deletes a whole range in one
// transaction, and bbolt has one writer at a time: compacting 12,500
// entries of 100 KiB after a snapshot held the log for 1.8 s, and every
// node's appends with it (scripts/capacity.sh). Between chunks, appends
// go on. A prefix deleted in part by a crash is still a prefix: Raft's next
// compaction deletes the rest. Any other range (a follower truncating a
// conflicting suffix) is deleted at once, so the log never has a hole.
func (l *raftLog) DeleteRange(min, max uint64) error {
	defer l.release()
	first, err := l.FirstIndex()
	if err != nil {
		return err
	}
	if min > first || max-min < compactionChunk {
		return l.BoltStore.DeleteRange(min, max)
	}
	for lo := min; ; lo += compactionChunk {
		hi := lo + compactionChunk - 1
		if hi >= max {
			return l.BoltStore.DeleteRange(lo, max)
		}
		if err := l.BoltStore.DeleteRange(lo, hi); err != nil {
			return err
		}
		l.release()
	}
}

// release gives back raft.db's mapped pages unless another call is doing so;
// after a failure it stops trying (the pages then stay resident until the
// kernel reclaims them, as without it).
func (l *raftLog) release() {
	if l.failed.Load() || !l.releasing.TryLock() {
		return
	}
	defer l.releasing.Unlock()
	l.moved.Store(0)
	if _, err := l.pages.release(); err != nil {
		l.failed.Store(true)
		l.logger.Warn("cannot give back raft.db's mapped pages; they stay resident until the kernel reclaims them", "error", err)
	}
}
