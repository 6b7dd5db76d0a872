package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/weir-streaming/weir/api"
)

// headerServedBy carries, in the response headers do returns, the host that
// answered (not a header any node sends).
const headerServedBy = "X-Chaos-Served-By"

// client talks to the nodes' HTTP API directly (no CLI), one request per
// call, each bounded by its context.
type client struct {
	http *http.Client
}

func newClient() *client {
	tr := &http.Transport{
		MaxIdleConnsPerHost: 16,
		IdleConnTimeout:     30 * time.Second,
		DisableCompression:  true,
	}
	return &client{http: &http.Client{Transport: tr}}
}

// callError is a failed request: an API error (Code set) or a transport
// error. Sent is false only when the request certainly never reached a
// node (connection refused), so it had no effect.
type callError struct {
	Code    string
	Message string
	Status  int
	Err     error
	Sent    bool
}

func (e *callError) Error() string {
	if e.Code != "" {
		return e.Code + ": " + e.Message
	}
	return e.Err.Error()
}

// definite reports whether the request certainly did not take effect: the
// node refused it (a 4xx, or a data plane closed by the lifecycle phase),
// or it never left the host.
func (e *callError) definite() bool {
	if !e.Sent {
		return true
	}
	switch e.Code {
	case api.CodeBadRequest, api.CodeInvalidTopicName, api.CodeInvalidPartitions, api.CodeUnknownTopic,
		api.CodeUnknownPartition, api.CodeRecordTooLarge, api.CodeCorruptBatch, api.CodeStaleSequence,
		api.CodeClusterShutDown, api.CodeVersionRefused, api.CodeNotFound, api.CodeMethodNotAllowed,
		api.CodeOffsetOutOfRange:
		return true
	}
	return false
}

// retryable reports whether the same request may succeed if sent again
// (to this or another node): what api.Retryable says (leadership changes,
// timeouts), lost connections, and, because the harness keeps producing
// through faults and lifecycle steps, a closed data plane (shutdown until
// resume), a topic a restarted node has not caught up with, and 5xx. With
// the idempotent-producer headers a retry never duplicates.
func (e *callError) retryable() bool {
	if e.Code == "" || api.Retryable(e.Code) {
		return true
	}
	switch e.Code {
	case api.CodeClusterShutDown, api.CodeUnknownTopic:
		return true
	}
	return e.Status >= 500
}

func (c *client) do(ctx context.Context, req *http.Request, out any) (http.Header, *callError) {
	resp, err := c.http.Do(req.WithContext(ctx))
	if err != nil {
		return nil, &callError{Err: err, Sent: !errors.Is(err, syscall.ECONNREFUSED)}
	}
	defer resp.Body.Close()
	if resp.Request != nil && resp.Request.URL != nil {
		// The answering host, after redirects (a strong read on a follower).
		resp.Header.Set(headerServedBy, resp.Request.URL.Host)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, &callError{Err: fmt.Errorf("reading the response: %w", err), Sent: true, Status: resp.StatusCode}
	}
	if resp.StatusCode >= 300 {
		var er api.ErrorResponse
		if json.Unmarshal(body, &er) == nil && er.Error.Code != "" {
			return resp.Header, &callError{Code: er.Error.Code, Message: er.Error.Message, Status: resp.StatusCode, Sent: true}
		}
		return resp.Header, &callError{Err: fmt.Errorf("HTTP %d: %s", resp.StatusCode, firstLine(body)), Status: resp.StatusCode, Sent: true}
	}
	if out != nil {
		if err := json.Unmarshal(body, out); err != nil {
			return resp.Header, &callError{Err: fmt.Errorf("decoding the response: %w", err), Status: resp.StatusCode, Sent: true}
		}
	}
	return resp.Header, nil
}

func apiURL(node, path string, q url.Values) string {
	u := url.URL{Scheme: "http", Host: node, Path: path}
	if q != nil {
		u.RawQuery = q.Encode()
	}
	return u.String()
}

func pathOf(tmpl string, kv ...string) string {
	r := strings.NewReplacer(kv...)
	return r.Replace(tmpl)
}

// produce appends one value to a partition as (producer, seq).
func (c *client) produce(ctx context.Context, node, topic string, partition int, value, producer string, seq uint64) (int64, *callError) {
	body, _ := json.Marshal(api.ProduceRequest{Records: []api.ProduceRecord{{Value: value}}})
	q := url.Values{api.QueryPartition: {strconv.Itoa(partition)}}
	req, _ := http.NewRequest(http.MethodPost, apiURL(node, pathOf(api.PathProduce, "{name}", topic), q), bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(api.HeaderProducerID, producer)
	req.Header.Set(api.HeaderProducerSeq, strconv.FormatUint(seq, 10))
	var out api.ProduceResponse
	if _, cerr := c.do(ctx, req, &out); cerr != nil {
		return 0, cerr
	}
	if len(out.Offsets) != 1 || out.Offsets[0].Partition != partition {
		return 0, &callError{Err: fmt.Errorf("produce answered %+v for one record to partition %d", out.Offsets, partition), Sent: true, Status: 200}
	}
	return int64(out.Offsets[0].Offset), nil
}

// consumed is one consume's answer.
type consumed struct {
	records    []api.ConsumedRecord
	hw         *int64
	outOfRange bool
	message    string // OFFSET_OUT_OF_RANGE's message: the extent the node had
	servedBy   string // host:port that answered
}

// consume reads a partition from offset; strong asks for a read the leader
// has verified (a follower redirects it, which the client follows).
func (c *client) consume(ctx context.Context, node, topic string, partition int, offset int64, max int, strong bool) (consumed, *callError) {
	q := url.Values{api.QueryOffset: {strconv.FormatInt(offset, 10)}, api.QueryMaxRecords: {strconv.Itoa(max)},
		api.QueryMaxBytes: {strconv.Itoa(8 << 20)}}
	if strong {
		q.Set(api.QueryConsistency, api.ConsistencyStrong)
	}
	req, _ := http.NewRequest(http.MethodGet, apiURL(node, pathOf(api.PathConsume, "{name}", topic, "{p}", strconv.Itoa(partition)), q), nil)
	var out api.ConsumeResponse
	h, cerr := c.do(ctx, req, &out)
	if cerr != nil {
		if cerr.Code == api.CodeOffsetOutOfRange {
			return consumed{outOfRange: true, hw: headerInt(h, api.HeaderHighWatermark), message: cerr.Error(), servedBy: h.Get(headerServedBy)}, nil
		}
		return consumed{}, cerr
	}
	hw := int64(out.HighWatermark)
	return consumed{records: out.Records, hw: &hw, servedBy: h.Get(headerServedBy)}, nil
}

func headerInt(h http.Header, name string) *int64 {
	if h == nil {
		return nil
	}
	v, err := strconv.ParseInt(h.Get(name), 10, 64)
	if err != nil {
		return nil
	}
	return &v
}

func (c *client) status(ctx context.Context, node string) (api.StatusResponse, *callError) {
	req, _ := http.NewRequest(http.MethodGet, apiURL(node, api.PathStatus, nil), nil)
	var st api.StatusResponse
	_, cerr := c.do(ctx, req, &st)
	return st, cerr
}

func (c *client) topic(ctx context.Context, node, topic string) (api.Topic, *callError) {
	req, _ := http.NewRequest(http.MethodGet, apiURL(node, pathOf(api.PathTopic, "{name}", topic), nil), nil)
	var t api.Topic
	_, cerr := c.do(ctx, req, &t)
	return t, cerr
}

func (c *client) createTopic(ctx context.Context, node, topic string, partitions int) *callError {
	body, _ := json.Marshal(api.CreateTopicRequest{Name: topic, Partitions: partitions})
	req, _ := http.NewRequest(http.MethodPost, apiURL(node, api.PathTopics, nil), bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	_, cerr := c.do(ctx, req, nil)
	return cerr
}

func (c *client) history(ctx context.Context, node string) (api.HistoryResponse, *callError) {
	req, _ := http.NewRequest(http.MethodGet, apiURL(node, api.PathHistory, nil), nil)
	var h api.HistoryResponse
	_, cerr := c.do(ctx, req, &h)
	return h, cerr
}

// lifecycle posts a lifecycle command (path api.PathShutdown etc.).
func (c *client) lifecycle(ctx context.Context, node, path string, lr api.LifecycleRequest) (api.LifecycleResponse, *callError) {
	body, _ := json.Marshal(lr)
	req, _ := http.NewRequest(http.MethodPost, apiURL(node, path, nil), bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	var out api.LifecycleResponse
	_, cerr := c.do(ctx, req, &out)
	return out, cerr
}
