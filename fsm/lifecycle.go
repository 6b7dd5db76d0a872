package fsm

import (
	bolt "go.etcd.io/bbolt"
)

// Phase is the cluster's lifecycle phase (DESIGN §4).
type Phase string

// The phases. A cluster is "running" from its Init entry on.
const (
	PhaseNone          Phase = ""               // before Init: no cluster yet
	PhaseRunning       Phase = "running"        // data plane open
	PhaseShutdown      Phase = "shutdown"       // data plane closed everywhere
	PhaseUpgradeMarked Phase = "upgrade-marked" // closed; target version recorded
	PhaseResuming      Phase = "resuming"       // open on the nodes that resumed
)

// DataPlaneOpen says whether produce and consume are served in phase p.
func (p Phase) DataPlaneOpen() bool {
	return p == PhaseRunning || p == PhaseResuming
}

// ClusterState is the cluster-wide lifecycle state, replicated with
// everything else.
type ClusterState struct {
	ClusterID     string
	Phase         Phase
	ActiveVersion string
	TargetVersion string
	CreatedBy     string
	CreatedAt     int64
}

// Cluster returns the lifecycle state as of the last applied entry.
func (f *FSM) Cluster() (ClusterState, error) {
	var cs ClusterState
	err := f.view(func(tx *bolt.Tx) error {
		cs = readCluster(tx)
		return nil
	})
	return cs, err
}

func readCluster(tx *bolt.Tx) ClusterState {
	var cs ClusterState
	v := tx.Bucket(bucketMeta).Get(keyCluster)
	if v == nil {
		return cs
	}
	if err := decode(v, &cs); err != nil {
		panic("fsm: corrupt cluster state: " + err.Error())
	}
	return cs
}

func writeCluster(tx *bolt.Tx, cs ClusterState) {
	buf, err := Encode(0, cs)
	if err != nil {
		panic(err)
	}
	if err := tx.Bucket(bucketMeta).Put(keyCluster, buf[1:]); err != nil {
		panic(err)
	}
}

// applyInit records the cluster id and the first active version. Only the
// first Init counts; any later one (a new leader racing) is a no-op.
func applyInit(tx *bolt.Tx, body []byte) interface{} {
	var cmd InitCommand
	mustDecode(body, &cmd)
	cs := readCluster(tx)
	if cs.ClusterID != "" {
		return nil
	}
	writeCluster(tx, ClusterState{
		ClusterID:     cmd.ClusterID,
		Phase:         PhaseRunning,
		ActiveVersion: cmd.Version,
		CreatedBy:     cmd.By,
		CreatedAt:     cmd.At,
	})
	return nil
}

// dataPlaneCheck refuses data commands while the phase keeps the data plane
// closed.
func dataPlaneCheck(tx *bolt.Tx) error {
	cs := readCluster(tx)
	if cs.Phase == PhaseNone || cs.Phase.DataPlaneOpen() {
		return nil
	}
	return reject(ErrClusterShutDown, `run "weir cluster resume" to open it again`,
		"the cluster is in phase %s: produce and consume are closed", cs.Phase)
}

func mustDecode(body []byte, out any) {
	if err := decode(body, out); err != nil {
		panic("fsm: malformed command: " + err.Error())
	}
}
