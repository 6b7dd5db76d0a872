// Package transport moves bytes between Weir nodes.
//
// Each node listens on one TCP port (its cluster address). The first byte a
// dialer writes on a new connection says what the connection is for:
// HeaderRaft connections are handed to hashicorp/raft through the
// raft.StreamLayer returned by Mux.RaftLayer, and HeaderRPC connections carry
// node-to-node requests (such as writes forwarded to the leader) to the
// Handler registered with Mux.ServeRPC. Client is the calling side of that
// RPC protocol, with a small pool of connections per target.
//
// The RPC protocol is a sequence of request/response pairs on one
// connection, each frame a status or method byte, a big-endian uint32 length
// and that many bytes:
//
//	request:  [method u8][len u32][body]
//	response: [status u8][len u32][body, or error text when status is 1]
//
// Faults is a fault-injecting network for in-process tests: one shared
// instance lets a test partition or isolate nodes that all run over real
// loopback TCP.
//
// TLS is optional: when a tls.Config is given, every connection is wrapped
// on both the dialing and the accepting side, and the header byte travels
// inside TLS.
package transport

import (
	"errors"
	"time"
)

// Header bytes: the first byte written on every connection to a Mux.
const (
	// HeaderRaft marks a connection that carries Raft traffic.
	HeaderRaft byte = 1
	// HeaderRPC marks a connection that carries node-to-node RPC frames.
	HeaderRPC byte = 2
)

// RPC response status bytes.
const (
	statusOK    byte = 0
	statusError byte = 1
)

// Limits.
const (
	// maxFrameBytes bounds the body of one RPC request or response, on both
	// the sending and the receiving side.
	maxFrameBytes = 64 << 20
	// frameHeaderBytes is the size of a frame header: one type byte and a
	// big-endian uint32 length.
	frameHeaderBytes = 5
	// maxIdleConnsPerTarget is how many idle RPC connections a Client keeps
	// per target address; extra connections are closed when released.
	maxIdleConnsPerTarget = 4
)

// Timeouts.
const (
	// headerReadTimeout bounds how long an accepted connection may take to
	// send its header byte (and finish the TLS handshake, if any).
	headerReadTimeout = 10 * time.Second
	// frameBodyReadTimeout bounds how long the server waits for the body of
	// a request whose header has arrived. Idle connections have no timeout.
	frameBodyReadTimeout = 30 * time.Second
	// responseWriteTimeout bounds how long the server spends writing one
	// response.
	responseWriteTimeout = 30 * time.Second
	// defaultDialTimeout bounds a Client dial when the call's context has no
	// deadline.
	defaultDialTimeout = 10 * time.Second
	// acceptBackoffMin and acceptBackoffMax bound the pause after a
	// transient Accept error (for example, out of file descriptors).
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = 1 * time.Second
)

// Sentinel errors. Check them with errors.Is.
var (
	// ErrClosed is returned by a Mux, its Raft layer, or a Client used after
	// Close, and by calls interrupted by Close.
	ErrClosed = errors.New("transport: closed")

	// ErrRemote means the remote Handler returned an error. Call returns a
	// *RemoteError, which wraps ErrRemote and carries the remote message.
	ErrRemote = errors.New("transport: remote error")

	// ErrNotSent means a Call failed before its whole request reached the
	// remote side (the dial failed, or the connection broke mid-write), so
	// the handler certainly did not run and the call is safe to retry. Any
	// other Call failure may have run the handler: its outcome is unknown.
	ErrNotSent = errors.New("transport: request not sent")

	// ErrPartitioned means Faults refused a dial because the two addresses
	// are on different sides of a simulated partition.
	ErrPartitioned = errors.New("transport: partitioned")

	// ErrFrameTooLarge means a request or response body exceeds the maximum
	// frame size (64 MiB).
	ErrFrameTooLarge = errors.New("transport: frame too large")

	// ErrProtocol means the peer sent something that is not a valid frame.
	ErrProtocol = errors.New("transport: protocol error")

	// ErrAdvertiseRequired means the bind address is unspecified (0.0.0.0
	// or ::) and no advertise address was given, so peers would not know
	// where to dial.
	ErrAdvertiseRequired = errors.New("transport: advertise address required when binding an unspecified address")
)
