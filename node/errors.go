package node

import (
	"errors"
	"net/http"

	"github.com/weir-streaming/weir/api"
	"github.com/weir-streaming/weir/fsm"
	"github.com/weir-streaming/weir/record"
	"github.com/weir-streaming/weir/version"
)

// Errors of the node itself.
var (
	ErrNoLeader   = errors.New("no leader")
	ErrNotLeader  = errors.New("not the leader")
	ErrTimeout    = errors.New("not committed in time")
	ErrBadRequest = errors.New("bad request")
	ErrNotFound   = errors.New("not found")
	ErrShutdown   = errors.New("node is shutting down")
)

// errorTable is the one place that maps an error to its API code and HTTP
// status. The RPC that forwards commands uses it both ways, so a rejection
// on the leader reaches the follower's caller as the same error.
var errorTable = []struct {
	kind   error
	code   string
	status int
	hint   string // used when the error carries none
}{
	{ErrBadRequest, api.CodeBadRequest, http.StatusBadRequest, ""},
	{ErrNotFound, api.CodeNotFound, http.StatusNotFound, "see docs/api.md for the paths"},
	{fsm.ErrInvalidTopicName, api.CodeInvalidTopicName, http.StatusBadRequest, ""},
	{fsm.ErrInvalidPartitions, api.CodeInvalidPartitions, http.StatusBadRequest, ""},
	{fsm.ErrTopicExists, api.CodeTopicExists, http.StatusConflict, ""},
	{fsm.ErrUnknownTopic, api.CodeUnknownTopic, http.StatusNotFound, ""},
	{fsm.ErrUnknownPartition, api.CodeUnknownPartition, http.StatusNotFound, ""},
	{fsm.ErrOffsetOutOfRange, api.CodeOffsetOutOfRange, http.StatusRequestedRangeNotSatisfiable, ""},
	{fsm.ErrRecordTooLarge, api.CodeRecordTooLarge, http.StatusRequestEntityTooLarge, ""},
	{record.ErrTooLarge, api.CodeRecordTooLarge, http.StatusRequestEntityTooLarge, "records are limited to 1 MiB and requests to 8 MiB"},
	{fsm.ErrCorruptBatch, api.CodeCorruptBatch, http.StatusBadRequest, ""},
	{record.ErrCorrupt, api.CodeCorruptBatch, http.StatusBadRequest, "send frames as in the record package: uvarint(len(key)+1) key uvarint(len(value)) value"},
	{fsm.ErrStaleSequence, api.CodeStaleSequence, http.StatusConflict, ""},
	{fsm.ErrSequenceGap, api.CodeSequenceGap, http.StatusConflict, ""},
	{fsm.ErrClusterShutDown, api.CodeClusterShutDown, http.StatusServiceUnavailable, ""},
	{fsm.ErrWrongPhase, api.CodeWrongPhase, http.StatusConflict, ""},
	{fsm.ErrVersionRefused, api.CodeVersionRefused, http.StatusConflict, ""},
	{fsm.ErrWrongCluster, api.CodeWrongCluster, http.StatusConflict, ""},
	{ErrWrongCluster, api.CodeWrongCluster, http.StatusConflict, ""},
	{ErrNoLeader, api.CodeNoLeader, http.StatusServiceUnavailable, "the cluster is electing a leader or has lost its quorum; retry, and check `weir cluster status`"},
	{ErrNotLeader, api.CodeNotLeader, http.StatusServiceUnavailable, "leadership changed during the request; retry"},
	{ErrTimeout, api.CodeTimeout, http.StatusGatewayTimeout, "the outcome is unknown; an idempotent producer may retry safely"},
	{ErrNoQuorum, api.CodeNoQuorum, http.StatusServiceUnavailable, "start the stopped nodes (\"weir cluster status\" shows which) so a majority of voters is up"},
	{version.ErrInvalid, api.CodeBadRequest, http.StatusBadRequest, ""},
	{version.ErrBinaryTooOld, api.CodeVersionRefused, http.StatusConflict, ""},
	{version.ErrOutsideWindow, api.CodeVersionRefused, http.StatusConflict, ""},
	{version.ErrNotNewer, api.CodeVersionRefused, http.StatusConflict, ""},
	{version.ErrDowngrade, api.CodeVersionRefused, http.StatusConflict, ""},
	{version.ErrSkipsWindow, api.CodeVersionRefused, http.StatusConflict, ""},
	{version.ErrNodeBinary, api.CodeVersionRefused, http.StatusConflict, ""},
	{ErrRestore, api.CodeWrongCluster, http.StatusConflict, ""},
	{ErrShutdown, api.CodeNoLeader, http.StatusServiceUnavailable, "this node is stopping; use another node"},
}

// APIError is an error as the API answers it.
type APIError struct {
	Status int
	Body   api.ErrorBody
	kind   error
}

func (e *APIError) Error() string { return e.Body.Message }
func (e *APIError) Unwrap() error { return e.kind }

// toAPIError maps any error to its code, status, message and hint.
func toAPIError(err error) *APIError {
	var ae *APIError
	if errors.As(err, &ae) {
		return ae
	}
	hint := ""
	var fe *fsm.Error
	var vr *version.Refusal
	if errors.As(err, &fe) {
		hint = fe.Hint
	} else if errors.As(err, &vr) {
		hint = vr.Hint
	}
	for _, row := range errorTable {
		if errors.Is(err, row.kind) {
			if hint == "" {
				hint = row.hint
			}
			return &APIError{Status: row.status, Body: api.ErrorBody{Code: row.code, Message: err.Error(), Hint: hint}, kind: row.kind}
		}
	}
	return &APIError{Status: http.StatusInternalServerError, Body: api.ErrorBody{Code: api.CodeInternal, Message: err.Error()}}
}

// fromAPIError rebuilds an error received from another node so that
// errors.Is matches the same sentinel.
func fromAPIError(b api.ErrorBody) error {
	for _, row := range errorTable {
		if row.code == b.Code {
			return &APIError{Status: row.status, Body: b, kind: row.kind}
		}
	}
	return &APIError{Status: http.StatusInternalServerError, Body: b}
}
