package chaos

import (
	"context"
	"fmt"
	"math/rand"
	"strings"
	"time"

	"github.com/weir-streaming/weir/api"
	"github.com/weir-streaming/weir/test/chaos/checker"
)

// Lifecycle under faults: data under faults on the old image, then, with
// the clients still running, shutdown → image swap → upgrade → resume, each
// step with a node killed (kill -9, started again) or the leader
// partitioned while it runs; then data under faults on the new version; then
// the usual drain and checks, plus: every node running, active version =
// the target.
const (
	lifecycleProcess = 300000
	stepTimeout      = 4 * time.Minute
	stepFaultHold    = 6 * time.Second
	resumeGateMs     = 60000
	shutdownWaitMs   = 15000
	phasePoll        = time.Second
)

// lifecycleFaults are the faults a lifecycle step draws from.
var lifecycleFaults = []string{FaultKillRandom, FaultKillLeader, FaultPartitionLeader}

// RunLifecycle runs the lifecycle under faults to version target, whose
// image is targetImage. cfg.Duration is the data phase before and after.
func RunLifecycle(ctx context.Context, c *Cluster, cfg Config, target, targetImage string) (*Summary, error) {
	s, err := begin(ctx, c, cfg)
	if err != nil {
		return nil, err
	}
	defer s.close()
	rng := rand.New(rand.NewSource(cfg.Seed + 1))
	pick := func() string {
		var usable []string
		for _, f := range lifecycleFaults {
			if _, skip := s.nem.skipped[f]; !skip {
				usable = append(usable, f)
			}
		}
		return usable[rng.Intn(len(usable))]
	}

	s.logf("lifecycle: data under faults on %s", c.Image)
	s.chaos(ctx, cfg.Duration)

	stop := s.startClients(ctx)
	run := fmt.Sprintf("chaos%d-%d", cfg.Seed, time.Now().UnixNano()%1e6)

	// Shutdown.
	s.step(pick(), "shutdown", func() error {
		return s.lifecycle(api.PathShutdown, api.LifecycleRequest{RequestID: run + "-shutdown", By: "chaos", WaitMs: shutdownWaitMs},
			func(st api.StatusResponse) bool { return st.Phase == "shutdown" })
	})
	if err := s.waitPhase("shutdown", ""); err != nil {
		s.sum.Problems = append(s.sum.Problems, "after shutdown: "+err.Error())
	}

	// Image swap, node by node; the first swap has another node killed.
	s.step(FaultKillRandom, "image swap to "+targetImage, func() error {
		for _, n := range c.Nodes {
			cctx, cancel := context.WithTimeout(context.Background(), composeTimeout)
			err := c.Recreate(cctx, n, targetImage)
			cancel()
			if err != nil {
				return err
			}
			s.nem.event(NemesisEvent{Action: "swap", Fault: "image", Nodes: []string{n.ID}, Detail: targetImage})
		}
		return nil
	})
	// Phase shutdown: nodes are up but not serving; a leader is enough.
	if err := waitCluster(ctx, s.cl, c, healTimeout, false); err != nil {
		s.logf("after the swap: %v", err)
	}

	// Upgrade mark.
	s.step(pick(), "upgrade to "+target, func() error {
		return s.lifecycle(api.PathUpgrade, api.LifecycleRequest{RequestID: run + "-upgrade", By: "chaos", To: target},
			func(st api.StatusResponse) bool { return st.Phase == "upgrade-marked" && st.TargetVersion == target })
	})

	// Rolling resume; a halted roll is resumed again.
	s.step(pick(), "resume", func() error {
		return s.lifecycle(api.PathResume, api.LifecycleRequest{RequestID: run + "-resume", By: "chaos", GateTimeoutMs: resumeGateMs},
			func(st api.StatusResponse) bool { return st.Phase == "resuming" || st.Phase == "running" })
	})
	if err := s.waitPhase("running", target); err != nil {
		s.sum.Problems = append(s.sum.Problems, "after resume: "+err.Error())
	}
	stop()

	s.logf("lifecycle: data under faults on %s", targetImage)
	s.chaos(ctx, cfg.Duration)
	sum := s.finish()
	if err := s.waitPhase("running", target); err != nil {
		sum.Problems = append(sum.Problems, "at the end: "+err.Error())
		sum.Valid = false
		if err := writeJSON(cfg.Dir+"/summary.json", sum); err != nil {
			s.logf("summary.json: %v", err)
		}
	}
	return sum, nil
}

// step runs fn while fault f is on: inject, hold, heal, wait for fn.
func (s *session) step(f, what string, fn func() error) {
	s.logf("lifecycle: %s, with %s during it", what, f)
	done := make(chan error, 1)
	s.nem.inject(context.Background(), f)
	go func() { done <- fn() }()
	timer := time.NewTimer(stepFaultHold)
	var err error
	select {
	case err = <-done:
		<-timer.C // keep the fault for its hold even when the step was quick
		s.nem.heal(f)
	case <-timer.C:
		s.nem.heal(f)
		err = <-done
	}
	if err != nil {
		s.sum.Problems = append(s.sum.Problems, fmt.Sprintf("lifecycle step %s: %v", what, err))
		s.logf("lifecycle: %s failed: %v", what, err)
		return
	}
	s.logf("lifecycle: %s done", what)
}

// lifecycle posts a lifecycle command, recorded in the history, to each
// node in turn with the same request id until it is acknowledged or the
// cluster shows it applied (reached), within stepTimeout.
func (s *session) lifecycle(path string, req api.LifecycleRequest, reached func(api.StatusResponse) bool) error {
	deadline := time.Now().Add(stepTimeout)
	cmd := strings.TrimPrefix(path, "/v1/cluster/")
	inv := checker.Op{Process: lifecycleProcess, Type: checker.Invoke, F: checker.Lifecycle, Value: cmd + " " + req.RequestID}
	s.rec.add(inv)
	var last string
	attempts := 0
	for i := 0; time.Now().Before(deadline); i++ {
		n := s.c.Nodes[i%len(s.c.Nodes)]
		ctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)
		attempts++
		resp, cerr := s.cl.lifecycle(ctx, n.API, path, req)
		cancel()
		if cerr == nil {
			s.logf("lifecycle: %s via %s: phase %s, %s (missing %v)", cmd, n.ID, resp.Phase, resp.Message, resp.Missing)
			s.rec.add(checker.Op{Process: lifecycleProcess, Type: checker.OK, F: checker.Lifecycle, Value: inv.Value, Node: n.ID, Attempts: attempts})
			return nil
		}
		last = cerr.Error()
		if st, ok := s.anyStatus(); ok && reached(st) {
			s.logf("lifecycle: %s answered %s via %s, but the cluster shows it applied (phase %s)", cmd, last, n.ID, st.Phase)
			s.rec.add(checker.Op{Process: lifecycleProcess, Type: checker.OK, F: checker.Lifecycle, Value: inv.Value, Node: n.ID, Attempts: attempts, Error: last})
			return nil
		}
		s.logf("lifecycle: %s via %s: %s; retrying", cmd, n.ID, last)
		sleep(context.Background(), phasePoll)
	}
	s.rec.add(checker.Op{Process: lifecycleProcess, Type: checker.Info, F: checker.Lifecycle, Value: inv.Value, Attempts: attempts, Error: last})
	return fmt.Errorf("%s not acknowledged within %v: %s", cmd, stepTimeout, last)
}

// anyStatus is the status of the first node that answers.
func (s *session) anyStatus() (api.StatusResponse, bool) {
	for _, n := range s.c.Nodes {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		st, err := s.cl.status(ctx, n.API)
		cancel()
		if err == nil {
			return st, true
		}
	}
	return api.StatusResponse{}, false
}

// waitPhase waits until every node reports phase (and, when set, active
// version), resuming a halted roll again.
func (s *session) waitPhase(phase, active string) error {
	deadline := time.Now().Add(stepTimeout)
	again := 0
	for {
		var desc []string
		ok := true
		var halted *api.Halt
		for _, n := range s.c.Nodes {
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			st, err := s.cl.status(ctx, n.API)
			cancel()
			if err != nil {
				ok = false
				desc = append(desc, n.ID+": "+err.Error())
				continue
			}
			desc = append(desc, fmt.Sprintf("%s: %s %s", n.ID, st.Phase, st.ActiveVersion))
			if st.Phase != phase || (active != "" && st.ActiveVersion != active) {
				ok = false
			}
			if st.Halted != nil {
				halted = st.Halted
			}
		}
		if ok {
			s.logf("lifecycle: every node in phase %s %s", phase, active)
			return nil
		}
		if halted != nil && phase == "running" {
			again++
			s.logf("lifecycle: the roll halted at %s (%s); resuming again", halted.Node, halted.Reason)
			_ = s.lifecycle(api.PathResume, api.LifecycleRequest{RequestID: fmt.Sprintf("chaos-resume-again-%d-%d", time.Now().UnixNano(), again), By: "chaos", GateTimeoutMs: resumeGateMs},
				func(st api.StatusResponse) bool { return st.Halted == nil })
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("not every node reached phase %s %s within %v: %s", phase, active, stepTimeout, strings.Join(desc, "; "))
		}
		sleep(context.Background(), phasePoll)
	}
}
