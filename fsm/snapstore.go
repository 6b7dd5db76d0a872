package fsm

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
)

// SnapshotStore is the raft.SnapshotStore of this state machine. It keeps
// what raft.FileSnapshotStore keeps (a directory per snapshot with
// meta.json and state.bin, in the same layout, so it lists the snapshots
// that store wrote) and one thing more: a snapshot of this package's FSM
// takes the segment files by hard link instead of by copy. Segment files
// are immutable once a snapshot rolls them (segments.go), so a link is a
// consistent copy that costs a directory entry, where copying them cost
// about 4 s per GB and stalled the node's writes on a shared disk
// (docs/performance.md).
//
// Such a snapshot's state.bin holds the stream's header and store body; Open
// composes the rest of the stream (the segments and the checksum) from the
// links, so what Raft sends to a follower, and what Restore reads, is the
// stream snapshot.go describes. A snapshot written through Write alone
// (received from a leader, seeded from a backup) is that stream as it came.
type SnapshotStore struct {
	dir    string
	retain int
	logger hclog.Logger
}

const (
	snapMetaFile   = "meta.json"
	snapStateFile  = "state.bin"
	snapSegmentDir = "segments"
	snapTmpSuffix  = ".tmp"
	snapDirMode    = 0o755
)

// snapshotMeta is meta.json: raft's fields (as raft.FileSnapshotStore
// writes them) and this store's.
type snapshotMeta struct {
	raft.SnapshotMeta
	// Linked says state.bin is the header and body only and the segments
	// are the files under segments/, in this order.
	Linked     bool            `json:",omitempty"`
	Segments   []linkedSegment `json:",omitempty"`
	StateBytes int64           `json:",omitempty"`
	StateCRC   uint32          `json:",omitempty"` // CRC-32C of state.bin, when Linked
}

type linkedSegment struct {
	Path string // as in the stream: <hex topic>-<index>/<partition>/<segment>.seg
	Size int64
}

// streamBytes is the length of the stream a linked snapshot composes.
func (m *snapshotMeta) streamBytes() int64 {
	n := m.StateBytes
	for _, s := range m.Segments {
		n += segmentFrameBytes(s.Path, s.Size)
	}
	return n + 2 + 4 // end of the segment list, checksum
}

// NewSnapshotStore opens (creating) a snapshot store in dir that keeps the
// newest retain snapshots.
func NewSnapshotStore(dir string, retain int, logger hclog.Logger) (*SnapshotStore, error) {
	if retain < 1 {
		return nil, fmt.Errorf("snapshot store: retain must be at least 1")
	}
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	if err := os.MkdirAll(dir, snapDirMode); err != nil {
		return nil, fmt.Errorf("snapshot store: %w", err)
	}
	return &SnapshotStore{dir: dir, retain: retain, logger: logger}, nil
}

// Create starts a snapshot.
func (s *SnapshotStore) Create(version raft.SnapshotVersion, index, term uint64, configuration raft.Configuration,
	configurationIndex uint64, _ raft.Transport) (raft.SnapshotSink, error) {
	if version != 1 {
		return nil, fmt.Errorf("snapshot store: unsupported snapshot version %d", version)
	}
	id := fmt.Sprintf("%d-%d-%d", term, index, time.Now().UnixMilli())
	dir := filepath.Join(s.dir, id+snapTmpSuffix)
	if err := os.MkdirAll(dir, snapDirMode); err != nil {
		return nil, fmt.Errorf("snapshot store: %w", err)
	}
	fh, err := os.Create(filepath.Join(dir, snapStateFile))
	if err != nil {
		os.RemoveAll(dir)
		return nil, fmt.Errorf("snapshot store: %w", err)
	}
	sink := &snapshotSink{store: s, dir: dir, fh: fh, crc: crc32.New(castagnoli)}
	sink.w = bufio.NewWriterSize(io.MultiWriter(fh, sink.crc), 1<<20)
	sink.meta.SnapshotMeta = raft.SnapshotMeta{Version: version, ID: id, Index: index, Term: term,
		Configuration: configuration, ConfigurationIndex: configurationIndex}
	s.logger.Info("creating new snapshot", "path", dir)
	return sink, nil
}

// List returns the snapshots to keep, newest first.
func (s *SnapshotStore) List() ([]*raft.SnapshotMeta, error) {
	all, err := s.all()
	if err != nil {
		return nil, err
	}
	var out []*raft.SnapshotMeta
	for i := 0; i < len(all) && i < s.retain; i++ {
		out = append(out, &all[i].SnapshotMeta)
	}
	return out, nil
}

// all reads every complete snapshot's meta, newest first.
func (s *SnapshotStore) all() ([]*snapshotMeta, error) {
	entries, err := os.ReadDir(s.dir)
	if err != nil {
		return nil, fmt.Errorf("snapshot store: %w", err)
	}
	var out []*snapshotMeta
	for _, e := range entries {
		if !e.IsDir() || strings.HasSuffix(e.Name(), snapTmpSuffix) {
			continue
		}
		m, err := s.readMeta(e.Name())
		if err != nil {
			s.logger.Warn("skipping a snapshot without readable metadata", "name", e.Name(), "error", err)
			continue
		}
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Term != b.Term {
			return a.Term > b.Term
		}
		if a.Index != b.Index {
			return a.Index > b.Index
		}
		return a.ID > b.ID
	})
	return out, nil
}

func (s *SnapshotStore) readMeta(id string) (*snapshotMeta, error) {
	b, err := os.ReadFile(filepath.Join(s.dir, id, snapMetaFile))
	if err != nil {
		return nil, err
	}
	var m snapshotMeta
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, err
	}
	if m.Version < raft.SnapshotVersionMin || m.Version > raft.SnapshotVersionMax {
		return nil, fmt.Errorf("snapshot version %d is not supported", m.Version)
	}
	return &m, nil
}

// Open returns a snapshot's stream.
func (s *SnapshotStore) Open(id string) (*raft.SnapshotMeta, io.ReadCloser, error) {
	m, err := s.readMeta(id)
	if err != nil {
		return nil, nil, fmt.Errorf("snapshot store: open %s: %w", id, err)
	}
	dir := filepath.Join(s.dir, id)
	fh, err := os.Open(filepath.Join(dir, snapStateFile))
	if err != nil {
		return nil, nil, fmt.Errorf("snapshot store: open %s: %w", id, err)
	}
	if !m.Linked {
		return &m.SnapshotMeta, fh, nil
	}
	// Every file is opened now: a newer snapshot may reap this one while
	// Raft still sends it to a follower, and an open file outlives that.
	lr := &linkedReader{dir: dir, meta: m, state: fh}
	for _, seg := range m.Segments {
		sf, err := os.Open(filepath.Join(dir, snapSegmentDir, filepath.FromSlash(seg.Path)))
		if err != nil {
			lr.Close()
			return nil, nil, fmt.Errorf("snapshot store: open %s: %w", id, err)
		}
		lr.segs = append(lr.segs, sf)
	}
	meta := m.SnapshotMeta
	meta.Size = m.streamBytes()
	return &meta, lr, nil
}

// Export makes snapshot id the newest snapshot of the store in dir (created
// if missing) without copying its data: a finished snapshot's files never
// change, so each is hard-linked (copied only where a link is impossible),
// and it costs directory entries where a copy of 5 GB took a minute. The
// export is written as a snapshot is, under a temporary name renamed into
// place once synced, then dir keeps only it. The node's pre-upgrade backup
// is such a directory; OpenBackup reads it, Import takes it back.
func (s *SnapshotStore) Export(id, dir string) (*raft.SnapshotMeta, error) {
	m, err := s.readMeta(id)
	if err != nil {
		return nil, fmt.Errorf("snapshot store: export %s: %w", id, err)
	}
	dst, err := NewSnapshotStore(dir, 1, s.logger)
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(dir, id)); errors.Is(err, os.ErrNotExist) {
		if err := dst.linkIn(filepath.Join(s.dir, id), id, nil); err != nil {
			return nil, fmt.Errorf("snapshot store: export %s to %s: %w", id, dir, err)
		}
	} else if err != nil {
		return nil, err
	}
	if err := dst.reap(); err != nil {
		return nil, err
	}
	meta := m.SnapshotMeta
	if m.Linked {
		meta.Size = m.streamBytes()
	}
	return &meta, nil
}

// Import makes the newest snapshot of a directory Export wrote a snapshot
// of this store, by links, under new Raft metadata: a node seeded from a
// pre-upgrade backup (a one-voter configuration at the backup's index)
// takes it this way instead of copying the stream.
func (s *SnapshotStore) Import(dir string, index, term uint64, conf raft.Configuration, confIndex uint64) (*raft.SnapshotMeta, error) {
	src := &SnapshotStore{dir: dir, retain: 1, logger: s.logger}
	all, err := src.all()
	if err != nil {
		return nil, err
	}
	if len(all) == 0 {
		return nil, fmt.Errorf("%w: %s holds no finished snapshot", ErrBadSnapshot, dir)
	}
	m := *all[0]
	id := fmt.Sprintf("%d-%d-%d", term, index, time.Now().UnixMilli())
	m.SnapshotMeta = raft.SnapshotMeta{Version: m.Version, ID: id, Index: index, Term: term,
		Configuration: conf, ConfigurationIndex: confIndex, Size: m.Size}
	if err := s.linkIn(filepath.Join(dir, all[0].ID), id, &m); err != nil {
		return nil, fmt.Errorf("snapshot store: import %s: %w", dir, err)
	}
	if err := s.reap(); err != nil {
		s.logger.Error("failed to reap snapshots", "error", err)
	}
	return &m.SnapshotMeta, nil
}

// linkIn makes the finished snapshot directory src this store's snapshot
// id: every file linked (meta.json too, unless meta replaces it), synced,
// then renamed into place.
func (s *SnapshotStore) linkIn(src, id string, meta *snapshotMeta) error {
	final := filepath.Join(s.dir, id)
	tmp := final + snapTmpSuffix
	if err := os.RemoveAll(tmp); err != nil {
		return err
	}
	err := filepath.WalkDir(src, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil || (meta != nil && rel == snapMetaFile) {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		return linkOrCopyPath(path, filepath.Join(tmp, rel), info.Size())
	})
	if err == nil && meta != nil {
		var b []byte
		if b, err = json.Marshal(meta); err == nil {
			err = writeFileSynced(filepath.Join(tmp, snapMetaFile), bytes.NewReader(b))
		}
	}
	if err == nil {
		err = syncTree(tmp)
	}
	if err == nil {
		err = os.Rename(tmp, final)
	}
	if err == nil {
		err = syncDir(s.dir)
	}
	if err != nil {
		os.RemoveAll(tmp)
	}
	return err
}

// OpenBackup opens a backup for reading as one snapshot stream: a file
// (what `cluster backup` writes) as it is, or a directory Export wrote (a
// node's pre-upgrade backup) by composing its newest snapshot. size is the
// stream's length.
func OpenBackup(path string) (rc io.ReadCloser, size int64, err error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, 0, err
	}
	if !fi.IsDir() {
		fh, err := os.Open(path)
		return fh, fi.Size(), err
	}
	store := &SnapshotStore{dir: path, retain: 1, logger: hclog.NewNullLogger()}
	metas, err := store.List()
	if err != nil {
		return nil, 0, err
	}
	if len(metas) == 0 {
		return nil, 0, fmt.Errorf("%w: %s holds no finished snapshot", ErrBadSnapshot, path)
	}
	meta, rc, err := store.Open(metas[0].ID)
	if err != nil {
		return nil, 0, fmt.Errorf("%w: %v", ErrBadSnapshot, err)
	}
	return rc, meta.Size, nil
}

// reap removes all but the newest retain snapshots, and what a crash left
// half written.
func (s *SnapshotStore) reap() error {
	all, err := s.all()
	if err != nil {
		return err
	}
	for _, m := range all[min(s.retain, len(all)):] {
		s.logger.Info("reaping snapshot", "id", m.ID)
		if err := os.RemoveAll(filepath.Join(s.dir, m.ID)); err != nil {
			return fmt.Errorf("snapshot store: reap %s: %w", m.ID, err)
		}
	}
	return nil
}

type snapshotSink struct {
	store  *SnapshotStore
	dir    string
	fh     *os.File
	w      *bufio.Writer
	crc    hash.Hash32
	meta   snapshotMeta
	closed bool
}

func (k *snapshotSink) ID() string { return k.meta.ID }

func (k *snapshotSink) Write(p []byte) (int, error) {
	n, err := k.w.Write(p)
	k.meta.StateBytes += int64(n)
	return n, err
}

func (k *snapshotSink) Cancel() error {
	if k.closed {
		return nil
	}
	k.closed = true
	k.fh.Close()
	return os.RemoveAll(k.dir)
}

// Close makes the snapshot durable and visible: state.bin, the links and
// meta.json synced, then the directory renamed into place.
func (k *snapshotSink) Close() error {
	if k.closed {
		return nil
	}
	k.closed = true
	err := k.finish()
	if err != nil {
		os.RemoveAll(k.dir)
		return err
	}
	if err := k.store.reap(); err != nil {
		k.store.logger.Error("failed to reap snapshots", "error", err)
	}
	return nil
}

func (k *snapshotSink) finish() error {
	err := k.w.Flush()
	if err == nil {
		err = k.fh.Sync()
	}
	if cerr := k.fh.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("snapshot %s: %w", k.meta.ID, err)
	}
	k.meta.Size = k.meta.StateBytes
	if k.meta.Linked {
		k.meta.StateCRC = k.crc.Sum32()
		k.meta.Size = k.meta.streamBytes()
		if err := syncTree(filepath.Join(k.dir, snapSegmentDir)); err != nil {
			return fmt.Errorf("snapshot %s: %w", k.meta.ID, err)
		}
	}
	b, err := json.Marshal(&k.meta)
	if err == nil {
		err = writeFileSynced(filepath.Join(k.dir, snapMetaFile), bytes.NewReader(b))
	}
	if err == nil {
		err = syncDir(k.dir)
	}
	final := strings.TrimSuffix(k.dir, snapTmpSuffix)
	if err == nil {
		err = os.Rename(k.dir, final)
	}
	if err == nil {
		err = syncDir(k.store.dir)
	}
	if err != nil {
		return fmt.Errorf("snapshot %s: %w", k.meta.ID, err)
	}
	return nil
}

// persistLinked writes a snapshot of tx into this store's sink: the stream's
// header and store body to state.bin, the segments as links.
func (k *snapshotSink) persistLinked(tx *bolt.Tx, segs *segmentStore) error {
	refs, err := referencedSegments(tx)
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	if len(refs) == 0 {
		return writeSnapshot(tx, segs, k) // format 1, as a store without segments writes it
	}
	if err := writeHeaderAndBody(k, tx, snapshotFormatV2); err != nil {
		return err
	}
	for _, r := range refs {
		rel := r.relPath()
		dst := filepath.Join(k.dir, snapSegmentDir, filepath.FromSlash(rel))
		if err := linkOrCopyPath(segs.segmentPath(r.dir, r.partition, r.id), dst, r.size); err != nil {
			return fmt.Errorf("snapshot segment %s: %w", rel, err)
		}
		k.meta.Segments = append(k.meta.Segments, linkedSegment{Path: rel, Size: r.size})
	}
	k.meta.Linked = true
	return nil
}

func linkOrCopyPath(src, dst string, size int64) error {
	fh, err := os.Open(src)
	if err != nil {
		return err
	}
	defer fh.Close()
	return linkOrCopy(fh, dst, size)
}

// linkOrCopy makes dst a link to the open file src (synced first: segments
// are written without fsync), or a copy of its first size bytes where a
// link is impossible (another file system, or src's name is gone).
func linkOrCopy(src *os.File, dst string, size int64) error {
	if err := os.MkdirAll(filepath.Dir(dst), segmentDirMode); err != nil {
		return err
	}
	if err := src.Sync(); err != nil {
		return err
	}
	if err := os.Link(src.Name(), dst); err == nil {
		return nil
	}
	return writeFileSynced(dst, io.NewSectionReader(src, 0, size))
}

// linkedReader composes a linked snapshot's stream. Restore reads it as
// any stream, or takes the files by link when the snapshot is on this
// machine (FSM.Restore).
type linkedReader struct {
	dir   string
	meta  *snapshotMeta
	state *os.File
	segs  []*os.File // meta.Segments, open
	pr    *io.PipeReader
}

func (r *linkedReader) Read(p []byte) (int, error) {
	if r.pr == nil {
		pr, pw := io.Pipe()
		r.pr = pr
		go func() { pw.CloseWithError(r.compose(pw)) }()
	}
	return r.pr.Read(p)
}

func (r *linkedReader) Close() error {
	if r.pr != nil {
		r.pr.Close()
	}
	for _, fh := range r.segs {
		fh.Close()
	}
	return r.state.Close()
}

func (r *linkedReader) compose(w io.Writer) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	sum := crc32.New(castagnoli)
	mw := io.MultiWriter(bw, sum)
	stateSum := crc32.New(castagnoli)
	if _, err := io.Copy(io.MultiWriter(mw, stateSum), r.state); err != nil {
		return fmt.Errorf("snapshot %s: %w", r.meta.ID, err)
	}
	if stateSum.Sum32() != r.meta.StateCRC {
		return fmt.Errorf("%w: snapshot %s: state.bin fails its CRC-32C", ErrBadSnapshot, r.meta.ID)
	}
	for i, s := range r.meta.Segments {
		if err := writeSegmentFrame(mw, s.Path, r.segs[i], s.Size); err != nil {
			return fmt.Errorf("snapshot %s: segment %s: %w", r.meta.ID, s.Path, err)
		}
	}
	if err := endSegments(mw); err != nil {
		return err
	}
	if err := binary.Write(bw, binary.BigEndian, sum.Sum32()); err != nil {
		return err
	}
	return bw.Flush()
}

// restoreLinked is Restore's way for a linked snapshot on this machine: the
// store body copied out of state.bin, the segments linked.
func (r *linkedReader) restoreLinked(path, segDir string) error {
	if r.pr != nil {
		return errors.New("the snapshot stream was already read")
	}
	if err := os.RemoveAll(segDir); err != nil {
		return err
	}
	if err := os.MkdirAll(segDir, segmentDirMode); err != nil {
		return err
	}
	stateSum := crc32.New(castagnoli)
	br := bufio.NewReaderSize(io.TeeReader(r.state, stateSum), 1<<20)
	h, err := readHeader(br)
	if err != nil {
		return err
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := writeFileSynced(path, io.LimitReader(br, int64(h.BodyBytes))); err != nil {
		return err
	}
	if _, err := io.Copy(io.Discard, br); err != nil {
		return err
	}
	if stateSum.Sum32() != r.meta.StateCRC {
		return fmt.Errorf("%w: snapshot %s: state.bin fails its CRC-32C", ErrBadSnapshot, r.meta.ID)
	}
	for i, s := range r.meta.Segments {
		ref, err := parseSegmentPath(s.Path)
		if err != nil {
			return err
		}
		st, err := r.segs[i].Stat()
		if err != nil {
			return err
		}
		if st.Size() < s.Size {
			return fmt.Errorf("%w: segment %s holds %d of %d bytes", ErrBadSnapshot, s.Path, st.Size(), s.Size)
		}
		dst := (&segmentStore{dir: segDir}).segmentPath(ref.dir, ref.partition, ref.id)
		if err := linkOrCopy(r.segs[i], dst, s.Size); err != nil {
			return err
		}
	}
	return syncTree(segDir)
}

func syncDir(dir string) error {
	fh, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer fh.Close()
	return fh.Sync()
}

// syncTree fsyncs every directory under root (new directory entries: the
// links), root included.
func syncTree(root string) error {
	return filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil || !d.IsDir() {
			return err
		}
		return syncDir(path)
	})
}

var _ raft.SnapshotStore = (*SnapshotStore)(nil)
