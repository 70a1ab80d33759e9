package headwater

/*
#include "callbacks.h"
*/
import "C"

import (
	"context"
	"runtime/cgo"
	"strings"
	"sync"
	"time"
	"unsafe"
)

// Client produces and, when given ConsumeTopics or ConsumePartitions, consumes. It is safe
// for concurrent use. Close it when done.
type Client struct {
	cfg config

	// life counts calls in flight, so Close waits for them before freeing native handles.
	life     sync.Mutex
	lifeIdle *sync.Cond
	inFlight int
	closed   bool
	// closing lets calls in again while Close runs OnPartitionsRevoked, so it can commit.
	closing bool

	producer *C.HwProducer
	promises *promiseQueue

	consumer  *C.HwConsumer
	rebalance cgo.Handle
	// subscribed is set once the consumer has joined its group or taken its partitions.
	subscribeMu sync.Mutex
	subscribed  bool
	// pollMu keeps polls one at a time.
	pollMu sync.Mutex
	// offsetsMu guards uncommitted and assigned.
	offsetsMu sync.Mutex
	// uncommitted is, per partition, the offset after the last record handed to the caller.
	uncommitted map[topicPartition]int64
	// assigned is what the group has given this member, for OnPartitionsRevoked at Close.
	assigned map[topicPartition]bool
}

type topicPartition struct {
	topic     string
	partition int32
}

// NewClient creates a client. It does not contact a broker: errors from the brokers come
// from the calls that need them.
func NewClient(opts ...Opt) (*Client, error) {
	cfg := defaultConfig()
	for _, opt := range opts {
		opt(&cfg)
	}
	if len(cfg.seeds) == 0 {
		return nil, configError("SeedBrokers: give at least one host:port")
	}
	if cfg.acks == NoAck() && cfg.idempotent {
		return nil, configError("RequiredAcks(NoAck()) needs DisableIdempotentWrite()")
	}
	if cfg.group == "" && cfg.instanceID != "" {
		return nil, configError("InstanceID needs ConsumerGroup")
	}
	if cfg.partitions != nil && (cfg.group != "" || len(cfg.topics) > 0) {
		return nil, configError("ConsumePartitions takes no ConsumerGroup or ConsumeTopics")
	}
	if cfg.group != "" && len(cfg.topics) == 0 {
		return nil, configError("ConsumerGroup needs ConsumeTopics")
	}
	c := &Client{cfg: cfg, uncommitted: map[topicPartition]int64{}, assigned: map[topicPartition]bool{}}
	c.lifeIdle = sync.NewCond(&c.life)

	var strs cstrings
	defer strs.free()
	var eb errbuf
	popts := C.HwProducerOptions{
		client:                c.clientOptions(&strs),
		acks:                  C.int32_t(cfg.acks.v),
		linger_ms:             -1,
		batch_bytes:           C.uint64_t(max(cfg.batchMaxBytes, 0)),
		compression:           C.int32_t(cfg.compression.v),
		idempotence:           C.bool(cfg.idempotent),
		delivery_timeout_ms:   C.uint64_t(cfg.deliveryTimeout.Milliseconds()),
		unknown_topic_wait_ms: C.uint64_t(cfg.unknownTopicWait.Milliseconds()),
	}
	if cfg.lingerSet {
		popts.linger_ms = C.int64_t(cfg.linger.Milliseconds())
	}
	ptr, n := eb.ptr()
	c.producer = C.hw_producer_new(&popts, ptr, n)
	if c.producer == nil {
		return nil, configError("%s", eb.String())
	}
	c.promises = newPromiseQueue()

	if len(cfg.topics) > 0 || cfg.partitions != nil {
		if err := c.newConsumer(&strs); err != nil {
			c.freeProducer()
			return nil, err
		}
	}
	return c, nil
}

func (c *Client) clientOptions(strs *cstrings) C.HwClientOptions {
	return C.HwClientOptions{
		bootstrap:          strs.of(strings.Join(c.cfg.seeds, ",")),
		client_id:          strs.of(c.cfg.clientID),
		request_timeout_ms: C.uint64_t(c.cfg.requestTimeout.Milliseconds()),
	}
}

func (c *Client) newConsumer(strs *cstrings) error {
	reset := C.int32_t(C.HW_OFFSET_RESET_EARLIEST)
	switch c.cfg.resetOffset.at {
	case offsetStart:
	case offsetEnd:
		reset = C.HW_OFFSET_RESET_LATEST
	case offsetNone:
		reset = C.HW_OFFSET_RESET_NONE
	default:
		return configError("ConsumeResetOffset: use NewOffset().AtStart(), NewOffset().AtEnd() or NoResetOffset()")
	}
	copts := C.HwConsumerOptions{
		client:                  c.clientOptions(strs),
		group_id:                strs.of(c.cfg.group),
		instance_id:             strs.of(c.cfg.instanceID),
		offset_reset:            reset,
		auto_commit:             C.bool(c.cfg.autoCommit),
		auto_commit_interval_ms: C.uint64_t(c.cfg.autoCommitInterval.Milliseconds()),
		max_poll_records:        C.uint32_t(max(c.cfg.maxPollRecords, 0)),
	}
	var eb errbuf
	ptr, n := eb.ptr()
	c.consumer = C.hw_consumer_new(&copts, ptr, n)
	if c.consumer == nil {
		return configError("%s", eb.String())
	}
	if c.cfg.group != "" {
		// Always: besides the user's callbacks, a rebalance drops revoked partitions from
		// the offsets CommitUncommittedOffsets would commit.
		c.rebalance = cgo.NewHandle(c)
		C.hw_consumer_set_rebalance_callback(c.consumer,
			C.HwRebalanceCallback(unsafe.Pointer(C.hwGoRebalance)), C.size_t(c.rebalance))
	}
	return nil
}

// enter marks a call in flight; false once the client is closed.
func (c *Client) enter() bool {
	c.life.Lock()
	defer c.life.Unlock()
	if c.closed && !c.closing {
		return false
	}
	c.inFlight++
	return true
}

func (c *Client) exit() {
	c.life.Lock()
	c.inFlight--
	if c.inFlight == 0 {
		c.lifeIdle.Broadcast()
	}
	c.life.Unlock()
}

// Close sends what is buffered, calls OnPartitionsRevoked for what the group had given this
// member (it may commit there), commits polled offsets when auto-commit is on, leaves the
// group and releases the client. Calls made after Close fail with ErrClientClosed, and a
// PollFetches in another goroutine returns ErrClientClosed.
func (c *Client) Close() {
	c.life.Lock()
	if c.closed {
		c.life.Unlock()
		return
	}
	c.closed = true
	for c.inFlight > 0 {
		c.lifeIdle.Wait()
	}
	c.life.Unlock()

	ctx := context.Background()
	if c.cfg.onRevoked != nil {
		c.offsetsMu.Lock()
		held := map[string][]int32{}
		for tp := range c.assigned {
			held[tp.topic] = append(held[tp.topic], tp.partition)
		}
		c.offsetsMu.Unlock()
		if len(held) > 0 {
			c.life.Lock()
			c.closing = true
			c.life.Unlock()
			c.cfg.onRevoked(ctx, c, held)
			c.life.Lock()
			c.closing = false
			for c.inFlight > 0 {
				c.lifeIdle.Wait()
			}
			c.life.Unlock()
		}
	}
	await(ctx, func(cb C.HwCallback, cx C.size_t) C.uint64_t { return C.hw_producer_flush(c.producer, cb, cx) })
	c.freeProducer()
	if c.consumer != nil {
		await(ctx, func(cb C.HwCallback, cx C.size_t) C.uint64_t { return C.hw_consumer_close(c.consumer, cb, cx) })
		C.hw_consumer_free(c.consumer)
		if c.rebalance != 0 {
			c.rebalance.Delete()
		}
	}
}

func (c *Client) freeProducer() {
	await(context.Background(), func(cb C.HwCallback, cx C.size_t) C.uint64_t {
		return C.hw_producer_close(c.producer, cb, cx)
	})
	C.hw_producer_free(c.producer)
	c.producer = nil
	if c.promises != nil {
		c.promises.close()
	}
}

// Flush waits until every record produced so far has its result (and its promise has run).
func (c *Client) Flush(ctx context.Context) error {
	if !c.enter() {
		return ErrClientClosed
	}
	defer c.exit()
	r := await(ctx, func(cb C.HwCallback, cx C.size_t) C.uint64_t { return C.hw_producer_flush(c.producer, cb, cx) })
	if err := r.err(ctx); err != nil {
		return err
	}
	return c.promises.drain(ctx)
}

func millis(t time.Time) int64 {
	if t.IsZero() {
		return -1
	}
	return t.UnixMilli()
}
