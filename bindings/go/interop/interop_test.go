// Records cross between the Headwater Go SDK and franz-go, the Go client Kafka users know,
// through one embedded broker: each side reads every field the other wrote.
package interop

import (
	"bytes"
	"context"
	"fmt"
	"testing"
	"time"

	headwater "github.com/headwater/headwater-go"
	"github.com/headwater/headwater-go/headwatertest"
	"github.com/twmb/franz-go/pkg/kgo"
)

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func createTopic(t *testing.T, seeds []string, topic string, partitions int32) {
	t.Helper()
	a, err := headwater.NewAdminClient(headwater.SeedBrokers(seeds...))
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if err := a.CreateTopic(testCtx(t), topic, partitions, 1, nil); err != nil {
		t.Fatal(err)
	}
}

type sample struct {
	key, value []byte
	header     string
}

func samples(n int) []sample {
	out := make([]sample, n)
	for i := range out {
		out[i] = sample{key: []byte(fmt.Sprintf("key-%d", i%7)), value: bytes.Repeat([]byte{byte(i)}, 1+i%300),
			header: fmt.Sprintf("trace-%d", i)}
	}
	// A tombstone and an empty value are different records; both must survive the trip.
	out[n-2].value = nil
	out[n-1].value = []byte{}
	return out
}

func TestHeadwaterSDKToFranzGo(t *testing.T) {
	broker := headwatertest.NewBroker(t)
	createTopic(t, broker.Addrs(), "to-franz", 3)
	ctx := testCtx(t)
	want := samples(200)

	p, err := headwater.NewClient(headwater.SeedBrokers(broker.Addrs()...),
		headwater.ProducerBatchCompression(headwater.ZstdCompression()))
	if err != nil {
		t.Fatal(err)
	}
	records := make([]*headwater.Record, len(want))
	for i, s := range want {
		records[i] = &headwater.Record{Topic: "to-franz", Key: s.key, Value: s.value,
			Headers: []headwater.RecordHeader{{Key: "trace", Value: []byte(s.header)}}}
	}
	if err := p.ProduceSync(ctx, records...).FirstErr(); err != nil {
		t.Fatalf("Headwater ProduceSync: %v", err)
	}
	p.Close()

	c, err := kgo.NewClient(kgo.SeedBrokers(broker.Addrs()...), kgo.ConsumeTopics("to-franz"),
		kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got := map[string]*kgo.Record{}
	for len(got) < len(want) {
		f := c.PollFetches(ctx)
		if err := f.Err(); err != nil {
			t.Fatalf("franz-go PollFetches after %d records: %v", len(got), err)
		}
		f.EachRecord(func(r *kgo.Record) {
			if len(r.Headers) == 1 {
				got[string(r.Headers[0].Value)] = r
			}
		})
	}
	for i, s := range want {
		r := got[s.header]
		if r == nil {
			t.Fatalf("franz-go did not read record %d", i)
		}
		if !bytes.Equal(r.Key, s.key) || !bytes.Equal(r.Value, s.value) || (r.Value == nil) != (s.value == nil) {
			t.Errorf("record %d: franz-go read key %q value %x (nil %v)", i, r.Key, r.Value, r.Value == nil)
		}
	}
}

func TestFranzGoToHeadwaterSDK(t *testing.T) {
	broker := headwatertest.NewBroker(t)
	createTopic(t, broker.Addrs(), "from-franz", 3)
	ctx := testCtx(t)
	want := samples(200)

	p, err := kgo.NewClient(kgo.SeedBrokers(broker.Addrs()...), kgo.DefaultProduceTopic("from-franz"),
		kgo.ProducerBatchCompression(kgo.SnappyCompression()))
	if err != nil {
		t.Fatal(err)
	}
	records := make([]*kgo.Record, len(want))
	for i, s := range want {
		records[i] = &kgo.Record{Key: s.key, Value: s.value, Headers: []kgo.RecordHeader{{Key: "trace", Value: []byte(s.header)}}}
	}
	if err := p.ProduceSync(ctx, records...).FirstErr(); err != nil {
		t.Fatalf("franz-go ProduceSync: %v", err)
	}
	p.Close()

	c, err := headwater.NewClient(headwater.SeedBrokers(broker.Addrs()...), headwater.ConsumerGroup("from-franz"),
		headwater.ConsumeTopics("from-franz"), headwater.DisableAutoCommit())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	got := map[string]*headwater.Record{}
	for len(got) < len(want) {
		f := c.PollFetches(ctx)
		if err := f.Err(); err != nil {
			t.Fatalf("Headwater PollFetches after %d records: %v", len(got), err)
		}
		f.EachRecord(func(r *headwater.Record) {
			if len(r.Headers) == 1 {
				got[string(r.Headers[0].Value)] = r
			}
		})
	}
	for i, s := range want {
		r := got[s.header]
		if r == nil {
			t.Fatalf("the SDK did not read record %d", i)
		}
		if !bytes.Equal(r.Key, s.key) || !bytes.Equal(r.Value, s.value) || (r.Value == nil) != (s.value == nil) {
			t.Errorf("record %d: the SDK read key %q value %x (nil %v)", i, r.Key, r.Value, r.Value == nil)
		}
	}
	if err := c.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatalf("commit: %v", err)
	}

	// franz-go, in the same group afterwards, starts from what the SDK committed: nothing left.
	c.Close()
	check, err := kgo.NewClient(kgo.SeedBrokers(broker.Addrs()...), kgo.ConsumerGroup("from-franz"),
		kgo.ConsumeTopics("from-franz"), kgo.ConsumeResetOffset(kgo.NewOffset().AtStart()),
		kgo.DisableAutoCommit())
	if err != nil {
		t.Fatal(err)
	}
	defer check.Close()
	if err := check.ProduceSync(ctx, &kgo.Record{Topic: "from-franz", Value: []byte("after")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	for {
		f := check.PollFetches(ctx)
		if err := f.Err(); err != nil {
			t.Fatalf("franz-go group PollFetches: %v", err)
		}
		done := false
		f.EachRecord(func(r *kgo.Record) {
			if string(r.Value) != "after" {
				t.Errorf("franz-go re-read a record the SDK committed (offset %d)", r.Offset)
			}
			done = true
		})
		if done {
			return
		}
	}
}
