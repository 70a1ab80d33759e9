// Package headwatertest starts a real Headwater broker inside the test process: no Docker,
// no JVM, no ports to pick.
//
//	func TestOrders(t *testing.T) {
//		broker := headwatertest.NewBroker(t)
//		client, err := headwater.NewClient(headwater.SeedBrokers(broker.Addrs()...))
//		...
//	}
package headwatertest

import (
	"testing"

	headwater "github.com/headwater/headwater-go"
)

// Broker is an embedded broker that stops when its test ends.
type Broker struct {
	broker *headwater.EmbeddedBroker
}

// Opt configures NewBroker.
type Opt func(*headwater.BrokerOptions)

// DataDir keeps the broker's logs in dir (by default a temporary directory removed at the
// end of the test).
func DataDir(dir string) Opt { return func(o *headwater.BrokerOptions) { o.DataDir = dir } }

// Setting sets a broker config key, as in the config file.
func Setting(key, value string) Opt {
	return func(o *headwater.BrokerOptions) {
		if o.Settings == nil {
			o.Settings = map[string]string{}
		}
		o.Settings[key] = value
	}
}

// NewBroker starts a broker for t; it stops through t.Cleanup.
func NewBroker(t testing.TB, opts ...Opt) *Broker {
	t.Helper()
	var options headwater.BrokerOptions
	for _, opt := range opts {
		opt(&options)
	}
	b, err := headwater.StartEmbeddedBroker(options)
	if err != nil {
		t.Fatalf("headwatertest: %v", err)
	}
	t.Cleanup(func() {
		if err := b.Stop(); err != nil {
			t.Errorf("headwatertest: stopping the broker: %v", err)
		}
	})
	return &Broker{broker: b}
}

// Addrs are the seed addresses to give clients (headwater.SeedBrokers(b.Addrs()...)).
func (b *Broker) Addrs() []string { return []string{b.broker.Addr()} }

// Stop stops the broker before the test ends (to test what clients do then).
func (b *Broker) Stop() error { return b.broker.Stop() }
