package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/weir-streaming/weir/api"
	"github.com/weir-streaming/weir/node"
)

// Timings of a local cluster's start.
const (
	// clusterReadyTimeout bounds waiting for every node to serve.
	clusterReadyTimeout = 30 * time.Second
	// clusterReadyPoll is how often readiness is checked.
	clusterReadyPoll = 20 * time.Millisecond
	// loopbackAny binds a free loopback port.
	loopbackAny = "127.0.0.1:0"
)

// LocalClusterConfig is a throw-away cluster of in-process nodes.
type LocalClusterConfig struct {
	// Nodes is the cluster size; 0 means 3.
	Nodes int
	// Dir holds the nodes' data directories; empty: a new temporary
	// directory, removed by Close.
	Dir string
	// Logger receives the nodes' logs; nil: errors only, to stderr.
	Logger hclog.Logger
}

// LocalCluster is a Weir cluster of nodes running in this process on
// loopback, with the default (production) Raft timings, fsync on. It serves
// `weir bench --local` and the benchmarks.
type LocalCluster struct {
	nodes  []*node.Node
	dir    string
	ownDir bool
}

// StartLocalCluster starts the nodes with ports picked by the system,
// bootstraps them by gossip (BootstrapExpect), and returns once every node
// serves the API with a leader known.
func StartLocalCluster(ctx context.Context, cfg LocalClusterConfig) (*LocalCluster, error) {
	if cfg.Nodes == 0 {
		cfg.Nodes = 3
	}
	if cfg.Logger == nil {
		cfg.Logger = hclog.New(&hclog.LoggerOptions{Name: "weir", Level: hclog.Error})
	}
	c := &LocalCluster{dir: cfg.Dir}
	if c.dir == "" {
		dir, err := os.MkdirTemp("", "weir-bench-")
		if err != nil {
			return nil, err
		}
		c.dir, c.ownDir = dir, true
	}
	for i := 1; i <= cfg.Nodes; i++ {
		id := fmt.Sprintf("n%d", i)
		ncfg := node.Config{
			ID:              id,
			DataDir:         filepath.Join(c.dir, id),
			APIAddr:         loopbackAny,
			ClusterAddr:     loopbackAny,
			GossipAddr:      loopbackAny,
			BootstrapExpect: cfg.Nodes,
			Logger:          cfg.Logger.Named(id),
		}
		if i > 1 {
			ncfg.Join = []string{c.nodes[0].GossipAddr()}
		}
		n, err := node.New(ncfg)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("start node %s: %w", id, err)
		}
		c.nodes = append(c.nodes, n)
	}
	if err := c.waitServing(ctx); err != nil {
		c.Close()
		return nil, err
	}
	return c, nil
}

// APIAddrs are the nodes' API addresses, in node order.
func (c *LocalCluster) APIAddrs() []string {
	out := make([]string, len(c.nodes))
	for i, n := range c.nodes {
		out[i] = n.APIAddr()
	}
	return out
}

// LeaderAPIAddr is the API address of the node that leads now.
func (c *LocalCluster) LeaderAPIAddr(ctx context.Context) (string, error) {
	h, err := health(ctx, c.nodes[0].APIAddr())
	if err != nil {
		return "", err
	}
	for _, n := range c.nodes {
		if n.ID() == h.Leader {
			return n.APIAddr(), nil
		}
	}
	return "", fmt.Errorf("no node leads (node %s knows of %q)", h.Node, h.Leader)
}

// Close stops every node and removes the data when StartLocalCluster made
// the directory.
func (c *LocalCluster) Close() error {
	var errs []error
	for i := len(c.nodes) - 1; i >= 0; i-- {
		errs = append(errs, c.nodes[i].Close())
	}
	c.nodes = nil
	if c.ownDir {
		errs = append(errs, os.RemoveAll(c.dir))
	}
	return errors.Join(errs...)
}

// waitServing polls each node's health until all serve with a leader.
func (c *LocalCluster) waitServing(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, clusterReadyTimeout)
	defer cancel()
	for {
		ready := true
		for _, n := range c.nodes {
			h, err := health(ctx, n.APIAddr())
			if err != nil || !h.Serving || h.Leader == "" {
				ready = false
				break
			}
		}
		if ready {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("local cluster not serving after %s: %w", clusterReadyTimeout, ctx.Err())
		case <-time.After(clusterReadyPoll):
		}
	}
}

// controlClient serves the few control requests of a local cluster.
var controlClient = newHTTPClient(1)

func health(ctx context.Context, addr string) (api.HealthResponse, error) {
	var h api.HealthResponse
	_, body, err := do(ctx, controlClient, http.MethodGet, "http://"+addr+api.PathHealth, nil, nil)
	if err != nil {
		return h, err
	}
	return h, json.Unmarshal(body, &h)
}
