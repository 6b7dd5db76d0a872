package fsm

import (
	"errors"
	"fmt"
	"strings"
	"testing"
)

func lc(id string) Lifecycle { return Lifecycle{RequestID: id, By: "test", At: 42} }

func (a *applier) phase() ClusterState {
	a.t.Helper()
	cs, err := a.f.Cluster()
	if err != nil {
		a.t.Fatal(err)
	}
	return cs
}

// step applies a lifecycle command and checks the phase it lands in, or the
// refusal it gets.
func (a *applier) step(t MessageType, cmd any, want Phase, wantErr error) LifecycleResult {
	a.t.Helper()
	res := a.apply(t, cmd)
	if wantErr != nil {
		err, ok := res.(error)
		if !ok || !errors.Is(err, wantErr) {
			a.t.Fatalf("%T: got %#v, want %v", cmd, res, wantErr)
		}
		var fe *Error
		if !errors.As(err, &fe) || fe.Hint == "" {
			a.t.Fatalf("%T: refusal without a hint: %v", cmd, err)
		}
		return LifecycleResult{}
	}
	lr, ok := res.(LifecycleResult)
	if !ok {
		a.t.Fatalf("%T: got %#v", cmd, res)
	}
	if got := a.phase().Phase; got != want {
		a.t.Fatalf("%T: phase %s, want %s", cmd, got, want)
	}
	return lr
}

func TestLifecycle_FullUpgradeFlow(t *testing.T) {
	a := newApplier(t)
	a.step(ShutdownType, ShutdownCommand{lc("s1")}, PhaseShutdown, nil)
	a.step(NodeQuiescedType, NodeQuiescedCommand{lc("q1"), "n1"}, PhaseShutdown, nil)
	a.step(UpgradeMarkType, UpgradeMarkCommand{Lifecycle: lc("u1"), From: "0.1.0", To: "0.2.0"}, PhaseUpgradeMarked, nil)
	a.step(ResumeType, ResumeCommand{Lifecycle: lc("r1"), GateTimeoutMs: 1000}, PhaseResuming, nil)
	a.step(NodeResumedType, NodeResumedCommand{lc("nr1"), "n2"}, PhaseResuming, nil)
	a.step(NodeResumedType, NodeResumedCommand{lc("nr2"), "n1"}, PhaseResuming, nil)
	cs := a.phase()
	if fmt.Sprint(cs.Resumed) != "[n1 n2]" || cs.TargetVersion != "0.2.0" || cs.ActiveVersion != "0.1.0" {
		t.Fatalf("mid-resume state %+v", cs)
	}
	a.step(ResumeCompleteType, ResumeCompleteCommand{lc("rc")}, PhaseRunning, nil)
	cs = a.phase()
	if cs.ActiveVersion != "0.2.0" || cs.TargetVersion != "" || cs.Resumed != nil {
		t.Fatalf("finalized state %+v", cs)
	}
	if len(cs.History) != 7 || cs.History[2].Command != "upgrade" || cs.History[2].From != "shutdown@0.1.0" || cs.History[2].To != "upgrade-marked@0.1.0->0.2.0" {
		t.Fatalf("history %+v", cs.History)
	}
}

func TestLifecycle_Refusals(t *testing.T) {
	a := newApplier(t)
	// running
	a.step(UpgradeMarkType, UpgradeMarkCommand{Lifecycle: lc(""), To: "0.2.0"}, "", ErrWrongPhase)
	a.step(RollbackType, RollbackCommand{lc("")}, "", ErrWrongPhase)
	a.step(NodeResumedType, NodeResumedCommand{lc(""), "n1"}, "", ErrWrongPhase)
	a.step(ResumeCompleteType, ResumeCompleteCommand{lc("")}, "", ErrWrongPhase)
	if r := a.step(ResumeType, ResumeCommand{Lifecycle: lc("")}, PhaseRunning, nil); !r.Noop {
		t.Fatal("resume of a running cluster is not a no-op")
	}
	// shutdown
	a.step(ShutdownType, ShutdownCommand{lc("s")}, PhaseShutdown, nil)
	if r := a.step(ShutdownType, ShutdownCommand{lc("s2")}, PhaseShutdown, nil); !r.Noop {
		t.Fatal("second shutdown is not a no-op")
	}
	a.step(RollbackType, RollbackCommand{lc("")}, "", ErrWrongPhase)
	a.step(ResumeCompleteType, ResumeCompleteCommand{lc("")}, "", ErrWrongPhase)
	// upgrade-marked: same target is a no-op, another needs --force
	a.step(UpgradeMarkType, UpgradeMarkCommand{Lifecycle: lc("u"), To: "0.2.0"}, PhaseUpgradeMarked, nil)
	if r := a.step(UpgradeMarkType, UpgradeMarkCommand{Lifecycle: lc("u2"), To: "0.2.0"}, PhaseUpgradeMarked, nil); !r.Noop {
		t.Fatal("re-mark of the same version is not a no-op")
	}
	a.step(UpgradeMarkType, UpgradeMarkCommand{Lifecycle: lc("u3"), To: "0.3.0"}, "", ErrWrongPhase)
	a.step(UpgradeMarkType, UpgradeMarkCommand{Lifecycle: lc("u4"), To: "0.3.0", Force: true}, PhaseUpgradeMarked, nil)
	a.step(ShutdownType, ShutdownCommand{lc("")}, "", ErrWrongPhase)
	a.step(NodeResumedType, NodeResumedCommand{lc(""), "n1"}, "", ErrWrongPhase)
	if a.phase().TargetVersion != "0.3.0" {
		t.Fatal("forced re-mark did not change the target")
	}
}

func TestLifecycle_ForcedMarkOfRunningCluster(t *testing.T) {
	a := newApplier(t)
	a.step(UpgradeMarkType, UpgradeMarkCommand{Lifecycle: lc("u"), To: "0.2.0", Force: true}, PhaseUpgradeMarked, nil)
	h := a.phase().History
	if h[len(h)-1].Detail != "forced" {
		t.Fatalf("history does not say forced: %+v", h)
	}
}

func TestLifecycle_RequestIDRetryIsNoop(t *testing.T) {
	a := newApplier(t)
	a.step(ShutdownType, ShutdownCommand{lc("same")}, PhaseShutdown, nil)
	a.step(ResumeType, ResumeCommand{Lifecycle: lc("r")}, PhaseResuming, nil)
	// A retry of the shutdown (same id) after the cluster moved on changes nothing.
	r := a.step(ShutdownType, ShutdownCommand{lc("same")}, PhaseResuming, nil)
	if !r.Noop {
		t.Fatal("retried request applied again")
	}
}

func TestLifecycle_RollbackKeepsActiveVersion(t *testing.T) {
	for _, midResume := range []bool{false, true} {
		a := newApplier(t)
		a.step(ShutdownType, ShutdownCommand{lc("s")}, PhaseShutdown, nil)
		a.step(UpgradeMarkType, UpgradeMarkCommand{Lifecycle: lc("u"), To: "0.2.0"}, PhaseUpgradeMarked, nil)
		if midResume {
			a.step(ResumeType, ResumeCommand{Lifecycle: lc("r")}, PhaseResuming, nil)
			a.step(NodeResumedType, NodeResumedCommand{lc("n"), "n2"}, PhaseResuming, nil)
		}
		a.step(RollbackType, RollbackCommand{lc("rb")}, PhaseShutdown, nil)
		cs := a.phase()
		if cs.ActiveVersion != "0.1.0" || cs.TargetVersion != "" || cs.Resumed != nil {
			t.Fatalf("after rollback: %+v", cs)
		}
		// The old version resumes as before.
		a.step(ResumeType, ResumeCommand{Lifecycle: lc("r2")}, PhaseResuming, nil)
		if a.phase().TargetVersion != "0.1.0" {
			t.Fatal("plain resume does not target the active version")
		}
	}
}

func TestLifecycle_HaltAndContinue(t *testing.T) {
	a := newApplier(t)
	a.step(ShutdownType, ShutdownCommand{lc("s")}, PhaseShutdown, nil)
	a.step(ResumeType, ResumeCommand{Lifecycle: lc("r")}, PhaseResuming, nil)
	a.step(ResumeHaltedType, ResumeHaltedCommand{lc("h"), "n3", "not alive in gossip"}, PhaseResuming, nil)
	if h := a.phase().Halted; h == nil || h.Node != "n3" {
		t.Fatalf("halt %+v", h)
	}
	a.step(ResumeType, ResumeCommand{Lifecycle: lc("r2")}, PhaseResuming, nil)
	if a.phase().Halted != nil {
		t.Fatal("resume did not clear the halt")
	}
}

func TestLifecycle_DataPlaneClosed(t *testing.T) {
	a := newApplier(t)
	a.apply(CreateTopicType, CreateTopicCommand{Name: "t", Partitions: 1})
	a.step(ShutdownType, ShutdownCommand{lc("s")}, PhaseShutdown, nil)
	wantKind(t, a.apply(ProduceType, ProduceCommand{Topic: "t", Batches: []PartitionBatch{batch(0, "x")}}), ErrClusterShutDown)
}

func TestLifecycle_HistoryInSnapshot(t *testing.T) {
	a := newApplier(t)
	a.step(ShutdownType, ShutdownCommand{lc("s")}, PhaseShutdown, nil)
	b := newTestFSM(t)
	if err := b.Restore(nopCloser(snapshotBytes(t, a.f))); err != nil {
		t.Fatal(err)
	}
	cs, _ := b.Cluster()
	if cs.Phase != PhaseShutdown || len(cs.History) != 1 || cs.Requests["s"] == 0 {
		t.Fatalf("restored lifecycle %+v", cs)
	}
}

func TestLifecycle_RaceLoserIsToldWhichWon(t *testing.T) {
	a := newApplier(t)
	a.step(ShutdownType, ShutdownCommand{lc("s")}, PhaseShutdown, nil)
	// Two operators mark different targets at once; the log orders them.
	a.step(UpgradeMarkType, UpgradeMarkCommand{Lifecycle: Lifecycle{RequestID: "alice-1", By: "alice"}, To: "0.2.0"}, PhaseUpgradeMarked, nil)
	res := a.apply(UpgradeMarkType, UpgradeMarkCommand{Lifecycle: Lifecycle{RequestID: "bob-1", By: "bob"}, To: "0.2.1"})
	err, ok := res.(error)
	if !ok || !errors.Is(err, ErrWrongPhase) || !strings.Contains(err.Error(), "alice") || !strings.Contains(err.Error(), "alice-1") {
		t.Fatalf("loser got %v", res)
	}
	// A second shutdown is a no-op that names the last change.
	b := newApplier(t)
	b.step(ShutdownType, ShutdownCommand{Lifecycle{RequestID: "first", By: "carol"}}, PhaseShutdown, nil)
	r := b.step(ShutdownType, ShutdownCommand{lc("second")}, PhaseShutdown, nil)
	if !r.Noop || !strings.Contains(r.Message, "carol") {
		t.Fatalf("second shutdown: %+v", r)
	}
}
