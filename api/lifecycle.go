package api

// Lifecycle paths (DESIGN §4).
const (
	PathShutdown = "/v1/cluster/shutdown" // POST LifecycleRequest -> LifecycleResponse
	PathUpgrade  = "/v1/cluster/upgrade"  // GET ?to=&force= -> UpgradePlan; POST LifecycleRequest -> LifecycleResponse
	PathResume   = "/v1/cluster/resume"   // POST LifecycleRequest -> LifecycleResponse
	PathRollback = "/v1/cluster/rollback" // POST LifecycleRequest -> LifecycleResponse
	PathHistory  = "/v1/cluster/history"  // GET -> HistoryResponse
	PathBackup   = "/v1/cluster/backup"   // GET -> the snapshot stream (application/octet-stream)
)

// LifecycleRequest is the body of every lifecycle POST. RequestID makes a
// retry a no-op; By names who asked (user@host); To and Force are for
// upgrade; GateTimeoutMs is resume's per-node gate timeout; WaitMs bounds how
// long shutdown waits for every voter's acknowledgement.
type LifecycleRequest struct {
	RequestID     string `json:"request_id"`
	By            string `json:"by,omitempty"`
	To            string `json:"to,omitempty"`
	Force         bool   `json:"force,omitempty"`
	GateTimeoutMs int64  `json:"gate_timeout_ms,omitempty"`
	WaitMs        int64  `json:"wait_ms,omitempty"`
}

// LifecycleResponse says what a lifecycle command did. Noop is true when
// nothing changed (a retry, or the cluster was already there); Message says
// which. Shutdown fills Quiesced and Missing (voters that did not
// acknowledge in time).
type LifecycleResponse struct {
	Phase         string   `json:"phase"`
	ActiveVersion string   `json:"active_version"`
	TargetVersion string   `json:"target_version,omitempty"`
	Noop          bool     `json:"noop"`
	Message       string   `json:"message"`
	Quiesced      []string `json:"quiesced,omitempty"`
	Missing       []string `json:"missing,omitempty"`
}

// UpgradePlan is the preflight of `cluster upgrade` (kubeadm's plan is the
// model): what would change, each node's readiness, and every blocker with
// the action that clears it. OK is true when there is no blocker.
type UpgradePlan struct {
	ClusterID     string     `json:"cluster_id"`
	Phase         string     `json:"phase"`
	ActiveVersion string     `json:"active_version"`
	TargetVersion string     `json:"target_version"`
	Force         bool       `json:"force"`
	Nodes         []PlanNode `json:"nodes"`
	Blockers      []Blocker  `json:"blockers"`
	OK            bool       `json:"ok"`
}

// PlanNode is one voter in an upgrade plan.
type PlanNode struct {
	ID            string `json:"id"`
	BinaryVersion string `json:"binary_version"`
	MinCompatible string `json:"min_compatible"` // the oldest active version its binary can run
	Role          string `json:"role"`           // leader | follower
	Health        string `json:"health"`         // gossip state: alive | suspect | dead | unknown
	Ready         bool   `json:"ready"`          // no blocker names this node
}

// Blocker is one reason an upgrade cannot be marked, and what clears it.
type Blocker struct {
	Node    string `json:"node,omitempty"`
	Code    string `json:"code"`
	Message string `json:"message"`
	Hint    string `json:"hint"`
}

// HistoryResponse is GET /v1/cluster/history, oldest first.
type HistoryResponse struct {
	Entries []HistoryEntry `json:"entries"`
}

// HistoryEntry is one applied lifecycle command.
type HistoryEntry struct {
	Index     uint64 `json:"index"`
	Command   string `json:"command"`
	RequestID string `json:"request_id"`
	By        string `json:"by"`
	At        int64  `json:"at"` // Unix ms, the leader's clock
	From      string `json:"from"`
	To        string `json:"to"`
	Detail    string `json:"detail,omitempty"`
}

// Halt is a stopped rolling resume.
type Halt struct {
	Node   string `json:"node"`
	Reason string `json:"reason"`
	At     int64  `json:"at"`
}
