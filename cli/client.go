package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/weir-streaming/weir/api"
)

// Timeouts and limits of the HTTP client.
const (
	// dialTimeout bounds connecting to one address before moving on.
	dialTimeout = 3 * time.Second
	// requestTimeout bounds one attempt at one address, unless the request
	// sets its own (a long poll adds its wait to it).
	requestTimeout = 30 * time.Second
	// maxResponseBytes bounds an answer's body; a consume answer is bounded
	// by api.DefaultConsumeMaxBytes plus framing.
	maxResponseBytes = 64 << 20
	// retryBackoffMin and retryBackoffMax bound the wait between retries:
	// it doubles from the first to the second. The cap is short because
	// what a retry mostly waits for is a new leader, elected within about
	// a second (node.DefaultHeartbeatTimeout); a longer wait would add to
	// the write outage after a leader fails.
	retryBackoffMin = 50 * time.Millisecond
	retryBackoffMax = 500 * time.Millisecond
	// downFor is how long an address that gave no answer (connection
	// refused, reset, timed out) is tried only after the others, so that the
	// requests after one failure do not each wait on a dead node first.
	downFor = time.Second
)

// Client talks to a cluster's HTTP API. It tries each address in turn until
// one answers, and starts the next request at the address that answered
// last. An address that gave no answer goes to the back of the order for
// downFor. Errors in the API's envelope come back as *APIError; when no
// address answers, *UnreachableError.
type Client struct {
	bases []string // base URLs, e.g. http://127.0.0.1:7070
	http  *http.Client

	// OnRetry, when set, hears of each retry Retry is about to make.
	OnRetry func(err error, wait time.Duration)

	// now is the clock of the down marks (tests replace it).
	now func() time.Time

	mu        sync.Mutex
	next      int         // index into bases to try first
	downUntil []time.Time // per base: tried last until then
}

// NewClient makes a client for the given API addresses (host:port, or URLs).
func NewClient(addrs []string) (*Client, error) {
	if len(addrs) == 0 {
		return nil, failf("pass --addr HOST:PORT or set WEIR_ADDR", "no API address to talk to")
	}
	c := &Client{
		http: &http.Client{Transport: &http.Transport{
			Proxy:               nil, // the cluster is never behind the environment's proxy
			DialContext:         (&net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConnsPerHost: 4,
			IdleConnTimeout:     90 * time.Second,
		}},
		now: time.Now,
	}
	for _, a := range addrs {
		base, err := baseURL(a)
		if err != nil {
			return nil, err
		}
		c.bases = append(c.bases, base)
	}
	c.downUntil = make([]time.Time, len(c.bases))
	return c, nil
}

// baseURL turns "host:port" or "http://host:port" into a base URL.
func baseURL(addr string) (string, error) {
	if !strings.Contains(addr, "://") {
		addr = "http://" + addr
	}
	u, err := url.Parse(addr)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return "", failf("give each address as host:port, e.g. 127.0.0.1:7070", "bad API address %q", addr)
	}
	return u.Scheme + "://" + u.Host, nil
}

// Addrs are the client's base URLs, in order.
func (c *Client) Addrs() []string { return append([]string(nil), c.bases...) }

// Request is one API call.
type Request struct {
	Method string
	Path   string // e.g. /v1/topics/events, already escaped
	Query  url.Values
	Header http.Header
	Body   []byte
	// Timeout bounds one attempt at one address; zero is requestTimeout.
	Timeout time.Duration
}

// Response is an API answer with a 2xx status.
type Response struct {
	Status int
	Header http.Header
	Body   []byte
	Addr   string // the base URL that answered
}

// APIError is an answer in the API's error envelope (or, from something
// that is not a Weir node, any non-2xx answer): api.Error, which the bench
// shares.
type APIError = api.Error

// UnreachableError says that no address answered.
type UnreachableError struct {
	Errs []error // one per address tried
}

func (e *UnreachableError) Error() string {
	msgs := make([]string, len(e.Errs))
	for i, err := range e.Errs {
		msgs[i] = err.Error()
	}
	return "no node answered: " + strings.Join(msgs, "; ")
}

// IsRetryable reports whether a failed request may be sent again, the same,
// and may then succeed: no node answered, or one asked to try again.
func IsRetryable(err error) bool {
	var (
		apiErr *APIError
		unr    *UnreachableError
	)
	return errors.As(err, &unr) || (errors.As(err, &apiErr) && apiErr.Retryable())
}

// Do sends req to each address in turn, starting with the one that answered
// last, until one answers. An answer outside 2xx is returned as *APIError;
// if no address answers, *UnreachableError. A request whose connection
// broke after it was sent is sent again to the next address, so only
// idempotent requests (reads, idempotent produces, topic creation) should
// rely on Do to fail over.
func (c *Client) Do(ctx context.Context, req Request) (*Response, error) {
	var errs []error
	for _, idx := range c.order() {
		resp, err := c.attempt(ctx, c.bases[idx], req)
		if err == nil || !isTransportError(err) {
			c.answered(idx)
			return resp, err
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		c.markDown(idx)
		errs = append(errs, err)
	}
	return nil, &UnreachableError{Errs: errs}
}

// order is the order in which to try the addresses: from next on, those not
// marked down first, then those marked down (a mark never keeps an address
// from being tried when the others give no answer).
func (c *Client) order() []int {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := c.now()
	up := make([]int, 0, len(c.bases))
	var down []int
	for i := range c.bases {
		idx := (c.next + i) % len(c.bases)
		if now.Before(c.downUntil[idx]) {
			down = append(down, idx)
		} else {
			up = append(up, idx)
		}
	}
	return append(up, down...)
}

// answered makes the address at idx, which answered, the first to try and
// clears its down mark.
func (c *Client) answered(idx int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.next = idx
	c.downUntil[idx] = time.Time{}
}

// markDown puts the address at idx, which gave no answer, at the back of
// the order for downFor.
func (c *Client) markDown(idx int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.downUntil[idx] = c.now().Add(downFor)
}

// Retry is Do, repeated while the error is retryable (IsRetryable) and the
// deadline has not passed, with a backoff that doubles from retryBackoffMin
// to retryBackoffMax; each retry starts at the address after the one that
// asked to try again, and addresses that gave no answer come last (Do). The
// request is sent again unchanged: for a produce, with the same producer
// sequence.
func (c *Client) Retry(ctx context.Context, deadline time.Duration, req Request) (*Response, error) {
	end := time.Now().Add(deadline)
	backoff := retryBackoffMin
	for {
		resp, err := c.Do(ctx, req)
		if err == nil || !IsRetryable(err) {
			return resp, err
		}
		var apiErr *APIError
		if errors.As(err, &apiErr) {
			c.skip(apiErr.Addr)
		}
		wait := min(backoff, time.Until(end))
		if wait <= 0 {
			return nil, err
		}
		if c.OnRetry != nil {
			c.OnRetry(err, wait)
		}
		if pause(ctx, wait); ctx.Err() != nil {
			return nil, ctx.Err()
		}
		backoff = nextBackoff(backoff)
	}
}

// nextBackoff is the wait after one of wait: twice as long, at most
// retryBackoffMax.
func nextBackoff(wait time.Duration) time.Duration {
	return min(2*wait, retryBackoffMax)
}

// skip makes the address after base the first to try.
func (c *Client) skip(base string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, b := range c.bases {
		if b == base {
			c.next = (i + 1) % len(c.bases)
			return
		}
	}
}

// GetJSON GETs path and decodes the JSON answer into out.
func (c *Client) GetJSON(ctx context.Context, path string, out any) (*Response, error) {
	resp, err := c.Do(ctx, Request{Method: http.MethodGet, Path: path})
	if err != nil {
		return nil, err
	}
	return resp, decodeJSON(resp, out)
}

func decodeJSON(resp *Response, out any) error {
	if err := json.Unmarshal(resp.Body, out); err != nil {
		return fmt.Errorf("%s answered something that is not the API's JSON: %w", resp.Addr, err)
	}
	return nil
}

// transportError is a failure to get any answer from one address.
type transportError struct {
	addr string
	err  error
}

func (e *transportError) Error() string { return e.addr + ": " + e.err.Error() }
func (e *transportError) Unwrap() error { return e.err }

func isTransportError(err error) bool {
	var te *transportError
	return errors.As(err, &te)
}

// attempt sends req to one address.
func (c *Client) attempt(ctx context.Context, base string, req Request) (*Response, error) {
	var resp *Response
	err := c.exchange(ctx, base, req, func(hresp *http.Response) error {
		data, err := io.ReadAll(io.LimitReader(hresp.Body, maxResponseBytes))
		if err != nil {
			return &transportError{addr: hostOf(base), err: err}
		}
		resp = &Response{Status: hresp.StatusCode, Header: hresp.Header, Body: data, Addr: base}
		return nil
	})
	return resp, err
}

// exchange sends req to one address and hands a 2xx answer, its body still
// unread, to read; any other answer becomes an *APIError, and no answer a
// transport error.
func (c *Client) exchange(ctx context.Context, base string, req Request, read func(*http.Response) error) error {
	timeout := req.Timeout
	if timeout == 0 {
		timeout = requestTimeout
	}
	actx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	u := base + req.Path
	if len(req.Query) > 0 {
		u += "?" + req.Query.Encode()
	}
	var body io.Reader
	if req.Body != nil {
		body = bytes.NewReader(req.Body)
	}
	hreq, err := http.NewRequestWithContext(actx, req.Method, u, body)
	if err != nil {
		return fmt.Errorf("building request %s %s: %w", req.Method, u, err)
	}
	for k, vs := range req.Header {
		hreq.Header[k] = vs
	}
	if hreq.Header.Get("Accept") == "" {
		hreq.Header.Set("Accept", "application/json")
	}
	hresp, err := c.http.Do(hreq)
	if err != nil {
		return &transportError{addr: hostOf(base), err: unwrapURLError(err)}
	}
	defer hresp.Body.Close()
	if hresp.StatusCode < 200 || hresp.StatusCode > 299 {
		data, err := io.ReadAll(io.LimitReader(hresp.Body, maxResponseBytes))
		if err != nil {
			return &transportError{addr: hostOf(base), err: err}
		}
		return decodeError(base, hresp, data)
	}
	return read(hresp)
}

// Stream is Do for an answer too large to hold in memory (a backup): the
// body of the first 2xx answer is copied to w as it arrives, and the number
// of bytes copied returned. Addresses that do not answer are skipped as in
// Do; once an answer started, a failure while copying is returned as it is
// (w holds part of the body) and no other address is tried.
func (c *Client) Stream(ctx context.Context, req Request, w io.Writer) (int64, string, error) {
	var errs []error
	for _, idx := range c.order() {
		var n int64
		err := c.exchange(ctx, c.bases[idx], req, func(hresp *http.Response) error {
			var err error
			if n, err = io.Copy(w, hresp.Body); err != nil {
				return fmt.Errorf("reading the answer of %s after %d bytes: %w", hostOf(c.bases[idx]), n, unwrapURLError(err))
			}
			return nil
		})
		if err == nil || !isTransportError(err) {
			c.answered(idx)
			return n, c.bases[idx], err
		}
		if ctx.Err() != nil {
			return 0, "", ctx.Err()
		}
		c.markDown(idx)
		errs = append(errs, err)
	}
	return 0, "", &UnreachableError{Errs: errs}
}

// decodeError reads the API's error envelope from a non-2xx answer.
func decodeError(base string, hresp *http.Response, data []byte) *APIError {
	return api.DecodeError(base, hresp, data)
}

// unwrapURLError drops net/http's "Get \"http://...\":" prefix; the address
// is named by transportError.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func hostOf(base string) string {
	if i := strings.Index(base, "://"); i >= 0 {
		return base[i+3:]
	}
	return base
}

// topicPath is /v1/topics/{name} with name escaped.
func topicPath(name string) string {
	return strings.Replace(api.PathTopic, "{name}", url.PathEscape(name), 1)
}

// partitionPath fills a path with {name} and {p}.
func partitionPath(tmpl, name string, p int) string {
	r := strings.NewReplacer("{name}", url.PathEscape(name), "{p}", fmt.Sprint(p))
	return r.Replace(tmpl)
}
