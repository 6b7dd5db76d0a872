package chaos

import (
	"context"
	"fmt"
	"math/rand"
	"sync"
	"time"

	"github.com/weir-streaming/weir/test/chaos/checker"
)

// Process ids by role. Producers take 0..P-1; a producer retired after an
// info op comes back as process+P (Jepsen's convention), so producer
// process ids stay below consumerBase for any run this harness makes.
const (
	consumerBase   = 100000
	drainProcess   = 200000
	nodeProcess    = -2 // node-read and lifecycle-history ops
	nemesisProcess = -1
)

// workload is the concurrent clients of one run.
type workload struct {
	cl         *client
	rec        *recorder
	nodes      []*Node
	topic      string
	partitions int
	producers  int
	consumers  int
	runID      string
	seed       int64

	opTimeout      time.Duration // a produce's total budget, retries included
	attemptTimeout time.Duration // one HTTP request
	think          time.Duration // pause between a client's ops
	readMax        int
	strongRatio    float64 // share of consumer reads made strong

	mu      sync.Mutex
	retired int
	// slots keep each producer's process, id and sequence across
	// startClients calls, so values stay unique and sequences go on.
	slots []*producerSlot
}

type producerSlot struct {
	process int
	id      string
	seq     uint64
	n       uint64 // values written by this slot: p<process>-<n> stays unique
	advance bool   // the next op takes a new sequence (false after a definite failure)
	rng     *rand.Rand
	started bool
}

// runProducers starts the producers; they invoke until ctx ends, finish
// the op in flight (within opTimeout), and return.
func (w *workload) runProducers(ctx context.Context, wg *sync.WaitGroup) {
	for len(w.slots) < w.producers {
		w.slots = append(w.slots, &producerSlot{})
	}
	for i := 0; i < w.producers; i++ {
		wg.Add(1)
		go func(slot int) {
			defer wg.Done()
			w.producer(ctx, slot)
		}(i)
	}
}

// producer is one slot of the producer pool: one request in flight, values
// "p<process>-<counter>", the idempotent-producer headers on every attempt.
func (w *workload) producer(ctx context.Context, slot int) {
	st := w.slots[slot]
	if !st.started {
		st.started = true
		st.rng = rand.New(rand.NewSource(w.seed*7919 + int64(slot)))
		st.process = slot
		st.id = fmt.Sprintf("%s-p%d", w.runID, st.process)
	}
	rng, process, seq, producerID := st.rng, st.process, st.seq, st.id
	n, advance := st.n, st.advance || st.seq == 0
	defer func() { st.process, st.seq, st.id, st.n, st.advance = process, seq, producerID, n, advance }()
	newProcess := func() {
		producerID = fmt.Sprintf("%s-p%d", w.runID, process)
		seq = 0
	}
	// A sequence advances only past a request that may have been written: a
	// definitely failed one leaves its number to the next request (the state
	// machine refuses a gap). Values stay unique through their own counter.
	for ctx.Err() == nil {
		if advance {
			seq++
		}
		n++
		value := fmt.Sprintf("p%d-%d", process, n)
		partition := rng.Intn(w.partitions)
		first := rng.Intn(len(w.nodes))
		inv := checker.Op{Process: process, Type: checker.Invoke, F: checker.Produce, Partition: partition, Value: value,
			Producer: producerID, Seq: seq, Node: w.nodes[first].ID}
		w.rec.add(inv)
		done := w.produceOp(rng, first, partition, value, producerID, seq)
		done.Process, done.F, done.Partition, done.Value, done.Producer, done.Seq = process, checker.Produce, partition, value, producerID, seq
		w.rec.add(done)
		advance = done.Type != checker.Fail
		if done.Type == checker.Info {
			// Its outcome is unknown: retire it, a new process takes over.
			process += w.producers
			newProcess()
			w.mu.Lock()
			w.retired++
			w.mu.Unlock()
		}
		sleep(ctx, w.think)
	}
}

// produceOp sends one value until it is acknowledged, refused for good, or
// the op's deadline passes, retrying the same (producer, seq) on every node
// in turn. It returns the completion (type, offset, attempts, error).
func (w *workload) produceOp(rng *rand.Rand, first, partition int, value, producer string, seq uint64) checker.Op {
	deadline := time.Now().Add(w.opTimeout)
	maybeApplied := false
	var last *callError
	attempts := 0
	for i := 0; ; i++ {
		node := w.nodes[(first+i)%len(w.nodes)]
		left := time.Until(deadline)
		if left <= 0 {
			break
		}
		actx, cancel := context.WithTimeout(context.Background(), min(left, w.attemptTimeout))
		attempts++
		off, cerr := w.cl.produce(actx, node.API, w.topic, partition, value, producer, seq)
		cancel()
		if cerr == nil {
			return checker.Op{Type: checker.OK, Offset: checker.Int64(off), Node: node.ID, Attempts: attempts}
		}
		last = cerr
		if !cerr.definite() {
			maybeApplied = true
		}
		if !cerr.retryable() {
			break
		}
		// Back off a little, more after a refusal than after a timeout.
		sleep(context.Background(), min(time.Until(deadline), time.Duration(50+rng.Intn(200))*time.Millisecond))
	}
	op := checker.Op{Type: checker.Info, Attempts: attempts, Error: last.Error()}
	if !maybeApplied {
		op.Type = checker.Fail
	}
	return op
}

// runConsumers starts the readers: each walks the partitions by offset,
// now and then re-reading from an earlier offset, most reads strong.
func (w *workload) runConsumers(ctx context.Context, wg *sync.WaitGroup) {
	for i := 0; i < w.consumers; i++ {
		wg.Add(1)
		go func(slot int) {
			defer wg.Done()
			w.consumer(ctx, slot)
		}(i)
	}
}

func (w *workload) consumer(ctx context.Context, slot int) {
	rng := rand.New(rand.NewSource(w.seed*104729 + int64(slot)))
	process := consumerBase + slot
	cursor := make([]int64, w.partitions)
	for ctx.Err() == nil {
		p := rng.Intn(w.partitions)
		from := cursor[p]
		if from > 0 && rng.Intn(10) == 0 {
			from = rng.Int63n(from + 1)
		}
		strong := rng.Float64() < w.strongRatio
		node := w.nodes[rng.Intn(len(w.nodes))]
		done := w.read(process, node, p, from, w.readMax, strong)
		if done.Type == checker.OK && !done.OutOfRange && len(done.Records) > 0 {
			if end := done.Records[len(done.Records)-1].Offset + 1; end > cursor[p] {
				cursor[p] = end
			}
		}
		sleep(ctx, w.think)
	}
}

// read records one consume (invoke and completion).
func (w *workload) read(process int, node *Node, partition int, from int64, max int, strong bool) checker.Op {
	cons := checker.Local
	if strong {
		cons = checker.Strong
	}
	base := checker.Op{Process: process, F: checker.Consume, Partition: partition, Offset: checker.Int64(from), Max: max,
		Consistency: cons, Node: node.ID}
	inv := base
	inv.Type = checker.Invoke
	w.rec.add(inv)
	ctx, cancel := context.WithTimeout(context.Background(), w.attemptTimeout)
	res, cerr := w.cl.consume(ctx, node.API, w.topic, partition, from, max, strong)
	cancel()
	done := base
	switch {
	case cerr == nil:
		done.Type = checker.OK
		done.HighWatermark = res.hw
		done.OutOfRange = res.outOfRange
		done.Error = res.message
		if res.servedBy != "" && res.servedBy != node.API {
			done.ServedBy = w.nodeAt(res.servedBy)
		}
		for _, r := range res.records {
			done.Records = append(done.Records, checker.Record{Offset: int64(r.Offset), Value: r.Value})
		}
	case cerr.definite():
		done.Type, done.Error = checker.Fail, cerr.Error()
	default:
		done.Type, done.Error = checker.Info, cerr.Error()
	}
	return w.rec.add(done)
}

// nodeAt names the node at host:port (its container address or its
// published port), or returns the address itself.
func (w *workload) nodeAt(addr string) string {
	for _, n := range w.nodes {
		if addr == n.API || addr == fmt.Sprintf("%s:%d", n.IP, apiPort) {
			return n.ID
		}
	}
	return addr
}

func sleep(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
