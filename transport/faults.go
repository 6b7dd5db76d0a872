package transport

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Faults is a fault-injecting network for in-process tests. One instance,
// shared by every Mux and Client of a test cluster, models the network
// between them: it refuses dials across a cut and closes the connections
// that cross a cut when one is made.
//
// Addresses are compared as strings and must be spelled as the nodes
// advertise them (Mux.Addr().String()). Every connection is dialed by
// someone, so tracking and closing the dialing side is enough: the
// accepting side sees the close.
//
// A nil *Faults is a perfect network; all methods are safe for concurrent
// use.
type Faults struct {
	mu       sync.Mutex
	groups   map[string]int      // addr → partition group; unnamed addrs reach everyone
	isolated map[string]struct{} // addrs cut off from everyone
	delay    time.Duration
	conns    map[*faultConn]struct{}
}

// NewFaults returns a network with no cuts and no delay.
func NewFaults() *Faults {
	return &Faults{
		groups:   make(map[string]int),
		isolated: make(map[string]struct{}),
		conns:    make(map[*faultConn]struct{}),
	}
}

// Partition splits the named addresses into groups that cannot reach each
// other; addresses named in no group stay reachable by all. It replaces the
// previous Partition (Isolate cuts are kept) and closes every existing
// connection that crosses the new cut.
func (f *Faults) Partition(groups ...[]string) {
	f.mu.Lock()
	f.groups = make(map[string]int)
	for i, g := range groups {
		for _, addr := range g {
			f.groups[addr] = i
		}
	}
	doomed := f.crossingLocked()
	f.mu.Unlock()
	closeAll(doomed)
}

// Isolate cuts addr off from every other address, in addition to any
// existing cuts, and closes its existing connections.
func (f *Faults) Isolate(addr string) {
	f.mu.Lock()
	f.isolated[addr] = struct{}{}
	doomed := f.crossingLocked()
	f.mu.Unlock()
	closeAll(doomed)
}

// Heal removes every cut. The delay, if any, stays.
func (f *Faults) Heal() {
	f.mu.Lock()
	f.groups = make(map[string]int)
	f.isolated = make(map[string]struct{})
	f.mu.Unlock()
}

// SetDelay makes every write on a connection of this network wait d first
// (0 removes the delay). It models latency, not bandwidth.
func (f *Faults) SetDelay(d time.Duration) {
	f.mu.Lock()
	f.delay = d
	f.mu.Unlock()
}

// Blocked reports whether from cannot reach to. Cuts are symmetric, and an
// address always reaches itself.
func (f *Faults) Blocked(from, to string) bool {
	if f == nil {
		return false
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.blockedLocked(from, to)
}

func (f *Faults) blockedLocked(from, to string) bool {
	if from == to {
		return false
	}
	if _, ok := f.isolated[from]; ok {
		return true
	}
	if _, ok := f.isolated[to]; ok {
		return true
	}
	gf, okf := f.groups[from]
	gt, okt := f.groups[to]
	return okf && okt && gf != gt
}

func (f *Faults) crossingLocked() []*faultConn {
	var doomed []*faultConn
	for c := range f.conns {
		if f.blockedLocked(c.from, c.to) {
			doomed = append(doomed, c)
		}
	}
	return doomed
}

func closeAll(conns []*faultConn) {
	for _, c := range conns {
		_ = c.Close()
	}
}

func (f *Faults) writeDelay() time.Duration {
	if f == nil {
		return 0
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.delay
}

// dial opens a TCP connection from the node advertising from to the address
// to. Through a non-nil Faults it fails with ErrPartitioned across a cut and
// tracks the connection so a later cut closes it.
func (f *Faults) dial(ctx context.Context, from, to string, timeout time.Duration) (net.Conn, error) {
	if f.Blocked(from, to) {
		return nil, fmt.Errorf("transport: dial %s from %s: %w", to, from, ErrPartitioned)
	}
	d := net.Dialer{Timeout: timeout}
	conn, err := d.DialContext(ctx, "tcp", to)
	if err != nil {
		return nil, err
	}
	if f == nil {
		return conn, nil
	}
	fc := &faultConn{Conn: conn, f: f, from: from, to: to}
	f.mu.Lock()
	if f.blockedLocked(from, to) { // cut made while dialing
		f.mu.Unlock()
		_ = conn.Close()
		return nil, fmt.Errorf("transport: dial %s from %s: %w", to, from, ErrPartitioned)
	}
	f.conns[fc] = struct{}{}
	f.mu.Unlock()
	return fc, nil
}

// faultConn is a connection dialed through Faults.
type faultConn struct {
	net.Conn
	f        *Faults
	from, to string
	closed   atomic.Bool
}

func (c *faultConn) Write(p []byte) (int, error) {
	if d := c.f.writeDelay(); d > 0 {
		time.Sleep(d)
	}
	return c.Conn.Write(p)
}

func (c *faultConn) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return nil
	}
	c.f.mu.Lock()
	delete(c.f.conns, c)
	c.f.mu.Unlock()
	return c.Conn.Close()
}
