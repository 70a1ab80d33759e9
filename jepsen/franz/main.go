// Command franz is the queue workload's client on franz-go, unmodified: the same roles and the
// same history events as hwjepsen/workers/confluent.py, one JSON object per line on stdout.
//
//	franz ROLE -bootstrap H:P,... -process NAME [-topic T] [-partitions N] [-index I] [-seed S]
//	      [-group G] [-final-timeout S]
//
// Roles: producer (idempotent acks=all sends of unique integers, 1-3 per operation), assign
// (reads every partition from the start, restarting now and then), group (a classic consumer
// group, committing after each poll and reading its committed offsets every ~2 s), final (reads
// every partition from the start up to the high watermark it saw first).
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

const valuesPerProcess = 100_000_000

type options struct {
	role, bootstrap, topic, process, group string
	partitions, index                      int
	seed                                   int64
	finalTimeout                           time.Duration
	leaderAcks                             bool
}

// reporter writes history events; stopping is set by SIGTERM or SIGINT.
type reporter struct {
	mu       sync.Mutex
	enc      *json.Encoder
	process  string
	stopping atomic.Bool
}

type event struct {
	Time    int64  `json:"time"`
	Process string `json:"process"`
	Type    string `json:"type"`
	F       string `json:"f"`
	Value   any    `json:"value"`
}

func (r *reporter) emitAt(at int64, typ, f string, value any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.enc.Encode(event{at, r.process, typ, f, value}); err != nil {
		os.Exit(3)
	}
}

func (r *reporter) emit(typ, f string, value any) { r.emitAt(time.Now().UnixNano(), typ, f, value) }

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: franz producer|assign|group|final -bootstrap H:P -process NAME ...")
		os.Exit(2)
	}
	var o options
	fs := flag.NewFlagSet(os.Args[1], flag.ExitOnError)
	fs.StringVar(&o.bootstrap, "bootstrap", "", "seed brokers, comma-separated")
	fs.StringVar(&o.topic, "topic", "jepsen", "topic")
	fs.StringVar(&o.process, "process", "", "process name in the history")
	fs.StringVar(&o.group, "group", "jepsen-franz", "consumer group")
	fs.IntVar(&o.partitions, "partitions", 4, "partitions of the topic")
	fs.IntVar(&o.index, "index", 0, "producer index (its values start at index*1e8)")
	fs.Int64Var(&o.seed, "seed", 0, "random seed")
	fs.DurationVar(&o.finalTimeout, "final-timeout", 60*time.Second, "final read deadline")
	acks := fs.String("acks", "all", "all, or 1 (leader only, no idempotence: the weak Kafka run)")
	_ = fs.Parse(os.Args[2:])
	o.role = os.Args[1]
	o.leaderAcks = *acks == "1"
	r := &reporter{enc: json.NewEncoder(os.Stdout), process: o.process}
	signals := make(chan os.Signal, 1)
	signal.Notify(signals, syscall.SIGTERM, syscall.SIGINT)
	go func() { <-signals; r.stopping.Store(true) }()
	switch o.role {
	case "producer":
		produce(o, r)
	case "assign":
		readAssigned(o, r)
	case "group":
		readGroup(o, r)
	case "final":
		readFinal(o, r)
	default:
		fmt.Fprintf(os.Stderr, "unknown role %q\n", o.role)
		os.Exit(2)
	}
}

func seeds(o options) []string { return strings.Split(o.bootstrap, ",") }

func producerClient(o options) *kgo.Client {
	opts := []kgo.Opt{kgo.SeedBrokers(seeds(o)...), kgo.DefaultProduceTopic(o.topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()), kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(2 * time.Millisecond), kgo.RecordDeliveryTimeout(10 * time.Second),
		kgo.ProduceRequestTimeout(5 * time.Second), kgo.MetadataMaxAge(5 * time.Second),
		kgo.DialTimeout(3 * time.Second)}
	if o.leaderAcks {
		opts = append(opts, kgo.RequiredAcks(kgo.LeaderAck()), kgo.DisableIdempotentWrite())
	}
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	return cl
}

func produce(o options, r *reporter) {
	rng := rand.New(rand.NewSource(o.seed))
	next := int64(o.index) * valuesPerProcess
	cl := producerClient(o)
	defer func() { cl.Close() }()
	for !r.stopping.Load() {
		n := 1 + rng.Intn(3)
		sends := make([][]any, n)
		records := make([]*kgo.Record, n)
		for i := range records {
			p := int32(rng.Intn(o.partitions))
			sends[i] = []any{p, next}
			records[i] = &kgo.Record{Partition: p, Value: []byte(strconv.FormatInt(next, 10))}
			next++
		}
		r.emit("invoke", "send", sends)
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		results := cl.ProduceSync(ctx, records...)
		cancel()
		// ProduceSync's results come in the order their promises fired, which across
		// partitions is not the order of the records: match them by record.
		index := make(map[*kgo.Record]int, n)
		for i, rec := range records {
			index[rec] = i
		}
		acked := make([][]any, n)
		for i := range acked {
			acked[i] = append(sends[i], nil)
		}
		var errs []string
		for _, res := range results {
			i := index[res.Record]
			if res.Err != nil {
				errs = append(errs, res.Err.Error())
			} else {
				acked[i] = append(sends[i], res.Record.Offset)
			}
		}
		if len(results) != n && errs == nil {
			errs = append(errs, fmt.Sprintf("%d results for %d records", len(results), n))
		}
		if errs == nil {
			r.emit("ok", "send", acked)
			continue
		}
		r.emit("info", "send", acked)
		r.emit("info", "crash", errs)
		cl.Close()
		time.Sleep(200 * time.Millisecond)
		cl = producerClient(o)
	}
}

// poll does one poll and reports it when it returned records; it returns the last offset read
// per partition.
func poll(cl *kgo.Client, r *reporter, timeout time.Duration, max int) map[int32]int64 {
	at := time.Now().UnixNano()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	fetches := cl.PollRecords(ctx, max)
	cancel()
	fetches.EachError(func(topic string, p int32, err error) {
		if !errors.Is(err, context.DeadlineExceeded) && !errors.Is(err, kgo.ErrClientClosed) {
			r.emit("info", "poll-error", fmt.Sprintf("%s[%d]: %v", topic, p, err))
		}
	})
	var records [][]any
	last := map[int32]int64{}
	fetches.EachRecord(func(rec *kgo.Record) {
		v, err := strconv.ParseInt(string(rec.Value), 10, 64)
		if err != nil {
			r.emit("info", "poll-error", fmt.Sprintf("value %q is not an integer", rec.Value))
			return
		}
		records = append(records, []any{rec.Partition, rec.Offset, v})
		last[rec.Partition] = rec.Offset
	})
	if len(records) > 0 {
		r.emitAt(at, "invoke", "poll", nil)
		r.emit("ok", "poll", records)
	}
	return last
}

func allPartitions(o options, at kgo.Offset) map[string]map[int32]kgo.Offset {
	parts := map[int32]kgo.Offset{}
	for p := 0; p < o.partitions; p++ {
		parts[int32(p)] = at
	}
	return map[string]map[int32]kgo.Offset{o.topic: parts}
}

func partitionList(o options) []int {
	ps := make([]int, o.partitions)
	for i := range ps {
		ps[i] = i
	}
	return ps
}

func readAssigned(o options, r *reporter) {
	rng := rand.New(rand.NewSource(o.seed))
	for !r.stopping.Load() {
		cl, err := kgo.NewClient(kgo.SeedBrokers(seeds(o)...), kgo.MetadataMaxAge(5*time.Second),
			kgo.ConsumePartitions(allPartitions(o, kgo.NewOffset().AtStart())),
			kgo.FetchMaxWait(100*time.Millisecond), kgo.DialTimeout(3*time.Second))
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		r.emit("ok", "assign", partitionList(o))
		restartAt := time.Now().Add(time.Duration(15+rng.Intn(30)) * time.Second)
		for !r.stopping.Load() && time.Now().Before(restartAt) {
			poll(cl, r, 500*time.Millisecond, 500)
		}
		cl.Close()
		if !r.stopping.Load() {
			r.emit("info", "crash", "restart")
		}
	}
}

func partitionsOf(assigned map[string][]int32) []int32 {
	ps := []int32{}
	for _, parts := range assigned {
		ps = append(ps, parts...)
	}
	sort.Slice(ps, func(i, j int) bool { return ps[i] < ps[j] })
	return ps
}

func readGroup(o options, r *reporter) {
	var mu sync.Mutex
	held := map[int32]bool{}
	change := func(f string, hold bool) func(context.Context, *kgo.Client, map[string][]int32) {
		return func(_ context.Context, _ *kgo.Client, parts map[string][]int32) {
			ps := partitionsOf(parts)
			mu.Lock()
			for _, p := range ps {
				if hold {
					held[p] = true
				} else {
					delete(held, p)
				}
			}
			mu.Unlock()
			r.emit("ok", f, ps)
		}
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds(o)...), kgo.MetadataMaxAge(5*time.Second),
		kgo.ConsumerGroup(o.group), kgo.ConsumeTopics(o.topic), kgo.DisableAutoCommit(),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()), kgo.BlockRebalanceOnPoll(),
		kgo.SessionTimeout(6*time.Second), kgo.HeartbeatInterval(time.Second),
		kgo.FetchMaxWait(100*time.Millisecond), kgo.DialTimeout(3*time.Second),
		kgo.OnPartitionsAssigned(change("assign", true)),
		kgo.OnPartitionsRevoked(change("revoke", false)),
		kgo.OnPartitionsLost(change("lost", false)))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	nextRead := time.Now().Add(2 * time.Second)
	for !r.stopping.Load() {
		last := poll(cl, r, 500*time.Millisecond, 500)
		// With BlockRebalanceOnPoll nothing is revoked until AllowRebalance: the partitions
		// polled are still held while their offsets are committed.
		var offsets [][]int64
		commit := map[string]map[int32]kgo.EpochOffset{o.topic: {}}
		mu.Lock()
		for p, off := range last {
			if held[p] {
				offsets = append(offsets, []int64{int64(p), off + 1})
				commit[o.topic][p] = kgo.EpochOffset{Epoch: -1, Offset: off + 1}
			}
		}
		var holding []int
		for p := range held {
			holding = append(holding, int(p))
		}
		mu.Unlock()
		sort.Slice(offsets, func(i, j int) bool { return offsets[i][0] < offsets[j][0] })
		sort.Ints(holding)
		if len(offsets) > 0 {
			commitOffsets(cl, r, o.group, commit, offsets)
		}
		if time.Now().After(nextRead) && len(holding) > 0 {
			readCommitted(cl, r, o, holding)
			nextRead = time.Now().Add(2 * time.Second)
		}
		cl.AllowRebalance()
	}
	cl.Close()
}

func commitOffsets(cl *kgo.Client, r *reporter, group string, commit map[string]map[int32]kgo.EpochOffset, offsets [][]int64) {
	value := map[string]any{"group": group, "offsets": offsets}
	r.emit("invoke", "commit", value)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var failure error
	definite := true
	done := make(chan struct{})
	cl.CommitOffsetsSync(ctx, commit, func(_ *kgo.Client, _ *kmsg.OffsetCommitRequest, resp *kmsg.OffsetCommitResponse, err error) {
		defer close(done)
		if err != nil {
			failure, definite = err, false
			return
		}
		for _, t := range resp.Topics {
			for _, p := range t.Partitions {
				if e := kerr.ErrorForCode(p.ErrorCode); e != nil {
					failure = e
				}
			}
		}
	})
	<-done
	if failure == nil {
		r.emit("ok", "commit", value)
		return
	}
	value["error"] = failure.Error()
	if definite {
		r.emit("fail", "commit", value)
	} else {
		r.emit("info", "commit", value)
	}
}

func readCommitted(cl *kgo.Client, r *reporter, o options, partitions []int) {
	r.emit("invoke", "committed", map[string]any{"group": o.group, "partitions": partitions})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	fetched, err := kadm.NewClient(cl).FetchOffsets(ctx, o.group)
	if err == nil {
		err = fetched.Error()
	}
	if err != nil {
		r.emit("fail", "committed", map[string]any{"group": o.group, "error": err.Error()})
		return
	}
	offsets := [][]int64{}
	for _, p := range partitions {
		at := int64(-1001)
		if got, ok := fetched.Lookup(o.topic, int32(p)); ok && got.Err == nil {
			at = got.At
		}
		offsets = append(offsets, []int64{int64(p), at})
	}
	r.emit("ok", "committed", map[string]any{"group": o.group, "offsets": offsets})
}

func readFinal(o options, r *reporter) {
	deadline := time.Now().Add(o.finalTimeout)
	admin, err := kgo.NewClient(kgo.SeedBrokers(seeds(o)...), kgo.DialTimeout(3*time.Second))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var high map[int32]int64
	for high == nil {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		ends, err := kadm.NewClient(admin).ListEndOffsets(ctx, o.topic)
		cancel()
		if err == nil {
			err = ends.Error()
		}
		if err == nil {
			high = map[int32]int64{}
			ends.Each(func(l kadm.ListedOffset) { high[l.Partition] = l.Offset })
			break
		}
		if time.Now().After(deadline) {
			r.emit("fail", "final", map[string]any{"error": err.Error()})
			return
		}
		time.Sleep(500 * time.Millisecond)
	}
	admin.Close()
	r.emit("ok", "final-start", map[string]any{"high": pairs(high)})
	cl, err := kgo.NewClient(kgo.SeedBrokers(seeds(o)...), kgo.DialTimeout(3*time.Second),
		kgo.ConsumePartitions(allPartitions(o, kgo.NewOffset().AtStart())))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	defer cl.Close()
	r.emit("ok", "assign", partitionList(o))
	reached := map[int32]int64{}
	for p := range high {
		reached[p] = -1
	}
	complete := func() bool {
		for p, h := range high {
			if reached[p]+1 < h {
				return false
			}
		}
		return true
	}
	for !complete() && time.Now().Before(deadline) {
		for p, off := range poll(cl, r, time.Second, 5000) {
			if off > reached[p] {
				reached[p] = off
			}
		}
	}
	typ := "ok"
	if !complete() {
		typ = "fail"
	}
	r.emit(typ, "final", map[string]any{"reached": pairs(reached), "high": pairs(high)})
}

func pairs(m map[int32]int64) [][]int64 {
	out := [][]int64{}
	for p, v := range m {
		out = append(out, []int64{int64(p), v})
	}
	sort.Slice(out, func(i, j int) bool { return out[i][0] < out[j][0] })
	return out
}
