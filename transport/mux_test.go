package transport

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

func echoHandler(_ context.Context, method uint8, body []byte) ([]byte, error) {
	return append([]byte{method}, body...), nil
}

func TestMux_SplitsRaftAndRPC(t *testing.T) {
	m := newTestMux(t, nil)
	m.ServeRPC(echoHandler)
	peer := newTestMux(t, nil)
	addr := m.Addr().String()

	// A Raft connection dialed by a peer's layer arrives at this layer's
	// Accept with its header byte consumed.
	accepted := make(chan net.Conn, 1)
	go func() {
		conn, err := m.RaftLayer().Accept()
		if err != nil {
			t.Errorf("accept: %v", err)
			close(accepted)
			return
		}
		accepted <- conn
	}()
	out, err := peer.RaftLayer().Dial(raft.ServerAddress(addr), time.Second)
	if err != nil {
		t.Fatalf("raft dial: %v", err)
	}
	defer out.Close()
	if _, err := out.Write([]byte("raft-bytes")); err != nil {
		t.Fatalf("write: %v", err)
	}

	// An RPC on the same port goes to the handler meanwhile.
	c := newTestClient(t, peer.Addr().String(), nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := c.Call(ctx, addr, 7, []byte("rpc-bytes"))
	if err != nil {
		t.Fatalf("call: %v", err)
	}
	if want := append([]byte{7}, "rpc-bytes"...); !bytes.Equal(resp, want) {
		t.Fatalf("call response = %q, want %q", resp, want)
	}

	var in net.Conn
	select {
	case in = <-accepted:
	case <-time.After(5 * time.Second):
		t.Fatal("raft connection never accepted")
	}
	if in == nil {
		t.FailNow()
	}
	defer in.Close()
	buf := make([]byte, len("raft-bytes"))
	_ = in.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(in, buf); err != nil {
		t.Fatalf("read raft conn: %v", err)
	}
	if string(buf) != "raft-bytes" {
		t.Fatalf("raft conn read %q, want %q", buf, "raft-bytes")
	}
	if got := m.RaftLayer().Addr().String(); got != addr {
		t.Fatalf("raft layer addr = %s, want %s", got, addr)
	}
}

func TestMux_UnknownHeaderClosed(t *testing.T) {
	m := newTestMux(t, nil)
	m.ServeRPC(echoHandler)

	conn, err := net.DialTimeout("tcp", m.Addr().String(), 5*time.Second)
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte{0x7f, 1, 2, 3}); err != nil {
		t.Fatalf("write: %v", err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := conn.Read(make([]byte, 16))
	if n != 0 || err == nil {
		t.Fatalf("read = %d, %v; want the mux to close the connection", n, err)
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after an unknown header byte")
	}

	// The mux still serves well-formed connections.
	c := newTestClient(t, "127.0.0.1:1", nil)
	if _, err := c.Call(context.Background(), m.Addr().String(), 1, nil); err != nil {
		t.Fatalf("call after bad header: %v", err)
	}
}

func TestMux_CloseUnblocksRaftAccept(t *testing.T) {
	m, err := Listen(Config{BindAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	errCh := make(chan error, 1)
	go func() {
		_, err := m.RaftLayer().Accept()
		errCh <- err
	}()
	if err := m.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	select {
	case err := <-errCh:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("accept error = %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Accept still blocked after Close")
	}
	if _, err := m.RaftLayer().Accept(); !errors.Is(err, ErrClosed) {
		t.Fatalf("accept after close = %v, want ErrClosed", err)
	}
	if err := m.Close(); err != nil {
		t.Fatalf("second close: %v", err)
	}
}

func TestMux_CloseClosesAcceptedConns(t *testing.T) {
	m, err := Listen(Config{BindAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	m.ServeRPC(echoHandler)
	c := NewClient("127.0.0.1:1", nil, nil, nil)
	defer c.Close()
	if _, err := c.Call(context.Background(), m.Addr().String(), 1, []byte("x")); err != nil {
		t.Fatalf("call: %v", err)
	}
	raw, err := net.Dial("tcp", m.Addr().String())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer raw.Close()
	if _, err := raw.Write([]byte{HeaderRaft}); err != nil {
		t.Fatalf("write header: %v", err)
	}
	waitFor(t, 5*time.Second, "two tracked conns", func() bool {
		m.mu.Lock()
		defer m.mu.Unlock()
		return len(m.conns) == 2
	})

	if err := m.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	_ = raw.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := raw.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("raw conn read after mux close = %v, want closed", err)
	}
	// The pooled RPC connection was closed by the server: the next call
	// fails (the server is gone) instead of hanging.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.Call(ctx, m.Addr().String(), 1, nil); err == nil || errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("call to closed mux = %v, want a connection error", err)
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func TestListen_AdvertiseAddr(t *testing.T) {
	m, err := Listen(Config{BindAddr: "127.0.0.1:0", Advertise: "127.0.0.1"})
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer m.Close()
	bound := m.ln.Addr().(*net.TCPAddr)
	adv, ok := m.Addr().(*net.TCPAddr)
	if !ok {
		t.Fatalf("Addr() is %T, want *net.TCPAddr", m.Addr())
	}
	if adv.Port != bound.Port || !adv.IP.Equal(net.IPv4(127, 0, 0, 1)) {
		t.Fatalf("advertised %s, bound %s", adv, bound)
	}

	if _, err := Listen(Config{BindAddr: "0.0.0.0:0"}); !errors.Is(err, ErrAdvertiseRequired) {
		t.Fatalf("listen on 0.0.0.0 without advertise = %v, want ErrAdvertiseRequired", err)
	}
	m2, err := Listen(Config{BindAddr: "0.0.0.0:0", Advertise: "127.0.0.1"})
	if err != nil {
		t.Fatalf("listen on 0.0.0.0 with advertise: %v", err)
	}
	defer m2.Close()
	if got := m2.Addr().(*net.TCPAddr); !got.IP.Equal(net.IPv4(127, 0, 0, 1)) || got.Port != m2.ln.Addr().(*net.TCPAddr).Port {
		t.Fatalf("advertised %s", got)
	}
	m2.ServeRPC(echoHandler)
	c := NewClient("", nil, nil, nil)
	defer c.Close()
	if _, err := c.Call(context.Background(), m2.Addr().String(), 1, nil); err != nil {
		t.Fatalf("call advertised addr: %v", err)
	}
}
