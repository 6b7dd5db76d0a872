// Package api holds the HTTP API's contract: the request and response types,
// the error envelope and the table of error codes. The node serves it and the
// CLI consumes it; neither re-declares a type.
//
// Every path is under /v1. Errors are answered as
//
//	{"error": {"code": "UPPER_SNAKE", "message": "...", "hint": "..."}}
//
// with a fitting HTTP status.
package api

// Paths of the API. {name} and {p} are path parameters.
const (
	PathStatus     = "/v1/status"                               // GET: StatusResponse
	PathNodes      = "/v1/nodes"                                // GET: []NodeStatus
	PathHealth     = "/v1/health"                               // GET: HealthResponse (200 when serving or control plane up)
	PathTopics     = "/v1/topics"                               // GET: TopicList; POST CreateTopicRequest -> CreateTopicResponse
	PathTopic      = "/v1/topics/{name}"                        // GET: Topic; DELETE -> DeleteTopicResponse
	PathProduce    = "/v1/topics/{name}/records"                // POST: records -> ProduceResponse
	PathConsume    = "/v1/topics/{name}/partitions/{p}/records" // GET: records from ?offset=
	PathPartitions = "/v1/topics/{name}/partitions/{p}"         // GET: PartitionInfo
)

// ContentTypeRecords is the compact binary record format (package record):
// the body of a produce request, and the consume response when the client
// sends it in Accept. JSON stays available for people and curl.
const ContentTypeRecords = "application/vnd.weir.records"

// Query parameters and headers of the produce and consume endpoints.
const (
	// QueryPartition pins a produce request to one partition.
	QueryPartition = "partition"
	// QueryOffset is the first offset a consume request wants.
	QueryOffset = "offset"
	// QueryMaxRecords and QueryMaxBytes bound one consume response.
	QueryMaxRecords = "max_records"
	QueryMaxBytes   = "max_bytes"
	// QueryWaitMillis makes a consume at the end of the log wait up to that
	// long for new records (long poll); 0 answers at once.
	QueryWaitMillis = "wait_ms"
	// QueryConsistency=strong serves a read only after the leader verified
	// its leadership; a follower redirects such a read to the leader.
	QueryConsistency = "consistency"
	// ConsistencyStrong is the QueryConsistency value for a leader-verified read.
	ConsistencyStrong = "strong"

	// HeaderNextOffset is the offset to ask for next; HeaderHighWatermark
	// the partition's end (next offset to be written); HeaderLogStart the
	// first readable offset; HeaderRecordCount the records in the body. A
	// binary consume body is a sequence of record.AppendConsumed frames
	// (offset, timestamp, key, value per record).
	HeaderNextOffset    = "Weir-Next-Offset"
	HeaderHighWatermark = "Weir-High-Watermark"
	HeaderLogStart      = "Weir-Log-Start"
	HeaderRecordCount   = "Weir-Record-Count"

	// HeaderProducerID and HeaderProducerSeq make a produce idempotent: a
	// producer (any string up to 64 bytes, e.g. a random id per CLI run)
	// numbers its requests 1, 2, 3... and sends them one at a time. A retry
	// of the last sequence returns the original offsets instead of writing
	// again; an older sequence is refused as STALE_SEQUENCE. Round-robin
	// placement of unkeyed records is derived from the sequence, so a retry
	// lands exactly where the first attempt did.
	HeaderProducerID  = "Weir-Producer-Id"
	HeaderProducerSeq = "Weir-Producer-Seq"
)

// Limits of the API, documented in docs/api.md.
const (
	// MaxTopicNameLen follows Kafka.
	MaxTopicNameLen = 249
	// MaxPartitions is the most partitions a topic may have.
	MaxPartitions = 1024
	// DefaultConsumeMaxRecords and MaxConsumeMaxRecords bound a consume.
	DefaultConsumeMaxRecords = 1000
	MaxConsumeMaxRecords     = 100000
	// DefaultConsumeMaxBytes bounds a consume response's payload.
	DefaultConsumeMaxBytes = 4 << 20
	// MaxWaitMillis bounds a long poll.
	MaxWaitMillis = 30000
)

// MaxProducerIDLen bounds HeaderProducerID.
const MaxProducerIDLen = 64

// ErrorBody is the error envelope's content.
type ErrorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Hint    string `json:"hint,omitempty"`
}

// ErrorResponse is every error the API answers.
type ErrorResponse struct {
	Error ErrorBody `json:"error"`
}

// Error makes ErrorBody an error for clients.
func (e *ErrorBody) Error() string {
	if e.Hint != "" {
		return e.Message + " (hint: " + e.Hint + ")"
	}
	return e.Message
}

// StatusResponse is GET /v1/status.
type StatusResponse struct {
	ClusterID     string       `json:"cluster_id"`
	Phase         string       `json:"phase"`
	ActiveVersion string       `json:"active_version"`
	TargetVersion string       `json:"target_version,omitempty"`
	Leader        string       `json:"leader"`
	AppliedIndex  uint64       `json:"applied_index"`
	Node          string       `json:"node"` // the node that answered
	Nodes         []NodeStatus `json:"nodes"`
	// Lifecycle progress: voters that acknowledged the last shutdown, voters
	// resumed in the current roll, and where a halted roll stopped.
	Quiesced []string `json:"quiesced,omitempty"`
	Resumed  []string `json:"resumed,omitempty"`
	Halted   *Halt    `json:"halted,omitempty"`
	// Gates lists the version gates open at the active version.
	Gates []string `json:"gates"`
}

// NodeStatus is one node as the answering node sees it: its Raft role from
// the Raft configuration, the rest from gossip.
type NodeStatus struct {
	ID            string `json:"id"`
	BinaryVersion string `json:"binary_version"`
	RaftState     string `json:"raft_state"`    // leader | follower | candidate | nonvoter | unknown
	RaftSuffrage  string `json:"raft_suffrage"` // voter | nonvoter | none
	GossipState   string `json:"gossip_state"`  // alive | suspect | dead | left | unknown
	Serving       bool   `json:"serving"`
	AppliedIndex  uint64 `json:"applied_index"`
	MinCompatible string `json:"min_compatible,omitempty"`
	StorageOK     bool   `json:"storage_ok"`
	APIAddr       string `json:"api_addr"`
	ClusterAddr   string `json:"cluster_addr"`
	GossipAddr    string `json:"gossip_addr"`
}

// HealthResponse is GET /v1/health.
type HealthResponse struct {
	Node         string `json:"node"`
	Serving      bool   `json:"serving"`
	RaftState    string `json:"raft_state"`
	Leader       string `json:"leader"`
	AppliedIndex uint64 `json:"applied_index"`
}

// CreateTopicRequest is POST /v1/topics.
type CreateTopicRequest struct {
	Name       string `json:"name"`
	Partitions int    `json:"partitions"`
}

// CreateTopicResponse says whether the topic was made now (201) or existed
// already with the same settings (200).
type CreateTopicResponse struct {
	Topic   Topic `json:"topic"`
	Created bool  `json:"created"`
}

// Topic is GET /v1/topics/{name}.
type Topic struct {
	Name       string          `json:"name"`
	Partitions []PartitionInfo `json:"partitions"`
}

// PartitionInfo is one partition's extent.
type PartitionInfo struct {
	Partition     int    `json:"partition"`
	LogStart      uint64 `json:"log_start"`
	HighWatermark uint64 `json:"high_watermark"` // next offset to be written
}

// TopicList is GET /v1/topics.
type TopicList struct {
	Topics []Topic `json:"topics"`
}

// DeleteTopicResponse is DELETE /v1/topics/{name}.
type DeleteTopicResponse struct {
	Name    string `json:"name"`
	Deleted bool   `json:"deleted"`
}

// ProduceRequest is the JSON form of a produce body. Values and keys are
// UTF-8 text; binary payloads use ContentTypeRecords.
type ProduceRequest struct {
	Records []ProduceRecord `json:"records"`
}

// ProduceRecord is one record of a JSON produce.
type ProduceRecord struct {
	Key   *string `json:"key,omitempty"`
	Value string  `json:"value"`
}

// ProduceResponse carries where every record landed, in request order.
type ProduceResponse struct {
	Offsets []RecordPosition `json:"offsets"`
}

// RecordPosition is one acknowledged record's place.
type RecordPosition struct {
	Partition int    `json:"partition"`
	Offset    uint64 `json:"offset"`
}

// ConsumeResponse is the JSON form of a consume.
type ConsumeResponse struct {
	Records       []ConsumedRecord `json:"records"`
	NextOffset    uint64           `json:"next_offset"`
	HighWatermark uint64           `json:"high_watermark"`
	LogStart      uint64           `json:"log_start"`
}

// ConsumedRecord is one record read back. Key is omitted when the record has
// none. Timestamp is the leader's wall clock at commit, in Unix milliseconds.
type ConsumedRecord struct {
	Partition int     `json:"partition"`
	Offset    uint64  `json:"offset"`
	Timestamp int64   `json:"timestamp"`
	Key       *string `json:"key,omitempty"`
	Value     string  `json:"value"`
	// Checksummed says the record's batch carries a CRC-32C that was
	// verified on this read (the batch-crc32c gate, from 0.2.0).
	Checksummed bool `json:"checksummed"`
}
