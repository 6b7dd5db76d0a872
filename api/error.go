package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
)

// errorSnippetBytes is how much of an answer that is not in the error
// envelope an Error quotes.
const errorSnippetBytes = 200

// Error is a non-2xx answer as a client sees it: the envelope's body, the
// HTTP status and the address that answered. The CLI, the bench and other
// clients share it.
type Error struct {
	Status int
	Addr   string // the base URL the request went to (may be empty)
	ErrorBody
}

func (e *Error) Error() string {
	if e.Code == "" {
		return e.Message
	}
	return fmt.Sprintf("%s (%s)", e.Message, e.Code)
}

// Retryable reports whether the cluster asked to try again later.
func (e *Error) Retryable() bool {
	return (e.Status == http.StatusServiceUnavailable || e.Status == http.StatusGatewayTimeout) && Retryable(e.Code)
}

// DecodeError reads the error envelope of a non-2xx answer to a request sent
// to addr (a base URL or host:port). An answer without one (not a Weir node)
// becomes an Error that names the host and status and quotes the body.
func DecodeError(addr string, resp *http.Response, body []byte) *Error {
	var env ErrorResponse
	if err := json.Unmarshal(body, &env); err == nil && env.Error.Code != "" {
		return &Error{Status: resp.StatusCode, Addr: addr, ErrorBody: env.Error}
	}
	host := addr
	if i := strings.Index(host, "://"); i >= 0 {
		host = host[i+3:]
	}
	if host == "" && resp.Request != nil && resp.Request.URL != nil {
		host = resp.Request.URL.Host
	}
	msg := fmt.Sprintf("%s answered %s", host, resp.Status)
	if snippet := strings.TrimSpace(string(body)); snippet != "" {
		if len(snippet) > errorSnippetBytes {
			snippet = snippet[:errorSnippetBytes] + "..."
		}
		msg += ": " + snippet
	}
	return &Error{Status: resp.StatusCode, Addr: addr, ErrorBody: ErrorBody{
		Message: msg,
		Hint:    "is this address a Weir node's API address?",
	}}
}
