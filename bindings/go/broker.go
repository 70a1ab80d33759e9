package headwater

/*
#include "callbacks.h"
*/
import "C"

import (
	"sync"
)

// EmbeddedBroker is a real Headwater broker running inside this process, on 127.0.0.1 and
// a free port, for tests (headwatertest.NewBroker wraps it for testing.T).
type EmbeddedBroker struct {
	mu     sync.Mutex
	broker *C.HwBroker
	addr   string
}

// BrokerOptions configures an embedded broker.
type BrokerOptions struct {
	// DataDir is where the logs go; empty for a fresh temporary directory removed at Stop.
	DataDir string
	// Settings are broker config keys as in the config file (num_partitions,
	// auto_create_topics, group_consumer_session_timeout_ms, ...).
	Settings map[string]string
}

// StartEmbeddedBroker starts a broker and returns once it accepts connections.
func StartEmbeddedBroker(opts BrokerOptions) (*EmbeddedBroker, error) {
	var w writer
	w.count(len(opts.Settings))
	for k, v := range opts.Settings {
		w.str(k).str(v)
	}
	var strs cstrings
	defer strs.free()
	var eb errbuf
	ptr, n := eb.ptr()
	p, pn := buf(w.b)
	b := C.hw_broker_start(strs.of(opts.DataDir), p, pn, ptr, n)
	if b == nil {
		return nil, configError("embedded broker: %s", eb.String())
	}
	return &EmbeddedBroker{broker: b, addr: C.GoString(C.hw_broker_address(b))}, nil
}

// Addr is the broker's host:port.
func (b *EmbeddedBroker) Addr() string { return b.addr }

// Stop stops the broker and waits for it; a second Stop does nothing.
func (b *EmbeddedBroker) Stop() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.broker == nil {
		return nil
	}
	var eb errbuf
	ptr, n := eb.ptr()
	ok := C.hw_broker_stop(b.broker, ptr, n)
	b.broker = nil
	if !ok {
		return &Error{Kind: ErrFatal, Message: "embedded broker: " + eb.String()}
	}
	return nil
}
