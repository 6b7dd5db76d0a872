package node

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/weir-streaming/weir/transport"
	"github.com/weir-streaming/weir/version"
)

// Defaults for the addresses a node binds and for Raft's timings.
//
// The Raft timings trade failover time against needless elections. A
// follower starts an election once it has heard nothing from the leader for
// HeartbeatTimeout (its timer fires at random in [T, 2T)), and an election
// that fails (the other follower still knows the dead leader, or a split
// vote) waits ElectionTimeout (again [T, 2T)) before the next; so a dead
// leader is replaced within about HeartbeatTimeout..3*HeartbeatTimeout plus
// an occasional ElectionTimeout round. 500 ms keeps writes back within 2 s
// of a leader's kill -9 on a local cluster (docs/performance.md). The cost:
// a leader that cannot send a heartbeat for 500 ms (a GC pause, an fsync
// that stalls on a saturated disk, a starved 2-core machine) loses its
// leadership and the cluster pays an election; the leader steps down itself
// when it has not heard from a quorum for LeaderLeaseTimeout (250 ms). Raise
// them together on slow disks or busy hosts.
const (
	DefaultAPIPort     = 7070
	DefaultClusterPort = 7071
	DefaultGossipPort  = 7072

	DefaultHeartbeatTimeout   = 500 * time.Millisecond
	DefaultElectionTimeout    = 500 * time.Millisecond
	DefaultLeaderLeaseTimeout = 250 * time.Millisecond
	DefaultCommitTimeout      = 50 * time.Millisecond
	// A snapshot every 1024 entries (about 100 MB of 100 KiB produce
	// entries), checked every 2-4 s: what a restart reads again stays
	// near 1024 + 4 s of entries (8192 every 30-60 s let it reach 8000
	// entries, 800 MB, docs/performance.md).
	DefaultSnapshotThreshold = 1024
	DefaultSnapshotInterval  = 2 * time.Second
	// DefaultTrailingLogs entries stay behind a snapshot: about 1 GB of
	// 100 KiB produce entries, a minute of the capacity run's writes.
	DefaultTrailingLogs = 10240
)

// ErrConfig marks a configuration the node refuses to start with.
var ErrConfig = errors.New("invalid node configuration")

// Config is everything a node needs to start. Zero values take defaults.
type Config struct {
	// ID names the node in Raft and gossip; unique per cluster.
	ID string
	// DataDir holds the Raft log, snapshots and the state store.
	DataDir string

	// APIAddr, ClusterAddr and GossipAddr are host:port to bind; a port of
	// 0 picks a free one (tests).
	APIAddr     string
	ClusterAddr string
	GossipAddr  string
	// Advertise is the host other nodes and clients use to reach this node;
	// required when binding 0.0.0.0 or ::. Empty: the bound host.
	Advertise string

	// Join lists gossip addresses of nodes to join.
	Join []string
	// BootstrapExpect is how many nodes form a new cluster. Once that many
	// are seen by gossip and none has Raft state, the lowest id bootstraps.
	// 0 or 1 with no Join: bootstrap a single-node cluster.
	BootstrapExpect int

	// Raft timings; zero takes the defaults above. Tests use 50 ms.
	HeartbeatTimeout   time.Duration
	ElectionTimeout    time.Duration
	LeaderLeaseTimeout time.Duration
	CommitTimeout      time.Duration
	// SnapshotThreshold is how many log entries since the last snapshot
	// trigger a new one, checked every SnapshotInterval (to twice that);
	// TrailingLogs how many stay behind it. A restart reads again every
	// entry after the newest snapshot, so threshold and interval bound
	// it; a snapshot links the record segments (fsm.SnapshotStore), so
	// taking one often is cheap. TrailingLogs is how far a follower may
	// fall behind and still catch up from the log instead of receiving
	// every record in a snapshot.
	SnapshotThreshold uint64
	TrailingLogs      uint64
	SnapshotInterval  time.Duration

	// GossipInterval scales memberlist's timers down for tests; 0 keeps the
	// LAN defaults.
	GossipInterval time.Duration

	// BinaryVersion is the version this node reports and is fenced by;
	// empty takes the binary's own (version.Version). MinCompatible likewise
	// (version.MinCompatible). Tests set them to run mixed versions in one
	// process.
	BinaryVersion string
	MinCompatible string

	// RestoreFrom seeds a node without Raft state from a backup file; see
	// seedFromBackup.
	RestoreFrom string

	// ResumeStabilize is how long a node must stay healthy in a rolling
	// resume before it counts as resumed; 0 takes DefaultResumeStabilize.
	ResumeStabilize time.Duration

	// Faults, when set, routes this node's cluster traffic through a
	// fault-injecting network (in-process tests only).
	Faults *transport.Faults

	// Logger receives the node's logs; nil means stderr at info.
	Logger hclog.Logger
}

func (c *Config) setDefaults() {
	if c.HeartbeatTimeout == 0 {
		c.HeartbeatTimeout = DefaultHeartbeatTimeout
	}
	if c.ElectionTimeout == 0 {
		c.ElectionTimeout = DefaultElectionTimeout
	}
	if c.LeaderLeaseTimeout == 0 {
		c.LeaderLeaseTimeout = DefaultLeaderLeaseTimeout
	}
	if c.CommitTimeout == 0 {
		c.CommitTimeout = DefaultCommitTimeout
	}
	if c.SnapshotThreshold == 0 {
		c.SnapshotThreshold = DefaultSnapshotThreshold
	}
	if c.TrailingLogs == 0 {
		c.TrailingLogs = DefaultTrailingLogs
	}
	if c.SnapshotInterval == 0 {
		c.SnapshotInterval = DefaultSnapshotInterval
	}
	if c.BinaryVersion == "" {
		c.BinaryVersion = version.Version
		c.MinCompatible = version.MinCompatible
	}
	if c.ResumeStabilize == 0 {
		c.ResumeStabilize = DefaultResumeStabilize
	}
	if c.Logger == nil {
		c.Logger = hclog.New(&hclog.LoggerOptions{Name: "weir", Level: hclog.Info})
	}
}

// Validate checks the configuration without side effects other than
// creating the data directory and proving it writable.
func (c *Config) Validate() error {
	if c.ID == "" {
		return fmt.Errorf("%w: --id is required", ErrConfig)
	}
	if c.DataDir == "" {
		return fmt.Errorf("%w: --data-dir is required", ErrConfig)
	}
	for _, a := range []struct{ flag, addr string }{
		{"--api-addr", c.APIAddr}, {"--cluster-addr", c.ClusterAddr}, {"--gossip-addr", c.GossipAddr},
	} {
		host, _, err := net.SplitHostPort(a.addr)
		if err != nil {
			return fmt.Errorf("%w: %s %q is not host:port: %v", ErrConfig, a.flag, a.addr, err)
		}
		if ip := net.ParseIP(host); (host == "" || (ip != nil && ip.IsUnspecified())) && c.Advertise == "" {
			return fmt.Errorf("%w: %s %q binds every interface; set --advertise to the address other nodes can reach", ErrConfig, a.flag, a.addr)
		}
	}
	if c.Advertise != "" && net.ParseIP(c.Advertise) == nil {
		return fmt.Errorf("%w: --advertise %q must be an IP address", ErrConfig, c.Advertise)
	}
	if err := version.Valid(c.BinaryVersion); err != nil {
		return fmt.Errorf("%w: binary version: %v", ErrConfig, err)
	}
	if err := os.MkdirAll(c.DataDir, 0o755); err != nil {
		return fmt.Errorf("%w: --data-dir %q: %v", ErrConfig, c.DataDir, err)
	}
	probe := filepath.Join(c.DataDir, ".write-test")
	if err := os.WriteFile(probe, nil, 0o600); err != nil {
		return fmt.Errorf("%w: --data-dir %q is not writable: %v", ErrConfig, c.DataDir, err)
	}
	_ = os.Remove(probe)
	return nil
}
