package fsm

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
)

// A snapshot (and a backup, which is the same bytes) is
//
//	header:   magic "WEIRSNAP", u16 format, u8 len + cluster id, u64 applied index, u64 body length
//	body:     a consistent copy of the bbolt state store
//	segments: (format 2 only) for each segment file the store refers to:
//	          u16 path length, path (<hex topic>-<index>/<partition>/<segment>.seg), u64 length, the bytes;
//	          then a u16 0
//	footer:   u32 CRC-32C (Castagnoli) of everything before it
//
// A store that refers to no segment file (every batch inline, as stores
// written before segments) is written as format 1, which older binaries
// read.
const (
	snapshotMagic    = "WEIRSNAP"
	snapshotFormatV1 = 1
	snapshotFormatV2 = 2
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// SnapshotHeader describes a snapshot stream.
type SnapshotHeader struct {
	Format       uint16
	ClusterID    string
	AppliedIndex uint64
	BodyBytes    uint64
}

type fsmSnapshot struct {
	tx      *bolt.Tx
	segs    *segmentStore
	release func()
}

// Snapshot opens a read transaction: the copy is consistent and cheap to
// take; Persist does the I/O while Apply goes on. It rolls the active
// segments first (Raft calls it between Applies), so every segment file the
// snapshot refers to is immutable.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	segs := f.segs
	release := func() { segs.leaveRead(); f.mu.RUnlock() }
	segs.enterRead()
	if err := segs.roll(); err != nil {
		release()
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	tx, err := f.db.Begin(false)
	if err != nil {
		release()
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	return &fsmSnapshot{tx: tx, segs: segs, release: release}, nil
}

// Persist writes the snapshot into sink: by links into this package's
// SnapshotStore, as a stream into any other.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	var err error
	if own, ok := sink.(*snapshotSink); ok {
		err = own.persistLinked(s.tx, s.segs)
	} else {
		err = writeSnapshot(s.tx, s.segs, sink)
	}
	if err != nil {
		_ = sink.Cancel()
		return err
	}
	return sink.Close()
}

// Release ends the read transaction.
func (s *fsmSnapshot) Release() {
	_ = s.tx.Rollback()
	s.release()
}

// WriteSnapshot writes a consistent snapshot of the current state to w; it
// is what `cluster backup` streams.
func (f *FSM) WriteSnapshot(w io.Writer) error {
	return f.view(func(tx *bolt.Tx) error { return writeSnapshot(tx, f.segs, w) })
}

func writeSnapshot(tx *bolt.Tx, segs *segmentStore, w io.Writer) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	crc := crc32.New(castagnoli)
	mw := io.MultiWriter(bw, crc)
	refs, err := referencedSegments(tx)
	if err != nil {
		return fmt.Errorf("snapshot: %w", err)
	}
	format := uint16(snapshotFormatV1)
	if len(refs) > 0 {
		format = snapshotFormatV2
	}
	if err := writeHeaderAndBody(mw, tx, format); err != nil {
		return err
	}
	if format == snapshotFormatV2 {
		if err := writeSegments(mw, segs, refs); err != nil {
			return err
		}
	}
	if err := binary.Write(bw, binary.BigEndian, crc.Sum32()); err != nil {
		return err
	}
	return bw.Flush()
}

// writeHeaderAndBody writes the stream's header and the store's copy.
func writeHeaderAndBody(w io.Writer, tx *bolt.Tx, format uint16) error {
	hdr := SnapshotHeader{Format: format, ClusterID: readCluster(tx).ClusterID, AppliedIndex: readApplied(tx), BodyBytes: uint64(tx.Size())}
	if _, err := w.Write(encodeHeader(hdr)); err != nil {
		return fmt.Errorf("snapshot header: %w", err)
	}
	n, err := tx.WriteTo(w)
	if err != nil {
		return fmt.Errorf("snapshot body: %w", err)
	}
	if uint64(n) != hdr.BodyBytes {
		return fmt.Errorf("snapshot body: wrote %d bytes, expected %d", n, hdr.BodyBytes)
	}
	return nil
}

// sizedSegment is a segment file and the length of it the index refers to
// (a crashed process may have left bytes after it).
type sizedSegment struct {
	segmentRef
	size int64
}

// referencedSegments lists the segment files the store's index refers to,
// in path order.
func referencedSegments(tx *bolt.Tx) ([]sizedSegment, error) {
	var out []sizedSegment
	err := tx.Bucket(bucketTopics).ForEach(func(name, _ []byte) error {
		tm, _ := readTopic(tx, string(name))
		tb := tx.Bucket(bucketData).Bucket(name)
		if tb == nil {
			return nil
		}
		return tb.ForEachBucket(func(pk []byte) error {
			p := int(binary.BigEndian.Uint32(pk))
			sizes := map[uint64]int64{}
			var ids []uint64
			err := tb.Bucket(pk).ForEach(func(_, v []byte) error {
				if !isSegmentFormat(v) {
					return nil
				}
				e, err := decodeIndexEntry(v)
				if err != nil {
					return err
				}
				if _, ok := sizes[e.segment]; !ok {
					ids = append(ids, e.segment)
				}
				sizes[e.segment] = max(sizes[e.segment], e.pos+int64(e.length))
				return nil
			})
			for _, id := range ids { // offsets grow, so ids come in order
				out = append(out, sizedSegment{segmentRef{tm.segmentDir(), p, id}, sizes[id]})
			}
			return err
		})
	})
	return out, err
}

func writeSegments(w io.Writer, segs *segmentStore, refs []sizedSegment) error {
	for _, r := range refs {
		rel := r.relPath()
		fh, err := os.Open(segs.segmentPath(r.dir, r.partition, r.id))
		if err == nil {
			err = writeSegmentFrame(w, rel, fh, r.size)
			fh.Close()
		}
		if err != nil {
			return fmt.Errorf("snapshot segment %s: %w", rel, err)
		}
	}
	return endSegments(w)
}

// writeSegmentFrame writes one segment of a format 2 stream: its path, its
// length and the first size bytes of fh.
func writeSegmentFrame(w io.Writer, rel string, fh *os.File, size int64) error {
	var hdr []byte
	hdr = binary.BigEndian.AppendUint16(hdr, uint16(len(rel)))
	hdr = append(hdr, rel...)
	hdr = binary.BigEndian.AppendUint64(hdr, uint64(size))
	if _, err := w.Write(hdr); err != nil {
		return err
	}
	n, err := io.Copy(w, io.NewSectionReader(fh, 0, size))
	if err == nil && n != size {
		err = fmt.Errorf("%w: %d of %d bytes", ErrBadSnapshot, n, size)
	}
	return err
}

// segmentFrameBytes is the length writeSegmentFrame writes.
func segmentFrameBytes(rel string, size int64) int64 { return 2 + int64(len(rel)) + 8 + size }

// endSegments ends a format 2 stream's segment list.
func endSegments(w io.Writer) error {
	_, err := w.Write([]byte{0, 0})
	return err
}

func encodeHeader(h SnapshotHeader) []byte {
	b := []byte(snapshotMagic)
	b = binary.BigEndian.AppendUint16(b, h.Format)
	b = append(b, byte(len(h.ClusterID)))
	b = append(b, h.ClusterID...)
	b = binary.BigEndian.AppendUint64(b, h.AppliedIndex)
	return binary.BigEndian.AppendUint64(b, h.BodyBytes)
}

func readHeader(r io.Reader) (SnapshotHeader, error) {
	var h SnapshotHeader
	fixed := make([]byte, len(snapshotMagic)+3)
	if _, err := io.ReadFull(r, fixed); err != nil {
		return h, fmt.Errorf("%w: header: %v", ErrBadSnapshot, err)
	}
	if string(fixed[:len(snapshotMagic)]) != snapshotMagic {
		return h, fmt.Errorf("%w: not a Weir snapshot (bad magic)", ErrBadSnapshot)
	}
	h.Format = binary.BigEndian.Uint16(fixed[len(snapshotMagic):])
	if h.Format != snapshotFormatV1 && h.Format != snapshotFormatV2 {
		return h, fmt.Errorf("%w: unknown format %d (this binary reads formats %d and %d)", ErrBadSnapshot, h.Format, snapshotFormatV1, snapshotFormatV2)
	}
	rest := make([]byte, int(fixed[len(fixed)-1])+16)
	if _, err := io.ReadFull(r, rest); err != nil {
		return h, fmt.Errorf("%w: header: %v", ErrBadSnapshot, err)
	}
	h.ClusterID = string(rest[:len(rest)-16])
	h.AppliedIndex = binary.BigEndian.Uint64(rest[len(rest)-16:])
	h.BodyBytes = binary.BigEndian.Uint64(rest[len(rest)-8:])
	return h, nil
}

// ReadSnapshotFile checks a backup (a file, or a directory Export wrote)
// end to end (format and checksum) and returns its header.
func ReadSnapshotFile(path string) (SnapshotHeader, error) {
	rc, _, err := OpenBackup(path)
	if err != nil {
		return SnapshotHeader{}, err
	}
	defer rc.Close()
	return copySnapshot(rc, io.Discard, nil)
}

// copySnapshot verifies a snapshot stream, copies its body to w and hands
// each segment file to seg (nil: the segments are read and dropped).
func copySnapshot(r io.Reader, w io.Writer, seg func(ref segmentRef, body io.Reader) error) (SnapshotHeader, error) {
	crc := crc32.New(castagnoli)
	br := bufio.NewReaderSize(r, 1<<20)
	tr := io.TeeReader(br, crc)
	h, err := readHeader(tr)
	if err != nil {
		return h, err
	}
	n, err := io.CopyN(w, tr, int64(h.BodyBytes))
	if err != nil {
		return h, fmt.Errorf("%w: body truncated at %d of %d bytes: %v", ErrBadSnapshot, n, h.BodyBytes, err)
	}
	if h.Format == snapshotFormatV2 {
		if err := readSegments(tr, seg); err != nil {
			return h, err
		}
	}
	var sum uint32
	if err := binary.Read(br, binary.BigEndian, &sum); err != nil {
		return h, fmt.Errorf("%w: checksum missing: %v", ErrBadSnapshot, err)
	}
	if sum != crc.Sum32() {
		return h, fmt.Errorf("%w: checksum mismatch", ErrBadSnapshot)
	}
	return h, nil
}

func readSegments(r io.Reader, seg func(ref segmentRef, body io.Reader) error) error {
	for {
		var n uint16
		if err := binary.Read(r, binary.BigEndian, &n); err != nil {
			return fmt.Errorf("%w: segment list truncated: %v", ErrBadSnapshot, err)
		}
		if n == 0 {
			return nil
		}
		name := make([]byte, n)
		var size uint64
		if _, err := io.ReadFull(r, name); err != nil {
			return fmt.Errorf("%w: segment list truncated: %v", ErrBadSnapshot, err)
		}
		if err := binary.Read(r, binary.BigEndian, &size); err != nil {
			return fmt.Errorf("%w: segment list truncated: %v", ErrBadSnapshot, err)
		}
		ref, err := parseSegmentPath(string(name))
		if err != nil {
			return err
		}
		body := &io.LimitedReader{R: r, N: int64(size)}
		if seg != nil {
			err = seg(ref, body)
		}
		if err == nil {
			_, err = io.Copy(io.Discard, body)
		}
		if err == nil && body.N != 0 {
			err = fmt.Errorf("%w: segment %s truncated", ErrBadSnapshot, name)
		}
		if err != nil {
			return fmt.Errorf("snapshot segment %s: %w", name, err)
		}
	}
}

// Restore replaces all state with the snapshot's. The store and its
// segments are written to temporary files and verified before the live ones
// are swapped, so a bad snapshot leaves the state as it was. A crash inside
// the swap leaves a store whose applied index is below the snapshot's (the
// old one, or none), which the node restores again at start
// (node.restoreIfBehind).
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	tmp, tmpSegs := f.path+".restore", SegmentDir(f.path)+".restore"
	var err error
	if lr, ok := rc.(*linkedReader); ok {
		err = lr.restoreLinked(tmp, tmpSegs) // a snapshot of this store's on this machine
	} else {
		err = f.restoreInto(rc, tmp, tmpSegs)
	}
	if err != nil {
		os.Remove(tmp)
		os.RemoveAll(tmpSegs)
		return fmt.Errorf("restore: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.db != nil {
		if err := f.segs.close(); err != nil {
			return fmt.Errorf("restore: close segments: %w", err)
		}
		if err := f.db.Close(); err != nil {
			return fmt.Errorf("restore: close state store: %w", err)
		}
		f.db = nil
	}
	if err := os.RemoveAll(SegmentDir(f.path)); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if err := os.Rename(tmpSegs, SegmentDir(f.path)); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if err := os.Rename(tmp, f.path); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	if err := f.open(); err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	f.broadcast()
	return nil
}

// restoreInto writes a snapshot stream's store to path and its segments
// under segDir, synced.
func (f *FSM) restoreInto(r io.Reader, path, segDir string) error {
	if err := os.RemoveAll(segDir); err != nil {
		return err
	}
	tmpSegs := &segmentStore{dir: segDir}
	if err := os.MkdirAll(segDir, segmentDirMode); err != nil {
		return err
	}
	fh, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, stateFileMode)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(fh, 1<<20)
	_, err = copySnapshot(r, bw, func(ref segmentRef, body io.Reader) error {
		return writeFileSynced(tmpSegs.segmentPath(ref.dir, ref.partition, ref.id), body)
	})
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = fh.Sync()
	}
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	return err
}

func writeFileSynced(path string, r io.Reader) error {
	if err := os.MkdirAll(filepath.Dir(path), segmentDirMode); err != nil {
		return err
	}
	fh, err := os.OpenFile(path, os.O_CREATE|os.O_EXCL|os.O_WRONLY, stateFileMode)
	if err != nil {
		return err
	}
	_, err = io.Copy(fh, r)
	if err == nil {
		err = fh.Sync()
	}
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	return err
}

// StateHash is a digest of the replicated state: topics, records, producers
// and lifecycle, but not the Raft bookkeeping (applied index). Two nodes
// that applied the same log have the same hash.
func (f *FSM) StateHash() (string, error) {
	h := sha256.New()
	err := f.view(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			return hashBucket(h, tx, f.segs, [][]byte{name}, b)
		})
	})
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// hashBucket hashes every key and value under b. A batch is hashed as what
// it holds (timestamp, count, frames), not as where it is stored: segment
// files and positions differ between nodes, the records do not.
func hashBucket(h hash.Hash, tx *bolt.Tx, segs *segmentStore, path [][]byte, b *bolt.Bucket) error {
	var sr *segmentReader
	if len(path) == 3 && bytes.Equal(path[0], bucketData) {
		tm, _ := readTopic(tx, string(path[1]))
		sr = segs.reader(tm.segmentDir(), int(binary.BigEndian.Uint32(path[2])))
		defer sr.close()
	}
	return b.ForEach(func(k, v []byte) error {
		if len(path) == 1 && bytes.Equal(path[0], bucketMeta) && bytes.Equal(k, keyApplied) {
			return nil
		}
		if v == nil {
			return hashBucket(h, tx, segs, append(path, k), b.Bucket(k))
		}
		if sr != nil {
			ts, frames, _, err := sr.batch(v)
			if err != nil {
				return err
			}
			var hdr [12]byte
			binary.BigEndian.PutUint64(hdr[:], uint64(ts))
			binary.BigEndian.PutUint32(hdr[8:], batchCount(v))
			v = append(hdr[:], frames...)
		}
		for _, p := range path {
			writeLen(h, p)
		}
		writeLen(h, k)
		writeLen(h, v)
		return nil
	})
}

func writeLen(h hash.Hash, b []byte) {
	var n [4]byte
	binary.BigEndian.PutUint32(n[:], uint32(len(b)))
	h.Write(n[:])
	h.Write(b)
}
