package fsm

import (
	"encoding/binary"
	"strings"

	bolt "go.etcd.io/bbolt"
)

// Topic limits; they match api.MaxTopicNameLen and api.MaxPartitions.
const (
	MaxTopicNameLen = 249
	MaxPartitions   = 1024
)

// topicMeta is a topic's stored settings.
type topicMeta struct {
	Name       string
	Partitions int
	CreatedAt  int64
	// CreatedIndex is the Raft index of the entry that created the topic
	// (0 for topics created before it was kept): it names the topic's
	// segment directory, so each incarnation of a name has its own.
	CreatedIndex uint64
}

// segmentDir is the topic's directory in the segment store.
func (tm topicMeta) segmentDir() string { return topicDirName(tm.Name, tm.CreatedIndex) }

// TopicInfo describes a topic and the extent of each partition.
type TopicInfo struct {
	Name       string
	CreatedAt  int64
	Partitions []PartitionInfo
}

// PartitionInfo is one partition's extent: offsets [LogStart, HighWatermark)
// are readable.
type PartitionInfo struct {
	Partition     int
	LogStart      uint64
	HighWatermark uint64
}

// ValidateTopicName applies Kafka's rules: 1..249 characters of [a-zA-Z0-9._-],
// and not "." or "..". Both the API (before proposing) and Apply use it.
func ValidateTopicName(name string) error {
	const hint = "use 1 to 249 characters from a-z, A-Z, 0-9, '.', '_' and '-'"
	switch {
	case name == "":
		return reject(ErrInvalidTopicName, hint, "topic name is empty")
	case name == "." || name == "..":
		return reject(ErrInvalidTopicName, hint, "topic name %q is not allowed", name)
	case len(name) > MaxTopicNameLen:
		return reject(ErrInvalidTopicName, hint, "topic name is %d characters, the limit is %d", len(name), MaxTopicNameLen)
	}
	if i := strings.IndexFunc(name, func(r rune) bool {
		return !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-')
	}); i >= 0 {
		return reject(ErrInvalidTopicName, hint, "topic name %q has a character that is not allowed at position %d", name, i)
	}
	return nil
}

// ValidatePartitions checks a partition count.
func ValidatePartitions(n int) error {
	if n <= 0 || n > MaxPartitions {
		return reject(ErrInvalidPartitions, "use a partition count from 1 to 1024",
			"partition count %d is out of range", n)
	}
	return nil
}

func applyCreateTopic(tx *bolt.Tx, index uint64, body []byte) interface{} {
	var cmd CreateTopicCommand
	mustDecode(body, &cmd)
	if err := ValidateTopicName(cmd.Name); err != nil {
		return err
	}
	if err := ValidatePartitions(cmd.Partitions); err != nil {
		return err
	}
	if tm, ok := readTopic(tx, cmd.Name); ok {
		if tm.Partitions == cmd.Partitions {
			return CreateTopicResult{Created: false}
		}
		return reject(ErrTopicExists, "delete it first, or use another name",
			"topic %q exists with %d partitions", cmd.Name, tm.Partitions)
	}
	buf, err := Encode(0, topicMeta{Name: cmd.Name, Partitions: cmd.Partitions, CreatedAt: cmd.At, CreatedIndex: index})
	if err != nil {
		panic(err)
	}
	must(tx.Bucket(bucketTopics).Put([]byte(cmd.Name), buf[1:]))
	tb, err := tx.Bucket(bucketData).CreateBucket([]byte(cmd.Name))
	must(err)
	for p := 0; p < cmd.Partitions; p++ {
		_, err := tb.CreateBucket(partitionKey(p))
		must(err)
	}
	return CreateTopicResult{Created: true}
}

func applyDeleteTopic(tx *bolt.Tx, segs *segmentStore, body []byte) interface{} {
	var cmd DeleteTopicCommand
	mustDecode(body, &cmd)
	tm, ok := readTopic(tx, cmd.Name)
	if !ok {
		return reject(ErrUnknownTopic, `list topics with "weir topic list"`, "topic %q does not exist", cmd.Name)
	}
	must(tx.Bucket(bucketTopics).Delete([]byte(cmd.Name)))
	must(tx.Bucket(bucketData).DeleteBucket([]byte(cmd.Name)))
	segs.dropTopic(tm.segmentDir())
	return nil
}

func readTopic(tx *bolt.Tx, name string) (topicMeta, bool) {
	v := tx.Bucket(bucketTopics).Get([]byte(name))
	if v == nil {
		return topicMeta{}, false
	}
	var tm topicMeta
	if err := decode(v, &tm); err != nil {
		panic("fsm: corrupt topic meta: " + err.Error())
	}
	return tm, true
}

func partitionKey(p int) []byte {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], uint32(p))
	return b[:]
}

func partitionBucket(tx *bolt.Tx, topic string, p int) *bolt.Bucket {
	tb := tx.Bucket(bucketData).Bucket([]byte(topic))
	if tb == nil {
		return nil
	}
	return tb.Bucket(partitionKey(p))
}

// Topic describes one topic.
func (f *FSM) Topic(name string) (TopicInfo, error) {
	var ti TopicInfo
	err := f.view(func(tx *bolt.Tx) error {
		tm, ok := readTopic(tx, name)
		if !ok {
			return reject(ErrUnknownTopic, `list topics with "weir topic list"`, "topic %q does not exist", name)
		}
		ti = topicInfo(tx, tm)
		return nil
	})
	return ti, err
}

// Topics lists every topic, by name.
func (f *FSM) Topics() ([]TopicInfo, error) {
	var out []TopicInfo
	err := f.view(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketTopics).ForEach(func(k, v []byte) error {
			tm, _ := readTopic(tx, string(k))
			out = append(out, topicInfo(tx, tm))
			return nil
		})
	})
	return out, err
}

func topicInfo(tx *bolt.Tx, tm topicMeta) TopicInfo {
	ti := TopicInfo{Name: tm.Name, CreatedAt: tm.CreatedAt}
	for p := 0; p < tm.Partitions; p++ {
		start, end := extent(partitionBucket(tx, tm.Name, p))
		ti.Partitions = append(ti.Partitions, PartitionInfo{Partition: p, LogStart: start, HighWatermark: end})
	}
	return ti
}

func must(err error) {
	if err != nil {
		panic("fsm: state store: " + err.Error())
	}
}
