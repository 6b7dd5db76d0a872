package cli

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"time"

	"github.com/weir-streaming/weir/api"
)

// topicCreateDeadline bounds retrying a topic creation the cluster could not
// take yet (no leader): creating with the same settings is idempotent.
const topicCreateDeadline = 30 * time.Second

// TopicCmd is `weir topic`.
type TopicCmd struct {
	Create   TopicCreateCmd   `cmd:"" help:"Create a topic."`
	List     TopicListCmd     `cmd:"" help:"List the topics."`
	Describe TopicDescribeCmd `cmd:"" help:"Show a topic's partitions and their extents."`
	Delete   TopicDeleteCmd   `cmd:"" help:"Delete a topic and its records."`
}

// TopicCreateCmd is `weir topic create NAME [-p N]`.
type TopicCreateCmd struct {
	Name       string `arg:"" help:"Name of the topic."`
	Partitions int    `short:"p" default:"1" help:"Number of partitions."`
}

// Run creates the topic; creating it again with the same settings is a no-op
// that says so.
func (c *TopicCreateCmd) Run(cl *Client, p *Printer) error {
	body, err := json.Marshal(api.CreateTopicRequest{Name: c.Name, Partitions: c.Partitions})
	if err != nil {
		return err
	}
	resp, err := cl.Retry(context.Background(), topicCreateDeadline, Request{
		Method: http.MethodPost,
		Path:   api.PathTopics,
		Header: http.Header{"Content-Type": {"application/json"}},
		Body:   body,
	})
	if err != nil {
		return err
	}
	if p.json {
		return p.Raw(resp.Body)
	}
	var out api.CreateTopicResponse
	if err := decodeJSON(resp, &out); err != nil {
		return err
	}
	if resp.Status == http.StatusCreated {
		p.Linef("created topic %s with %d partition%s", out.Topic.Name, len(out.Topic.Partitions), plural(len(out.Topic.Partitions)))
	} else {
		p.Linef("topic %s already exists with the same settings (%d partition%s)", out.Topic.Name, len(out.Topic.Partitions), plural(len(out.Topic.Partitions)))
	}
	p.Linef("next: weir produce %s < records.txt", out.Topic.Name)
	return nil
}

// TopicListCmd is `weir topic list`.
type TopicListCmd struct{}

// Run lists the topics with their partition counts.
func (c *TopicListCmd) Run(cl *Client, p *Printer) error {
	var list api.TopicList
	resp, err := cl.GetJSON(context.Background(), api.PathTopics, &list)
	if err != nil {
		return err
	}
	if p.json {
		return p.Raw(resp.Body)
	}
	if len(list.Topics) == 0 {
		p.Linef("no topics; create one with: weir topic create NAME -p 3")
		return nil
	}
	rows := make([][]string, 0, len(list.Topics))
	for _, t := range list.Topics {
		rows = append(rows, []string{t.Name, strconv.Itoa(len(t.Partitions)), strconv.FormatUint(recordCount(t.Partitions), 10)})
	}
	p.Table([]string{"TOPIC", "PARTITIONS", "RECORDS"}, rows)
	return nil
}

// TopicDescribeCmd is `weir topic describe NAME`.
type TopicDescribeCmd struct {
	Name string `arg:"" help:"Name of the topic."`
}

// Run shows each partition's log start and high watermark.
func (c *TopicDescribeCmd) Run(cl *Client, p *Printer) error {
	var t api.Topic
	resp, err := cl.GetJSON(context.Background(), topicPath(c.Name), &t)
	if err != nil {
		return err
	}
	if p.json {
		return p.Raw(resp.Body)
	}
	p.Linef("topic %s: %d partition%s, %d record%s", t.Name, len(t.Partitions), plural(len(t.Partitions)), recordCount(t.Partitions), plural(int(recordCount(t.Partitions))))
	rows := make([][]string, 0, len(t.Partitions))
	for _, pi := range t.Partitions {
		rows = append(rows, []string{
			strconv.Itoa(pi.Partition),
			strconv.FormatUint(pi.LogStart, 10),
			strconv.FormatUint(pi.HighWatermark, 10),
			strconv.FormatUint(pi.HighWatermark-min(pi.LogStart, pi.HighWatermark), 10),
		})
	}
	p.Table([]string{"PARTITION", "LOG START", "HIGH WATERMARK", "RECORDS"}, rows)
	return nil
}

// TopicDeleteCmd is `weir topic delete NAME`.
type TopicDeleteCmd struct {
	Name string `arg:"" help:"Name of the topic."`
}

// Run deletes the topic. It is not retried across a failover: a delete whose
// outcome is unknown is reported as such.
func (c *TopicDeleteCmd) Run(cl *Client, p *Printer) error {
	resp, err := cl.Do(context.Background(), Request{Method: http.MethodDelete, Path: topicPath(c.Name)})
	if err != nil {
		return err
	}
	if p.json {
		return p.Raw(resp.Body)
	}
	var out api.DeleteTopicResponse
	if err := decodeJSON(resp, &out); err != nil {
		return err
	}
	if out.Deleted {
		p.Linef("deleted topic %s", out.Name)
	} else {
		p.Linef("topic %s was already deleted", out.Name)
	}
	return nil
}

// recordCount is the number of readable records in the partitions.
func recordCount(parts []api.PartitionInfo) uint64 {
	var n uint64
	for _, p := range parts {
		if p.HighWatermark > p.LogStart {
			n += p.HighWatermark - p.LogStart
		}
	}
	return n
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}
