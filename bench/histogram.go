package bench

import (
	"math"
	"math/bits"
	"time"
)

// histogramSubBits sets the histogram's precision: values below
// 2^histogramSubBits ns are counted exactly, larger ones in buckets 1/64 of
// their power of two wide, so a reported percentile is at most 1.6% above
// the true sample (and never above the largest sample).
const (
	histogramSubBits = 7
	histogramSub     = 1 << histogramSubBits // exact buckets at the bottom
	histogramHalf    = histogramSub / 2      // buckets per power of two above them
	histogramBuckets = histogramSub + (64-histogramSubBits)*histogramHalf
)

// histogram counts latencies in log-linear buckets (the HDR histogram's
// layout): fixed memory whatever the number of samples, mergeable, and
// precise to 1.6%. One goroutine writes a histogram; merge them after.
type histogram struct {
	counts [histogramBuckets]uint64
	n      uint64
	max    time.Duration
}

func newHistogram() *histogram { return &histogram{} }

func bucketOf(v uint64) int {
	if v < histogramSub {
		return int(v)
	}
	shift := bits.Len64(v) - histogramSubBits
	top := v >> shift // in [histogramHalf, histogramSub)
	return histogramSub + (shift-1)*histogramHalf + int(top-histogramHalf)
}

// bucketHigh is the largest value counted in bucket b.
func bucketHigh(b int) uint64 {
	if b < histogramSub {
		return uint64(b)
	}
	k := b - histogramSub
	shift := k/histogramHalf + 1
	top := uint64(k%histogramHalf + histogramHalf)
	return (top+1)<<shift - 1 // at most 2^63-1 for a time.Duration
}

// record adds one sample; negative durations count as zero.
func (h *histogram) record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.counts[bucketOf(uint64(d))]++
	h.n++
	if d > h.max {
		h.max = d
	}
}

// merge adds o's samples to h.
func (h *histogram) merge(o *histogram) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
	h.max = max(h.max, o.max)
}

// count is the number of samples.
func (h *histogram) count() uint64 { return h.n }

// quantile returns the smallest bucket bound at or below which a fraction q
// of the samples lie (q in [0,1]); zero without samples.
func (h *histogram) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	rank = min(max(rank, 1), h.n)
	var seen uint64
	for b, c := range h.counts {
		seen += c
		if seen >= rank {
			return min(time.Duration(bucketHigh(b)), h.max)
		}
	}
	return h.max
}
