package chaos

import (
	"bufio"
	"encoding/json"
	"os"
	"sync"
	"time"

	"github.com/weir-streaming/weir/test/chaos/checker"
)

// recorder appends ops to the history, in memory and to history.jsonl as
// they happen (so a run that dies still leaves its history), stamping each
// with one monotonic clock: nanoseconds since the run began.
type recorder struct {
	mu    sync.Mutex
	start time.Time
	ops   checker.History
	f     *os.File
	w     *bufio.Writer
	enc   *json.Encoder
}

func newRecorder(path string, start time.Time) (*recorder, error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	w := bufio.NewWriter(f)
	return &recorder{start: start, f: f, w: w, enc: json.NewEncoder(w)}, nil
}

// now is the run's clock.
func (r *recorder) now() int64 { return int64(time.Since(r.start)) }

// add stamps op with the clock (under the lock, so the file is in time
// order) and records it.
func (r *recorder) add(op checker.Op) checker.Op {
	r.mu.Lock()
	defer r.mu.Unlock()
	op.Time = r.now()
	op.Index = len(r.ops)
	r.ops = append(r.ops, op)
	_ = r.enc.Encode(op)
	return op
}

// history returns a copy of what was recorded so far.
func (r *recorder) history() checker.History {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append(checker.History(nil), r.ops...)
}

func (r *recorder) flush() {
	r.mu.Lock()
	defer r.mu.Unlock()
	_ = r.w.Flush()
}

func (r *recorder) close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.w.Flush(); err != nil {
		return err
	}
	return r.f.Close()
}
