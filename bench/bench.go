// Package bench measures Weir: a load generator for the HTTP API (Produce,
// Consume) in the manner of kafka-producer-perf-test, and the raw-Raft
// ceiling (RaftCeiling) that the produce rate is compared with: a 3-node
// hashicorp/raft cluster in one process with Weir's log store, fsync,
// transport and timings, a no-op state machine, and entries of the size the
// produce path creates. `weir bench` calls it; `go test -bench . ./bench/`
// runs the ceiling and a real in-process Weir cluster side by side (see
// docs/performance.md).
//
// Units: MB is 2^20 bytes, as kafka-producer-perf-test counts it, and byte
// rates count record payload (key and value), not framing or headers, so the
// ceiling's and the produce path's MB/s compare.
package bench

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/weir-streaming/weir/api"
)

// Defaults of the load generator; a zero field of a config takes these.
const (
	DefaultTopic      = "bench"
	DefaultRecordSize = 1024
	DefaultProducers  = 4
	DefaultBatch      = 100
	// DefaultDuration bounds a produce that sets neither Records nor
	// Duration.
	DefaultDuration = 10 * time.Second
)

// Timeouts and intervals of the load generator.
const (
	// progressInterval is how often a progress line is written.
	progressInterval = time.Second
	// requestTimeout bounds one HTTP request (a produce waits for commit).
	requestTimeout = 30 * time.Second
	// dialTimeout bounds connecting to one node.
	dialTimeout = 3 * time.Second
	// retryBackoff is the pause before a request the cluster could not take
	// now (no leader, commit timeout) is sent again. A produce doubles it on
	// each further refusal of the same request, up to retryBackoffMax: what
	// it waits for is a new leader, elected within about a second
	// (node.DefaultHeartbeatTimeout), so a longer wait would only add to the
	// measured outage.
	retryBackoff    = 50 * time.Millisecond
	retryBackoffMax = 500 * time.Millisecond
	// downFor is how long a produce skips an address that gave no answer
	// (connection refused or broken): the round robin goes on to the others
	// instead of sending a share of the requests to a dead node.
	downFor = time.Second
	// followPollMillis is the long poll of a following consume.
	followPollMillis = 1000
	// mb is the byte count of one MB in the rates (kafka-producer-perf-test's).
	mb = 1 << 20
)

var (
	// ErrConfig marks a configuration the load generator refuses.
	ErrConfig = errors.New("bench: invalid configuration")
	// ErrRefused wraps an answer from the cluster that retrying cannot fix
	// (an *APIError carries the code).
	ErrRefused = errors.New("bench: refused by the cluster")
)

// APIError is a non-2xx answer in the API's error envelope: api.Error, which
// the CLI shares.
type APIError = api.Error

// refused is an answer that retrying cannot fix: errors.Is(err, ErrRefused)
// holds for it, and errors.As finds its *APIError.
type refused struct{ *APIError }

func (r refused) Error() string   { return r.APIError.Error() }
func (r refused) Unwrap() []error { return []error{r.APIError, ErrRefused} }

// retryable says whether a failed request may be sent again unchanged: the
// connection failed or timed out, or the cluster asked to try again. Callers
// check their own context first.
func retryable(err error) bool {
	return !errors.Is(err, ErrRefused)
}

// newHTTPClient is a keep-alive client with an idle connection per
// concurrent requester and host.
func newHTTPClient(perHost int) *http.Client {
	return &http.Client{
		Timeout: requestTimeout + followPollMillis*time.Millisecond,
		Transport: &http.Transport{
			Proxy:               nil, // the cluster is never behind the environment's proxy
			DialContext:         (&net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConnsPerHost: perHost,
			MaxIdleConns:        0, // no global bound; perHost bounds each node
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
		},
	}
}

// baseURLs turns "host:port" or "http://host:port" into base URLs.
func baseURLs(addrs []string) ([]string, error) {
	var out []string
	for _, a := range addrs {
		for _, part := range strings.Split(a, ",") {
			part = strings.TrimSpace(part)
			if part == "" {
				continue
			}
			if !strings.Contains(part, "://") {
				part = "http://" + part
			}
			out = append(out, strings.TrimRight(part, "/"))
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%w: no API address", ErrConfig)
	}
	return out, nil
}

// do sends one request and returns the body of a 2xx answer; any other
// answer is an error that errors.As finds an *APIError in.
func do(ctx context.Context, hc *http.Client, method, url string, hdr http.Header, body []byte) (*http.Response, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return nil, nil, err
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp, nil, decodeError(resp, data)
	}
	return resp, data, nil
}

func decodeError(resp *http.Response, data []byte) error {
	ae := api.DecodeError("", resp, data)
	if api.Retryable(ae.Code) {
		return ae
	}
	return refused{ae}
}

// pause waits d or until ctx ends.
func pause(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

func perSec(n int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// ms formats a duration in milliseconds with two decimals.
func ms(d time.Duration) string {
	return fmt.Sprintf("%.2f ms", float64(d)/float64(time.Millisecond))
}

// startProgress writes line(now) to w once per progressInterval until ctx
// ends or the returned stop is called; with w nil it does nothing. line is
// called from one goroutine.
func startProgress(ctx context.Context, w io.Writer, line func(now time.Time) string) (stop func()) {
	if w == nil {
		return func() {}
	}
	done := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(progressInterval)
		defer t.Stop()
		for {
			select {
			case <-done:
				return
			case <-ctx.Done():
				return
			case now := <-t.C:
				fmt.Fprintln(w, line(now))
			}
		}
	}()
	var once sync.Once
	return func() { once.Do(func() { close(done); <-finished }) }
}
