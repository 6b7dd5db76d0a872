package node

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"strconv"
	"sync"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/memberlist"
)

// gossipMetaVersion is the first byte of a node's gossip meta. A node skips a
// peer whose meta has a version it does not know (and says so in its log).
const gossipMetaVersion = 1

// ErrWrongCluster means a peer (or this node) belongs to another cluster.
var ErrWrongCluster = errors.New("node belongs to another cluster")

// Meta is what each node tells the others by gossip. It must encode to at
// most memberlist.MetaMaxSize (512) bytes.
type Meta struct {
	ID            string
	ClusterID     string
	Version       string // binary version
	ClusterAddr   string
	APIAddr       string
	Serving       bool
	HasState      bool // has Raft state: never bootstraps again
	AppliedIndex  uint64
	RaftState     string
	MinCompatible string // the oldest active version this binary can run
	StorageOK     bool
}

var metaHandle = &codec.MsgpackHandle{}

// EncodeMeta encodes m with its version byte and checks the size limit.
func EncodeMeta(m Meta) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteByte(gossipMetaVersion)
	if err := codec.NewEncoder(&buf, metaHandle).Encode(m); err != nil {
		return nil, err
	}
	if buf.Len() > memberlist.MetaMaxSize {
		return nil, fmt.Errorf("gossip meta is %d bytes, the limit is %d", buf.Len(), memberlist.MetaMaxSize)
	}
	return buf.Bytes(), nil
}

// DecodeMeta decodes a peer's meta.
func DecodeMeta(b []byte) (Meta, error) {
	var m Meta
	if len(b) == 0 {
		return m, errors.New("empty gossip meta")
	}
	if b[0] != gossipMetaVersion {
		return m, fmt.Errorf("gossip meta version %d unknown (this binary reads %d)", b[0], gossipMetaVersion)
	}
	if err := codec.NewDecoderBytes(b[1:], metaHandle).Decode(&m); err != nil {
		return m, fmt.Errorf("gossip meta: %w", err)
	}
	return m, nil
}

// gossip wires memberlist's delegates to the node.
type gossip struct {
	n *Node

	mu       sync.Mutex
	meta     []byte
	mismatch error // set when a peer from another cluster was refused
}

func (g *gossip) NodeMeta(limit int) []byte {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.meta
}

func (g *gossip) setMeta(m Meta) (changed bool, err error) {
	b, err := EncodeMeta(m)
	if err != nil {
		return false, err
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	changed = !bytes.Equal(b, g.meta)
	g.meta = b
	return changed, nil
}

func (g *gossip) NotifyMsg([]byte)                           {}
func (g *gossip) GetBroadcasts(overhead, limit int) [][]byte { return nil }
func (g *gossip) LocalState(join bool) []byte                { return nil }
func (g *gossip) MergeRemoteState(buf []byte, join bool)     {}

// NotifyMerge refuses to merge with nodes of another cluster.
func (g *gossip) NotifyMerge(peers []*memberlist.Node) error {
	for _, p := range peers {
		if err := g.checkPeer(p); err != nil {
			return err
		}
	}
	return nil
}

// NotifyAlive refuses a single peer of another cluster.
func (g *gossip) NotifyAlive(p *memberlist.Node) error { return g.checkPeer(p) }

func (g *gossip) checkPeer(p *memberlist.Node) error {
	if p.Name == g.n.cfg.ID {
		return nil
	}
	m, err := DecodeMeta(p.Meta)
	if err != nil {
		return nil // meta not yet known or from a newer binary; judged on the next update
	}
	ours := g.n.clusterID()
	if ours == "" || m.ClusterID == "" || m.ClusterID == ours {
		return nil
	}
	err = fmt.Errorf("%w: node %s is in cluster %s, this node is in cluster %s", ErrWrongCluster, p.Name, m.ClusterID, ours)
	g.mu.Lock()
	g.mismatch = err
	g.mu.Unlock()
	return err
}

func (g *gossip) NotifyJoin(*memberlist.Node)   { g.n.kick() }
func (g *gossip) NotifyLeave(*memberlist.Node)  { g.n.kick() }
func (g *gossip) NotifyUpdate(*memberlist.Node) { g.n.kick() }

// peer is one gossip member with its decoded meta.
type peer struct {
	Meta
	State string // alive | suspect | dead | left
	Addr  string // gossip addr
}

func stateName(s memberlist.NodeStateType) string {
	switch s {
	case memberlist.StateAlive:
		return "alive"
	case memberlist.StateSuspect:
		return "suspect"
	case memberlist.StateDead:
		return "dead"
	case memberlist.StateLeft:
		return "left"
	}
	return "unknown"
}

// peers lists every member whose meta decodes, this node included.
func (n *Node) peers() []peer {
	var out []peer
	for _, m := range n.ml.Members() {
		meta, err := DecodeMeta(m.Meta)
		if err != nil {
			continue
		}
		out = append(out, peer{Meta: meta, State: stateName(m.State), Addr: net.JoinHostPort(m.Addr.String(), strconv.Itoa(int(m.Port)))})
	}
	return out
}

func memberlistConfig(cfg *Config, g *gossip, host string, port int) *memberlist.Config {
	mc := memberlist.DefaultLANConfig()
	if cfg.GossipInterval > 0 {
		mc = memberlist.DefaultLocalConfig()
		mc.GossipInterval = cfg.GossipInterval
		mc.ProbeInterval = 5 * cfg.GossipInterval
		mc.ProbeTimeout = 2 * cfg.GossipInterval
		mc.PushPullInterval = 50 * cfg.GossipInterval
		mc.SuspicionMult = 2
	}
	mc.Name = cfg.ID
	mc.BindAddr = host
	mc.BindPort = port
	mc.AdvertisePort = port // 0: memberlist sets both to the port it binds
	mc.Delegate = g
	mc.Events = g
	mc.Merge = g
	mc.Alive = g
	mc.Logger = cfg.Logger.Named("gossip").StandardLogger(&hclog.StandardLoggerOptions{InferLevels: true})
	return mc
}
