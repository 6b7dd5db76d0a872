package node

import (
	"strings"
	"testing"
)

func TestMeta_RoundTripAndLimit(t *testing.T) {
	m := Meta{ID: "n1", ClusterID: strings.Repeat("c", 32), Version: "0.1.0", ClusterAddr: "127.0.0.1:7071", APIAddr: "127.0.0.1:7070", Serving: true, AppliedIndex: 42}
	b, err := EncodeMeta(m)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeMeta(b)
	if err != nil || got != m {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	m.ID = strings.Repeat("x", 600)
	if _, err := EncodeMeta(m); err == nil {
		t.Fatal("meta over 512 bytes accepted")
	}
	if _, err := DecodeMeta(append([]byte{9}, b[1:]...)); err == nil {
		t.Fatal("unknown meta version accepted")
	}
}

// FuzzDecodeMeta: a peer's meta never panics the decoder.
func FuzzDecodeMeta(f *testing.F) {
	b, _ := EncodeMeta(Meta{ID: "n1", Version: "0.1.0"})
	f.Add(b)
	f.Add([]byte{1, 0xc1})
	f.Fuzz(func(t *testing.T, data []byte) {
		DecodeMeta(data)
	})
}
