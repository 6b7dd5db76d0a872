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

	"github.com/hashicorp/raft"
	bolt "go.etcd.io/bbolt"
)

// A snapshot (and a backup, which is the same bytes) is
//
//	header: magic "WEIRSNAP", u16 format, u8 len + cluster id, u64 applied index, u64 body length
//	body:   a consistent copy of the bbolt state store
//	footer: u32 CRC-32C (Castagnoli) of header and body
const (
	snapshotMagic    = "WEIRSNAP"
	snapshotFormatV1 = 1
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
	release func()
}

// Snapshot opens a read transaction: the copy is consistent and cheap to
// take; Persist does the I/O while Apply goes on.
func (f *FSM) Snapshot() (raft.FSMSnapshot, error) {
	f.mu.RLock()
	tx, err := f.db.Begin(false)
	if err != nil {
		f.mu.RUnlock()
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	return &fsmSnapshot{tx: tx, release: f.mu.RUnlock}, nil
}

// Persist streams the snapshot into sink.
func (s *fsmSnapshot) Persist(sink raft.SnapshotSink) error {
	if err := writeSnapshot(s.tx, sink); err != nil {
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
	return f.view(func(tx *bolt.Tx) error { return writeSnapshot(tx, w) })
}

func writeSnapshot(tx *bolt.Tx, w io.Writer) error {
	bw := bufio.NewWriterSize(w, 1<<20)
	crc := crc32.New(castagnoli)
	mw := io.MultiWriter(bw, crc)
	cs := readCluster(tx)
	hdr := SnapshotHeader{Format: snapshotFormatV1, ClusterID: cs.ClusterID, AppliedIndex: readApplied(tx), BodyBytes: uint64(tx.Size())}
	if _, err := mw.Write(encodeHeader(hdr)); err != nil {
		return fmt.Errorf("snapshot header: %w", err)
	}
	n, err := tx.WriteTo(mw)
	if err != nil {
		return fmt.Errorf("snapshot body: %w", err)
	}
	if uint64(n) != hdr.BodyBytes {
		return fmt.Errorf("snapshot body: wrote %d bytes, expected %d", n, hdr.BodyBytes)
	}
	if err := binary.Write(bw, binary.BigEndian, crc.Sum32()); err != nil {
		return err
	}
	return bw.Flush()
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
	if h.Format != snapshotFormatV1 {
		return h, fmt.Errorf("%w: unknown format %d (this binary reads format %d)", ErrBadSnapshot, h.Format, snapshotFormatV1)
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

// ReadSnapshotFile checks a snapshot or backup file end to end (format and
// checksum) and returns its header.
func ReadSnapshotFile(path string) (SnapshotHeader, error) {
	fh, err := os.Open(path)
	if err != nil {
		return SnapshotHeader{}, err
	}
	defer fh.Close()
	return copySnapshot(fh, io.Discard)
}

// copySnapshot verifies a snapshot stream and copies its body to w.
func copySnapshot(r io.Reader, w io.Writer) (SnapshotHeader, error) {
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
	var sum uint32
	if err := binary.Read(br, binary.BigEndian, &sum); err != nil {
		return h, fmt.Errorf("%w: checksum missing: %v", ErrBadSnapshot, err)
	}
	if sum != crc.Sum32() {
		return h, fmt.Errorf("%w: checksum mismatch", ErrBadSnapshot)
	}
	return h, nil
}

// Restore replaces all state with the snapshot's. The body is written to a
// temporary file and verified before the live store is swapped, so a bad
// snapshot leaves the state as it was.
func (f *FSM) Restore(rc io.ReadCloser) error {
	defer rc.Close()
	tmp := f.path + ".restore"
	fh, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, stateFileMode)
	if err != nil {
		return fmt.Errorf("restore: %w", err)
	}
	bw := bufio.NewWriterSize(fh, 1<<20)
	_, err = copySnapshot(rc, bw)
	if err == nil {
		err = bw.Flush()
	}
	if err == nil {
		err = fh.Sync()
	}
	if cerr := fh.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("restore: %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.db != nil {
		if err := f.db.Close(); err != nil {
			return fmt.Errorf("restore: close state store: %w", err)
		}
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

// StateHash is a digest of the replicated state: topics, records, producers
// and lifecycle, but not the Raft bookkeeping (applied index). Two nodes
// that applied the same log have the same hash.
func (f *FSM) StateHash() (string, error) {
	h := sha256.New()
	err := f.view(func(tx *bolt.Tx) error {
		return tx.ForEach(func(name []byte, b *bolt.Bucket) error {
			return hashBucket(h, [][]byte{name}, b)
		})
	})
	if err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func hashBucket(h hash.Hash, path [][]byte, b *bolt.Bucket) error {
	return b.ForEach(func(k, v []byte) error {
		if len(path) == 1 && bytes.Equal(path[0], bucketMeta) && bytes.Equal(k, keyApplied) {
			return nil
		}
		if v == nil {
			return hashBucket(h, append(path, k), b.Bucket(k))
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
