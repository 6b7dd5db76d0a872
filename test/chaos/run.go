package chaos

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/weir-streaming/weir/api"
	"github.com/weir-streaming/weir/test/chaos/checker"
)

// Config is one chaos run.
type Config struct {
	Seed       int64
	Duration   time.Duration // of the workload under faults
	Faults     []string      // the mix the nemesis draws from
	Topic      string
	Partitions int
	Producers  int
	Consumers  int

	OpTimeout      time.Duration
	AttemptTimeout time.Duration
	Think          time.Duration
	// HoldMin..HoldMax is how long a fault lasts, QuietMin..QuietMax the
	// healthy time between faults.
	HoldMin, HoldMax   time.Duration
	QuietMin, QuietMax time.Duration

	// Dir receives the run's artifacts.
	Dir string
	// Test names the Go test that runs it, for the reproduce line.
	Test string
	// Allow lists anomaly kinds (checker.Kind*) that are reported but do
	// not make the run invalid: known, filed bugs while a fix is pending.
	Allow []string
	Logf  func(format string, args ...any)
}

// Defaults of Config.
const (
	defaultPartitions     = 3
	defaultProducers      = 5
	defaultConsumers      = 2
	defaultOpTimeout      = 20 * time.Second
	defaultAttemptTimeout = 5 * time.Second
	defaultThink          = 10 * time.Millisecond
	readMaxRecords        = 20
	strongReadRatio       = 0.8

	readyTimeout   = 90 * time.Second
	healTimeout    = 90 * time.Second
	drainTimeout   = 60 * time.Second
	convergeWait   = 60 * time.Second
	pollEvery      = 500 * time.Millisecond
	drainPage      = 1000
	nodeReadMax    = api.MaxConsumeMaxRecords
	linearWindow   = checker.DefaultWindowOps
	linearTimeout  = 3 * time.Minute
	maxAnomaliesIn = 50 // anomalies copied into summary.json (all are in anomalies.json)
)

// FaultStats are the produce outcomes of ops invoked while a fault was on.
type FaultStats struct {
	Injected int `json:"injected"`
	OK       int `json:"ok"`
	Fail     int `json:"fail"`
	Info     int `json:"info"`
}

// Summary is summary.json.
type Summary struct {
	Valid      bool                       `json:"valid"`
	Test       string                     `json:"test,omitempty"`
	StartedAt  string                     `json:"started_at"` // UTC wall clock at history time 0
	Allowed    []string                   `json:"allowed_kinds,omitempty"`
	Seed       int64                      `json:"seed"`
	Nodes      int                        `json:"nodes"`
	Image      string                     `json:"image"`
	Faults     []string                   `json:"faults"`
	Skipped    map[string]string          `json:"skipped_faults,omitempty"`
	Duration   string                     `json:"duration"`
	Wall       string                     `json:"wall"`
	Counts     map[string]*checker.Counts `json:"counts"`
	Acked      int                        `json:"acked"`
	Read       int                        `json:"read"`
	Lost       []string                   `json:"lost"`
	Duplicated []string                   `json:"duplicated"`
	ByKind     map[string]int             `json:"anomalies_by_kind"`
	Anomalies  []checker.Anomaly          `json:"anomalies"`
	Linear     []checker.LinearResult     `json:"linearizability"`
	PerFault   map[string]*FaultStats     `json:"per_fault"`
	Retired    int                        `json:"retired_producers"`
	NodeHash   map[string]string          `json:"node_hash,omitempty"`
	Problems   []string                   `json:"problems,omitempty"` // harness-level failures (stuck cluster, incomplete drain)
	Dir        string                     `json:"dir"`
}

// Failure is a one-paragraph explanation of an invalid run and where to look.
func (s *Summary) Failure() string {
	var b strings.Builder
	fmt.Fprintf(&b, "chaos run seed %d is not valid; artifacts in %s\n", s.Seed, s.Dir)
	for _, p := range s.Problems {
		fmt.Fprintf(&b, "  problem: %s\n", p)
	}
	for k, n := range s.ByKind {
		fmt.Fprintf(&b, "  %d × %s\n", n, k)
	}
	for i, a := range s.Anomalies {
		if i == 10 {
			fmt.Fprintf(&b, "  ... (all in anomalies.json)\n")
			break
		}
		fmt.Fprintf(&b, "  %s\n", a)
	}
	for _, l := range s.Linear {
		if l.Result != "Ok" {
			fmt.Fprintf(&b, "  linearizability of partition %d: %s in %d of %d windows %s (see %s)\n", l.Partition, l.Result, len(l.Illegal), l.Windows, l.Detail, l.HTML)
			if len(l.Illegal) > 0 {
				w := l.Illegal[0]
				fmt.Fprintf(&b, "    first illegal window %d: history ops %d..%d\n", w.Index, w.Ops[0], w.Ops[len(w.Ops)-1])
				for _, d := range w.Linearized {
					fmt.Fprintf(&b, "      linearized ... %s\n", d)
				}
				for _, d := range w.Stuck {
					fmt.Fprintf(&b, "      cannot place %s\n", d)
				}
			}
		}
	}
	fmt.Fprintf(&b, "  look at: summary.json, anomalies.json, history.jsonl (op indexes above), nemesis.jsonl, node-*.log, linearizability-p*.html\n")
	test, env := s.Test, ""
	switch test {
	case "":
		test = "TestChaos_Short"
	case "TestChaos_Long":
		env = "WEIR_CHAOS_LONG=1 "
	case "TestChaos_Lifecycle":
		env = "WEIR_CHAOS_LIFECYCLE=1 "
	}
	fmt.Fprintf(&b, "  reproduce: %sWEIR_CHAOS_SEED=%d WEIR_CHAOS_NODES=%d WEIR_CHAOS_FAULTS=%s WEIR_CHAOS_DURATION=%s go test -count=1 -run '^%s$' ./test/chaos/",
		env, s.Seed, s.Nodes, strings.Join(s.Faults, ","), s.Duration, test)
	return b.String()
}

func (cfg *Config) setDefaults() {
	if cfg.Topic == "" {
		cfg.Topic = "chaos"
	}
	if cfg.Partitions == 0 {
		cfg.Partitions = defaultPartitions
	}
	if cfg.Producers == 0 {
		cfg.Producers = defaultProducers
	}
	if cfg.Consumers == 0 {
		cfg.Consumers = defaultConsumers
	}
	if cfg.OpTimeout == 0 {
		cfg.OpTimeout = defaultOpTimeout
	}
	if cfg.AttemptTimeout == 0 {
		cfg.AttemptTimeout = defaultAttemptTimeout
	}
	if cfg.Think == 0 {
		cfg.Think = defaultThink
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
}

// session is one run's state: the history, the clients, the nemesis.
type session struct {
	c         *Cluster
	cfg       Config
	sum       *Summary
	rec       *recorder
	cl        *client
	nem       *nemesis
	w         *workload
	wallStart time.Time
	logf      func(string, ...any)
}

// Run is one chaos run on a cluster that Up started: workload and nemesis
// for cfg.Duration, heal, drain, per-node reads, checks, artifacts. The
// caller tears the cluster down. The error is for harness failures before
// any history exists; an invalid history comes back as Summary.Valid false.
func Run(ctx context.Context, c *Cluster, cfg Config) (*Summary, error) {
	s, err := begin(ctx, c, cfg)
	if err != nil {
		return nil, err
	}
	defer s.close()
	s.chaos(ctx, s.cfg.Duration)
	return s.finish(), nil
}

// begin waits for the cluster, creates the topic and sets up recorder,
// nemesis (probing which faults this host can make) and workload.
func begin(ctx context.Context, c *Cluster, cfg Config) (*session, error) {
	cfg.setDefaults()
	s := &session{c: c, cfg: cfg, wallStart: time.Now(), cl: newClient(), logf: cfg.Logf,
		sum: &Summary{Test: cfg.Test, Seed: cfg.Seed, Nodes: len(c.Nodes), Image: c.Image, Faults: cfg.Faults, Dir: cfg.Dir, PerFault: map[string]*FaultStats{}}}
	var err error
	t0 := time.Now()
	if s.rec, err = newRecorder(filepath.Join(cfg.Dir, "history.jsonl"), t0); err != nil {
		return nil, err
	}
	s.sum.StartedAt = t0.UTC().Format(time.RFC3339Nano)
	if err := waitReady(ctx, s.cl, c, readyTimeout); err != nil {
		s.rec.close()
		return nil, fmt.Errorf("cluster not ready: %w", err)
	}
	if err := createTopic(ctx, s.cl, c, cfg.Topic, cfg.Partitions); err != nil {
		s.rec.close()
		return nil, err
	}
	s.logf("cluster ready, topic %q with %d partitions; seed %d, faults %v", cfg.Topic, cfg.Partitions, cfg.Seed, cfg.Faults)
	if s.nem, err = newNemesis(c, s.cl, s.rec, cfg.Seed, cfg.Faults, filepath.Join(cfg.Dir, "nemesis.jsonl"), s.logf); err != nil {
		s.rec.close()
		return nil, err
	}
	if cfg.HoldMax > 0 {
		s.nem.holdMin, s.nem.holdMax = cfg.HoldMin, cfg.HoldMax
	}
	if cfg.QuietMax > 0 {
		s.nem.quietMin, s.nem.quietMax = cfg.QuietMin, cfg.QuietMax
	}
	s.nem.probe(ctx)
	s.sum.Skipped = s.nem.skipped
	s.w = &workload{cl: s.cl, rec: s.rec, nodes: c.Nodes, topic: cfg.Topic, partitions: cfg.Partitions, producers: cfg.Producers,
		consumers: cfg.Consumers, runID: fmt.Sprintf("chaos%d-%d", cfg.Seed, s.wallStart.UnixNano()%1e6), seed: cfg.Seed,
		opTimeout: cfg.OpTimeout, attemptTimeout: cfg.AttemptTimeout, think: cfg.Think, readMax: readMaxRecords, strongRatio: strongReadRatio}
	return s, nil
}

func (s *session) close() {
	s.nem.close()
	s.rec.close()
}

// startClients runs producers and consumers until stop is called; stop
// returns once every op in flight has completed.
func (s *session) startClients(ctx context.Context) (stop func()) {
	wctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	s.w.runProducers(wctx, &wg)
	s.w.runConsumers(wctx, &wg)
	return func() {
		cancel()
		wg.Wait()
		s.rec.flush()
	}
}

// chaos runs the clients and the nemesis for d, then heals everything and
// lets the clients finish their ops in flight.
func (s *session) chaos(ctx context.Context, d time.Duration) {
	start := time.Now()
	stop := s.startClients(ctx)
	nctx, cancel := context.WithTimeout(ctx, d)
	s.nem.run(nctx)
	cancel()
	s.nem.healAll()
	stop()
	s.logf("workload and faults done after %v; healed", time.Since(start).Round(time.Second))
}

// finish waits for the healed cluster, drains, reads every node, runs the
// checkers and writes summary.json and anomalies.json.
func (s *session) finish() *Summary {
	sum, cfg := s.sum, s.cfg
	sum.Retired = s.w.retired
	if err := waitReady(context.Background(), s.cl, s.c, healTimeout); err != nil {
		sum.Problems = append(sum.Problems, fmt.Sprintf("cluster did not recover within %v after the faults were healed: %v", healTimeout, err))
	}
	drain(s.cl, s.c, s.w, s.rec, sum, s.logf)
	readNodes(s.cl, s.c, cfg, s.rec, sum, s.logf)
	s.rec.flush()

	h := s.rec.history()
	res := checker.Check(h)
	lin, err := checker.CheckLinearizable(h, checker.LinearOptions{WindowOps: linearWindow, Timeout: linearTimeout, VisualizeDir: cfg.Dir})
	if err != nil {
		sum.Problems = append(sum.Problems, "linearizability: "+err.Error())
	}
	sum.Linear = lin
	sum.Counts = map[string]*checker.Counts{}
	for f, n := range res.Counts {
		sum.Counts[string(f)] = n
	}
	sum.Acked, sum.Read, sum.Lost, sum.Duplicated = res.Acked, res.Read, res.Lost, res.Duplicate
	sum.ByKind, sum.NodeHash = res.ByKind, res.NodeHash
	sum.Anomalies = res.Anomalies
	if len(sum.Anomalies) > maxAnomaliesIn {
		sum.Anomalies = sum.Anomalies[:maxAnomaliesIn]
	}
	allowed := map[string]bool{}
	for _, k := range cfg.Allow {
		allowed[k] = true
	}
	sum.Allowed = cfg.Allow
	valid := len(sum.Problems) == 0
	for k, n := range res.ByKind {
		if n > 0 && !allowed[k] {
			valid = false
		}
	}
	for _, l := range lin {
		if l.Result != "Ok" && !(l.Result == "Illegal" && allowed[checker.KindNotLinearizable]) {
			valid = false
		}
	}
	perFault(h, s.nem, sum)
	sum.Valid = valid
	sum.Duration = cfg.Duration.String()
	sum.Wall = time.Since(s.wallStart).Round(time.Second).String()
	if err := writeJSON(filepath.Join(cfg.Dir, "anomalies.json"), res.Anomalies); err != nil {
		s.logf("anomalies.json: %v", err)
	}
	if err := writeJSON(filepath.Join(cfg.Dir, "summary.json"), sum); err != nil {
		s.logf("summary.json: %v", err)
	}
	return sum
}

// waitReady waits for a leader that every node names and every node
// serving.
func waitReady(ctx context.Context, cl *client, c *Cluster, timeout time.Duration) error {
	return waitCluster(ctx, cl, c, timeout, true)
}

// waitCluster waits for a leader that every node names and, when serving
// is set, every node's data plane open (not so in phase shutdown).
func waitCluster(ctx context.Context, cl *client, c *Cluster, timeout time.Duration, needServing bool) error {
	deadline := time.Now().Add(timeout)
	last := ""
	for {
		leaders := map[string]bool{}
		serving := 0
		var notes []string
		for _, n := range c.Nodes {
			rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
			st, err := cl.status(rctx, n.API)
			cancel()
			if err != nil {
				notes = append(notes, n.ID+": "+err.Error())
				continue
			}
			leaders[st.Leader] = true
			for _, ns := range st.Nodes {
				if ns.ID == n.ID && ns.Serving {
					serving++
				}
			}
		}
		if (serving == len(c.Nodes) || (!needServing && len(notes) == 0)) && len(leaders) == 1 && !leaders[""] {
			return nil
		}
		last = fmt.Sprintf("%d of %d nodes serving, leaders named %v; %s", serving, len(c.Nodes), keys(leaders), strings.Join(notes, "; "))
		if time.Now().After(deadline) {
			return errors.New(last)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (%s)", ctx.Err(), last)
		case <-time.After(pollEvery):
		}
	}
}

func keys(m map[string]bool) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

func createTopic(ctx context.Context, cl *client, c *Cluster, topic string, partitions int) error {
	deadline := time.Now().Add(readyTimeout)
	for i := 0; ; i++ {
		rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := cl.createTopic(rctx, c.Nodes[i%len(c.Nodes)].API, topic, partitions)
		cancel()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) || !err.retryable() {
			return fmt.Errorf("create topic %s: %w", topic, err)
		}
		sleep(ctx, pollEvery)
	}
}

// drain reads every partition with strong reads from offset 0 to the end,
// recorded like any consume, until every acknowledged value was read or
// drainTimeout passes.
func drain(cl *client, c *Cluster, w *workload, rec *recorder, sum *Summary, logf func(string, ...any)) {
	acked := map[string]bool{}
	for _, op := range rec.history() {
		if op.F == checker.Produce && op.Type == checker.OK {
			acked[op.Value] = true
		}
	}
	deadline := time.Now().Add(drainTimeout)
	for round := 0; ; round++ {
		seen := map[string]bool{}
		for p := 0; p < w.partitions; p++ {
			from := int64(0)
			for attempt := 0; attempt < 3*len(c.Nodes); {
				node := c.Nodes[(p+round+attempt)%len(c.Nodes)]
				op := w.read(drainProcess, node, p, from, drainPage, true)
				if op.Type != checker.OK {
					attempt++ // that node cannot serve a strong read now: the next one
					continue
				}
				if op.OutOfRange || len(op.Records) == 0 {
					break
				}
				for _, r := range op.Records {
					seen[r.Value] = true
				}
				from = op.Records[len(op.Records)-1].Offset + 1
			}
		}
		missing := 0
		for v := range acked {
			if !seen[v] {
				missing++
			}
		}
		if missing == 0 {
			logf("drain: all %d acknowledged values read (round %d)", len(acked), round)
			return
		}
		if time.Now().After(deadline) {
			sum.Problems = append(sum.Problems, fmt.Sprintf("drain: %d of %d acknowledged values still unread after %v", missing, len(acked), drainTimeout))
			return
		}
		logf("drain: %d of %d acknowledged values not read yet; again", missing, len(acked))
		sleep(context.Background(), time.Second)
	}
}

// readNodes waits until every node reports the same extent for every
// partition, then reads each node's whole copy from that node's own API
// (local reads) and its lifecycle history, into the history.
func readNodes(cl *client, c *Cluster, cfg Config, rec *recorder, sum *Summary, logf func(string, ...any)) {
	deadline := time.Now().Add(convergeWait)
	for {
		ends := map[string]bool{}
		var desc []string
		ok := true
		for _, n := range c.Nodes {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			t, err := cl.topic(ctx, n.API, cfg.Topic)
			cancel()
			if err != nil {
				ok = false
				desc = append(desc, n.ID+": "+err.Error())
				continue
			}
			var hws []string
			for _, p := range t.Partitions {
				hws = append(hws, fmt.Sprint(p.HighWatermark))
			}
			ends[strings.Join(hws, ",")] = true
			desc = append(desc, n.ID+": "+strings.Join(hws, ","))
		}
		if ok && len(ends) == 1 {
			logf("nodes agree on the partition ends: %s", strings.Join(desc, "; "))
			break
		}
		if time.Now().After(deadline) {
			sum.Problems = append(sum.Problems, fmt.Sprintf("nodes did not converge within %v: %s", convergeWait, strings.Join(desc, "; ")))
			break
		}
		sleep(context.Background(), pollEvery)
	}
	for _, n := range c.Nodes {
		for p := 0; p < cfg.Partitions; p++ {
			op := checker.Op{Process: nodeProcess, F: checker.NodeRead, Node: n.ID, Partition: p}
			var recs []checker.Record
			var hw *int64
			from := int64(0)
			var failed string
			for {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				res, err := cl.consume(ctx, n.API, cfg.Topic, p, from, nodeReadMax, false)
				cancel()
				if err != nil {
					failed = err.Error()
					break
				}
				hw = res.hw
				if res.outOfRange || len(res.records) == 0 {
					break
				}
				for _, r := range res.records {
					recs = append(recs, checker.Record{Offset: int64(r.Offset), Value: r.Value})
				}
				from = int64(res.records[len(res.records)-1].Offset) + 1
			}
			if failed != "" {
				op.Type, op.Error = checker.Fail, failed
				sum.Problems = append(sum.Problems, fmt.Sprintf("reading partition %d on %s: %s", p, n.ID, failed))
			} else {
				op.Type, op.Records, op.HighWatermark = checker.OK, recs, hw
			}
			rec.add(op)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		hist, err := cl.history(ctx, n.API)
		cancel()
		op := checker.Op{Process: nodeProcess, F: checker.LifecycleHistory, Node: n.ID}
		if err != nil {
			op.Type, op.Error = checker.Fail, err.Error()
			sum.Problems = append(sum.Problems, fmt.Sprintf("lifecycle history of %s: %s", n.ID, err))
		} else {
			op.Type = checker.OK
			op.Lifecycle = []checker.LifecycleEntry{}
			for _, e := range hist.Entries {
				op.Lifecycle = append(op.Lifecycle, checker.LifecycleEntry{Index: e.Index, Command: e.Command, RequestID: e.RequestID, From: e.From, To: e.To})
			}
		}
		rec.add(op)
	}
}

// perFault attributes each produce to the fault active at its invocation.
func perFault(h checker.History, nem *nemesis, sum *Summary) {
	for f, n := range nem.injected {
		sum.PerFault[f] = &FaultStats{Injected: n}
	}
	pairs, err := checker.Pair(h)
	if err != nil {
		return
	}
	for _, p := range pairs {
		if p.F != checker.Produce {
			continue
		}
		f := nem.activeAt(p.Call)
		st := sum.PerFault[f]
		if st == nil {
			st = &FaultStats{}
			sum.PerFault[f] = st
		}
		switch p.Type {
		case checker.OK:
			st.OK++
		case checker.Fail:
			st.Fail++
		default:
			st.Info++
		}
	}
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
