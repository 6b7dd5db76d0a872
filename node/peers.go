package node

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"sort"
)

// peersFile remembers the gossip addresses of the cluster's members, so a
// restarted node rejoins them even when it was started without --join
// (peers that saw it leave do not contact it again by themselves). Serf's
// snapshot serves Consul the same way.
const peersFile = "peers.json"

// seeds are the addresses to join: --join and the remembered peers.
func (n *Node) seeds() []string {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.known == nil {
		n.known = loadPeers(filepath.Join(n.cfg.DataDir, peersFile))
	}
	out := append([]string(nil), n.cfg.Join...)
	for _, a := range n.known {
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

func loadPeers(path string) []string {
	var addrs []string
	b, err := os.ReadFile(path)
	if err != nil {
		return []string{}
	}
	if json.Unmarshal(b, &addrs) != nil {
		return []string{}
	}
	return addrs
}

// rememberPeers saves the gossip addresses of the live members of this
// node's cluster when they changed.
func (n *Node) rememberPeers() {
	ours := n.clusterID()
	if ours == "" {
		return
	}
	var addrs []string
	self := n.GossipAddr()
	for _, p := range n.peers() {
		if p.State == "alive" && p.ClusterID == ours && p.Addr != self {
			addrs = append(addrs, p.Addr)
		}
	}
	if len(addrs) == 0 {
		return
	}
	sort.Strings(addrs)
	n.seeds() // loads n.known
	n.mu.Lock()
	same := slices.Equal(addrs, n.known)
	if !same {
		n.known = addrs
	}
	n.mu.Unlock()
	if same {
		return
	}
	b, _ := json.Marshal(addrs)
	tmp := filepath.Join(n.cfg.DataDir, peersFile+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err == nil {
		_ = os.Rename(tmp, filepath.Join(n.cfg.DataDir, peersFile))
	}
}
