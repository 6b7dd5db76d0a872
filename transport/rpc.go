package transport

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"time"
)

// Handler serves one RPC request: method and body as the caller sent them.
// A returned error reaches the caller as a *RemoteError carrying
// err.Error(). ctx is canceled when the Mux closes. Requests on one
// connection are handled one after another; different connections run
// concurrently.
type Handler func(ctx context.Context, method uint8, body []byte) ([]byte, error)

// RemoteError is the error Client.Call returns when the remote Handler
// returned an error. It wraps ErrRemote.
type RemoteError struct {
	Addr    string // the target of the call
	Method  uint8
	Message string // the remote error's text
}

// Error implements error; the text carries the remote message.
func (e *RemoteError) Error() string {
	return fmt.Sprintf("transport: remote error from %s (method %d): %s", e.Addr, e.Method, e.Message)
}

// Unwrap makes errors.Is(err, ErrRemote) true.
func (e *RemoteError) Unwrap() error { return ErrRemote }

// writeFrame writes [kind u8][len u32 BE][body] in one vectored write when
// the connection allows it.
func writeFrame(w io.Writer, kind byte, body []byte) error {
	if len(body) > maxFrameBytes {
		return fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, len(body), maxFrameBytes)
	}
	var hdr [frameHeaderBytes]byte
	hdr[0] = kind
	binary.BigEndian.PutUint32(hdr[1:], uint32(len(body)))
	bufs := net.Buffers{hdr[:], body}
	_, err := bufs.WriteTo(w)
	return err
}

// readFrameHeader reads a frame header and checks its length.
func readFrameHeader(r io.Reader) (kind byte, n int, err error) {
	var hdr [frameHeaderBytes]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, 0, err
	}
	size := binary.BigEndian.Uint32(hdr[1:])
	if size > maxFrameBytes {
		return hdr[0], 0, fmt.Errorf("%w: %d bytes, limit %d", ErrFrameTooLarge, size, maxFrameBytes)
	}
	return hdr[0], int(size), nil
}

// serveRPCConn serves requests on one HeaderRPC connection until it fails,
// the peer closes it, or the Mux closes.
func (m *Mux) serveRPCConn(conn net.Conn) {
	defer conn.Close()
	remote := conn.RemoteAddr().String()
	r := bufio.NewReader(conn)
	for {
		// Idle between requests: no deadline, the client pools connections.
		method, n, err := readFrameHeader(r)
		if err != nil {
			if errors.Is(err, ErrFrameTooLarge) {
				m.logger.Warn("refusing oversized request", "remote", remote, "method", method, "error", err)
				// The body cannot be skipped cheaply: answer, then drop the conn.
				_ = conn.SetWriteDeadline(time.Now().Add(responseWriteTimeout))
				_ = writeFrame(conn, statusError, []byte(err.Error()))
			} else if !m.isClosed() && !errors.Is(err, io.EOF) {
				m.logger.Debug("rpc connection read failed", "remote", remote, "error", err)
			}
			return
		}
		body := make([]byte, n)
		if err := conn.SetReadDeadline(time.Now().Add(frameBodyReadTimeout)); err != nil {
			return
		}
		if _, err := io.ReadFull(r, body); err != nil {
			if !m.isClosed() {
				m.logger.Debug("rpc body read failed", "remote", remote, "method", method, "error", err)
			}
			return
		}
		if err := conn.SetReadDeadline(time.Time{}); err != nil {
			return
		}

		status, resp := m.dispatch(method, body)
		if err := conn.SetWriteDeadline(time.Now().Add(responseWriteTimeout)); err != nil {
			return
		}
		if err := writeFrame(conn, status, resp); err != nil {
			if !m.isClosed() {
				m.logger.Debug("rpc response write failed", "remote", remote, "method", method, "error", err)
			}
			return
		}
	}
}

// dispatch runs the registered handler and turns its result into a
// response status and body.
func (m *Mux) dispatch(method uint8, body []byte) (byte, []byte) {
	hp := m.handler.Load()
	if hp == nil || *hp == nil {
		return statusError, []byte("no rpc handler registered")
	}
	resp, err := (*hp)(m.ctx, method, body)
	if err != nil {
		msg := err.Error()
		if len(msg) > maxFrameBytes {
			msg = msg[:maxFrameBytes]
		}
		return statusError, []byte(msg)
	}
	if len(resp) > maxFrameBytes {
		m.logger.Error("rpc handler response too large", "method", method, "bytes", len(resp), "limit", maxFrameBytes)
		return statusError, fmt.Appendf(nil, "%v: response of %d bytes, limit %d", ErrFrameTooLarge, len(resp), maxFrameBytes)
	}
	return statusOK, resp
}
