package api

import (
	"net/http"
	"strings"
	"testing"
)

func TestDecodeError(t *testing.T) {
	resp := &http.Response{StatusCode: 503, Status: "503 Service Unavailable"}
	e := DecodeError("http://127.0.0.1:7070", resp, []byte(`{"error":{"code":"NO_LEADER","message":"no leader","hint":"retry"}}`))
	if e.Code != CodeNoLeader || e.Message != "no leader" || e.Hint != "retry" || e.Addr != "http://127.0.0.1:7070" || !e.Retryable() {
		t.Fatalf("envelope decoded as %+v (retryable %v)", e, e.Retryable())
	}
	if e.Error() != "no leader (NO_LEADER)" {
		t.Errorf("Error() = %q", e.Error())
	}
	// Not a Weir node: the host, the status and the start of the body.
	resp = &http.Response{StatusCode: 404, Status: "404 Not Found"}
	e = DecodeError("http://127.0.0.1:8080", resp, []byte(strings.Repeat("x", 500)))
	if e.Code != "" || e.Retryable() || !strings.HasPrefix(e.Message, "127.0.0.1:8080 answered 404 Not Found: xxx") ||
		!strings.HasSuffix(e.Message, "...") || len(e.Message) > 300 || e.Hint == "" {
		t.Fatalf("non-envelope answer decoded as %+v", e)
	}
	// A refusal the cluster does not ask to retry.
	resp = &http.Response{StatusCode: 404, Status: "404 Not Found"}
	if e = DecodeError("", resp, []byte(`{"error":{"code":"UNKNOWN_TOPIC","message":"m"}}`)); e.Retryable() {
		t.Errorf("UNKNOWN_TOPIC taken as retryable")
	}
}
