package node

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/hashicorp/raft"
	"github.com/weir-streaming/weir/api"
	"github.com/weir-streaming/weir/fsm"
	"github.com/weir-streaming/weir/record"
	"github.com/weir-streaming/weir/version"
)

const (
	// maxJSONBodyBytes bounds a JSON request body; a JSON produce may be
	// larger than its binary form, hence twice the batch limit.
	maxJSONBodyBytes = 2 * record.MaxBatchBytes
	// requestTimeout bounds how long a write waits for a leader and commit.
	requestTimeout = 30 * time.Second
	// strongReadWait bounds how long a strong read waits for a new leader to
	// apply the earlier terms' entries.
	strongReadWait = 5 * time.Second
)

func (n *Node) routes() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET "+api.PathStatus, n.handleStatus)
	mux.HandleFunc("GET "+api.PathNodes, n.handleNodes)
	mux.HandleFunc("GET "+api.PathHealth, n.handleHealth)
	mux.HandleFunc("GET "+api.PathTopics, n.handleTopics)
	mux.HandleFunc("POST "+api.PathTopics, n.handleCreateTopic)
	mux.HandleFunc("GET "+api.PathTopic, n.handleTopic)
	mux.HandleFunc("DELETE "+api.PathTopic, n.handleDeleteTopic)
	mux.HandleFunc("POST "+api.PathProduce, n.handleProduce)
	mux.HandleFunc("GET "+api.PathConsume, n.handleConsume)
	mux.HandleFunc("POST "+api.PathShutdown, n.handleShutdown)
	mux.HandleFunc("GET "+api.PathUpgrade, n.handlePlan)
	mux.HandleFunc("POST "+api.PathUpgrade, n.handleUpgrade)
	mux.HandleFunc("POST "+api.PathResume, n.handleResume)
	mux.HandleFunc("POST "+api.PathRollback, n.handleRollback)
	mux.HandleFunc("GET "+api.PathHistory, n.handleHistory)
	mux.HandleFunc("GET "+api.PathBackup, n.handleBackup)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, fmt.Errorf("%w: no route for %s %s", ErrNotFound, r.Method, r.URL.Path))
	})
	return mux
}

// writeJSON answers with v as compact JSON, one line (`| jq` pretty-prints):
// indenting a produce answer cost 1.5% of the node's CPU.
func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, err error) {
	ae := toAPIError(err)
	writeJSON(w, ae.Status, api.ErrorResponse{Error: ae.Body})
}

func badRequest(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrBadRequest}, args...)...)
}

// decodeJSON reads a JSON body into v, refusing unknown fields, trailing
// data and bodies over the limit.
func decodeJSON(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxJSONBodyBytes+1))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest("malformed JSON body: %v", err)
	}
	if dec.More() {
		return badRequest("malformed JSON body: data after the object")
	}
	return nil
}

func (n *Node) handleHealth(w http.ResponseWriter, r *http.Request) {
	cs, _ := n.fsm.Cluster()
	_, leader := n.raft.LeaderWithID()
	writeJSON(w, http.StatusOK, api.HealthResponse{
		Node: n.cfg.ID, Serving: n.serving(cs), RaftState: raftStateName(n.raft.State()),
		Leader: string(leader), AppliedIndex: n.fsm.AppliedIndex(),
	})
}

func (n *Node) nodeStatuses() []api.NodeStatus {
	_, leader := n.raft.LeaderWithID()
	byID := map[string]*api.NodeStatus{}
	var out []*api.NodeStatus
	get := func(id string) *api.NodeStatus {
		if ns, ok := byID[id]; ok {
			return ns
		}
		ns := &api.NodeStatus{ID: id, RaftState: "unknown", RaftSuffrage: "none", GossipState: "unknown"}
		byID[id] = ns
		out = append(out, ns)
		return ns
	}
	if fut := n.raft.GetConfiguration(); fut.Error() == nil {
		for _, s := range fut.Configuration().Servers {
			ns := get(string(s.ID))
			ns.ClusterAddr = string(s.Address)
			if s.Suffrage == raft.Voter {
				ns.RaftSuffrage = "voter"
				ns.RaftState = "follower"
			} else {
				ns.RaftSuffrage = "nonvoter"
				ns.RaftState = "nonvoter"
			}
			if s.ID == leader {
				ns.RaftState = "leader"
			}
		}
	}
	for _, p := range n.peers() {
		ns := get(p.ID)
		ns.BinaryVersion = p.Version
		ns.GossipState = p.State
		ns.Serving = p.Serving && p.State == "alive"
		ns.AppliedIndex = p.AppliedIndex
		ns.APIAddr = p.APIAddr
		ns.ClusterAddr = p.ClusterAddr
		ns.GossipAddr = p.Addr
		ns.MinCompatible = p.MinCompatible
		ns.StorageOK = p.StorageOK
		if p.State != "alive" && ns.RaftState == "follower" {
			ns.RaftState = "unknown" // a voter gossip cannot reach: its role is not known
		}
	}
	self := get(n.cfg.ID)
	self.RaftState = raftStateName(n.raft.State())
	cs, _ := n.fsm.Cluster()
	self.Serving = n.serving(cs)
	self.AppliedIndex = n.fsm.AppliedIndex()
	self.BinaryVersion = n.cfg.BinaryVersion
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	res := make([]api.NodeStatus, len(out))
	for i, ns := range out {
		res[i] = *ns
	}
	return res
}

func (n *Node) handleStatus(w http.ResponseWriter, r *http.Request) {
	cs, err := n.fsm.Cluster()
	if err != nil {
		writeError(w, err)
		return
	}
	_, leader := n.raft.LeaderWithID()
	writeJSON(w, http.StatusOK, api.StatusResponse{
		ClusterID: cs.ClusterID, Phase: string(cs.Phase), ActiveVersion: cs.ActiveVersion, TargetVersion: cs.TargetVersion,
		Leader: string(leader), AppliedIndex: n.fsm.AppliedIndex(), Node: n.cfg.ID, Nodes: n.nodeStatuses(),
		Quiesced: cs.Quiesced, Resumed: cs.Resumed, Halted: haltToAPI(cs.Halted), Gates: version.EnabledGates(cs.ActiveVersion),
	})
}

func haltToAPI(h *fsm.Halt) *api.Halt {
	if h == nil {
		return nil
	}
	return &api.Halt{Node: h.Node, Reason: h.Reason, At: h.At}
}

func (n *Node) handleNodes(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, n.nodeStatuses())
}

func topicToAPI(ti fsm.TopicInfo) api.Topic {
	t := api.Topic{Name: ti.Name, Partitions: make([]api.PartitionInfo, len(ti.Partitions))}
	for i, p := range ti.Partitions {
		t.Partitions[i] = api.PartitionInfo{Partition: p.Partition, LogStart: p.LogStart, HighWatermark: p.HighWatermark}
	}
	return t
}

// readable checks a consistency request: a strong read is served only by a
// leader that has just verified its leadership; a follower redirects it.
func (n *Node) readable(w http.ResponseWriter, r *http.Request) bool {
	if r.URL.Query().Get(api.QueryConsistency) != api.ConsistencyStrong {
		return true
	}
	if n.raft.State() != raft.Leader {
		_, id := n.raft.LeaderWithID()
		for _, p := range n.peers() {
			if p.ID == string(id) && p.APIAddr != "" {
				u := url.URL{Scheme: "http", Host: p.APIAddr, Path: r.URL.Path, RawQuery: r.URL.RawQuery}
				http.Redirect(w, r, u.String(), http.StatusTemporaryRedirect)
				return false
			}
		}
		writeError(w, fmt.Errorf("%w: a strong read needs the leader and none is known", ErrNoLeader))
		return false
	}
	if err := n.strongReadReady(r.Context()); err != nil {
		writeError(w, err)
		return false
	}
	return true
}

// strongReadReady holds a strong read until this leader may serve it: its
// state machine has applied every entry of earlier terms (a new leader may
// not have yet: its Barrier in the leader loop says so), and it is still the
// leader (VerifyLeader). Every entry it acknowledged itself was applied
// before the acknowledgement, so the read then sees every acknowledged write.
func (n *Node) strongReadReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, strongReadWait)
	defer cancel()
	for !n.established.Load() {
		if n.raft.State() != raft.Leader {
			return fmt.Errorf("%w: leadership moved before the read", ErrNotLeader)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: the new leader has not applied the earlier terms' entries yet", ErrNotLeader)
		case <-time.After(leaderWaitPoll):
		}
	}
	if err := n.raft.VerifyLeader().Error(); err != nil {
		return fmt.Errorf("%w: %v", ErrNotLeader, err)
	}
	return nil
}

func (n *Node) handleTopics(w http.ResponseWriter, r *http.Request) {
	if !n.readable(w, r) {
		return
	}
	tis, err := n.fsm.Topics()
	if err != nil {
		writeError(w, err)
		return
	}
	out := api.TopicList{Topics: []api.Topic{}}
	for _, ti := range tis {
		out.Topics = append(out.Topics, topicToAPI(ti))
	}
	writeJSON(w, http.StatusOK, out)
}

func (n *Node) handleTopic(w http.ResponseWriter, r *http.Request) {
	if !n.readable(w, r) {
		return
	}
	ti, err := n.topic(r.Context(), r.PathValue("name"))
	if err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, topicToAPI(ti))
}

func (n *Node) handleCreateTopic(w http.ResponseWriter, r *http.Request) {
	var req api.CreateTopicRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, err)
		return
	}
	if err := fsm.ValidateTopicName(req.Name); err != nil {
		writeError(w, err)
		return
	}
	if err := fsm.ValidatePartitions(req.Partitions); err != nil {
		writeError(w, err)
		return
	}
	res, err := n.submit(r.Context(), fsm.CreateTopicType, fsm.CreateTopicCommand{Name: req.Name, Partitions: req.Partitions, At: time.Now().UnixMilli()})
	if err != nil {
		writeError(w, err)
		return
	}
	created := res.(fsm.CreateTopicResult).Created
	ti, err := n.waitTopic(r.Context(), req.Name)
	if err != nil {
		writeError(w, err)
		return
	}
	status := http.StatusOK
	if created {
		status = http.StatusCreated
	}
	writeJSON(w, status, api.CreateTopicResponse{Topic: topicToAPI(ti), Created: created})
}

// topic describes a topic; when this node does not know it, it first
// catches up with the leader, so a topic just created through another node
// is found.
func (n *Node) topic(ctx context.Context, name string) (fsm.TopicInfo, error) {
	ti, err := n.fsm.Topic(name)
	if !errors.Is(err, fsm.ErrUnknownTopic) {
		return ti, err
	}
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	if cerr := n.catchUp(ctx); cerr != nil {
		return ti, cerr
	}
	return n.fsm.Topic(name)
}

// waitTopic reads a topic this node just had committed; a follower may
// apply the entry a moment after the leader answered.
func (n *Node) waitTopic(ctx context.Context, name string) (fsm.TopicInfo, error) {
	for {
		ch := n.fsm.Changed()
		ti, err := n.fsm.Topic(name)
		if !errors.Is(err, fsm.ErrUnknownTopic) {
			return ti, err
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return ti, err
		}
	}
}

func (n *Node) handleDeleteTopic(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if _, err := n.submit(r.Context(), fsm.DeleteTopicType, fsm.DeleteTopicCommand{Name: name}); err != nil {
		writeError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, api.DeleteTopicResponse{Name: name, Deleted: true})
}

// submit encodes a command and proposes it with the request's deadline.
func (n *Node) submit(ctx context.Context, t fsm.MessageType, msg any) (interface{}, error) {
	cmd, err := fsm.Encode(t, msg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, requestTimeout)
	defer cancel()
	return n.propose(ctx, cmd)
}

// rr spreads the requests of non-idempotent producers over partitions.
var rr atomic.Uint64

func (n *Node) handleProduce(w http.ResponseWriter, r *http.Request) {
	if err := n.dataPlaneErr(); err != nil {
		writeError(w, err)
		return
	}
	defer n.inflight.begin()()
	topic := r.PathValue("name")
	recs, frames, err := readProduceBody(r)
	if err != nil {
		writeError(w, err)
		return
	}
	if len(recs) == 0 {
		writeError(w, badRequest("the request holds no records"))
		return
	}
	ti, err := n.topic(r.Context(), topic)
	if err != nil {
		writeError(w, err)
		return
	}
	q := r.URL.Query()
	pinned := -1
	if s := q.Get(api.QueryPartition); s != "" {
		if pinned, err = strconv.Atoi(s); err != nil {
			writeError(w, badRequest("partition %q is not a number", s))
			return
		}
		if pinned < 0 || pinned >= len(ti.Partitions) {
			writeError(w, fmt.Errorf("%w: partition %d of topic %q does not exist (it has %d)", fsm.ErrUnknownPartition, pinned, topic, len(ti.Partitions)))
			return
		}
	}
	producer := r.Header.Get(api.HeaderProducerID)
	var seq uint64
	if producer != "" {
		if len(producer) > api.MaxProducerIDLen {
			writeError(w, badRequest("producer id is %d bytes, the limit is %d", len(producer), api.MaxProducerIDLen))
			return
		}
		if seq, err = strconv.ParseUint(r.Header.Get(api.HeaderProducerSeq), 10, 64); err != nil || seq == 0 {
			writeError(w, badRequest("%s needs %s, a number from 1", api.HeaderProducerID, api.HeaderProducerSeq))
			return
		}
	}
	batches, where := Place(Placement{
		Records: recs, Frames: frames, Partitions: len(ti.Partitions), Pinned: pinned,
		Sticky: StickyPartition(len(ti.Partitions), producer, seq, rr.Add(1)),
	})
	res, err := n.submit(r.Context(), fsm.ProduceType, fsm.ProduceCommand{
		Topic: topic, ProducerID: producer, Seq: seq, At: time.Now().UnixMilli(), Batches: batches,
	})
	if err != nil {
		writeError(w, err)
		return
	}
	bases := res.(fsm.ProduceResult).Bases
	out := api.ProduceResponse{Offsets: make([]api.RecordPosition, len(recs))}
	for i, s := range where {
		out.Offsets[i] = api.RecordPosition{Partition: batches[s.Batch].Partition, Offset: bases[s.Batch] + uint64(s.Index)}
	}
	writeJSON(w, http.StatusOK, out)
}

// readProduceBody decodes a produce body, binary or JSON, and checks sizes.
// A binary body is also returned whole (frames), validated, for Place to
// hand through.
func readProduceBody(r *http.Request) (recs []record.Record, frames []byte, err error) {
	if r.Header.Get("Content-Type") == api.ContentTypeRecords {
		if r.ContentLength > record.MaxBatchBytes {
			return nil, nil, fmt.Errorf("%w: the request is over %d bytes", record.ErrTooLarge, record.MaxBatchBytes)
		}
		body, err := readBody(r.Body, r.ContentLength, record.MaxBatchBytes+1)
		if err != nil {
			return nil, nil, badRequest("reading the body: %v", err)
		}
		if len(body) > record.MaxBatchBytes {
			return nil, nil, fmt.Errorf("%w: the request is over %d bytes", record.ErrTooLarge, record.MaxBatchBytes)
		}
		n, err := record.Validate(body)
		if err != nil {
			return nil, nil, err
		}
		recs = make([]record.Record, 0, n)
		rd := record.NewReader(body)
		for rec, ok := rd.Next(); ok; rec, ok = rd.Next() {
			recs = append(recs, rec)
		}
		return recs, body, nil
	}
	var req api.ProduceRequest
	if err := decodeJSON(r, &req); err != nil {
		return nil, nil, err
	}
	recs = make([]record.Record, len(req.Records))
	total := 0
	for i, pr := range req.Records {
		recs[i].Value = []byte(pr.Value)
		if pr.Key != nil {
			recs[i].Key = []byte(*pr.Key)
		}
		size := len(recs[i].Key) + len(recs[i].Value)
		if size > record.MaxRecordBytes {
			return nil, nil, fmt.Errorf("%w: record %d is %d bytes, the limit is %d", record.ErrTooLarge, i, size, record.MaxRecordBytes)
		}
		total += record.FrameSize(recs[i].Key, recs[i].Value)
	}
	if total > record.MaxBatchBytes {
		return nil, nil, fmt.Errorf("%w: the request is over %d bytes", record.ErrTooLarge, record.MaxBatchBytes)
	}
	return recs, nil, nil
}

// readBody reads at most limit bytes, in one allocation when the sender
// declared the length.
func readBody(body io.Reader, declared, limit int64) ([]byte, error) {
	if declared < 0 || declared >= limit {
		return io.ReadAll(io.LimitReader(body, limit))
	}
	// net/http stops a body at its Content-Length.
	buf := make([]byte, declared)
	if _, err := io.ReadFull(body, buf); err != nil {
		return nil, err
	}
	return buf, nil
}

func queryInt(q url.Values, name string, def, min, max int) (int, error) {
	s := q.Get(name)
	if s == "" {
		return def, nil
	}
	v, err := strconv.Atoi(s)
	if err != nil || v < min || v > max {
		return 0, badRequest("%s=%q: want a number from %d to %d", name, s, min, max)
	}
	return v, nil
}

func (n *Node) handleConsume(w http.ResponseWriter, r *http.Request) {
	if err := n.dataPlaneErr(); err != nil {
		writeError(w, err)
		return
	}
	defer n.inflight.begin()()
	if !n.readable(w, r) {
		return
	}
	topic := r.PathValue("name")
	if _, err := n.topic(r.Context(), topic); err != nil {
		writeError(w, err)
		return
	}
	q := r.URL.Query()
	part, err := strconv.Atoi(r.PathValue("p"))
	if err != nil {
		writeError(w, badRequest("partition %q is not a number", r.PathValue("p")))
		return
	}
	offset, err := strconv.ParseUint(q.Get(api.QueryOffset), 10, 64)
	if err != nil {
		writeError(w, badRequest("offset=%q: want a number from 0", q.Get(api.QueryOffset)))
		return
	}
	maxRecords, err := queryInt(q, api.QueryMaxRecords, api.DefaultConsumeMaxRecords, 1, api.MaxConsumeMaxRecords)
	if err == nil {
		var maxBytes, waitMs int
		maxBytes, err = queryInt(q, api.QueryMaxBytes, api.DefaultConsumeMaxBytes, 1, record.MaxBatchBytes)
		if err == nil {
			waitMs, err = queryInt(q, api.QueryWaitMillis, 0, 0, api.MaxWaitMillis)
		}
		if err == nil {
			n.serveRecords(w, r, topic, part, offset, fsm.ReadLimits{MaxRecords: maxRecords, MaxBytes: maxBytes}, time.Duration(waitMs)*time.Millisecond)
			return
		}
	}
	writeError(w, err)
}

func (n *Node) serveRecords(w http.ResponseWriter, r *http.Request, topic string, part int, offset uint64, lim fsm.ReadLimits, wait time.Duration) {
	binary := r.Header.Get("Accept") == api.ContentTypeRecords
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	for {
		changed := n.fsm.Changed()
		var body []byte
		var recs []api.ConsumedRecord
		count := 0
		pi, next, err := n.fsm.Read(topic, part, offset, lim, func(rec fsm.Rec) {
			count++
			if binary {
				body = record.AppendConsumed(body, rec.Offset, rec.Timestamp, rec.Key, rec.Value)
				return
			}
			cr := api.ConsumedRecord{Partition: part, Offset: rec.Offset, Timestamp: rec.Timestamp, Value: string(rec.Value), Checksummed: rec.Checksummed}
			if rec.Key != nil {
				key := string(rec.Key)
				cr.Key = &key
			}
			recs = append(recs, cr)
		})
		if err != nil {
			writeError(w, err)
			return
		}
		if count == 0 && wait > 0 {
			select {
			case <-changed:
				continue
			case <-deadline.C:
				wait = 0
				continue
			case <-r.Context().Done():
				return
			case <-n.shutdownCh:
				wait = 0
				continue
			}
		}
		h := w.Header()
		h.Set(api.HeaderNextOffset, strconv.FormatUint(next, 10))
		h.Set(api.HeaderHighWatermark, strconv.FormatUint(pi.HighWatermark, 10))
		h.Set(api.HeaderLogStart, strconv.FormatUint(pi.LogStart, 10))
		h.Set(api.HeaderRecordCount, strconv.Itoa(count))
		if binary {
			h.Set("Content-Type", api.ContentTypeRecords)
			w.WriteHeader(http.StatusOK)
			_, _ = w.Write(body)
			return
		}
		if recs == nil {
			recs = []api.ConsumedRecord{}
		}
		writeJSON(w, http.StatusOK, api.ConsumeResponse{Records: recs, NextOffset: next, HighWatermark: pi.HighWatermark, LogStart: pi.LogStart})
		return
	}
}
