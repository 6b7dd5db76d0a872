package cli

import (
	"context"
	"errors"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/hashicorp/go-hclog"

	"github.com/weir-streaming/weir/api"
	"github.com/weir-streaming/weir/node"
)

// healthTimeout bounds `weir node health`: a health check answers at once
// or counts as failed.
const healthTimeout = 5 * time.Second

// NodeCmd is `weir node`.
type NodeCmd struct {
	Run    NodeRunCmd    `cmd:"" help:"Run a node in the foreground until SIGINT or SIGTERM."`
	List   NodeListCmd   `cmd:"" help:"List the cluster's nodes as the answering node sees them."`
	Health NodeHealthCmd `cmd:"" help:"Check the node at the first --addr; exit 0 when its API answers healthy."`
}

// NodeRunCmd is `weir node run`. The node validates its own configuration;
// a refusal prints why and exits 1.
type NodeRunCmd struct {
	ID               string   `help:"Id of the node, unique in its cluster."`
	DataDir          string   `help:"Directory for the node's Raft log, snapshots and state." type:"path" placeholder:"DIR"`
	APIAddr          string   `help:"host:port to serve the HTTP API on." default:"${api_addr}"`
	ClusterAddr      string   `help:"host:port for Raft and node-to-node calls." default:"${cluster_addr}"`
	GossipAddr       string   `help:"host:port for gossip (TCP and UDP)." default:"${gossip_addr}"`
	Advertise        string   `help:"IP address other nodes and clients reach this node at; needed when binding 0.0.0.0." placeholder:"IP"`
	Join             []string `help:"Gossip addresses of nodes to join, comma-separated." placeholder:"HOST:PORT"`
	BootstrapExpect  int      `help:"Number of nodes that form a new cluster; the lowest id bootstraps once that many are seen." placeholder:"N"`
	RestoreFrom      string   `help:"Seed this node, which must have no Raft state yet, from a backup file (\"weir cluster backup\"): it starts as a one-voter cluster holding the backup's state, and nodes that join it empty receive that state." type:"path" placeholder:"FILE"`
	RaftTrailingLogs uint64   `help:"Raft log entries kept behind each snapshot (default ${trailing_logs}): how far a follower may fall behind and still catch up from the log instead of receiving every record in a snapshot. The log's file, and the node's mapped memory, grow with it (docs/performance.md, Capacity)." env:"WEIR_RAFT_TRAILING_LOGS" placeholder:"N"`
}

// Run starts the node and stops it gracefully on SIGINT or SIGTERM; a
// second signal ends the process at once.
func (c *NodeRunCmd) Run(g *Globals, s *Streams) error {
	logger := hclog.New(&hclog.LoggerOptions{
		Name:       "weir",
		Level:      hclog.LevelFromString(g.LogLevel),
		Output:     s.Err,
		JSONFormat: g.JSON(),
	})
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	n, err := node.New(node.Config{
		ID:              c.ID,
		DataDir:         c.DataDir,
		APIAddr:         c.APIAddr,
		ClusterAddr:     c.ClusterAddr,
		GossipAddr:      c.GossipAddr,
		Advertise:       c.Advertise,
		Join:            c.Join,
		BootstrapExpect: c.BootstrapExpect,
		RestoreFrom:     c.RestoreFrom,
		TrailingLogs:    c.RaftTrailingLogs,
		Logger:          logger,
	})
	if errors.Is(err, node.ErrConfig) {
		return &Failure{Message: err.Error(), Hint: `"weir node run --help" lists the flags`}
	}
	if errors.Is(err, node.ErrRestore) {
		return &Failure{Message: err.Error(), Hint: "restore into a node with an empty --data-dir, from an intact backup file of the same cluster"}
	}
	if err != nil {
		return err
	}
	<-ctx.Done()
	stop() // a second signal kills the process
	logger.Info("stopping on signal")
	return n.Close()
}

// NodeListCmd is `weir node list`.
type NodeListCmd struct{}

// Run prints the nodes.
func (c *NodeListCmd) Run(cl *Client, p *Printer) error {
	var nodes []api.NodeStatus
	resp, err := cl.GetJSON(context.Background(), api.PathNodes, &nodes)
	if err != nil {
		return err
	}
	if p.json {
		return p.Raw(resp.Body)
	}
	rows := make([][]string, 0, len(nodes))
	for _, n := range nodes {
		rows = append(rows, []string{
			n.ID, orDash(n.BinaryVersion), orDash(n.RaftState), orDash(n.RaftSuffrage), orDash(n.GossipState),
			yesNo(n.Serving), strconv.FormatUint(n.AppliedIndex, 10), orDash(n.APIAddr), orDash(n.ClusterAddr), orDash(n.GossipAddr),
		})
	}
	p.Table([]string{"NODE", "BINARY", "RAFT", "SUFFRAGE", "GOSSIP", "SERVING", "APPLIED", "API", "CLUSTER", "GOSSIP ADDR"}, rows)
	return nil
}

// NodeHealthCmd is `weir node health`, the container health check.
type NodeHealthCmd struct{}

// Run asks the first address only: the check is about that node, not about
// whether some node of the cluster answers.
func (c *NodeHealthCmd) Run(g *Globals, p *Printer) error {
	addrs, _, err := g.addrs()
	if err != nil {
		return err
	}
	cl, err := NewClient(addrs[:1])
	if err != nil {
		return err
	}
	resp, err := cl.Do(context.Background(), Request{Method: "GET", Path: api.PathHealth, Timeout: healthTimeout})
	if err != nil {
		return err
	}
	if p.json {
		return p.Raw(resp.Body)
	}
	var h api.HealthResponse
	if err := decodeJSON(resp, &h); err != nil {
		return err
	}
	state := "serving"
	if !h.Serving {
		state = "control plane up, not serving"
	}
	p.Linef("%s: %s (raft %s, leader %s, applied %d)", h.Node, state, orDash(h.RaftState), orDash(h.Leader), h.AppliedIndex)
	return nil
}
