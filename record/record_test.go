package record

import (
	"bytes"
	"errors"
	"testing"
)

func TestRoundTrip(t *testing.T) {
	var buf []byte
	in := []Record{{Key: nil, Value: []byte("a")}, {Key: []byte{}, Value: nil}, {Key: []byte("k"), Value: []byte("line\x00with\xffbytes")}}
	for _, r := range in {
		buf = Append(buf, r.Key, r.Value)
	}
	if n, err := Validate(buf); err != nil || n != 3 {
		t.Fatalf("validate: %d %v", n, err)
	}
	rd := NewReader(buf)
	for i, want := range in {
		got, ok := rd.Next()
		if !ok || (got.Key == nil) != (want.Key == nil) || !bytes.Equal(got.Key, want.Key) || !bytes.Equal(got.Value, want.Value) {
			t.Fatalf("record %d: %+v, want %+v", i, got, want)
		}
	}
	if _, ok := rd.Next(); ok || rd.Err() != nil {
		t.Fatalf("end: %v", rd.Err())
	}
	size := 0
	for _, r := range in {
		size += FrameSize(r.Key, r.Value)
	}
	if size != len(buf) {
		t.Fatalf("FrameSize sums to %d, encoded %d", size, len(buf))
	}
}

func TestValidate_Refusals(t *testing.T) {
	if _, err := Validate([]byte{0x05, 'a'}); !errors.Is(err, ErrCorrupt) {
		t.Fatalf("truncated: %v", err)
	}
	big := Append(nil, nil, make([]byte, MaxRecordBytes+1))
	if _, err := Validate(big); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("too large: %v", err)
	}
}

func TestConsumedRoundTrip(t *testing.T) {
	buf := AppendConsumed(nil, 7, -3, []byte("k"), []byte("v"))
	buf = AppendConsumed(buf, 8, 1<<40, nil, []byte("w"))
	rd := NewConsumedReader(buf)
	a, _ := rd.Next()
	b, _ := rd.Next()
	if a.Offset != 7 || a.Timestamp != -3 || string(a.Key) != "k" || b.Offset != 8 || b.Key != nil || string(b.Value) != "w" {
		t.Fatalf("%+v %+v", a, b)
	}
	if _, ok := NewConsumedReader(buf[:len(buf)-1]).Next(); ok {
		// the first record is intact; read on to the truncated one
	}
	rd = NewConsumedReader(buf[:len(buf)-1])
	rd.Next()
	if _, ok := rd.Next(); ok || !errors.Is(rd.Err(), ErrCorrupt) {
		t.Fatalf("truncated second record: %v", rd.Err())
	}
}

// FuzzReader: any input either decodes into frames that re-encode to the
// same bytes, or stops with ErrCorrupt; it never panics or reads past the end.
func FuzzReader(f *testing.F) {
	f.Add(Append(Append(nil, []byte("k"), []byte("v")), nil, nil))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01})
	f.Fuzz(func(t *testing.T, data []byte) {
		rd := NewReader(data)
		var re []byte
		var recs []Record
		for {
			r, ok := rd.Next()
			if !ok {
				break
			}
			recs = append(recs, r)
			re = Append(re, r.Key, r.Value)
		}
		if rd.Err() == nil {
			// Non-minimal varints decode too; the records must survive a
			// re-encoding unchanged.
			rd2 := NewReader(re)
			for i := range recs {
				r, ok := rd2.Next()
				if !ok || !bytes.Equal(r.Key, recs[i].Key) || (r.Key == nil) != (recs[i].Key == nil) || !bytes.Equal(r.Value, recs[i].Value) {
					t.Fatalf("record %d changed in a re-encoding", i)
				}
			}
		}
		if rd.Err() != nil && !errors.Is(rd.Err(), ErrCorrupt) {
			t.Fatalf("unexpected error %v", rd.Err())
		}
		cr := NewConsumedReader(data)
		for _, ok := cr.Next(); ok; _, ok = cr.Next() {
		}
	})
}
