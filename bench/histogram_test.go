package bench

import (
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// TestHistogram_QuantilesWithinPrecision compares the histogram with exact
// percentiles of a sorted slice.
func TestHistogram_QuantilesWithinPrecision(t *testing.T) {
	h := newHistogram()
	var all []time.Duration
	r := rand.New(rand.NewPCG(1, 2))
	for range 100000 {
		d := time.Duration(r.ExpFloat64() * float64(3*time.Millisecond))
		h.record(d)
		all = append(all, d)
	}
	slices.Sort(all)
	for _, q := range []float64{0.5, 0.9, 0.99, 0.999, 1} {
		exact := all[max(int(q*float64(len(all)))-1, 0)]
		got := h.quantile(q)
		if got < exact || float64(got-exact) > float64(exact)/64+1 {
			t.Errorf("q=%v: got %v, exact %v (want at most 1/64 above)", q, got, exact)
		}
	}
	if h.max != all[len(all)-1] || h.count() != uint64(len(all)) {
		t.Errorf("max %v count %d, want %v %d", h.max, h.count(), all[len(all)-1], len(all))
	}
}

func TestHistogram_BucketsCoverEveryValue(t *testing.T) {
	for _, v := range []uint64{0, 1, 127, 128, 129, 255, 256, 1000, 1 << 40, 1<<63 - 1} {
		b := bucketOf(v)
		if b < 0 || b >= histogramBuckets || bucketHigh(b) < v || (b > 0 && bucketHigh(b-1) >= v) {
			t.Errorf("value %d: bucket %d [%d, %d]", v, b, bucketHigh(b-1)+1, bucketHigh(b))
		}
	}
}

func TestHistogram_MergeAndEmpty(t *testing.T) {
	a, b := newHistogram(), newHistogram()
	if a.quantile(0.99) != 0 {
		t.Fatal("empty histogram has a quantile")
	}
	a.record(time.Millisecond)
	b.record(time.Second)
	a.merge(b)
	if a.count() != 2 || a.max != time.Second || a.quantile(0.5) > time.Millisecond+time.Millisecond/64 {
		t.Fatalf("merged: count %d max %v p50 %v", a.count(), a.max, a.quantile(0.5))
	}
}
