package headwater

/*
#include "callbacks.h"
*/
import "C"

import (
	"context"
	"sync"
	"time"
)

// Record is a record to produce or one consumed. Produce fills in Partition, Offset and
// Timestamp once the broker has it.
type Record struct {
	Key   []byte // nil for none
	Value []byte // nil for a tombstone
	// Headers are kept in order; keys may repeat.
	Headers []RecordHeader
	// Timestamp is the record's time; zero when producing means now.
	Timestamp time.Time
	Topic     string
	// Partition is used when producing only with ManualPartitioner.
	Partition int32
	Offset    int64
}

type RecordHeader struct {
	Key   string
	Value []byte
}

// StringRecord is a record with a string value, as in franz-go.
func StringRecord(value string) *Record { return &Record{Value: []byte(value)} }

// KeyStringRecord is a record with a string key and value.
func KeyStringRecord(key, value string) *Record {
	return &Record{Key: []byte(key), Value: []byte(value)}
}

// ProduceResult is one record's outcome.
type ProduceResult struct {
	Record *Record
	Err    error
}

// ProduceResults are ProduceSync's outcomes, in the order of its records.
type ProduceResults []ProduceResult

// FirstErr is the first record's error, or nil when every record was written.
func (rs ProduceResults) FirstErr() error {
	for _, r := range rs {
		if r.Err != nil {
			return r.Err
		}
	}
	return nil
}

// First is the first record and its error; for ProduceSync of one record.
func (rs ProduceResults) First() (*Record, error) {
	if len(rs) == 0 {
		return nil, nil
	}
	return rs[0].Record, rs[0].Err
}

// Produce sends r and calls promise once with its outcome. Promises run one at a time, in
// the order records were produced, on a goroutine of the client's (they need no polling).
// Ending ctx before the broker answers fails the record's promise with ctx's error at once,
// possibly before the promises of earlier records; the record may still be written. A nil
// promise ignores the outcome.
func (c *Client) Produce(ctx context.Context, r *Record, promise func(*Record, error)) {
	if promise == nil {
		promise = func(*Record, error) {}
	}
	var done chan struct{}
	if ctx.Done() != nil {
		done = make(chan struct{})
	}
	id, started := c.produce(ctx, r, promise, done)
	if started && done != nil {
		go func() {
			select {
			case <-ctx.Done():
				cancel(id)
			case <-done:
			}
		}()
	}
}

// ProduceSync sends rs and waits for all of them. Ending ctx fails the records still
// waiting with ctx's error.
func (c *Client) ProduceSync(ctx context.Context, rs ...*Record) ProduceResults {
	results := make(ProduceResults, len(rs))
	var wg sync.WaitGroup
	wg.Add(len(rs))
	ids := make([]uint64, 0, len(rs))
	for i, r := range rs {
		results[i].Record = r
		id, started := c.produce(ctx, r, func(_ *Record, err error) {
			results[i].Err = err
			wg.Done()
		}, nil)
		if started {
			ids = append(ids, id)
		}
	}
	if ctx.Done() == nil {
		wg.Wait()
		return results
	}
	all := make(chan struct{})
	go func() {
		wg.Wait()
		close(all)
	}()
	select {
	case <-all:
	case <-ctx.Done():
		for _, id := range ids {
			cancel(id)
		}
		<-all
	}
	return results
}

// produce hands r to the native producer. Its promise is queued when the result comes;
// done, when not nil, is closed then. It reports whether the native send started.
func (c *Client) produce(ctx context.Context, r *Record, promise func(*Record, error), done chan struct{}) (uint64, bool) {
	fail := func(err error) (uint64, bool) {
		if done != nil {
			close(done)
		}
		c.promises.push(func() { promise(r, err) })
		return 0, false
	}
	if !c.enter() {
		// The promise queue has stopped; report here.
		if done != nil {
			close(done)
		}
		promise(r, ErrClientClosed)
		return 0, false
	}
	defer c.exit()
	if err := ctx.Err(); err != nil {
		return fail(err)
	}
	if r.Topic == "" {
		r.Topic = c.cfg.defaultTopic
	}
	if r.Topic == "" {
		return fail(configError("Record.Topic is empty and there is no DefaultProduceTopic"))
	}
	partition := int32(-1)
	if c.cfg.manualPartitioner {
		if r.Partition < 0 {
			return fail(configError("Record.Partition %d: ManualPartitioner needs a partition of 0 or more", r.Partition))
		}
		partition = r.Partition
	}
	var w writer
	w.str(r.Topic).i32(partition).i64(millis(r.Timestamp)).bytes(r.Key).bytes(r.Value).count(len(r.Headers))
	for _, h := range r.Headers {
		w.str(h.Key).bytes(h.Value)
	}
	p, n := buf(w.b)
	id := start(func(cb C.HwCallback, cx C.size_t) C.uint64_t {
		return C.hw_producer_send(c.producer, p, n, cb, cx)
	}, func(res result) {
		c.promises.push(func() {
			err := res.err(ctx)
			if err == nil {
				rd := reader{b: res.data}
				r.Topic = rd.str()
				r.Partition = rd.i32()
				r.Offset = rd.i64()
				r.Timestamp = time.UnixMilli(rd.i64())
				err = rd.err
			}
			promise(r, err)
		})
		if done != nil {
			close(done)
		}
	})
	return id, true
}

// promiseQueue runs promises one at a time, in order, on its own goroutine, so that a slow
// promise never holds up the native library's threads.
type promiseQueue struct {
	mu      sync.Mutex
	pending []func()
	wake    chan struct{}
	stopped chan struct{}
	closing bool
}

func newPromiseQueue() *promiseQueue {
	q := &promiseQueue{wake: make(chan struct{}, 1), stopped: make(chan struct{})}
	go q.run()
	return q
}

func (q *promiseQueue) push(f func()) {
	q.mu.Lock()
	q.pending = append(q.pending, f)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

func (q *promiseQueue) run() {
	defer close(q.stopped)
	for {
		q.mu.Lock()
		batch, closing := q.pending, q.closing
		q.pending = nil
		q.mu.Unlock()
		for _, f := range batch {
			f()
		}
		if len(batch) == 0 {
			if closing {
				return
			}
			<-q.wake
		}
	}
}

// drain waits until every promise queued before it has run.
func (q *promiseQueue) drain(ctx context.Context) error {
	ran := make(chan struct{})
	q.push(func() { close(ran) })
	select {
	case <-ran:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// close runs what is queued, then stops the goroutine and waits for it.
func (q *promiseQueue) close() {
	q.mu.Lock()
	q.closing = true
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
	<-q.stopped
}
