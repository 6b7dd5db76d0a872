package fsm

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/crc32"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// Records live in append-only segment files, one directory per partition;
// the bbolt store is their index. A produce batch is one write at the end of
// its partition's active segment and one index entry (37 bytes) keyed by its
// base offset:
//
//	[1B format][8B timestamp, Unix ms][4B count][4B CRC-32C of the frames][8B segment][8B position][4B length]
//
// Format 3 carries no CRC (the field is zero), format 4 one that every read
// verifies: as formats 1 and 2, format 4 is written once the batch-crc32c
// gate is open, so a record's checksum follows the active version.
//
// so records are never part of bbolt's B+tree: appending does not rewrite
// the batches before it (bbolt keeps values in its leaves), the process maps
// only the small index, and reads are pread(2) of exactly the batch.
//
// Layout: <state.db>.segments/<topic, hex>-<index>/<partition>/<segment>.seg,
// where index is the Raft index that created the topic (so a topic deleted
// and created again, even in one batch of entries, never shares a file) and
// segment is the base offset of the file's first batch (20 digits).
//
// A file is appended only by the store that created it, and only until the
// store rolls it: at a snapshot, at segmentMaxBytes, and at every open. So
// every file but the active ones is immutable, which lets a snapshot link
// files instead of copying them, and bytes a crashed process wrote past the
// last committed batch are never appended to: reads go by the index, and the
// bytes are dropped with the file. Segment data is written before the index
// entry that points at it commits, in the same Apply; without fsync (the
// default, node/durability.go) a process crash loses nothing that reached
// the kernel, and an operating-system crash rebuilds the store from Raft.
const (
	batchFormatV3   = 3
	batchFormatV4   = 4
	indexEntryBytes = batchHeaderBytes + 4 + 8 + 8 + 4
	segmentExt      = ".seg"
	// segmentMaxBytes rolls a segment that grew this large without a
	// snapshot rolling it first.
	segmentMaxBytes = 512 << 20
	segmentDirMode  = 0o700
	// writebackBytes: once this much of a segment is unwritten, the kernel
	// is asked to start writing it (writeback_linux.go).
	writebackBytes = 1 << 20
	trashPrefix    = ".trash-"
)

// SegmentDir is the directory of the record segments of the state store at
// statePath.
func SegmentDir(statePath string) string { return statePath + ".segments" }

type partKey struct {
	dir       string // the topic's directory: topicDirName
	partition int
}

type segWriter struct {
	id      uint64
	fh      *os.File
	size    int64
	flushed int64 // writeback started up to here
}

type segmentStore struct {
	dir  string
	sync bool // fsync segments before the index commits

	mu     sync.Mutex // guards active, dirty and trash; Apply, Snapshot and Close take it
	active map[partKey]*segWriter
	dirty  map[*segWriter]struct{}
	trash  []string // topic directories to remove once the index commits

	// readers counts whoever reads files the index names (reads,
	// snapshots, backups), from before its transaction begins to when it
	// is done; a deleted topic's files are removed only when it is zero (by
	// the commit that deleted it, or else by the last reader to leave), so
	// a read that still sees a topic finds its files. Not an RWMutex: a
	// waiting remover would stop new readers, and Apply (Snapshot) among
	// them, behind a backup that takes minutes.
	readMu  sync.Mutex
	readers int
	pending []string // deleted topics' directories waiting for readers to leave
}

// enterRead marks a reader of segment files; leaveRead ends it.
func (s *segmentStore) enterRead() {
	s.readMu.Lock()
	s.readers++
	s.readMu.Unlock()
}

func (s *segmentStore) leaveRead() {
	s.readMu.Lock()
	defer s.readMu.Unlock()
	s.readers--
	s.removePendingLocked()
}

// removePendingLocked removes the deleted topics' directories when no one
// reads; readMu held.
func (s *segmentStore) removePendingLocked() {
	if s.readers > 0 {
		return
	}
	for _, d := range s.pending {
		_ = os.RemoveAll(d)
	}
	s.pending = nil
}

func openSegments(dir string, syncCommits bool) (*segmentStore, error) {
	if err := os.MkdirAll(dir, segmentDirMode); err != nil {
		return nil, fmt.Errorf("segment directory: %w", err)
	}
	return &segmentStore{dir: dir, sync: syncCommits, active: map[partKey]*segWriter{}, dirty: map[*segWriter]struct{}{}}, nil
}

// topicDirName is the directory of the topic created at Raft index created.
func topicDirName(topic string, created uint64) string {
	return hex.EncodeToString([]byte(topic)) + "-" + strconv.FormatUint(created, 10)
}

func segmentFileName(id uint64) string { return fmt.Sprintf("%020d%s", id, segmentExt) }

func (s *segmentStore) partitionDir(dir string, p int) string {
	return filepath.Join(s.dir, dir, strconv.Itoa(p))
}

func (s *segmentStore) segmentPath(dir string, p int, id uint64) string {
	return filepath.Join(s.partitionDir(dir, p), segmentFileName(id))
}

// append writes a batch's frames at the end of the partition's active
// segment, rolling to a new segment named base when there is none, and
// returns the segment and the position written at.
func (s *segmentStore) append(dir string, p int, base uint64, frames []byte) (seg uint64, pos int64, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	k := partKey{dir, p}
	w := s.active[k]
	if w != nil && w.size >= segmentMaxBytes {
		if err := s.closeWriter(k, w); err != nil {
			return 0, 0, err
		}
		w = nil
	}
	if w == nil {
		if w, err = s.create(dir, p, base); err != nil {
			return 0, 0, err
		}
		s.active[k] = w
	}
	if _, err := w.fh.Write(frames); err != nil {
		return 0, 0, fmt.Errorf("append to segment %s: %w", w.fh.Name(), err)
	}
	pos = w.size
	w.size += int64(len(frames))
	if w.size-w.flushed >= writebackBytes {
		startWriteback(w.fh, w.flushed, w.size-w.flushed)
		w.flushed = w.size
	}
	if s.sync {
		s.dirty[w] = struct{}{}
	}
	return w.id, pos, nil
}

// create starts a segment file. A file of that name can only be what a
// crashed process created and never committed; it is unlinked, not
// truncated, since truncating could reach a snapshot's link to it.
func (s *segmentStore) create(dir string, p int, id uint64) (*segWriter, error) {
	pdir := s.partitionDir(dir, p)
	if err := os.MkdirAll(pdir, segmentDirMode); err != nil {
		return nil, fmt.Errorf("segment directory: %w", err)
	}
	path := filepath.Join(pdir, segmentFileName(id))
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("segment %s: %w", path, err)
	}
	fh, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY|os.O_APPEND, stateFileMode)
	if err != nil {
		return nil, fmt.Errorf("segment %s: %w", path, err)
	}
	return &segWriter{id: id, fh: fh}, nil
}

func (s *segmentStore) closeWriter(k partKey, w *segWriter) error {
	delete(s.active, k)
	if _, ok := s.dirty[w]; ok {
		delete(s.dirty, w)
		if err := w.fh.Sync(); err != nil {
			w.fh.Close()
			return fmt.Errorf("sync segment %s: %w", w.fh.Name(), err)
		}
	}
	if err := w.fh.Close(); err != nil {
		return fmt.Errorf("close segment %s: %w", w.fh.Name(), err)
	}
	return nil
}

// syncDirty fsyncs what was appended since the last call, before the index
// entries pointing at it commit. Only when the store syncs its commits.
func (s *segmentStore) syncDirty() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	for w := range s.dirty {
		if err := w.fh.Sync(); err != nil {
			return fmt.Errorf("sync segment %s: %w", w.fh.Name(), err)
		}
		delete(s.dirty, w)
	}
	return nil
}

// roll closes every active segment: the next append to a partition starts a
// new file, and every existing file is immutable from here on.
func (s *segmentStore) roll() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	var first error
	for k, w := range s.active {
		if err := s.closeWriter(k, w); err != nil && first == nil {
			first = err
		}
	}
	return first
}

// close closes the active segments, syncing them: a clean close leaves
// nothing for an operating-system crash to tear. A deleted topic's files
// that readers still held are left to the next open's sweep.
func (s *segmentStore) close() error {
	s.mu.Lock()
	for _, w := range s.active {
		s.dirty[w] = struct{}{}
	}
	s.mu.Unlock()
	return s.roll()
}

// dropTopic closes a deleted topic's segments and removes its directory
// once the index no longer refers to it (emptyTrash).
func (s *segmentStore) dropTopic(dir string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for k, w := range s.active {
		if k.dir == dir {
			delete(s.dirty, w)
			delete(s.active, k)
			w.fh.Close()
		}
	}
	s.trash = append(s.trash, filepath.Join(s.dir, dir))
}

// emptyTrash removes the directories of topics deleted by the entries just
// committed, now if no one reads, else when the last reader leaves: Apply
// never waits for a reader.
func (s *segmentStore) emptyTrash() {
	s.mu.Lock()
	trash := s.trash
	s.trash = nil
	s.mu.Unlock()
	if len(trash) == 0 {
		return
	}
	s.readMu.Lock()
	defer s.readMu.Unlock()
	s.pending = append(s.pending, trash...)
	s.removePendingLocked()
}

// sweep removes, at open, topic directories the index does not know: those
// of a deletion a crash interrupted, and of a creation that never committed.
func (s *segmentStore) sweep(known map[string]bool) error {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return fmt.Errorf("segment directory: %w", err)
	}
	for _, e := range entries {
		if known[e.Name()] {
			continue
		}
		if err := os.RemoveAll(filepath.Join(s.dir, e.Name())); err != nil {
			return fmt.Errorf("segment directory: %w", err)
		}
	}
	return nil
}

// indexEntry is a format 3 batch: where its frames are.
type indexEntry struct {
	sum     bool // carries a CRC-32C (format 4)
	ts      int64
	count   uint32
	crc     uint32
	segment uint64
	pos     int64
	length  uint32
}

func (e indexEntry) encode() []byte {
	v := make([]byte, indexEntryBytes)
	v[0] = batchFormatV3
	if e.sum {
		v[0] = batchFormatV4
	}
	binary.BigEndian.PutUint64(v[1:], uint64(e.ts))
	binary.BigEndian.PutUint32(v[9:], e.count)
	binary.BigEndian.PutUint32(v[13:], e.crc)
	binary.BigEndian.PutUint64(v[17:], e.segment)
	binary.BigEndian.PutUint64(v[25:], uint64(e.pos))
	binary.BigEndian.PutUint32(v[33:], e.length)
	return v
}

func decodeIndexEntry(v []byte) (indexEntry, error) {
	if len(v) != indexEntryBytes || !isSegmentFormat(v) {
		return indexEntry{}, fmt.Errorf("%w: index entry of %d bytes", ErrCorruptBatch, len(v))
	}
	return indexEntry{
		sum:     v[0] == batchFormatV4,
		ts:      int64(binary.BigEndian.Uint64(v[1:])),
		count:   binary.BigEndian.Uint32(v[9:]),
		crc:     binary.BigEndian.Uint32(v[13:]),
		segment: binary.BigEndian.Uint64(v[17:]),
		pos:     int64(binary.BigEndian.Uint64(v[25:])),
		length:  binary.BigEndian.Uint32(v[33:]),
	}, nil
}

// segmentReader reads batches for one Read, keeping the files it opened
// until done.
type segmentReader struct {
	s     *segmentStore
	dir   string
	part  int
	files map[uint64]*os.File
	buf   []byte
}

func (s *segmentStore) reader(dir string, p int) *segmentReader {
	return &segmentReader{s: s, dir: dir, part: p}
}

// batch returns a stored batch's timestamp and frames, whatever its format;
// the frames are valid until the next call.
func (r *segmentReader) batch(v []byte) (ts int64, frames []byte, checksummed bool, err error) {
	if !isSegmentFormat(v) {
		return decodeBatch(v)
	}
	e, err := decodeIndexEntry(v)
	if err != nil {
		return 0, nil, false, err
	}
	fh := r.files[e.segment]
	if fh == nil {
		path := r.s.segmentPath(r.dir, r.part, e.segment)
		if fh, err = os.Open(path); err != nil {
			return 0, nil, true, fmt.Errorf("%w: segment %s: %v", ErrCorruptBatch, path, err)
		}
		if r.files == nil {
			r.files = map[uint64]*os.File{}
		}
		r.files[e.segment] = fh
	}
	if cap(r.buf) < int(e.length) {
		r.buf = make([]byte, e.length)
	}
	frames = r.buf[:e.length]
	if _, err := fh.ReadAt(frames, e.pos); err != nil {
		return 0, nil, true, fmt.Errorf("%w: segment %s at %d: %v", ErrCorruptBatch, fh.Name(), e.pos, err)
	}
	if e.sum && crc32.Checksum(frames, castagnoli) != e.crc {
		return 0, nil, true, fmt.Errorf("%w: stored batch fails its CRC-32C (segment %s at %d)", ErrCorruptBatch, fh.Name(), e.pos)
	}
	return e.ts, frames, e.sum, nil
}

// isSegmentFormat says a stored value is an index entry, not a batch.
func isSegmentFormat(v []byte) bool {
	return len(v) > 0 && (v[0] == batchFormatV3 || v[0] == batchFormatV4)
}

func (r *segmentReader) close() {
	for _, fh := range r.files {
		fh.Close()
	}
	r.files = nil
}

// segmentRef names one segment file in a snapshot stream.
type segmentRef struct {
	dir       string // the topic's directory: topicDirName
	partition int
	id        uint64
}

func (r segmentRef) relPath() string {
	return r.dir + "/" + strconv.Itoa(r.partition) + "/" + segmentFileName(r.id)
}

// parseSegmentPath parses a segment's path in a snapshot stream, refusing
// anything that is not exactly <hex topic>-<index>/<partition>/<20 digits>.seg
// (a restore must never write outside the segment directory).
func parseSegmentPath(rel string) (segmentRef, error) {
	parts := strings.Split(rel, "/")
	bad := fmt.Errorf("%w: segment path %q", ErrBadSnapshot, rel)
	if len(parts) != 3 || !strings.HasSuffix(parts[2], segmentExt) || len(parts[2]) != 20+len(segmentExt) {
		return segmentRef{}, bad
	}
	name, created, ok := strings.Cut(parts[0], "-")
	topic, err := hex.DecodeString(name)
	if !ok || err != nil || len(topic) == 0 {
		return segmentRef{}, bad
	}
	inc, err := strconv.ParseUint(created, 10, 64)
	if err != nil || topicDirName(string(topic), inc) != parts[0] {
		return segmentRef{}, bad
	}
	p, err := strconv.Atoi(parts[1])
	if err != nil || p < 0 || p >= MaxPartitions || strconv.Itoa(p) != parts[1] {
		return segmentRef{}, bad
	}
	id, err := strconv.ParseUint(strings.TrimSuffix(parts[2], segmentExt), 10, 64)
	if err != nil {
		return segmentRef{}, bad
	}
	return segmentRef{dir: parts[0], partition: p, id: id}, nil
}
