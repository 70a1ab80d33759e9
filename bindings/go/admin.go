package headwater

/*
#include "callbacks.h"
*/
import "C"

import (
	"context"
	"strings"
	"sync"
)

// AdminClient manages topics and groups. It is safe for concurrent use; Close it when done.
type AdminClient struct {
	mu    sync.RWMutex // held for reading by calls, for writing by Close
	admin *C.HwAdmin
}

// NewAdminClient creates an admin client; it takes SeedBrokers, ClientID and RequestTimeout
// and ignores producer and consumer options.
func NewAdminClient(opts ...Opt) (*AdminClient, error) {
	cfg := defaultConfig()
	for _, opt := range opts {
		opt(&cfg)
	}
	if len(cfg.seeds) == 0 {
		return nil, configError("SeedBrokers: give at least one host:port")
	}
	var strs cstrings
	defer strs.free()
	options := C.HwClientOptions{
		bootstrap:          strs.of(strings.Join(cfg.seeds, ",")),
		client_id:          strs.of(cfg.clientID),
		request_timeout_ms: C.uint64_t(cfg.requestTimeout.Milliseconds()),
	}
	var eb errbuf
	ptr, n := eb.ptr()
	admin := C.hw_admin_new(&options, ptr, n)
	if admin == nil {
		return nil, configError("%s", eb.String())
	}
	return &AdminClient{admin: admin}, nil
}

// Close releases the client; calls after it fail with ErrClientClosed.
func (a *AdminClient) Close() {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.admin != nil {
		C.hw_admin_free(a.admin)
		a.admin = nil
	}
}

type adminCall func(admin *C.HwAdmin, args *C.uint8_t, argsLen C.size_t, cb C.HwCallback, cx C.size_t) C.uint64_t

// call runs one admin operation with the argument buffer w and returns its output.
func (a *AdminClient) call(ctx context.Context, fn adminCall, w *writer) ([]byte, error) {
	a.mu.RLock()
	defer a.mu.RUnlock()
	if a.admin == nil {
		return nil, ErrClientClosed
	}
	p, n := buf(w.b)
	r := await(ctx, func(cb C.HwCallback, cx C.size_t) C.uint64_t { return fn(a.admin, p, n, cb, cx) })
	return r.data, r.err(ctx)
}

func noArgs(fn func(*C.HwAdmin, C.HwCallback, C.size_t) C.uint64_t) adminCall {
	return func(admin *C.HwAdmin, _ *C.uint8_t, _ C.size_t, cb C.HwCallback, cx C.size_t) C.uint64_t {
		return fn(admin, cb, cx)
	}
}

// CreateTopic creates a topic with partitions partitions (-1 for the broker's default) and
// the given topic configs (cleanup.policy, retention.ms, ...; nil for none).
func (a *AdminClient) CreateTopic(ctx context.Context, topic string, partitions int32, replicationFactor int16, configs map[string]string) error {
	var w writer
	w.str(topic).i32(partitions).i16(replicationFactor).count(len(configs))
	for k, v := range configs {
		w.str(k).str(v)
	}
	_, err := a.call(ctx, func(ad *C.HwAdmin, p *C.uint8_t, n C.size_t, cb C.HwCallback, cx C.size_t) C.uint64_t {
		return C.hw_admin_create_topic(ad, p, n, cb, cx)
	}, &w)
	return err
}

// DeleteTopic deletes a topic and its data.
func (a *AdminClient) DeleteTopic(ctx context.Context, topic string) error {
	var w writer
	w.str(topic)
	_, err := a.call(ctx, func(ad *C.HwAdmin, p *C.uint8_t, n C.size_t, cb C.HwCallback, cx C.size_t) C.uint64_t {
		return C.hw_admin_delete_topic(ad, p, n, cb, cx)
	}, &w)
	return err
}

// ListTopics returns the names of the cluster's topics.
func (a *AdminClient) ListTopics(ctx context.Context) ([]string, error) {
	data, err := a.call(ctx, noArgs(func(ad *C.HwAdmin, cb C.HwCallback, cx C.size_t) C.uint64_t {
		return C.hw_admin_list_topics(ad, cb, cx)
	}), &writer{})
	if err != nil {
		return nil, err
	}
	rd := reader{b: data}
	names := make([]string, rd.count())
	for i := range names {
		names[i] = rd.str()
	}
	return names, rd.err
}

// TopicDetail describes a topic.
type TopicDetail struct {
	Topic      string
	ID         string
	Partitions int32
	Configs    map[string]string
}

// DescribeTopic returns a topic's id, partition count and configs.
func (a *AdminClient) DescribeTopic(ctx context.Context, topic string) (TopicDetail, error) {
	var w writer
	w.str(topic)
	data, err := a.call(ctx, func(ad *C.HwAdmin, p *C.uint8_t, n C.size_t, cb C.HwCallback, cx C.size_t) C.uint64_t {
		return C.hw_admin_describe_topic(ad, p, n, cb, cx)
	}, &w)
	if err != nil {
		return TopicDetail{}, err
	}
	rd := reader{b: data}
	d := TopicDetail{Topic: rd.str(), ID: rd.str(), Partitions: rd.i32(), Configs: map[string]string{}}
	for i, n := 0, rd.count(); i < n && rd.err == nil; i++ {
		k := rd.str()
		d.Configs[k] = rd.str()
	}
	return d, rd.err
}

// GroupListing is one group as ListGroups sees it.
type GroupListing struct {
	Group string
	State string
	// Type is "classic" or "consumer" (KIP-848).
	Type string
}

// ListGroups returns every group.
func (a *AdminClient) ListGroups(ctx context.Context) ([]GroupListing, error) {
	data, err := a.call(ctx, noArgs(func(ad *C.HwAdmin, cb C.HwCallback, cx C.size_t) C.uint64_t {
		return C.hw_admin_list_groups(ad, cb, cx)
	}), &writer{})
	if err != nil {
		return nil, err
	}
	rd := reader{b: data}
	groups := make([]GroupListing, rd.count())
	for i := range groups {
		groups[i] = GroupListing{Group: rd.str(), State: rd.str(), Type: rd.str()}
	}
	return groups, rd.err
}

// GroupMember is one member of a described group.
type GroupMember struct {
	MemberID   string
	InstanceID string // empty for a dynamic member
	ClientID   string
	Host       string
	Assigned   map[string][]int32
}

// GroupDescription is a group's state, members and committed offsets.
type GroupDescription struct {
	Group    string
	State    string
	Type     string
	Assignor string
	Members  []GroupMember
	// Committed maps topic and partition to the committed offset.
	Committed map[string]map[int32]int64
}

// DescribeGroup returns a group's state, members, assignments and committed offsets.
func (a *AdminClient) DescribeGroup(ctx context.Context, group string) (GroupDescription, error) {
	var w writer
	w.str(group)
	data, err := a.call(ctx, func(ad *C.HwAdmin, p *C.uint8_t, n C.size_t, cb C.HwCallback, cx C.size_t) C.uint64_t {
		return C.hw_admin_describe_group(ad, p, n, cb, cx)
	}, &w)
	if err != nil {
		return GroupDescription{}, err
	}
	rd := reader{b: data}
	g := GroupDescription{Group: rd.str(), State: rd.str(), Type: rd.str(), Assignor: rd.str(),
		Committed: map[string]map[int32]int64{}}
	for i, n := 0, rd.count(); i < n && rd.err == nil; i++ {
		m := GroupMember{MemberID: rd.str(), InstanceID: string(rd.bytes()), ClientID: rd.str(), Host: rd.str(),
			Assigned: map[string][]int32{}}
		for j, k := 0, rd.count(); j < k && rd.err == nil; j++ {
			topic := rd.str()
			m.Assigned[topic] = append(m.Assigned[topic], rd.i32())
		}
		g.Members = append(g.Members, m)
	}
	for i, n := 0, rd.count(); i < n && rd.err == nil; i++ {
		topic, partition, offset := rd.str(), rd.i32(), rd.i64()
		if g.Committed[topic] == nil {
			g.Committed[topic] = map[int32]int64{}
		}
		g.Committed[topic][partition] = offset
	}
	return g, rd.err
}

// DeleteGroup deletes an empty group and its committed offsets.
func (a *AdminClient) DeleteGroup(ctx context.Context, group string) error {
	var w writer
	w.str(group)
	_, err := a.call(ctx, func(ad *C.HwAdmin, p *C.uint8_t, n C.size_t, cb C.HwCallback, cx C.size_t) C.uint64_t {
		return C.hw_admin_delete_group(ad, p, n, cb, cx)
	}, &w)
	return err
}
