package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/weir-streaming/weir/api"
)

// closedAddr is a loopback address nothing listens on.
func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func writeEnvelope(w http.ResponseWriter, status int, code, msg, hint string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	fmt.Fprintf(w, `{"error":{"code":%q,"message":%q,"hint":%q}}`, code, msg, hint)
}

func TestClient_FailsOverToNextAddress(t *testing.T) {
	var hits int
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits++
		if r.URL.Path != api.PathStatus {
			t.Errorf("path %q", r.URL.Path)
		}
		fmt.Fprint(w, `{"leader":"node2"}`)
	}))
	defer srv.Close()

	cl, err := NewClient([]string{closedAddr(t), srv.Listener.Addr().String()})
	if err != nil {
		t.Fatal(err)
	}
	var st api.StatusResponse
	resp, err := cl.GetJSON(context.Background(), api.PathStatus, &st)
	if err != nil {
		t.Fatalf("GetJSON: %v", err)
	}
	if st.Leader != "node2" || resp.Addr != srv.URL {
		t.Fatalf("leader %q from %q, want node2 from %q", st.Leader, resp.Addr, srv.URL)
	}
	// The next request starts at the address that answered.
	if _, err := cl.GetJSON(context.Background(), api.PathStatus, &st); err != nil {
		t.Fatal(err)
	}
	if cl.next != 1 || hits != 2 {
		t.Fatalf("next=%d hits=%d, want 1 and 2", cl.next, hits)
	}
}

func TestClient_NoAddressAnswers(t *testing.T) {
	cl, err := NewClient([]string{closedAddr(t), closedAddr(t)})
	if err != nil {
		t.Fatal(err)
	}
	_, err = cl.Do(context.Background(), Request{Method: http.MethodGet, Path: api.PathStatus})
	var unr *UnreachableError
	if !errors.As(err, &unr) || len(unr.Errs) != 2 {
		t.Fatalf("err = %v, want UnreachableError over 2 addresses", err)
	}
	if !IsRetryable(err) || hintOf(err) == "" {
		t.Fatalf("unreachable must be retryable and carry a hint: %v", err)
	}
}

func TestClient_DecodesErrorEnvelope(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeEnvelope(w, http.StatusBadRequest, api.CodeInvalidTopicName, `topic name "a b" is bad`, "use a-z")
	}))
	defer srv.Close()
	cl, _ := NewClient([]string{srv.URL})
	_, err := cl.Do(context.Background(), Request{Method: http.MethodPost, Path: api.PathTopics})
	var apiErr *APIError
	if !errors.As(err, &apiErr) {
		t.Fatalf("err = %T %v, want *APIError", err, err)
	}
	if apiErr.Status != 400 || apiErr.Code != api.CodeInvalidTopicName || apiErr.Hint != "use a-z" {
		t.Fatalf("got %+v", apiErr)
	}
	if IsRetryable(err) {
		t.Fatal("a 400 is not retryable")
	}
	var out strings.Builder
	report(&out, err)
	want := "error: topic name \"a b\" is bad (INVALID_TOPIC_NAME)\nhint: use a-z\n"
	if out.String() != want {
		t.Fatalf("report:\n%s\nwant:\n%s", out.String(), want)
	}
}

func TestClient_NonAPIErrorBody(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "<html>bad gateway</html>", http.StatusBadGateway)
	}))
	defer srv.Close()
	cl, _ := NewClient([]string{srv.URL})
	_, err := cl.Do(context.Background(), Request{Method: http.MethodGet, Path: api.PathStatus})
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.Code != "" || !strings.Contains(apiErr.Message, "502") {
		t.Fatalf("err = %v", err)
	}
}

func TestClient_RetrySendsSameRequestToNextAddress(t *testing.T) {
	var (
		mu     sync.Mutex
		bodies []string
		seqs   []string
		order  []string
	)
	handler := func(name string, fail int) http.HandlerFunc {
		n := 0
		return func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			mu.Lock()
			bodies = append(bodies, string(b))
			seqs = append(seqs, r.Header.Get(api.HeaderProducerSeq))
			order = append(order, name)
			n++
			failing := n <= fail
			mu.Unlock()
			if failing {
				writeEnvelope(w, http.StatusServiceUnavailable, api.CodeNoLeader, "no leader", "retry")
				return
			}
			fmt.Fprint(w, `{}`)
		}
	}
	a := httptest.NewServer(handler("a", 100))
	defer a.Close()
	b := httptest.NewServer(handler("b", 1))
	defer b.Close()
	cl, _ := NewClient([]string{a.URL, b.URL})
	hdr := http.Header{}
	hdr.Set(api.HeaderProducerSeq, "7")
	resp, err := cl.Retry(context.Background(), 10*time.Second, Request{Method: http.MethodPost, Path: "/x", Header: hdr, Body: []byte("batch")})
	if err != nil {
		t.Fatalf("Retry: %v", err)
	}
	if resp.Addr != b.URL {
		t.Fatalf("answered by %s, want %s", resp.Addr, b.URL)
	}
	// a (NO_LEADER) → b (NO_LEADER) → a (NO_LEADER) → b (ok): the next
	// address each time, the same body and sequence every time.
	if got := strings.Join(order, ""); got != "abab" {
		t.Fatalf("order %q, want abab", got)
	}
	for i := range bodies {
		if bodies[i] != "batch" || seqs[i] != "7" {
			t.Fatalf("attempt %d sent body %q seq %q", i, bodies[i], seqs[i])
		}
	}
}

func TestClient_RetryGivesUpAtDeadline(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeEnvelope(w, http.StatusGatewayTimeout, api.CodeTimeout, "not committed in time", "")
	}))
	defer srv.Close()
	cl, _ := NewClient([]string{srv.URL})
	start := time.Now()
	_, err := cl.Retry(context.Background(), 300*time.Millisecond, Request{Method: http.MethodPost, Path: "/x"})
	var apiErr *APIError
	if !errors.As(err, &apiErr) || apiErr.Code != api.CodeTimeout {
		t.Fatalf("err = %v, want TIMEOUT", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("gave up after %s", d)
	}
}

func TestClient_RetryStopsOnRefusal(t *testing.T) {
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls++
		writeEnvelope(w, http.StatusServiceUnavailable, api.CodeClusterShutDown, "shut down", "resume it")
	}))
	defer srv.Close()
	cl, _ := NewClient([]string{srv.URL})
	_, err := cl.Retry(context.Background(), 10*time.Second, Request{Method: http.MethodPost, Path: "/x"})
	if err == nil || calls != 1 {
		t.Fatalf("err=%v calls=%d: CLUSTER_SHUT_DOWN must not be retried", err, calls)
	}
}

func TestBaseURL(t *testing.T) {
	for in, want := range map[string]string{
		"127.0.0.1:7070":      "http://127.0.0.1:7070",
		"http://h:1":          "http://h:1",
		"https://h:1/ignored": "https://h:1",
		"[::1]:7070":          "http://[::1]:7070",
	} {
		got, err := baseURL(in)
		if err != nil || got != want {
			t.Errorf("baseURL(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	if _, err := baseURL("ftp://x"); err == nil {
		t.Error("ftp:// accepted")
	}
}

// countingTransport counts the requests sent to each host:port.
type countingTransport struct {
	next http.RoundTripper
	mu   sync.Mutex
	hits map[string]int
}

func countRequests(cl *Client) *countingTransport {
	ct := &countingTransport{next: cl.http.Transport, hits: map[string]int{}}
	cl.http.Transport = ct
	return ct
}

func (ct *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	ct.mu.Lock()
	ct.hits[r.URL.Host]++
	ct.mu.Unlock()
	return ct.next.RoundTrip(r)
}

func (ct *countingTransport) count(host string) int {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	return ct.hits[host]
}

// An address that refused a connection is tried last for downFor: a retry
// that would start at it (the live node asked to try again, so the next
// address is the dead one) goes to the live node first, and the dead one is
// tried again once the mark has expired.
func TestClient_SkipsAddressThatGaveNoAnswer(t *testing.T) {
	var mu sync.Mutex
	answers := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		answers++
		first := answers == 1
		mu.Unlock()
		if first {
			writeEnvelope(w, http.StatusServiceUnavailable, api.CodeNoLeader, "no leader", "retry")
			return
		}
		fmt.Fprint(w, `{}`)
	}))
	defer srv.Close()
	dead := closedAddr(t)
	live := srv.Listener.Addr().String()
	cl, err := NewClient([]string{dead, live})
	if err != nil {
		t.Fatal(err)
	}
	clock := time.Unix(1_000_000, 0)
	cl.now = func() time.Time { return clock }
	ct := countRequests(cl)

	// dead (refused) → live (NO_LEADER) → retry: next is dead again, but it
	// is marked, so live (ok).
	resp, err := cl.Retry(context.Background(), 10*time.Second, Request{Method: http.MethodPost, Path: "/x"})
	if err != nil {
		t.Fatalf("Retry: %v", err)
	}
	if resp.Addr != srv.URL {
		t.Fatalf("answered by %s, want %s", resp.Addr, srv.URL)
	}
	if d, l := ct.count(dead), ct.count(live); d != 1 || l != 2 {
		t.Fatalf("requests: dead %d, live %d; want 1 and 2", d, l)
	}

	// Still within downFor: a request that starts at the dead address skips it.
	cl.next = 0
	if _, err := cl.Do(context.Background(), Request{Method: http.MethodGet, Path: "/x"}); err != nil {
		t.Fatal(err)
	}
	if d := ct.count(dead); d != 1 {
		t.Fatalf("dead address tried %d times within downFor, want 1", d)
	}

	// After downFor it is tried first again (and found dead again).
	clock = clock.Add(downFor)
	cl.next = 0
	if _, err := cl.Do(context.Background(), Request{Method: http.MethodGet, Path: "/x"}); err != nil {
		t.Fatal(err)
	}
	if d, l := ct.count(dead), ct.count(live); d != 2 || l != 4 {
		t.Fatalf("after downFor: dead %d, live %d; want 2 and 4", d, l)
	}
}

// A mark only reorders: when the other addresses give no answer either, the
// marked one is still tried, last.
func TestClient_TriesMarkedAddressLast(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, `{}`)
	}))
	dead := closedAddr(t)
	live := srv.Listener.Addr().String()
	cl, err := NewClient([]string{dead, live})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Do(context.Background(), Request{Method: http.MethodGet, Path: "/x"}); err != nil {
		t.Fatal(err)
	}
	srv.Close() // now nothing answers
	cl.next = 0
	_, err = cl.Do(context.Background(), Request{Method: http.MethodGet, Path: "/x"})
	var unr *UnreachableError
	if !errors.As(err, &unr) || len(unr.Errs) != 2 {
		t.Fatalf("err = %v, want UnreachableError over both addresses", err)
	}
	if !strings.HasPrefix(unr.Errs[0].Error(), live) || !strings.HasPrefix(unr.Errs[1].Error(), dead) {
		t.Fatalf("tried %v, want %s first and the marked %s last", unr.Errs, live, dead)
	}
}

// Retry's waits double from retryBackoffMin and stop growing at
// retryBackoffMax.
func TestClient_RetryBackoffBounds(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		writeEnvelope(w, http.StatusServiceUnavailable, api.CodeNoLeader, "no leader", "retry")
	}))
	defer srv.Close()
	cl, _ := NewClient([]string{srv.URL})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var waits []time.Duration
	cl.OnRetry = func(err error, wait time.Duration) {
		waits = append(waits, wait)
		if len(waits) == 6 {
			cancel() // the sixth wait is not waited
		}
	}
	if _, err := cl.Retry(ctx, time.Minute, Request{Method: http.MethodPost, Path: "/x"}); !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	want := []time.Duration{50 * time.Millisecond, 100 * time.Millisecond, 200 * time.Millisecond, 400 * time.Millisecond, 500 * time.Millisecond, 500 * time.Millisecond}
	if fmt.Sprint(waits) != fmt.Sprint(want) {
		t.Fatalf("waits %v, want %v", waits, want)
	}
	if retryBackoffMin != want[0] || retryBackoffMax != want[len(want)-1] {
		t.Fatalf("bounds %s..%s", retryBackoffMin, retryBackoffMax)
	}
}
