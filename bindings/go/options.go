package headwater

import (
	"context"
	"time"
)

// Opt configures a Client or an AdminClient. Options are shaped after franz-go's kgo.Opt, so
// code written for franz-go reads the same.
type Opt func(*config)

type config struct {
	seeds          []string
	clientID       string
	requestTimeout time.Duration

	acks              Acks
	linger            time.Duration
	lingerSet         bool
	batchMaxBytes     int
	compression       Compression
	idempotent        bool
	deliveryTimeout   time.Duration
	unknownTopicWait  time.Duration
	manualPartitioner bool
	defaultTopic      string

	group              string
	instanceID         string
	topics             []string
	partitions         map[string]map[int32]Offset
	resetOffset        Offset
	autoCommit         bool
	autoCommitInterval time.Duration
	maxPollRecords     int
	onAssigned         func(context.Context, *Client, map[string][]int32)
	onRevoked          func(context.Context, *Client, map[string][]int32)
	onLost             func(context.Context, *Client, map[string][]int32)
}

func defaultConfig() config {
	return config{
		acks:        AllISRAcks(),
		idempotent:  true,
		autoCommit:  true,
		resetOffset: NewOffset().AtStart(),
	}
}

// SeedBrokers sets the host:port addresses to bootstrap from. Required.
func SeedBrokers(seeds ...string) Opt { return func(c *config) { c.seeds = append(c.seeds, seeds...) } }

// ClientID sets the client id brokers see in their logs and quotas.
func ClientID(id string) Opt { return func(c *config) { c.clientID = id } }

// RequestTimeout bounds each request to a broker (default 30s).
func RequestTimeout(d time.Duration) Opt { return func(c *config) { c.requestTimeout = d } }

// Acks says how many replicas must have a record before the broker acknowledges it.
type Acks struct{ v int32 }

// AllISRAcks waits for every in-sync replica, after the broker's fsync (the default).
func AllISRAcks() Acks { return Acks{-1} }

// LeaderAck waits for the leader only.
func LeaderAck() Acks { return Acks{1} }

// NoAck waits for nothing. It needs DisableIdempotentWrite.
func NoAck() Acks { return Acks{0} }

// RequiredAcks sets the producer's acks (default AllISRAcks).
func RequiredAcks(a Acks) Opt { return func(c *config) { c.acks = a } }

// DisableIdempotentWrite turns off idempotence (on by default, as in franz-go and Java).
func DisableIdempotentWrite() Opt { return func(c *config) { c.idempotent = false } }

// ProducerLinger sets how long a batch waits for more records before it is sent (default 5ms).
func ProducerLinger(d time.Duration) Opt {
	return func(c *config) { c.linger, c.lingerSet = d, true }
}

// ProducerBatchMaxBytes caps a batch's size (default 16 KiB).
func ProducerBatchMaxBytes(n int) Opt { return func(c *config) { c.batchMaxBytes = n } }

// Compression is a batch codec.
type Compression struct{ v int32 }

func NoCompression() Compression     { return Compression{0} }
func GzipCompression() Compression   { return Compression{1} }
func SnappyCompression() Compression { return Compression{2} }
func Lz4Compression() Compression    { return Compression{3} }
func ZstdCompression() Compression   { return Compression{4} }

// ProducerBatchCompression sets the codec for produced batches (default none).
func ProducerBatchCompression(codec Compression) Opt {
	return func(c *config) { c.compression = codec }
}

// RecordDeliveryTimeout bounds how long a record may take, retries included (default 120s).
func RecordDeliveryTimeout(d time.Duration) Opt { return func(c *config) { c.deliveryTimeout = d } }

// UnknownTopicWait bounds how long a record waits for its topic to appear (it may be being
// created) before it fails with ErrUnknownTopic (default 60s, Kafka's max.block.ms).
func UnknownTopicWait(d time.Duration) Opt { return func(c *config) { c.unknownTopicWait = d } }

// ManualPartitioner makes the producer send each record to its Record.Partition. Without it,
// records go to a partition chosen by key hash (murmur2, as Kafka's Java client does).
func ManualPartitioner() Opt { return func(c *config) { c.manualPartitioner = true } }

// DefaultProduceTopic is the topic for records produced with an empty Topic.
func DefaultProduceTopic(topic string) Opt { return func(c *config) { c.defaultTopic = topic } }

// ConsumerGroup makes the client consume its ConsumeTopics as a member of group.
func ConsumerGroup(group string) Opt { return func(c *config) { c.group = group } }

// InstanceID makes the group member static (KIP-345): it keeps its partitions across a quick
// restart.
func InstanceID(id string) Opt { return func(c *config) { c.instanceID = id } }

// ConsumeTopics sets the topics to consume: through the group with ConsumerGroup, else every
// partition of each topic.
func ConsumeTopics(topics ...string) Opt {
	return func(c *config) { c.topics = append(c.topics, topics...) }
}

// ConsumePartitions consumes exactly these partitions, from these offsets, without a group.
func ConsumePartitions(partitions map[string]map[int32]Offset) Opt {
	return func(c *config) { c.partitions = partitions }
}

// ConsumeResetOffset says where to start a partition that has no committed offset: the
// default NewOffset().AtStart(), NewOffset().AtEnd(), or NoResetOffset() to fail instead.
func ConsumeResetOffset(o Offset) Opt { return func(c *config) { c.resetOffset = o } }

// DisableAutoCommit stops the periodic commit of polled offsets; commit with
// CommitUncommittedOffsets instead.
func DisableAutoCommit() Opt { return func(c *config) { c.autoCommit = false } }

// AutoCommitInterval sets how often polled offsets are committed (default 5s).
func AutoCommitInterval(d time.Duration) Opt { return func(c *config) { c.autoCommitInterval = d } }

// MaxPollRecords caps how many records one poll of the native consumer returns (default 500).
func MaxPollRecords(n int) Opt { return func(c *config) { c.maxPollRecords = n } }

// OnPartitionsAssigned is called, during a PollFetches, with the partitions the group has
// just given this member.
func OnPartitionsAssigned(f func(context.Context, *Client, map[string][]int32)) Opt {
	return func(c *config) { c.onAssigned = f }
}

// OnPartitionsRevoked is called, during a PollFetches, before the group takes these
// partitions away: commit what was processed here (CommitUncommittedOffsets may be called).
func OnPartitionsRevoked(f func(context.Context, *Client, map[string][]int32)) Opt {
	return func(c *config) { c.onRevoked = f }
}

// OnPartitionsLost is called when the membership was lost and these partitions may already be
// another member's; do not commit them. Without it, OnPartitionsRevoked is called instead.
func OnPartitionsLost(f func(context.Context, *Client, map[string][]int32)) Opt {
	return func(c *config) { c.onLost = f }
}

// Offset is where to start consuming a partition.
type Offset struct {
	at int64 // >= 0 an exact offset; offsetStart; offsetEnd; offsetNone
}

const (
	offsetEnd   = -1
	offsetStart = -2
	offsetNone  = -3
)

// NewOffset returns an offset at the end of a partition; chain AtStart, AtEnd or At.
func NewOffset() Offset { return Offset{at: offsetEnd} }

// AtStart is the earliest offset still in the log.
func (Offset) AtStart() Offset { return Offset{at: offsetStart} }

// AtEnd is the offset the next record written will get.
func (Offset) AtEnd() Offset { return Offset{at: offsetEnd} }

// At is an exact offset (for ConsumePartitions).
func (Offset) At(at int64) Offset {
	if at < 0 {
		at = offsetStart
	}
	return Offset{at: at}
}

// NoResetOffset makes a partition without a committed offset an error (ConsumeResetOffset).
func NoResetOffset() Offset { return Offset{at: offsetNone} }
