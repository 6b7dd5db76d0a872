// Package fsm is Weir's replicated state machine: the command types and their
// encoding, Apply, snapshot and restore, and the on-disk state (topics,
// partitions, records, the cluster's lifecycle).
//
// It is pure and deterministic: no clock, no network, no randomness. Every
// time it stores came from the leader inside a command.
//
// State lives in a bbolt file, records in append-only segment files that
// the bbolt file indexes (segments.go). Every batch of applied entries is written in
// one transaction together with the last applied Raft index, and an entry at
// or below that index is skipped on replay, so a restart never applies an
// entry twice and never needs to restore a snapshot it already holds.
package fsm

import (
	"encoding/binary"
	"fmt"
	"io"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
)

// Bucket and key names of the state store.
var (
	bucketMeta      = []byte("meta")      // keyApplied, keyCluster
	bucketTopics    = []byte("topics")    // name -> msgpack topicMeta
	bucketData      = []byte("data")      // name -> bucket: partition (u32 BE) -> bucket: base offset (u64 BE) -> batch
	bucketProducers = []byte("producers") // producer id -> msgpack producerState

	keyApplied = []byte("applied_index")
	keyCluster = []byte("cluster")
)

const (
	// stateFileMode is the state store's permission.
	stateFileMode = 0o600
	// openTimeout bounds waiting for the state store's file lock (another
	// process holding the same data dir).
	openTimeout = 2 * time.Second
	// initialMmapBytes is the state store's first mapping: address space,
	// not memory. bbolt remaps when the file outgrows its mapping, and a
	// remap waits for every open read transaction while holding up every
	// new one: a snapshot (or `cluster backup`) holds one for as long as it
	// copies the store, so a remap during a snapshot stopped the node's
	// writes and reads for seconds (scripts/capacity.sh: 2-4 s stalls at
	// 1 GiB and 4 GiB). 64 GiB on 64-bit systems (etcd maps 10 GiB up
	// front for the same reason); a 32-bit build keeps 256 MiB.
	initialMmapBytes = 64<<30*(strconv.IntSize/64) + 256<<20*(1-strconv.IntSize/64)
)

// FSM is the replicated state machine. It implements raft.FSM and
// raft.BatchingFSM. Reads (Topics, Read, Cluster, ...) may run concurrently
// with Apply; they see only applied, hence committed, state.
type FSM struct {
	path   string
	logger hclog.Logger
	opts   Options

	mu   sync.RWMutex // guards db and segs against Restore swapping them
	db   *bolt.DB
	segs *segmentStore // the records; db is their index

	applied atomic.Uint64

	notifyMu sync.Mutex
	notify   chan struct{} // closed and replaced after every applied batch
}

// Options tune the state store.
type Options struct {
	// NoSync skips the fsync of each commit. Only safe when the caller can
	// tell an operating-system crash from a process crash and rebuilds the
	// store from Raft after the former (node/durability.go does).
	NoSync bool
}

// Open opens (creating if needed) the state store at path.
func Open(path string, logger hclog.Logger, opts ...Options) (*FSM, error) {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	f := &FSM{path: path, logger: logger, notify: make(chan struct{})}
	if len(opts) > 0 {
		f.opts = opts[0]
	}
	if err := f.open(); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *FSM) open() error {
	db, err := bolt.Open(f.path, stateFileMode, &bolt.Options{
		Timeout:         openTimeout,
		InitialMmapSize: initialMmapBytes,
		// The freelist as a map keeps frees and allocations O(1) as the
		// store grows. It is not written by every commit (3-5 points of
		// the produce rate against the raw-Raft ceiling, docs/performance.md)
		// but once, by Close: an open after a clean close reads it, an
		// open after a crash rebuilds it by walking every page (about
		// 1.4 s for 5 GB of records in the page cache, 7-12 s from disk).
		FreelistType:   bolt.FreelistMapType,
		NoFreelistSync: true,
	})
	if err != nil {
		return fmt.Errorf("open state store %s: %w", f.path, err)
	}
	// Without fsync on commit, growing the file must not fsync either:
	// bbolt's grow syncs the whole file, which would write out every page
	// dirtied since the last grow (up to AllocSize) inside one Apply.
	db.NoSync = f.opts.NoSync
	db.NoGrowSync = f.opts.NoSync
	segs, err := openSegments(SegmentDir(f.path), !f.opts.NoSync)
	if err != nil {
		db.Close()
		return fmt.Errorf("open state store %s: %w", f.path, err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, b := range [][]byte{bucketMeta, bucketTopics, bucketData, bucketProducers} {
			if _, err := tx.CreateBucketIfNotExists(b); err != nil {
				return err
			}
		}
		f.applied.Store(readApplied(tx))
		known := map[string]bool{}
		err := tx.Bucket(bucketTopics).ForEach(func(k, _ []byte) error {
			tm, _ := readTopic(tx, string(k))
			known[tm.segmentDir()] = true
			return nil
		})
		if err != nil {
			return err
		}
		return segs.sweep(known)
	})
	if err != nil {
		db.Close()
		return fmt.Errorf("init state store %s: %w", f.path, err)
	}
	f.db, f.segs = db, segs
	return nil
}

// Close closes the state store.
func (f *FSM) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.db == nil {
		return nil
	}
	err := f.segs.close()
	// One commit that writes the freelist, so the next open reads it
	// instead of walking the store.
	f.db.NoFreelistSync = false
	if uerr := f.db.Update(func(*bolt.Tx) error { return nil }); err == nil {
		err = uerr
	}
	if serr := f.db.Sync(); err == nil {
		err = serr
	}
	if cerr := f.db.Close(); err == nil {
		err = cerr
	}
	f.db = nil
	return err
}

// AppliedIndex is the last Raft index whose effects are in the store.
func (f *FSM) AppliedIndex() uint64 { return f.applied.Load() }

// Changed returns a channel closed after the next batch of entries is
// applied (or the state is restored). Long-polling readers wait on it.
func (f *FSM) Changed() <-chan struct{} {
	f.notifyMu.Lock()
	defer f.notifyMu.Unlock()
	return f.notify
}

func (f *FSM) broadcast() {
	f.notifyMu.Lock()
	close(f.notify)
	f.notify = make(chan struct{})
	f.notifyMu.Unlock()
}

// Apply applies one committed entry.
func (f *FSM) Apply(l *raft.Log) interface{} {
	return f.ApplyBatch([]*raft.Log{l})[0]
}

// ApplyBatch applies committed entries in one state store transaction. Each
// response is an error value (the command was rejected; nothing changed) or
// the command's result.
func (f *FSM) ApplyBatch(logs []*raft.Log) []interface{} {
	out := make([]interface{}, len(logs))
	f.mu.RLock()
	defer f.mu.RUnlock()
	applied := f.applied.Load()
	if len(logs) == 0 || logs[len(logs)-1].Index <= applied {
		// A restart's replay (Raft feeds the state machine again from its
		// newest snapshot): nothing to write, so no write transaction.
		return out
	}
	last := applied
	err := f.db.Update(func(tx *bolt.Tx) error {
		for i, l := range logs {
			if l.Index <= applied {
				continue // replay of an entry already in the store
			}
			last = l.Index
			if l.Type != raft.LogCommand {
				continue
			}
			out[i] = f.applyCommand(tx, l.Index, l.Data)
		}
		if last == applied {
			return nil
		}
		if err := f.segs.syncDirty(); err != nil {
			return err
		}
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], last)
		return tx.Bucket(bucketMeta).Put(keyApplied, b[:])
	})
	if err != nil {
		// The store cannot take a committed entry: continuing would leave
		// this node's state behind its log. Stop loudly.
		panic(fmt.Sprintf("fsm: state store write failed at index %d: %v", last, err))
	}
	f.segs.emptyTrash()
	if last != applied {
		f.applied.Store(last)
		f.broadcast()
	}
	return out
}

func (f *FSM) applyCommand(tx *bolt.Tx, index uint64, data []byte) interface{} {
	if len(data) == 0 {
		panic(fmt.Sprintf("fsm: empty command at index %d", index))
	}
	t := MessageType(data[0])
	body := data[1:]
	switch t {
	case InitType:
		return applyInit(tx, body)
	case CreateTopicType:
		return applyCreateTopic(tx, index, body)
	case DeleteTopicType:
		return applyDeleteTopic(tx, f.segs, body)
	case ProduceType:
		return applyProduce(tx, f.segs, index, body)
	}
	if _, ok := phaseTable[t]; ok {
		return applyLifecycle(tx, index, t, body)
	}
	if t&IgnoreUnknownTypeFlag != 0 {
		return nil // an older node may skip this
	}
	// An unknown type written by a newer binary: this node cannot follow the
	// log. Applying nothing would silently diverge, so refuse loudly.
	panic(fmt.Sprintf("fsm: unknown command type %d at index %d: this binary (too old?) cannot apply it", t, index))
}

func readApplied(tx *bolt.Tx) uint64 {
	v := tx.Bucket(bucketMeta).Get(keyApplied)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

// view runs fn in a read transaction of the current store. The segment
// files the transaction's index names stay in place until fn returns.
func (f *FSM) view(fn func(tx *bolt.Tx) error) error {
	f.mu.RLock()
	defer f.mu.RUnlock()
	if f.db == nil {
		return fmt.Errorf("state store closed")
	}
	f.segs.enterRead()
	defer f.segs.leaveRead()
	return f.db.View(fn)
}

var _ io.Closer = (*FSM)(nil)
