package transport

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

func TestRPC_RoundTrip(t *testing.T) {
	m := newTestMux(t, nil)
	m.ServeRPC(echoHandler)
	c := newTestClient(t, "127.0.0.1:1", nil)

	for _, body := range [][]byte{nil, []byte("hello"), bytes.Repeat([]byte{0xab}, 1<<20)} {
		resp, err := c.Call(context.Background(), m.Addr().String(), 42, body)
		if err != nil {
			t.Fatalf("call with %d bytes: %v", len(body), err)
		}
		if want := append([]byte{42}, body...); !bytes.Equal(resp, want) {
			t.Fatalf("response of %d bytes, want %d", len(resp), len(want))
		}
	}
	if got := c.idleConns(m.Addr().String()); got != 1 {
		t.Fatalf("idle conns after sequential calls = %d, want 1 (reused)", got)
	}
}

func TestRPC_ConcurrentCallsPooled(t *testing.T) {
	m := newTestMux(t, nil)
	m.ServeRPC(echoHandler)
	c := newTestClient(t, "127.0.0.1:1", nil)
	addr := m.Addr().String()

	const goroutines, callsEach = 50, 20
	var wg sync.WaitGroup
	errs := make(chan error, goroutines)
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range callsEach {
				body := fmt.Appendf(nil, "g%d-i%d", g, i)
				resp, err := c.Call(context.Background(), addr, uint8(g), body)
				if err != nil {
					errs <- err
					return
				}
				if want := append([]byte{uint8(g)}, body...); !bytes.Equal(resp, want) {
					errs <- fmt.Errorf("response %q, want %q", resp, want)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if got := c.idleConns(addr); got < 1 || got > maxIdleConnsPerTarget {
		t.Fatalf("idle conns = %d, want 1..%d", got, maxIdleConnsPerTarget)
	}
}

func TestRPC_RemoteError(t *testing.T) {
	m := newTestMux(t, nil)
	m.ServeRPC(func(_ context.Context, method uint8, _ []byte) ([]byte, error) {
		return nil, fmt.Errorf("not the leader (method %d)", method)
	})
	c := newTestClient(t, "127.0.0.1:1", nil)

	_, err := c.Call(context.Background(), m.Addr().String(), 3, []byte("x"))
	if !errors.Is(err, ErrRemote) {
		t.Fatalf("err = %v, want ErrRemote", err)
	}
	var re *RemoteError
	if !errors.As(err, &re) || re.Message != "not the leader (method 3)" || re.Method != 3 {
		t.Fatalf("remote error = %#v", re)
	}
	// A remote error leaves the connection usable: the call after it reuses it.
	m.ServeRPC(echoHandler)
	if _, err := c.Call(context.Background(), m.Addr().String(), 1, nil); err != nil {
		t.Fatalf("call after remote error: %v", err)
	}
}

func TestRPC_NoHandlerRepliesError(t *testing.T) {
	m := newTestMux(t, nil)
	c := newTestClient(t, "127.0.0.1:1", nil)
	if _, err := c.Call(context.Background(), m.Addr().String(), 1, nil); !errors.Is(err, ErrRemote) {
		t.Fatalf("call without handler = %v, want ErrRemote", err)
	}
	m.ServeRPC(echoHandler)
	if _, err := c.Call(context.Background(), m.Addr().String(), 1, nil); err != nil {
		t.Fatalf("call after ServeRPC: %v", err)
	}
}

// blockingHandler blocks until its context (the Mux's) is canceled.
func blockingHandler(started chan<- struct{}) Handler {
	return func(ctx context.Context, _ uint8, _ []byte) ([]byte, error) {
		if started != nil {
			started <- struct{}{}
		}
		<-ctx.Done()
		return nil, ctx.Err()
	}
}

func TestRPC_ContextDeadline(t *testing.T) {
	m := newTestMux(t, nil)
	m.ServeRPC(blockingHandler(nil))
	c := newTestClient(t, "127.0.0.1:1", nil)

	const timeout = 100 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	start := time.Now()
	_, err := c.Call(ctx, m.Addr().String(), 1, nil)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want context.DeadlineExceeded", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Fatalf("call took %s with a %s deadline", took, timeout)
	}
	if got := c.idleConns(m.Addr().String()); got != 0 {
		t.Fatalf("timed-out conn returned to the pool (%d idle)", got)
	}
}

func TestRPC_ContextCancel(t *testing.T) {
	m := newTestMux(t, nil)
	started := make(chan struct{}, 1)
	m.ServeRPC(blockingHandler(started))
	c := newTestClient(t, "127.0.0.1:1", nil)

	ctx, cancel := context.WithCancel(context.Background())
	errCh := make(chan error, 1)
	go func() {
		_, err := c.Call(ctx, m.Addr().String(), 1, nil)
		errCh <- err
	}()
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("handler never started")
	}
	cancel()
	select {
	case err := <-errCh:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("err = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("cancel did not abort the call")
	}
}

func TestRPC_OversizedRequestRefusedByClient(t *testing.T) {
	m := newTestMux(t, nil)
	m.ServeRPC(echoHandler)
	c := newTestClient(t, "127.0.0.1:1", nil)
	_, err := c.Call(context.Background(), m.Addr().String(), 1, make([]byte, maxFrameBytes+1))
	if !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("err = %v, want ErrFrameTooLarge", err)
	}
}

func TestRPC_OversizedRequestRefusedByServer(t *testing.T) {
	m := newTestMux(t, nil)
	called := make(chan struct{}, 1)
	m.ServeRPC(func(context.Context, uint8, []byte) ([]byte, error) {
		called <- struct{}{}
		return nil, nil
	})
	conn, err := net.Dial("tcp", m.Addr().String())
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer conn.Close()
	// A hand-made frame header announcing more than the limit.
	hdr := []byte{HeaderRPC, 9, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(hdr[2:], maxFrameBytes+1)
	if _, err := conn.Write(hdr); err != nil {
		t.Fatalf("write: %v", err)
	}
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	status, n, err := readFrameHeader(conn)
	if err != nil {
		t.Fatalf("read response header: %v", err)
	}
	text := make([]byte, n)
	if _, err := io.ReadFull(conn, text); err != nil {
		t.Fatalf("read response body: %v", err)
	}
	if status != statusError || !bytes.Contains(text, []byte("too large")) {
		t.Fatalf("response status %d %q, want an error about size", status, text)
	}
	if _, err := conn.Read(make([]byte, 1)); err == nil || isTimeout(err) {
		t.Fatalf("read after refusal = %v, want the connection closed", err)
	}
	select {
	case <-called:
		t.Fatal("handler ran for an oversized frame")
	default:
	}
}

func TestRPC_OversizedResponseRefusedByClient(t *testing.T) {
	// A fake server that answers every request with a header announcing
	// more than the limit.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	defer ln.Close()
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		defer conn.Close()
		buf := make([]byte, 1+frameHeaderBytes)
		if _, err := io.ReadFull(conn, buf); err != nil {
			return
		}
		resp := []byte{statusOK, 0, 0, 0, 0}
		binary.BigEndian.PutUint32(resp[1:], maxFrameBytes+1)
		_, _ = conn.Write(resp)
		_, _ = io.Copy(io.Discard, conn)
	}()
	c := newTestClient(t, "127.0.0.1:1", nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_, err = c.Call(ctx, ln.Addr().String(), 1, nil)
	if !errors.Is(err, ErrFrameTooLarge) {
		t.Fatalf("err = %v, want ErrFrameTooLarge", err)
	}
	if got := c.idleConns(ln.Addr().String()); got != 0 {
		t.Fatalf("conn with a refused frame kept in the pool (%d idle)", got)
	}
}

func TestClient_CallAfterClose(t *testing.T) {
	m := newTestMux(t, nil)
	m.ServeRPC(echoHandler)
	c := NewClient("127.0.0.1:1", nil, nil, nil)
	if _, err := c.Call(context.Background(), m.Addr().String(), 1, nil); err != nil {
		t.Fatalf("call: %v", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("close: %v", err)
	}
	if _, err := c.Call(context.Background(), m.Addr().String(), 1, nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("call after close = %v, want ErrClosed", err)
	}
}

func TestClient_CloseAbortsInFlightCall(t *testing.T) {
	m := newTestMux(t, nil)
	started := make(chan struct{}, 1)
	m.ServeRPC(blockingHandler(started))
	c := NewClient("127.0.0.1:1", nil, nil, nil)
	errCh := make(chan error, 1)
	go func() {
		_, err := c.Call(context.Background(), m.Addr().String(), 1, nil)
		errCh <- err
	}()
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("handler never started")
	}
	_ = c.Close()
	select {
	case err := <-errCh:
		if !errors.Is(err, ErrClosed) {
			t.Fatalf("in-flight call = %v, want ErrClosed", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not abort the in-flight call")
	}
}

func TestRPC_MuxCloseCancelsHandlerContext(t *testing.T) {
	m, err := Listen(Config{BindAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	started := make(chan struct{}, 1)
	m.ServeRPC(blockingHandler(started))
	c := newTestClient(t, "127.0.0.1:1", nil)
	errCh := make(chan error, 1)
	go func() {
		_, err := c.Call(context.Background(), m.Addr().String(), 1, nil)
		errCh <- err
	}()
	select {
	case <-started:
	case <-time.After(5 * time.Second):
		t.Fatal("handler never started")
	}
	closed := make(chan struct{})
	go func() { _ = m.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("Mux.Close did not return with a handler running")
	}
	select {
	case err := <-errCh:
		if err == nil {
			t.Fatal("call succeeded across Mux.Close")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("call still blocked after Mux.Close")
	}
}
