package api

// Error codes the API answers with. The node maps each package sentinel error
// to one of these in a single table (node/errors.go); clients compare codes,
// never message text.
const (
	CodeBadRequest         = "BAD_REQUEST"         // malformed JSON, truncated body, bad parameter
	CodeInvalidTopicName   = "INVALID_TOPIC_NAME"  // name empty, ".", "..", too long, bad characters
	CodeInvalidPartitions  = "INVALID_PARTITIONS"  // partition count <= 0 or > MaxPartitions
	CodeTopicExists        = "TOPIC_EXISTS"        // re-created with other settings
	CodeUnknownTopic       = "UNKNOWN_TOPIC"       // no such topic
	CodeUnknownPartition   = "UNKNOWN_PARTITION"   // no such partition
	CodeRecordTooLarge     = "RECORD_TOO_LARGE"    // record or request over the size limit
	CodeOffsetOutOfRange   = "OFFSET_OUT_OF_RANGE" // below log start or past the end
	CodeCorruptBatch       = "CORRUPT_BATCH"       // binary body does not decode
	CodeStaleSequence      = "STALE_SEQUENCE"      // an idempotent producer's sequence older than its last
	CodeSequenceGap        = "SEQUENCE_GAP"        // an idempotent producer skipped sequences
	CodeNoLeader           = "NO_LEADER"           // no leader known; retry
	CodeNotLeader          = "NOT_LEADER"          // this node lost leadership mid-request; retry
	CodeNoQuorum           = "NO_QUORUM"           // a quorum of voters is not reachable
	CodeTimeout            = "TIMEOUT"             // the command was not committed in time; outcome unknown
	CodeClusterShutDown    = "CLUSTER_SHUT_DOWN"   // the data plane is closed by the lifecycle phase
	CodeWrongPhase         = "WRONG_PHASE"         // a lifecycle command not allowed in the current phase
	CodeVersionRefused     = "VERSION_REFUSED"     // a version policy rule refused the request
	CodeWrongCluster       = "WRONG_CLUSTER"       // a node or file from another cluster id
	CodeNotFound           = "NOT_FOUND"           // no such API path
	CodeMethodNotAllowed   = "METHOD_NOT_ALLOWED"  // wrong HTTP method
	CodeUnsupportedCommand = "UNSUPPORTED_COMMAND" // a replicated command this binary cannot apply
	CodeInternal           = "INTERNAL"            // a bug; the message says what
)

// Retryable says whether a request that failed with code may be sent again
// as it is: the cluster was between leaders or lost the request's outcome.
// A produce retried after TIMEOUT is safe only from an idempotent producer
// (HeaderProducerID), which the CLI always is.
func Retryable(code string) bool {
	switch code {
	case CodeNoLeader, CodeNotLeader, CodeTimeout, CodeNoQuorum:
		return true
	}
	return false
}
