// Producer throughput and latency of one Go client against a running broker: the Headwater
// Go SDK or franz-go. Prints one JSON object; the same workload as producer_bench.py.
//
// Both use Produce with a promise (franz-go's idiom; the Headwater SDK has the same call).
// Throughput: -tput-records records sent as fast as Produce takes them; rate = acknowledged /
// (last acknowledgement - first send). Latency: -rate records/s for -lat-seconds, paced;
// latency = acknowledgement - scheduled send. Any failed record fails the run ("ok": false).
package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"runtime/debug"
	"sort"
	"sync"
	"time"

	headwater "github.com/headwater/headwater-go"
	"github.com/twmb/franz-go/pkg/kgo"
)

type producer interface {
	produce(value []byte, done func(error))
	flush()
	close()
}

type hwProducer struct {
	c     *headwater.Client
	topic string
}

func (p hwProducer) produce(value []byte, done func(error)) {
	p.c.Produce(context.Background(), &headwater.Record{Topic: p.topic, Value: value},
		func(_ *headwater.Record, err error) { done(err) })
}
func (p hwProducer) flush() { _ = p.c.Flush(context.Background()) }
func (p hwProducer) close() { p.c.Close() }

type franzProducer struct {
	c     *kgo.Client
	topic string
}

func (p franzProducer) produce(value []byte, done func(error)) {
	p.c.Produce(context.Background(), &kgo.Record{Topic: p.topic, Value: value},
		func(_ *kgo.Record, err error) { done(err) })
}
func (p franzProducer) flush() { _ = p.c.Flush(context.Background()) }
func (p franzProducer) close() { p.c.Close() }

type acks struct {
	mu         sync.Mutex
	at         []time.Time
	acked      int
	errors     int
	firstError string
	wg         sync.WaitGroup
}

func newAcks(n int) *acks {
	a := &acks{at: make([]time.Time, n)}
	a.wg.Add(n)
	return a
}

func (a *acks) done(i int) func(error) {
	return func(err error) {
		now := time.Now()
		a.mu.Lock()
		if err != nil {
			a.errors++
			if a.firstError == "" {
				a.firstError = err.Error()
			}
		} else {
			a.at[i] = now
			a.acked++
		}
		a.mu.Unlock()
		a.wg.Done()
	}
}

type runResult struct {
	Records          int                `json:"records"`
	Acked            int                `json:"acked"`
	Errors           int                `json:"errors"`
	FirstError       string             `json:"first_error,omitempty"`
	Seconds          float64            `json:"seconds,omitempty"`
	RecordsPerSec    float64            `json:"records_per_sec,omitempty"`
	MBPerSec         float64            `json:"mb_per_sec,omitempty"`
	AchievedSendRate float64            `json:"achieved_send_rate,omitempty"`
	ProduceMs        map[string]float64 `json:"produce_ms,omitempty"`
}

func throughput(p producer, n int, value []byte) runResult {
	a := newAcks(n)
	start := time.Now()
	for i := 0; i < n; i++ {
		p.produce(value, a.done(i))
	}
	p.flush()
	a.wg.Wait()
	last := start
	for _, t := range a.at {
		if t.After(last) {
			last = t
		}
	}
	s := last.Sub(start).Seconds()
	r := runResult{Records: n, Acked: a.acked, Errors: a.errors, FirstError: a.firstError, Seconds: s}
	if s > 0 {
		r.RecordsPerSec = float64(a.acked) / s
		r.MBPerSec = float64(a.acked*len(value)) / s / 1e6
	}
	return r
}

func latency(p producer, rate int, seconds float64, value []byte) runResult {
	n := int(float64(rate) * seconds)
	a := newAcks(n)
	scheduled := make([]time.Time, n)
	start := time.Now().Add(50 * time.Millisecond)
	for i := 0; i < n; i++ {
		at := start.Add(time.Duration(float64(i) / float64(rate) * float64(time.Second)))
		if d := time.Until(at); d > 0 {
			time.Sleep(d)
		}
		scheduled[i] = at
		p.produce(value, a.done(i))
	}
	sent := time.Since(start).Seconds()
	p.flush()
	a.wg.Wait()
	var ms []float64
	for i, t := range a.at {
		if !t.IsZero() {
			ms = append(ms, float64(t.Sub(scheduled[i]).Microseconds())/1000)
		}
	}
	sort.Float64s(ms)
	pct := func(q float64) float64 {
		if len(ms) == 0 {
			return 0
		}
		i := int(q/100*float64(len(ms))+0.5) - 1
		return ms[min(max(i, 0), len(ms)-1)]
	}
	return runResult{Records: n, Acked: a.acked, Errors: a.errors, FirstError: a.firstError,
		AchievedSendRate: float64(n) / sent,
		ProduceMs:        map[string]float64{"p50": pct(50), "p99": pct(99), "p99.9": pct(99.9)}}
}

func moduleVersion(path string) string {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, m := range info.Deps {
			if m.Path == path {
				return m.Version
			}
		}
	}
	return "unknown"
}

func main() {
	client := flag.String("client", "", "headwater or franz")
	bootstrap := flag.String("bootstrap", "", "host:port")
	topic := flag.String("topic", "", "topic to create and produce to")
	partitions := flag.Int("partitions", 8, "")
	recordSize := flag.Int("record-size", 1024, "")
	lingerMs := flag.Int("linger-ms", 5, "")
	batchSize := flag.Int("batch-size", 65536, "")
	warmup := flag.Int("warmup-records", 10000, "")
	tput := flag.Int("tput-records", 200000, "")
	rate := flag.Int("rate", 5000, "")
	latSeconds := flag.Float64("lat-seconds", 10, "")
	flag.Parse()

	admin, err := headwater.NewAdminClient(headwater.SeedBrokers(*bootstrap))
	if err != nil {
		fail(err)
	}
	if err := admin.CreateTopic(context.Background(), *topic, int32(*partitions), 1, nil); err != nil {
		fail(err)
	}
	admin.Close()

	linger := time.Duration(*lingerMs) * time.Millisecond
	var p producer
	var name, version string
	switch *client {
	case "headwater":
		c, err := headwater.NewClient(headwater.SeedBrokers(*bootstrap), headwater.ProducerLinger(linger),
			headwater.ProducerBatchMaxBytes(*batchSize))
		if err != nil {
			fail(err)
		}
		p, name, version = hwProducer{c, *topic}, "headwater-go", "this checkout"
	case "franz":
		c, err := kgo.NewClient(kgo.SeedBrokers(*bootstrap), kgo.ProducerLinger(linger),
			kgo.ProducerBatchMaxBytes(int32(*batchSize)), kgo.RequiredAcks(kgo.AllISRAcks()))
		if err != nil {
			fail(err)
		}
		p, name, version = franzProducer{c, *topic}, "franz-go", "franz-go "+moduleVersion("github.com/twmb/franz-go")
	default:
		fail(fmt.Errorf("-client must be headwater or franz"))
	}
	value := make([]byte, *recordSize)
	_, _ = rand.Read(value)
	warm := throughput(p, *warmup, value)
	t := throughput(p, *tput, value)
	lat := latency(p, *rate, *latSeconds, value)
	p.close()
	ok := true
	for _, r := range []runResult{warm, t, lat} {
		ok = ok && r.Errors == 0 && r.Acked == r.Records
	}
	out := map[string]any{"client": name, "version": version, "ok": ok, "throughput": t, "latency": lat,
		"config": map[string]any{"partitions": *partitions, "record_size": *recordSize, "linger_ms": *lingerMs,
			"batch_size": *batchSize, "warmup_records": *warmup, "tput_records": *tput, "rate": *rate,
			"lat_seconds": *latSeconds}}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	_ = enc.Encode(out)
	if !ok {
		os.Exit(1)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "sdk bench:", err)
	os.Exit(1)
}
