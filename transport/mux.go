package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-hclog"
	"github.com/hashicorp/raft"
)

// Config configures a Mux.
type Config struct {
	// BindAddr is the host:port to listen on; port 0 picks a free port.
	BindAddr string
	// Advertise is the host peers dial (an IP or a resolvable name), or
	// empty to advertise the bound host. The advertised port is the bound
	// port, unless Advertise is itself a host:port, which is used as is.
	// Binding an unspecified address (0.0.0.0, ::) requires Advertise.
	Advertise string
	// Logger receives the Mux's logs; nil discards them.
	Logger hclog.Logger
	// Faults, if set, is the simulated network the Raft layer dials
	// through; nil means the real network only.
	Faults *Faults
	// TLS, if set, wraps every accepted connection (as a server) and every
	// Raft dial (as a client).
	TLS *tls.Config
}

// Mux listens on one TCP port and splits accepted connections by their
// first byte between Raft (RaftLayer) and node-to-node RPC (ServeRPC).
type Mux struct {
	ln     net.Listener
	addr   *net.TCPAddr // advertised
	logger hclog.Logger
	faults *Faults
	tls    *tls.Config

	handler atomic.Pointer[Handler]
	raft    *raftLayer

	ctx     context.Context // canceled by Close; parent of handler contexts
	cancel  context.CancelFunc
	closeCh chan struct{}

	mu     sync.Mutex
	closed bool
	conns  map[*muxConn]struct{} // accepted and still open
	wg     sync.WaitGroup        // accept loop and connection goroutines
}

// Listen binds cfg.BindAddr and starts accepting connections in a goroutine.
func Listen(cfg Config) (*Mux, error) {
	logger := cfg.Logger
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	ln, err := net.Listen("tcp", cfg.BindAddr)
	if err != nil {
		return nil, fmt.Errorf("transport: listen %s: %w", cfg.BindAddr, err)
	}
	adv, err := advertisedAddr(ln.Addr().(*net.TCPAddr), cfg.Advertise)
	if err != nil {
		_ = ln.Close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	m := &Mux{
		ln:      ln,
		addr:    adv,
		logger:  logger,
		faults:  cfg.Faults,
		tls:     cfg.TLS,
		ctx:     ctx,
		cancel:  cancel,
		closeCh: make(chan struct{}),
		conns:   make(map[*muxConn]struct{}),
	}
	m.raft = &raftLayer{mux: m, connCh: make(chan net.Conn), closeCh: make(chan struct{})}
	m.wg.Add(1)
	go m.acceptLoop()
	logger.Info("listening", "bind", ln.Addr().String(), "advertise", adv.String())
	return m, nil
}

// advertisedAddr combines the advertise setting with the bound address.
func advertisedAddr(bound *net.TCPAddr, advertise string) (*net.TCPAddr, error) {
	if advertise == "" {
		if bound.IP.IsUnspecified() {
			return nil, fmt.Errorf("transport: bind %s: %w", bound, ErrAdvertiseRequired)
		}
		return bound, nil
	}
	host, port, err := net.SplitHostPort(advertise)
	if err != nil { // a bare host
		host, port = advertise, strconv.Itoa(bound.Port)
	}
	addr, err := net.ResolveTCPAddr("tcp", net.JoinHostPort(host, port))
	if err != nil {
		return nil, fmt.Errorf("transport: advertise address %q: %w", advertise, err)
	}
	if addr.IP == nil || addr.IP.IsUnspecified() {
		return nil, fmt.Errorf("transport: advertise address %q is not a reachable address: %w", advertise, ErrAdvertiseRequired)
	}
	return addr, nil
}

// Addr returns the advertised address, the one peers dial, as a
// *net.TCPAddr.
func (m *Mux) Addr() net.Addr { return m.addr }

// RaftLayer returns the stream layer for raft.NewNetworkTransport: Accept
// yields the accepted connections whose header byte was HeaderRaft, and Dial
// writes HeaderRaft before handing the connection to Raft.
func (m *Mux) RaftLayer() raft.StreamLayer { return m.raft }

// ServeRPC registers the handler for HeaderRPC connections, replacing any
// previous one. Requests that arrive before a handler is registered get an
// error reply.
func (m *Mux) ServeRPC(h Handler) {
	m.handler.Store(&h)
}

// Close stops accepting, closes the listener and every accepted connection
// that is still open (Raft's included), cancels the contexts of running
// handlers and waits for them to return. The Raft layer's Accept returns
// ErrClosed afterwards. Connections the Raft layer dialed belong to Raft.
func (m *Mux) Close() error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	conns := make([]*muxConn, 0, len(m.conns))
	for c := range m.conns {
		conns = append(conns, c)
	}
	m.mu.Unlock()

	close(m.closeCh)
	m.cancel()
	err := m.ln.Close()
	for _, c := range conns {
		_ = c.Close()
	}
	m.wg.Wait()
	m.logger.Info("closed", "advertise", m.addr.String())
	return err
}

func (m *Mux) acceptLoop() {
	defer m.wg.Done()
	var backoff time.Duration
	for {
		conn, err := m.ln.Accept()
		if err != nil {
			select {
			case <-m.closeCh:
				return
			default:
			}
			if errors.Is(err, net.ErrClosed) {
				return
			}
			backoff = min(max(2*backoff, acceptBackoffMin), acceptBackoffMax)
			m.logger.Error("accept failed", "error", err, "retry_in", backoff)
			t := time.NewTimer(backoff)
			select {
			case <-m.closeCh:
				t.Stop()
				return
			case <-t.C:
			}
			continue
		}
		backoff = 0
		mc := &muxConn{Conn: conn, mux: m}
		if !m.track(mc) {
			_ = conn.Close()
			return
		}
		m.wg.Add(1)
		go m.handleConn(mc)
	}
}

// track records an accepted connection so Close can close it; it reports
// false once the Mux is closed.
func (m *Mux) track(c *muxConn) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed {
		return false
	}
	m.conns[c] = struct{}{}
	return true
}

func (m *Mux) untrack(c *muxConn) {
	m.mu.Lock()
	delete(m.conns, c)
	m.mu.Unlock()
}

// handleConn reads the header byte and routes the connection.
func (m *Mux) handleConn(mc *muxConn) {
	defer m.wg.Done()
	var conn net.Conn = mc
	if m.tls != nil {
		conn = tls.Server(mc, m.tls)
	}
	remote := mc.RemoteAddr().String()

	if err := conn.SetReadDeadline(time.Now().Add(headerReadTimeout)); err != nil {
		_ = conn.Close()
		return
	}
	var hdr [1]byte
	if _, err := io.ReadFull(conn, hdr[:]); err != nil {
		if !m.isClosed() {
			m.logger.Debug("failed to read header byte", "remote", remote, "error", err)
		}
		_ = conn.Close()
		return
	}
	if err := conn.SetReadDeadline(time.Time{}); err != nil {
		_ = conn.Close()
		return
	}

	switch hdr[0] {
	case HeaderRaft:
		m.raft.handoff(conn)
	case HeaderRPC:
		m.serveRPCConn(conn)
	default:
		m.logger.Warn("unknown header byte, closing connection", "header", hdr[0], "remote", remote)
		_ = conn.Close()
	}
}

func (m *Mux) isClosed() bool {
	select {
	case <-m.closeCh:
		return true
	default:
		return false
	}
}

// muxConn is an accepted connection, tracked until it is closed.
type muxConn struct {
	net.Conn
	mux  *Mux
	once sync.Once
}

func (c *muxConn) Write(p []byte) (int, error) {
	if d := c.mux.faults.writeDelay(); d > 0 {
		time.Sleep(d)
	}
	return c.Conn.Write(p)
}

func (c *muxConn) Close() error {
	err := net.ErrClosed
	c.once.Do(func() {
		c.mux.untrack(c)
		err = c.Conn.Close()
	})
	return err
}
