package node

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/raft"
	"github.com/weir-streaming/weir/api"
	"github.com/weir-streaming/weir/fsm"
	"github.com/weir-streaming/weir/transport"
)

// RPC methods on the cluster port.
const (
	rpcApply     uint8 = 1 // body: an encoded fsm command; reply: rpcReply
	rpcReadIndex uint8 = 2 // body: empty; reply: the leader's commit index, u64 big endian
)

// leaderWaitPoll is how often a write waiting for a leader looks again.
const leaderWaitPoll = 20 * time.Millisecond

// rpcReply carries a command's outcome from the leader back to the follower
// that forwarded it.
type rpcReply struct {
	Err     *api.ErrorBody
	Created *fsm.CreateTopicResult
	Produce *fsm.ProduceResult
	Life    *fsm.LifecycleResult
}

var rpcHandle = &codec.MsgpackHandle{}

// propose commits an encoded command through the leader, forwarding it when
// this node is a follower, and returns the state machine's result or its
// rejection. It waits for a leader until ctx ends.
func (n *Node) propose(ctx context.Context, cmd []byte) (interface{}, error) {
	for {
		if n.raft.State() == raft.Leader {
			res, err := n.applyRaw(cmd)
			if !errors.Is(err, ErrNotLeader) {
				return res, err
			}
		} else if addr, _ := n.raft.LeaderWithID(); addr != "" {
			res, err, sent := n.forward(ctx, string(addr), cmd)
			if err == nil || (sent && !errors.Is(err, ErrNotLeader)) {
				return res, err
			}
			n.logger.Debug("forward failed before sending; retrying", "leader", addr, "error", err)
		}
		select {
		case <-ctx.Done():
			if errors.Is(ctx.Err(), context.DeadlineExceeded) {
				return nil, fmt.Errorf("%w: no leader answered before the deadline", ErrNoLeader)
			}
			return nil, ctx.Err()
		case <-n.shutdownCh:
			return nil, ErrShutdown
		case <-time.After(leaderWaitPoll):
		}
	}
}

// applyLocal encodes and applies a command on this node, which must lead.
func (n *Node) applyLocal(t fsm.MessageType, msg any) (interface{}, error) {
	cmd, err := fsm.Encode(t, msg)
	if err != nil {
		return nil, err
	}
	return n.applyRaw(cmd)
}

func (n *Node) applyRaw(cmd []byte) (interface{}, error) {
	f := n.raft.Apply(cmd, applyTimeout)
	if err := f.Error(); err != nil {
		switch {
		case errors.Is(err, raft.ErrNotLeader):
			return nil, ErrNotLeader
		case errors.Is(err, raft.ErrLeadershipLost), errors.Is(err, raft.ErrLeadershipTransferInProgress):
			// The entry may still commit under the next leader.
			return nil, fmt.Errorf("%w: %v; the outcome is unknown", ErrTimeout, err)
		case errors.Is(err, raft.ErrEnqueueTimeout):
			return nil, fmt.Errorf("%w: %v", ErrTimeout, err)
		case errors.Is(err, raft.ErrRaftShutdown):
			return nil, ErrShutdown
		}
		return nil, err
	}
	res := f.Response()
	if err, ok := res.(error); ok {
		return nil, err
	}
	return res, nil
}

// forward sends a command to the leader. sent is false when the request
// certainly did not reach it (safe to retry).
func (n *Node) forward(ctx context.Context, leader string, cmd []byte) (interface{}, error, bool) {
	ctx, cancel := context.WithTimeout(ctx, applyTimeout+time.Second)
	defer cancel()
	buf, err := n.rpc.Call(ctx, leader, rpcApply, cmd)
	if err != nil {
		if errors.Is(err, transport.ErrRemote) {
			return nil, err, true
		}
		if errors.Is(err, transport.ErrNotSent) || errors.Is(err, transport.ErrClosed) {
			return nil, err, false // the leader never saw it: retry against the current leader
		}
		// The request may have reached the leader and been applied.
		return nil, fmt.Errorf("%w: forwarding to the leader at %s: %v; the outcome is unknown", ErrTimeout, leader, err), true
	}
	var rep rpcReply
	if err := codec.NewDecoderBytes(buf, rpcHandle).Decode(&rep); err != nil {
		return nil, fmt.Errorf("decode reply from %s: %w", leader, err), true
	}
	switch {
	case rep.Err != nil:
		return nil, fromAPIError(*rep.Err), true
	case rep.Created != nil:
		return *rep.Created, nil, true
	case rep.Produce != nil:
		return *rep.Produce, nil, true
	case rep.Life != nil:
		return *rep.Life, nil, true
	}
	return nil, nil, true
}

// catchUp makes this node's state at least as new as every write
// acknowledged before the call (the read-index protocol): the leader applies
// everything committed and reports how far that is, and this node waits
// until it has applied that far. Used before answering "no such topic" for a topic
// created a moment ago through another node.
func (n *Node) catchUp(ctx context.Context) error {
	var index uint64
	if n.raft.State() == raft.Leader {
		var err error
		if index, err = n.leaderReadIndex(); err != nil {
			return err
		}
	} else {
		addr, _ := n.raft.LeaderWithID()
		if addr == "" {
			return ErrNoLeader
		}
		buf, err := n.rpc.Call(ctx, string(addr), rpcReadIndex, nil)
		if err != nil {
			return fmt.Errorf("%w: asking the leader for its commit index: %v", ErrNoLeader, err)
		}
		if len(buf) != 8 {
			return fmt.Errorf("read index reply of %d bytes", len(buf))
		}
		index = binary.BigEndian.Uint64(buf)
	}
	for {
		ch := n.fsm.Changed()
		if n.fsm.AppliedIndex() >= index {
			return nil
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("%w: catching up to index %d", ErrTimeout, index)
		}
	}
}

// leaderReadIndex is the state machine index that covers every write
// acknowledged so far: a Barrier makes the leader apply everything committed
// (a new leader may not have yet), and succeeds only while it leads.
func (n *Node) leaderReadIndex() (uint64, error) {
	if n.raft.State() != raft.Leader {
		return 0, ErrNotLeader
	}
	if err := n.raft.Barrier(applyTimeout).Error(); err != nil {
		return 0, fmt.Errorf("%w: %v", ErrNotLeader, err)
	}
	return n.fsm.AppliedIndex(), nil
}

// handleRPC serves commands forwarded by followers.
func (n *Node) handleRPC(ctx context.Context, method uint8, body []byte) ([]byte, error) {
	switch method {
	case rpcApply:
	case rpcReadIndex:
		index, err := n.leaderReadIndex()
		if err != nil {
			return nil, err
		}
		return binary.BigEndian.AppendUint64(nil, index), nil
	default:
		return nil, fmt.Errorf("unknown rpc method %d", method)
	}
	var rep rpcReply
	res, err := n.applyRaw(body)
	if err != nil {
		b := toAPIError(err).Body
		rep.Err = &b
	} else {
		switch r := res.(type) {
		case fsm.CreateTopicResult:
			rep.Created = &r
		case fsm.ProduceResult:
			rep.Produce = &r
		case fsm.LifecycleResult:
			rep.Life = &r
		}
	}
	var buf bytes.Buffer
	if err := codec.NewEncoder(&buf, rpcHandle).Encode(rep); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
