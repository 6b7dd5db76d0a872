package cli

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/weir-streaming/weir/record"
)

func readAllLines(t *testing.T, r io.Reader) ([][]byte, error) {
	t.Helper()
	lr := newLineReader(r)
	var out [][]byte
	for {
		line, err := lr.Next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, err
		}
		out = append(out, append([]byte(nil), line...))
	}
}

func TestLineReader_ByteExact(t *testing.T) {
	long := bytes.Repeat([]byte("x"), 3*readBufferBytes+17) // longer than the read buffer
	in := bytes.Join([][]byte{
		[]byte("plain"),
		[]byte(""),             // an empty line is an empty record
		[]byte("crlf\r"),       // only "\n" is stripped
		[]byte("\xff\xfe bad"), // not UTF-8: kept as is
		[]byte("  spaces  "),
		long,
		[]byte("last-without-newline"),
	}, []byte("\n"))
	got, err := readAllLines(t, bytes.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	want := [][]byte{[]byte("plain"), {}, []byte("crlf\r"), []byte("\xff\xfe bad"), []byte("  spaces  "), long, []byte("last-without-newline")}
	if len(got) != len(want) {
		t.Fatalf("%d lines, want %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Errorf("line %d = %q, want %q", i, trunc(got[i]), trunc(want[i]))
		}
	}
}

func trunc(b []byte) []byte {
	if len(b) > 40 {
		return b[:40]
	}
	return b
}

func TestLineReader_EdgeCases(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"\n", []string{""}},
		{"a\n", []string{"a"}},
		{"a", []string{"a"}},
		{"a\n\n", []string{"a", ""}},
		{"\n\nb", []string{"", "", "b"}},
	} {
		got, err := readAllLines(t, strings.NewReader(tc.in))
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(tc.want) {
			t.Errorf("%q: %q, want %q", tc.in, got, tc.want)
			continue
		}
		for i := range got {
			if string(got[i]) != tc.want[i] {
				t.Errorf("%q: line %d = %q, want %q", tc.in, i, got[i], tc.want[i])
			}
		}
	}
}

func TestLineReader_RefusesLineNoRequestCanCarry(t *testing.T) {
	in := bytes.Repeat([]byte("y"), maxLineBytes+1)
	_, err := readAllLines(t, bytes.NewReader(in))
	if !errors.Is(err, errLineTooLong) {
		t.Fatalf("err = %v, want errLineTooLong", err)
	}
}

func TestSplitKey(t *testing.T) {
	for _, tc := range []struct {
		line, sep   string
		key, value  string
		keyIsAbsent bool
	}{
		{"k:v", ":", "k", "v", false},
		{"k:v:w", ":", "k", "v:w", false}, // the first separator splits
		{":v", ":", "", "v", false},       // empty key, not no key
		{"k:", ":", "k", "", false},
		{"novalue", ":", "", "novalue", true}, // no separator: no key
		{"k::v", "::", "k", "v", false},       // multi-byte separator
		{"k:v", "", "", "k:v", true},          // no --key-separator
	} {
		key, value := splitKey([]byte(tc.line), []byte(tc.sep))
		if (key == nil) != tc.keyIsAbsent || string(key) != tc.key || string(value) != tc.value {
			t.Errorf("splitKey(%q, %q) = %q (nil %v), %q", tc.line, tc.sep, key, key == nil, value)
		}
	}
}

// collect runs splitBatches and returns the decoded batches.
func collect(t *testing.T, in io.Reader, sep string) []*batch {
	t.Helper()
	var out []*batch
	err := splitBatches(in, []byte(sep), func(b *batch) error {
		out = append(out, &batch{buf: append([]byte(nil), b.buf...), n: b.n, first: b.first})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func decode(t *testing.T, b *batch) []record.Record {
	t.Helper()
	r := record.NewReader(b.buf)
	var out []record.Record
	for {
		rec, ok := r.Next()
		if !ok {
			break
		}
		out = append(out, rec)
	}
	if r.Err() != nil {
		t.Fatal(r.Err())
	}
	if len(out) != b.n {
		t.Fatalf("batch says %d records, holds %d", b.n, len(out))
	}
	return out
}

func TestSplitBatches_RecordLimit(t *testing.T) {
	var in strings.Builder
	for i := range 2500 {
		in.WriteString("v")
		in.WriteString(strings.Repeat("0", i%7))
		in.WriteString("\n")
	}
	batches := collect(t, strings.NewReader(in.String()), "")
	if len(batches) != 3 || batches[0].n != 1000 || batches[1].n != 1000 || batches[2].n != 500 {
		t.Fatalf("batches of %v, want 1000, 1000, 500", sizes(batches))
	}
	if batches[0].first != 1 || batches[1].first != 1001 || batches[2].first != 2001 {
		t.Fatalf("first lines %d %d %d", batches[0].first, batches[1].first, batches[2].first)
	}
	total := 0
	for _, b := range batches {
		total += len(decode(t, b))
	}
	if total != 2500 {
		t.Fatalf("%d records, want 2500", total)
	}
}

func TestSplitBatches_ByteLimit(t *testing.T) {
	value := strings.Repeat("z", 300<<10) // 300 KiB: three fit in 1 MiB, four do not
	in := strings.Repeat(value+"\n", 7)
	batches := collect(t, strings.NewReader(in), "")
	if got := sizes(batches); len(got) != 3 || got[0] != 3 || got[1] != 3 || got[2] != 1 {
		t.Fatalf("batches of %v, want [3 3 1]", got)
	}
	for _, b := range batches {
		if len(b.buf) > maxBatchBytes {
			t.Fatalf("batch of %d bytes over %d", len(b.buf), maxBatchBytes)
		}
	}
}

func TestSplitBatches_OversizedRecordTravelsAlone(t *testing.T) {
	big := strings.Repeat("B", maxBatchBytes+10)
	batches := collect(t, strings.NewReader("a\n"+big+"\nb"), "")
	if got := sizes(batches); len(got) != 3 || got[0] != 1 || got[1] != 1 || got[2] != 1 {
		t.Fatalf("batches of %v, want [1 1 1]", got)
	}
	if recs := decode(t, batches[1]); string(recs[0].Value) != big {
		t.Fatal("the big record changed")
	}
}

func TestSplitBatches_KeysAndLastLine(t *testing.T) {
	batches := collect(t, strings.NewReader("k1=v1\nnokey\n=empty-key\nk2=v=2"), "=")
	recs := decode(t, batches[0])
	want := []struct {
		key   *string
		value string
	}{{ptr("k1"), "v1"}, {nil, "nokey"}, {ptr(""), "empty-key"}, {ptr("k2"), "v=2"}}
	if len(recs) != len(want) {
		t.Fatalf("%d records, want %d", len(recs), len(want))
	}
	for i, w := range want {
		if (recs[i].Key == nil) != (w.key == nil) || (w.key != nil && string(recs[i].Key) != *w.key) || string(recs[i].Value) != w.value {
			t.Errorf("record %d = %q/%q", i, recs[i].Key, recs[i].Value)
		}
	}
}

func TestSplitBatches_EmptyInputSendsNothing(t *testing.T) {
	if b := collect(t, strings.NewReader(""), ""); len(b) != 0 {
		t.Fatalf("%d batches from empty input", len(b))
	}
}

func sizes(bs []*batch) []int {
	out := make([]int, len(bs))
	for i, b := range bs {
		out[i] = b.n
	}
	return out
}

func ptr(s string) *string { return &s }
