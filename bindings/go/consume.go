package headwater

/*
#include "callbacks.h"
*/
import "C"

import (
	"context"
	"runtime/cgo"
	"time"
	"unsafe"
)

// pollSlice bounds one native poll, so that a PollFetches notices its ctx ending promptly
// (native polls are not cancellable: records they return must reach the caller).
const pollSlice = 200 * time.Millisecond

// Fetches are the records one PollFetches returned, or the error that stopped it.
type Fetches struct {
	records []*Record
	err     error
}

// Records returns the records, in order per partition.
func (f Fetches) Records() []*Record { return f.records }

// EachRecord calls fn for each record, in order per partition.
func (f Fetches) EachRecord(fn func(*Record)) {
	for _, r := range f.records {
		fn(r)
	}
}

// EachPartition calls fn once per partition with that partition's records, in order.
func (f Fetches) EachPartition(fn func(topic string, partition int32, records []*Record)) {
	seen := map[topicPartition][]*Record{}
	var order []topicPartition
	for _, r := range f.records {
		tp := topicPartition{r.Topic, r.Partition}
		if _, ok := seen[tp]; !ok {
			order = append(order, tp)
		}
		seen[tp] = append(seen[tp], r)
	}
	for _, tp := range order {
		fn(tp.topic, tp.partition, seen[tp])
	}
}

// Err is the error that ended the poll: ctx's error, ErrClientClosed, or an *Error.
func (f Fetches) Err() error { return f.err }

// IsClientClosed says whether the poll failed because the client is closed.
func (f Fetches) IsClientClosed() bool { return f.err == ErrClientClosed }

// Empty says whether there are no records.
func (f Fetches) Empty() bool { return len(f.records) == 0 }

// NumRecords is how many records there are.
func (f Fetches) NumRecords() int { return len(f.records) }

// PollFetches waits until records are available or ctx ends, and returns them (at most
// MaxPollRecords). The first call joins the group (or takes the partitions). Records
// returned count as consumed: they are what CommitUncommittedOffsets and auto-commit commit.
//
// ctx is checked between native polls of at most 200 ms; a poll under way finishes first,
// and one that must first find its partitions' offsets or refresh metadata can take up to a
// request timeout. Close in another goroutine makes PollFetches return ErrClientClosed.
func (c *Client) PollFetches(ctx context.Context) Fetches {
	if !c.enter() {
		return Fetches{err: ErrClientClosed}
	}
	defer c.exit()
	if c.consumer == nil {
		return Fetches{err: configError("this client consumes nothing: give it ConsumeTopics or ConsumePartitions")}
	}
	if err := c.subscribe(ctx); err != nil {
		return Fetches{err: err}
	}
	c.pollMu.Lock()
	defer c.pollMu.Unlock()
	for {
		if err := ctx.Err(); err != nil {
			return Fetches{err: err}
		}
		if c.isClosed() {
			return Fetches{err: ErrClientClosed}
		}
		slice := pollSlice
		if deadline, ok := ctx.Deadline(); ok {
			slice = max(min(slice, time.Until(deadline)), 0)
		}
		r := await(ctx, func(cb C.HwCallback, cx C.size_t) C.uint64_t {
			return C.hw_consumer_poll(c.consumer, C.uint64_t(slice.Milliseconds()), cb, cx)
		})
		if err := r.err(ctx); err != nil {
			return Fetches{err: err}
		}
		records, err := decodeRecords(r.data)
		if err != nil {
			return Fetches{err: err}
		}
		if len(records) == 0 {
			continue
		}
		// Every record the native poll returned goes to the caller: the native consumer has
		// already counted them as consumed (auto-commit commits them).
		c.offsetsMu.Lock()
		for _, r := range records {
			c.uncommitted[topicPartition{r.Topic, r.Partition}] = r.Offset + 1
		}
		c.offsetsMu.Unlock()
		return Fetches{records: records}
	}
}

func (c *Client) isClosed() bool {
	c.life.Lock()
	defer c.life.Unlock()
	return c.closed
}

// subscribe joins the group or takes the partitions, once.
func (c *Client) subscribe(ctx context.Context) error {
	c.subscribeMu.Lock()
	defer c.subscribeMu.Unlock()
	if c.subscribed {
		return nil
	}
	var w writer
	var begin starter
	if c.cfg.partitions != nil {
		n := 0
		for _, ps := range c.cfg.partitions {
			n += len(ps)
		}
		w.count(n)
		for topic, ps := range c.cfg.partitions {
			for partition, offset := range ps {
				w.str(topic).i32(partition).i64(offset.at)
			}
		}
		p, n2 := buf(w.b)
		begin = func(cb C.HwCallback, cx C.size_t) C.uint64_t {
			return C.hw_consumer_assign(c.consumer, p, n2, cb, cx)
		}
	} else {
		w.count(len(c.cfg.topics))
		for _, t := range c.cfg.topics {
			w.str(t)
		}
		p, n := buf(w.b)
		begin = func(cb C.HwCallback, cx C.size_t) C.uint64_t {
			return C.hw_consumer_subscribe(c.consumer, p, n, cb, cx)
		}
	}
	if err := await(ctx, begin).err(ctx); err != nil {
		return err
	}
	c.subscribed = true
	return nil
}

func decodeRecords(data []byte) ([]*Record, error) {
	rd := reader{b: data}
	n := rd.count()
	records := make([]*Record, 0, n)
	for i := 0; i < n && rd.err == nil; i++ {
		r := &Record{Topic: rd.str(), Partition: rd.i32(), Offset: rd.i64()}
		r.Timestamp = time.UnixMilli(rd.i64())
		r.Key = rd.bytes()
		r.Value = rd.bytes()
		if h := rd.count(); h > 0 {
			r.Headers = make([]RecordHeader, 0, h)
			for j := 0; j < h; j++ {
				r.Headers = append(r.Headers, RecordHeader{Key: rd.str(), Value: rd.bytes()})
			}
		}
		records = append(records, r)
	}
	if rd.err != nil {
		return nil, rd.err
	}
	return records, nil
}

// CommitUncommittedOffsets commits, for each partition, the offset after the last record
// PollFetches returned, if not committed yet. It may be called from OnPartitionsRevoked.
func (c *Client) CommitUncommittedOffsets(ctx context.Context) error {
	if c.cfg.group == "" {
		return configError("CommitUncommittedOffsets needs a ConsumerGroup")
	}
	if !c.enter() {
		return ErrClientClosed
	}
	defer c.exit()
	c.offsetsMu.Lock()
	offsets := make(map[topicPartition]int64, len(c.uncommitted))
	for tp, o := range c.uncommitted {
		offsets[tp] = o
	}
	c.offsetsMu.Unlock()
	if len(offsets) == 0 {
		return nil
	}
	var w writer
	w.count(len(offsets))
	for tp, o := range offsets {
		w.str(tp.topic).i32(tp.partition).i64(o)
	}
	p, n := buf(w.b)
	r := await(ctx, func(cb C.HwCallback, cx C.size_t) C.uint64_t {
		return C.hw_consumer_commit_offsets(c.consumer, p, n, cb, cx)
	})
	if err := r.err(ctx); err != nil {
		return err
	}
	c.offsetsMu.Lock()
	for tp, o := range offsets {
		if c.uncommitted[tp] == o {
			delete(c.uncommitted, tp)
		}
	}
	c.offsetsMu.Unlock()
	return nil
}

//export hwGoRebalance
func hwGoRebalance(handle C.size_t, kind C.HwRebalance, partitions *C.uint8_t, partitionsLen C.size_t) {
	c := cgo.Handle(handle).Value().(*Client)
	rd := reader{b: unsafe.Slice((*byte)(unsafe.Pointer(partitions)), int(partitionsLen))}
	moved := map[string][]int32{}
	n := rd.count()
	for i := 0; i < n && rd.err == nil; i++ {
		topic := rd.str()
		moved[topic] = append(moved[topic], rd.i32())
	}
	c.onRebalance(kind, moved)
}

func (c *Client) onRebalance(kind C.HwRebalance, moved map[string][]int32) {
	ctx := context.Background()
	switch kind {
	case C.HW_REBALANCE_ASSIGNED:
		c.offsetsMu.Lock()
		for topic, ps := range moved {
			for _, p := range ps {
				c.assigned[topicPartition{topic, p}] = true
			}
		}
		c.offsetsMu.Unlock()
		if c.cfg.onAssigned != nil {
			c.cfg.onAssigned(ctx, c, moved)
		}
		return
	case C.HW_REBALANCE_REVOKED:
		if c.cfg.onRevoked != nil {
			c.cfg.onRevoked(ctx, c, moved)
		}
	case C.HW_REBALANCE_LOST:
		if c.cfg.onLost != nil {
			c.cfg.onLost(ctx, c, moved)
		} else if c.cfg.onRevoked != nil {
			c.cfg.onRevoked(ctx, c, moved)
		}
	}
	// Gone partitions are another member's to commit now.
	c.offsetsMu.Lock()
	for topic, ps := range moved {
		for _, p := range ps {
			delete(c.uncommitted, topicPartition{topic, p})
			delete(c.assigned, topicPartition{topic, p})
		}
	}
	c.offsetsMu.Unlock()
}
