package transport

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/raft"
)

// raftLayer is the raft.StreamLayer of a Mux.
type raftLayer struct {
	mux       *Mux
	connCh    chan net.Conn // accepted Raft connections, header byte consumed
	closeCh   chan struct{} // closed by Close: the layer, not the Mux
	closeOnce sync.Once
}

var _ raft.StreamLayer = (*raftLayer)(nil)

// handoff gives an accepted Raft connection to Accept, or closes it if the
// layer or the Mux closes first.
func (l *raftLayer) handoff(conn net.Conn) {
	select {
	case l.connCh <- conn:
	case <-l.closeCh:
		_ = conn.Close()
	case <-l.mux.closeCh:
		_ = conn.Close()
	}
}

// Accept returns the next accepted Raft connection, or ErrClosed once the
// layer or its Mux is closed.
func (l *raftLayer) Accept() (net.Conn, error) {
	select {
	case <-l.closeCh:
		return nil, fmt.Errorf("transport: raft layer: %w", ErrClosed)
	case <-l.mux.closeCh:
		return nil, fmt.Errorf("transport: raft layer: %w", ErrClosed)
	default:
	}
	select {
	case conn := <-l.connCh:
		return conn, nil
	case <-l.closeCh:
		return nil, fmt.Errorf("transport: raft layer: %w", ErrClosed)
	case <-l.mux.closeCh:
		return nil, fmt.Errorf("transport: raft layer: %w", ErrClosed)
	}
}

// Close stops the layer's Accept (raft.NetworkTransport calls it on
// Close). It leaves the Mux and its RPC connections running; the layer
// cannot be reopened.
func (l *raftLayer) Close() error {
	l.closeOnce.Do(func() { close(l.closeCh) })
	return nil
}

// Addr returns the Mux's advertised address.
func (l *raftLayer) Addr() net.Addr { return l.mux.addr }

// Dial connects to a peer's Mux (through Faults, if set, with the Mux's
// advertised address as the source), performs the TLS handshake if
// configured, and writes HeaderRaft, all within timeout.
func (l *raftLayer) Dial(address raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx := context.Background()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	return dialHeader(ctx, l.mux.faults, l.mux.addr.String(), string(address), l.mux.tls, HeaderRaft)
}

// dialHeader dials to (through faults, from the node advertising from),
// wraps the connection in TLS when tlsCfg is set, and writes the header
// byte, all bounded by ctx.
func dialHeader(ctx context.Context, faults *Faults, from, to string, tlsCfg *tls.Config, header byte) (net.Conn, error) {
	timeout := defaultDialTimeout
	if dl, ok := ctx.Deadline(); ok {
		timeout = time.Until(dl)
		if timeout <= 0 {
			return nil, fmt.Errorf("transport: dial %s: %w", to, context.DeadlineExceeded)
		}
	}
	raw, err := faults.dial(ctx, from, to, timeout)
	if err != nil {
		return nil, err
	}
	conn := raw
	if tlsCfg != nil {
		cfg := tlsCfg
		if cfg.ServerName == "" && !cfg.InsecureSkipVerify {
			cfg = cfg.Clone()
			if host, _, err := net.SplitHostPort(to); err == nil {
				cfg.ServerName = host
			}
		}
		tc := tls.Client(raw, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			_ = raw.Close()
			return nil, fmt.Errorf("transport: tls handshake with %s: %w", to, err)
		}
		conn = tc
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetWriteDeadline(dl)
	}
	if _, err := conn.Write([]byte{header}); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("transport: write header to %s: %w", to, err)
	}
	if err := conn.SetWriteDeadline(time.Time{}); err != nil {
		_ = conn.Close()
		return nil, fmt.Errorf("transport: dial %s: %w", to, err)
	}
	return conn, nil
}
