package fsm

import (
	"errors"
	"fmt"
)

// Sentinel errors. A command the state rejects returns an *Error wrapping one
// of these; the node maps each to one API code (node/errors.go). Check with
// errors.Is, never by message text.
var (
	ErrInvalidTopicName  = errors.New("invalid topic name")
	ErrInvalidPartitions = errors.New("invalid partition count")
	ErrTopicExists       = errors.New("topic exists")
	ErrUnknownTopic      = errors.New("unknown topic")
	ErrUnknownPartition  = errors.New("unknown partition")
	ErrOffsetOutOfRange  = errors.New("offset out of range")
	ErrRecordTooLarge    = errors.New("record too large")
	ErrCorruptBatch      = errors.New("corrupt batch")
	ErrStaleSequence     = errors.New("stale producer sequence")
	ErrSequenceGap       = errors.New("producer sequence gap")
	ErrClusterShutDown   = errors.New("cluster shut down")
	ErrWrongPhase        = errors.New("wrong lifecycle phase")
	ErrWrongCluster      = errors.New("wrong cluster")
	ErrVersionRefused    = errors.New("version refused")
	ErrUnknownCommand    = errors.New("unknown command type")
	ErrBadSnapshot       = errors.New("bad snapshot")
)

// Error is a rejection with a message for people and a hint saying what to do.
type Error struct {
	Kind    error // one of the sentinels above
	Message string
	Hint    string
}

func (e *Error) Error() string { return e.Message }

// Unwrap lets errors.Is match the sentinel.
func (e *Error) Unwrap() error { return e.Kind }

func reject(kind error, hint, format string, args ...any) *Error {
	return &Error{Kind: kind, Message: fmt.Sprintf(format, args...), Hint: hint}
}
