package headwater_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	headwater "github.com/headwater/headwater-go"
	"github.com/headwater/headwater-go/headwatertest"
)

// testCtx bounds a test's waits; a hang fails the test instead of stalling the suite.
func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func newClient(t *testing.T, opts ...headwater.Opt) *headwater.Client {
	t.Helper()
	c, err := headwater.NewClient(opts...)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	t.Cleanup(c.Close)
	return c
}

func newAdmin(t *testing.T, b *headwatertest.Broker) *headwater.AdminClient {
	t.Helper()
	a, err := headwater.NewAdminClient(headwater.SeedBrokers(b.Addrs()...))
	if err != nil {
		t.Fatalf("NewAdminClient: %v", err)
	}
	t.Cleanup(a.Close)
	return a
}

func createTopic(t *testing.T, a *headwater.AdminClient, topic string, partitions int32) {
	t.Helper()
	if err := a.CreateTopic(testCtx(t), topic, partitions, 1, nil); err != nil {
		t.Fatalf("CreateTopic %s: %v", topic, err)
	}
}

// pollN polls until it has n records.
func pollN(t *testing.T, ctx context.Context, c *headwater.Client, n int) []*headwater.Record {
	t.Helper()
	var out []*headwater.Record
	for len(out) < n {
		f := c.PollFetches(ctx)
		if err := f.Err(); err != nil {
			t.Fatalf("PollFetches after %d of %d records: %v", len(out), n, err)
		}
		out = append(out, f.Records()...)
	}
	return out
}

func TestProduceSyncThenConsumeEveryField(t *testing.T) {
	b := headwatertest.NewBroker(t)
	createTopic(t, newAdmin(t, b), "fields", 3)
	ctx := testCtx(t)
	p := newClient(t, headwater.SeedBrokers(b.Addrs()...), headwater.ManualPartitioner())

	when := time.UnixMilli(1_700_000_000_123)
	sent := []*headwater.Record{
		{Topic: "fields", Partition: 2, Key: []byte("k1"), Value: []byte("v1"), Timestamp: when,
			Headers: []headwater.RecordHeader{{Key: "h", Value: []byte("1")}, {Key: "h", Value: nil}}},
		{Topic: "fields", Partition: 2, Key: nil, Value: []byte{}},
		{Topic: "fields", Partition: 2, Key: []byte("tombstone"), Value: nil},
	}
	results := p.ProduceSync(ctx, sent...)
	if err := results.FirstErr(); err != nil {
		t.Fatalf("ProduceSync: %v", err)
	}
	for i, r := range results {
		if r.Record.Partition != 2 || r.Record.Offset != int64(i) {
			t.Fatalf("record %d went to %d@%d, want 2@%d", i, r.Record.Partition, r.Record.Offset, i)
		}
	}

	c := newClient(t, headwater.SeedBrokers(b.Addrs()...), headwater.ConsumeTopics("fields"))
	got := pollN(t, ctx, c, 3)
	for i, r := range got {
		want := sent[i]
		if r.Topic != "fields" || r.Partition != 2 || r.Offset != int64(i) {
			t.Errorf("record %d at %s-%d@%d", i, r.Topic, r.Partition, r.Offset)
		}
		if !bytes.Equal(r.Key, want.Key) || (r.Key == nil) != (want.Key == nil) {
			t.Errorf("record %d key %q, want %q", i, r.Key, want.Key)
		}
		if !bytes.Equal(r.Value, want.Value) || (r.Value == nil) != (want.Value == nil) {
			t.Errorf("record %d value %q (nil %v), want %q (nil %v)", i, r.Value, r.Value == nil, want.Value, want.Value == nil)
		}
	}
	if !got[0].Timestamp.Equal(when) {
		t.Errorf("timestamp %v, want %v", got[0].Timestamp, when)
	}
	h := got[0].Headers
	if len(h) != 2 || h[0].Key != "h" || string(h[0].Value) != "1" || h[1].Key != "h" || h[1].Value != nil {
		t.Errorf("headers %+v", h)
	}
}

func TestProducePromisesRunInOrderWithoutPolling(t *testing.T) {
	b := headwatertest.NewBroker(t)
	createTopic(t, newAdmin(t, b), "ordered", 1)
	p := newClient(t, headwater.SeedBrokers(b.Addrs()...), headwater.ProducerLinger(20*time.Millisecond))

	const n = 500
	var mu sync.Mutex
	var offsets []int64
	var wg sync.WaitGroup
	wg.Add(n)
	for i := 0; i < n; i++ {
		p.Produce(context.Background(), &headwater.Record{Topic: "ordered", Value: []byte(fmt.Sprint(i))},
			func(r *headwater.Record, err error) {
				defer wg.Done()
				if err != nil {
					t.Errorf("promise: %v", err)
					return
				}
				mu.Lock()
				offsets = append(offsets, r.Offset)
				mu.Unlock()
			})
	}
	wg.Wait()
	for i, o := range offsets {
		if o != int64(i) {
			t.Fatalf("promise %d saw offset %d: promises ran out of order", i, o)
		}
	}
	if err := p.Flush(testCtx(t)); err != nil {
		t.Fatalf("Flush: %v", err)
	}
}

func TestGroupCommitsAndResumes(t *testing.T) {
	b := headwatertest.NewBroker(t)
	createTopic(t, newAdmin(t, b), "orders", 2)
	ctx := testCtx(t)
	p := newClient(t, headwater.SeedBrokers(b.Addrs()...), headwater.DefaultProduceTopic("orders"))
	for i := 0; i < 10; i++ {
		if err := p.ProduceSync(ctx, headwater.KeyStringRecord(fmt.Sprint(i), fmt.Sprint(i))).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	opts := []headwater.Opt{headwater.SeedBrokers(b.Addrs()...), headwater.ConsumerGroup("billing"),
		headwater.ConsumeTopics("orders"), headwater.DisableAutoCommit()}
	first, err := headwater.NewClient(opts...)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	for _, r := range pollN(t, ctx, first, 10) {
		seen[string(r.Value)] = true
	}
	if len(seen) != 10 {
		t.Fatalf("first member saw %d distinct records, want 10", len(seen))
	}
	if err := first.CommitUncommittedOffsets(ctx); err != nil {
		t.Fatalf("CommitUncommittedOffsets: %v", err)
	}
	first.Close()

	for i := 10; i < 13; i++ {
		if err := p.ProduceSync(ctx, headwater.KeyStringRecord(fmt.Sprint(i), fmt.Sprint(i))).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	second := newClient(t, opts...)
	got := pollN(t, ctx, second, 3)
	for _, r := range got {
		if seen[string(r.Value)] {
			t.Errorf("record %s came again after its offset was committed", r.Value)
		}
	}

	a := newAdmin(t, b)
	g, err := a.DescribeGroup(ctx, "billing")
	if err != nil {
		t.Fatalf("DescribeGroup: %v", err)
	}
	var committed int64
	for _, o := range g.Committed["orders"] {
		committed += o
	}
	if committed != 10 {
		t.Errorf("committed offsets add up to %d, want 10 (%v)", committed, g.Committed)
	}
}

func TestRevokedCallbackCommitsBeforeHandover(t *testing.T) {
	b := headwatertest.NewBroker(t)
	createTopic(t, newAdmin(t, b), "handover", 2)
	ctx := testCtx(t)
	p := newClient(t, headwater.SeedBrokers(b.Addrs()...), headwater.ManualPartitioner())
	for i := 0; i < 20; i++ {
		r := &headwater.Record{Topic: "handover", Partition: int32(i % 2), Value: []byte(fmt.Sprint(i))}
		if err := p.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}

	var mu sync.Mutex
	var assigned, revoked int
	var commitErr error
	member := func(instance string) []headwater.Opt {
		return []headwater.Opt{headwater.SeedBrokers(b.Addrs()...), headwater.ConsumerGroup("handover"),
			headwater.ConsumeTopics("handover"), headwater.DisableAutoCommit(),
			headwater.OnPartitionsAssigned(func(_ context.Context, _ *headwater.Client, m map[string][]int32) {
				mu.Lock()
				assigned += len(m["handover"])
				mu.Unlock()
			}),
			headwater.OnPartitionsRevoked(func(ctx context.Context, c *headwater.Client, m map[string][]int32) {
				err := c.CommitUncommittedOffsets(ctx)
				mu.Lock()
				revoked += len(m["handover"])
				if err != nil {
					commitErr = err
				}
				mu.Unlock()
			})}
	}
	first := newClient(t, member("a")...)
	firstSeen := pollN(t, ctx, first, 20)

	// A second member joins: one partition moves, and the first member commits it on revocation.
	second := newClient(t, member("b")...)
	secondCtx, stopSecond := context.WithCancel(ctx)
	defer stopSecond()
	var secondSeen []*headwater.Record
	secondDone := make(chan struct{})
	go func() {
		defer close(secondDone)
		for secondCtx.Err() == nil {
			f := second.PollFetches(secondCtx)
			mu.Lock()
			secondSeen = append(secondSeen, f.Records()...)
			mu.Unlock()
		}
	}()
	for {
		first.PollFetches(pollCtx(ctx, 200*time.Millisecond))
		mu.Lock()
		r, e := revoked, commitErr
		mu.Unlock()
		if e != nil {
			t.Fatalf("commit in OnPartitionsRevoked: %v", e)
		}
		if r > 0 {
			break
		}
		if ctx.Err() != nil {
			t.Fatal("no partition was revoked from the first member")
		}
	}
	// New records on both partitions: the second member must see its partition's new ones only,
	// none of the first 20 (their offsets were committed at revocation).
	for i := 20; i < 24; i++ {
		r := &headwater.Record{Topic: "handover", Partition: int32(i % 2), Value: []byte(fmt.Sprint(i))}
		if err := p.ProduceSync(ctx, r).FirstErr(); err != nil {
			t.Fatal(err)
		}
	}
	for {
		first.PollFetches(pollCtx(ctx, 200*time.Millisecond))
		mu.Lock()
		n := len(secondSeen)
		mu.Unlock()
		if n >= 2 || ctx.Err() != nil {
			break
		}
	}
	stopSecond()
	<-secondDone
	if len(firstSeen) != 20 {
		t.Fatalf("first member saw %d records", len(firstSeen))
	}
	for _, r := range secondSeen {
		var v int
		fmt.Sscan(string(r.Value), &v)
		if v < 20 {
			t.Errorf("second member got record %d, committed by the first at revocation", v)
		}
	}
	if len(secondSeen) < 2 {
		t.Errorf("second member got %d records, want 2", len(secondSeen))
	}
	mu.Lock()
	defer mu.Unlock()
	if assigned < 3 {
		t.Errorf("assigned callbacks covered %d partitions, want at least 3 (2 then 1)", assigned)
	}
}

func pollCtx(parent context.Context, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(parent, d)
	go func() { <-ctx.Done(); cancel() }()
	return ctx
}

func TestContextEndsBlockingCalls(t *testing.T) {
	b := headwatertest.NewBroker(t)
	createTopic(t, newAdmin(t, b), "quiet", 1)
	c := newClient(t, headwater.SeedBrokers(b.Addrs()...), headwater.ConsumeTopics("quiet"))

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	f := c.PollFetches(ctx)
	if !errors.Is(f.Err(), context.DeadlineExceeded) || !f.Empty() {
		t.Fatalf("PollFetches on an empty topic: %d records, err %v; want DeadlineExceeded", f.NumRecords(), f.Err())
	}

	cancelled, stop := context.WithCancel(context.Background())
	stop()
	res := c.ProduceSync(cancelled, headwater.StringRecord("x"))
	if !errors.Is(res.FirstErr(), context.Canceled) {
		t.Fatalf("ProduceSync with a cancelled context: %v", res.FirstErr())
	}
}

func TestErrorsWorkWithIsAndAs(t *testing.T) {
	if _, err := headwater.NewClient(); !errors.Is(err, headwater.ErrInvalidConfig) {
		t.Fatalf("NewClient without seeds: %v", err)
	}
	b := headwatertest.NewBroker(t, headwatertest.Setting("auto_create_topics", "false"))
	a := newAdmin(t, b)
	_, err := a.DescribeTopic(testCtx(t), "missing")
	if !errors.Is(err, headwater.ErrUnknownTopic) {
		t.Fatalf("DescribeTopic of a missing topic: %v", err)
	}
	var herr *headwater.Error
	if !errors.As(err, &herr) || herr.Code != 3 {
		t.Fatalf("errors.As: %#v, want Kafka code 3", err)
	}
	if errors.Is(err, headwater.ErrTimeout) {
		t.Fatal("an unknown-topic error also matched ErrTimeout")
	}

	// A record waits a while for a missing topic (it may be being created), then fails.
	c := newClient(t, headwater.SeedBrokers(b.Addrs()...), headwater.UnknownTopicWait(time.Second))
	res := c.ProduceSync(testCtx(t), &headwater.Record{Topic: "missing", Value: []byte("v")})
	if !errors.Is(res.FirstErr(), headwater.ErrUnknownTopic) {
		t.Fatalf("producing to a missing topic: %v", res.FirstErr())
	}
	c.Close()
	if err := c.ProduceSync(testCtx(t), &headwater.Record{Topic: "t", Value: []byte("v")}).FirstErr(); !errors.Is(err, headwater.ErrClientClosed) {
		t.Fatalf("ProduceSync after Close: %v", err)
	}
}

func TestAdminTopicsAndGroups(t *testing.T) {
	b := headwatertest.NewBroker(t)
	ctx := testCtx(t)
	a := newAdmin(t, b)
	if err := a.CreateTopic(ctx, "configured", 4, 1, map[string]string{"cleanup.policy": "compact"}); err != nil {
		t.Fatal(err)
	}
	if err := a.CreateTopic(ctx, "configured", 4, 1, nil); !errors.Is(err, headwater.ErrBroker) {
		t.Fatalf("creating it twice: %v", err)
	}
	names, err := a.ListTopics(ctx)
	if err != nil || !contains(names, "configured") {
		t.Fatalf("ListTopics: %v %v", names, err)
	}
	d, err := a.DescribeTopic(ctx, "configured")
	if err != nil || d.Partitions != 4 || d.Configs["cleanup.policy"] != "compact" || d.ID == "" {
		t.Fatalf("DescribeTopic: %+v %v", d, err)
	}

	c := newClient(t, headwater.SeedBrokers(b.Addrs()...), headwater.ConsumerGroup("audit"),
		headwater.ConsumeTopics("configured"), headwater.ClientID("auditor"))
	p := newClient(t, headwater.SeedBrokers(b.Addrs()...))
	if err := p.ProduceSync(ctx, &headwater.Record{Topic: "configured", Key: []byte("k"), Value: []byte("v")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	pollN(t, ctx, c, 1)
	groups, err := a.ListGroups(ctx)
	if err != nil || len(groups) != 1 || groups[0].Group != "audit" {
		t.Fatalf("ListGroups: %+v %v", groups, err)
	}
	g, err := a.DescribeGroup(ctx, "audit")
	if err != nil || len(g.Members) != 1 || g.Members[0].ClientID != "auditor" || len(g.Members[0].Assigned["configured"]) != 4 {
		t.Fatalf("DescribeGroup: %+v %v", g, err)
	}
	if err := a.DeleteGroup(ctx, "audit"); err == nil {
		t.Fatal("deleting a group with a live member succeeded")
	}
	c.Close()
	if err := a.DeleteGroup(ctx, "audit"); err != nil {
		t.Fatalf("DeleteGroup after the member left: %v", err)
	}
	if err := a.DeleteTopic(ctx, "configured"); err != nil {
		t.Fatal(err)
	}
	if names, _ := a.ListTopics(ctx); contains(names, "configured") {
		t.Fatalf("topic still listed after DeleteTopic: %v", names)
	}
}

func TestEmbeddedBrokerKeepsDataInItsDirectory(t *testing.T) {
	dir := t.TempDir()
	ctx := testCtx(t)
	first := headwatertest.NewBroker(t, headwatertest.DataDir(dir))
	p := newClient(t, headwater.SeedBrokers(first.Addrs()...))
	if err := p.ProduceSync(ctx, &headwater.Record{Topic: "kept", Value: []byte("durable")}).FirstErr(); err != nil {
		t.Fatal(err)
	}
	p.Close()
	if err := first.Stop(); err != nil {
		t.Fatal(err)
	}
	second := headwatertest.NewBroker(t, headwatertest.DataDir(dir))
	c := newClient(t, headwater.SeedBrokers(second.Addrs()...), headwater.ConsumeTopics("kept"))
	if r := pollN(t, ctx, c, 1)[0]; string(r.Value) != "durable" {
		t.Fatalf("after a restart read %q", r.Value)
	}
}

func contains(xs []string, x string) bool {
	for _, v := range xs {
		if v == x {
			return true
		}
	}
	return false
}

func TestCloseEndsAPollInAnotherGoroutine(t *testing.T) {
	b := headwatertest.NewBroker(t)
	createTopic(t, newAdmin(t, b), "idle", 1)
	c, err := headwater.NewClient(headwater.SeedBrokers(b.Addrs()...), headwater.ConsumeTopics("idle"))
	if err != nil {
		t.Fatal(err)
	}
	polled := make(chan headwater.Fetches, 1)
	started := make(chan struct{})
	go func() {
		close(started)
		polled <- c.PollFetches(context.Background())
	}()
	<-started
	c.Close()
	if f := <-polled; !f.IsClientClosed() {
		t.Fatalf("PollFetches during Close returned %v", f.Err())
	}
}

func TestCloseRevokesAndTheCallbackCommits(t *testing.T) {
	b := headwatertest.NewBroker(t)
	a := newAdmin(t, b)
	createTopic(t, a, "closing", 1)
	ctx := testCtx(t)
	p := newClient(t, headwater.SeedBrokers(b.Addrs()...), headwater.DefaultProduceTopic("closing"))
	if err := p.ProduceSync(ctx, headwater.StringRecord("a"), headwater.StringRecord("b")).FirstErr(); err != nil {
		t.Fatal(err)
	}
	var revoked map[string][]int32
	var commitErr error
	c, err := headwater.NewClient(headwater.SeedBrokers(b.Addrs()...), headwater.ConsumerGroup("closing"),
		headwater.ConsumeTopics("closing"), headwater.DisableAutoCommit(),
		headwater.OnPartitionsRevoked(func(ctx context.Context, c *headwater.Client, m map[string][]int32) {
			revoked = m
			commitErr = c.CommitUncommittedOffsets(ctx)
		}))
	if err != nil {
		t.Fatal(err)
	}
	pollN(t, ctx, c, 2)
	c.Close()
	if commitErr != nil || len(revoked["closing"]) != 1 {
		t.Fatalf("at Close: revoked %v, commit error %v", revoked, commitErr)
	}
	g, err := a.DescribeGroup(ctx, "closing")
	if err != nil || g.Committed["closing"][0] != 2 {
		t.Fatalf("committed after Close: %v (%v)", g.Committed, err)
	}
}

func TestASecondBrokerOnTheSameDataDirFailsAtStart(t *testing.T) {
	dir := t.TempDir()
	headwatertest.NewBroker(t, headwatertest.DataDir(dir))
	second, err := headwater.StartEmbeddedBroker(headwater.BrokerOptions{DataDir: dir})
	if err == nil {
		second.Stop()
		t.Fatal("a second broker started on a data directory another one holds")
	}
	if !errors.Is(err, headwater.ErrInvalidConfig) || !strings.Contains(err.Error(), dir) {
		t.Fatalf("the error should name the directory: %v", err)
	}
}
