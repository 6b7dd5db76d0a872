package transport

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"

	"github.com/hashicorp/go-hclog"
)

// Client calls the RPC handlers of other nodes. It keeps a few idle
// connections per target address and discards a connection on any error.
// It is safe for concurrent use.
//
// Call does not retry a request that may have reached the remote handler:
// callers that retry must make their requests idempotent.
type Client struct {
	local  string // advertised address of this node, the source for Faults
	faults *Faults
	tls    *tls.Config
	logger hclog.Logger

	mu     sync.Mutex
	closed bool
	idle   map[string][]net.Conn // per target, most recently used last
	inUse  map[net.Conn]struct{}
}

// NewClient returns a Client for the node advertising localAddr. faults,
// tlsCfg and logger may be nil.
func NewClient(localAddr string, faults *Faults, tlsCfg *tls.Config, logger hclog.Logger) *Client {
	if logger == nil {
		logger = hclog.NewNullLogger()
	}
	return &Client{
		local:  localAddr,
		faults: faults,
		tls:    tlsCfg,
		logger: logger,
		idle:   make(map[string][]net.Conn),
		inUse:  make(map[net.Conn]struct{}),
	}
}

// Call sends one request to the Mux at addr and returns the response body.
// The context's deadline bounds the whole call and cancellation aborts it.
// Errors wrap ErrRemote (as a *RemoteError) when the remote handler failed,
// ErrFrameTooLarge, ErrPartitioned, ErrClosed, or the context's error.
func (c *Client) Call(ctx context.Context, addr string, method uint8, body []byte) ([]byte, error) {
	if len(body) > maxFrameBytes {
		return nil, fmt.Errorf("transport: call %s method %d: %w: request of %d bytes, limit %d",
			addr, method, ErrFrameTooLarge, len(body), maxFrameBytes)
	}
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("transport: call %s method %d: %w", addr, method, err)
	}
	for {
		conn, reused, err := c.get(ctx, addr)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrNotSent, err)
		}
		resp, sent, err := c.roundTrip(ctx, conn, addr, method, body)
		if err == nil {
			c.put(addr, conn)
			return resp, nil
		}
		c.discard(conn)
		var remote *RemoteError
		if errors.As(err, &remote) {
			return nil, err
		}
		if c.isClosed() {
			return nil, fmt.Errorf("transport: call %s method %d: %w", addr, method, ErrClosed)
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			return nil, fmt.Errorf("transport: call %s method %d: %w (%w)", addr, method, ctxErr, err)
		}
		if _, hasDeadline := ctx.Deadline(); hasDeadline && errors.Is(err, os.ErrDeadlineExceeded) {
			// The connection deadline fired a moment before the context's.
			return nil, fmt.Errorf("transport: call %s method %d: %w (%w)", addr, method, context.DeadlineExceeded, err)
		}
		if reused && !sent {
			// A pooled connection failed before the whole request was
			// written (for example, closed by a Faults cut while idle): the
			// handler cannot have run, so try another connection.
			continue
		}
		if !sent {
			return nil, fmt.Errorf("transport: call %s method %d: %w: %w", addr, method, ErrNotSent, err)
		}
		return nil, fmt.Errorf("transport: call %s method %d: %w", addr, method, err)
	}
}

// roundTrip writes one request and reads its response on conn. sent
// reports whether the whole request was written, so that the remote handler
// may have run.
func (c *Client) roundTrip(ctx context.Context, conn net.Conn, addr string, method uint8, body []byte) (resp []byte, sent bool, err error) {
	dl, _ := ctx.Deadline() // zero clears a deadline left by an earlier call
	if err := conn.SetDeadline(dl); err != nil {
		return nil, false, err
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer stop()

	if err := writeFrame(conn, method, body); err != nil {
		return nil, false, err
	}
	status, n, err := readFrameHeader(conn)
	if err != nil {
		return nil, true, err
	}
	payload := make([]byte, n)
	if _, err := io.ReadFull(conn, payload); err != nil {
		return nil, true, err
	}
	if !stop() {
		// Canceled just as the response arrived: the connection is being
		// closed, so the response cannot be trusted to be whole.
		return nil, true, ctx.Err()
	}
	switch status {
	case statusOK:
		return payload, true, nil
	case statusError:
		return nil, true, &RemoteError{Addr: addr, Method: method, Message: string(payload)}
	default:
		return nil, true, fmt.Errorf("%w: unknown response status %d", ErrProtocol, status)
	}
}

// get returns an idle connection to addr, or dials a new one.
func (c *Client) get(ctx context.Context, addr string) (conn net.Conn, reused bool, err error) {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil, false, fmt.Errorf("transport: call %s: %w", addr, ErrClosed)
	}
	if idle := c.idle[addr]; len(idle) > 0 {
		conn = idle[len(idle)-1]
		c.idle[addr] = idle[:len(idle)-1]
		c.inUse[conn] = struct{}{}
		c.mu.Unlock()
		return conn, true, nil
	}
	c.mu.Unlock()

	conn, err = dialHeader(ctx, c.faults, c.local, addr, c.tls, HeaderRPC)
	if err != nil {
		if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(err, ctxErr) {
			err = fmt.Errorf("%w (%w)", ctxErr, err)
		}
		return nil, false, fmt.Errorf("transport: call %s: %w", addr, err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		_ = conn.Close()
		return nil, false, fmt.Errorf("transport: call %s: %w", addr, ErrClosed)
	}
	c.inUse[conn] = struct{}{}
	return conn, false, nil
}

// put returns a healthy connection to the idle pool, or closes it if the
// pool for addr is full or the Client is closed.
func (c *Client) put(addr string, conn net.Conn) {
	c.mu.Lock()
	delete(c.inUse, conn)
	if !c.closed && len(c.idle[addr]) < maxIdleConnsPerTarget {
		c.idle[addr] = append(c.idle[addr], conn)
		c.mu.Unlock()
		return
	}
	c.mu.Unlock()
	_ = conn.Close()
}

// discard closes a connection that failed.
func (c *Client) discard(conn net.Conn) {
	c.mu.Lock()
	delete(c.inUse, conn)
	c.mu.Unlock()
	_ = conn.Close()
}

func (c *Client) isClosed() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closed
}

// Close closes every connection, idle or in use; calls in flight fail with
// ErrClosed, and so do later calls.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	var conns []net.Conn
	for _, idle := range c.idle {
		conns = append(conns, idle...)
	}
	for conn := range c.inUse {
		conns = append(conns, conn)
	}
	c.idle = nil
	c.inUse = nil
	c.mu.Unlock()
	for _, conn := range conns {
		_ = conn.Close()
	}
	return nil
}
