// Package kafkatest hands tests a Kafka broker and fresh topics: the real
// broker named by KAFKA_BROKERS, or, where it is unset, an in-process
// Kafka-protocol broker (kfake), so that a plain `go test ./...` runs every
// test instead of skipping. Under CI=true a missing KAFKA_BROKERS fails.
package kafkatest

import (
	"context"
	"fmt"
	"maps"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/provider"
	"github.com/rehydrate/rehydrate/provider/kafkaconfig"
	"github.com/rehydrate/rehydrate/provider/providertest"
	"github.com/rehydrate/rehydrate/repository/repositorytest"
)

var (
	fakeOnce    sync.Once
	fakeBrokers string
	fakeErr     error
	topicSeq    atomic.Int64
)

// Real reports whether tests run against a real broker (KAFKA_BROKERS set).
func Real() bool { return os.Getenv("KAFKA_BROKERS") != "" }

// Brokers returns the bootstrap address tests use.
func Brokers(t testing.TB) string {
	t.Helper()
	if b := os.Getenv("KAFKA_BROKERS"); b != "" {
		return b
	}
	if os.Getenv("CI") == "true" {
		t.Fatal("CI=true but KAFKA_BROKERS is unset: CI tests run against a real broker (make test starts one)")
	}
	fakeOnce.Do(func() {
		var c *kfake.Cluster
		c, fakeErr = kfake.NewCluster(kfake.NumBrokers(1))
		if fakeErr == nil {
			// The cluster lives as long as the test binary.
			fakeBrokers = strings.Join(c.ListenAddrs(), ",")
		}
	})
	if fakeErr != nil {
		t.Fatalf("start kfake: %v", fakeErr)
	}
	return fakeBrokers
}

// Config returns a provider configuration on a new topic of the given
// partitions, created before it returns, with franz-go's admin client (no
// cgo, and no provider: this package serves both providers' tests). The
// timeout bounds every broker wait.
func Config(t testing.TB, partitions int, topicConfig map[string]string) kafkaconfig.Config {
	t.Helper()
	cfg := kafkaconfig.Config{
		Brokers: Brokers(t),
		Topic:   fmt.Sprintf("test-%s-%d-%d", sanitize(t.Name()), time.Now().UnixNano(), topicSeq.Add(1)),
		Timeout: 20 * time.Second,
	}
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(cfg.Brokers, ",")...))
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	admin := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(t.Context(), cfg.Timeout)
	defer cancel()
	config := kafkaconfig.KeepEvents()
	maps.Copy(config, topicConfig)
	configs := make(map[string]*string, len(config))
	for k, v := range config {
		configs[k] = &v
	}
	res, err := admin.CreateTopic(ctx, int32(partitions), 1, configs, cfg.Topic)
	if err == nil {
		err = res.Err
	}
	if err != nil {
		t.Fatalf("create topic %s on %s: %v", cfg.Topic, cfg.Brokers, err)
	}
	// Ready when every partition has a leader that answers offset queries.
	for {
		ends, err := admin.ListEndOffsets(ctx, cfg.Topic)
		if err == nil && ends.Error() == nil && len(ends[cfg.Topic]) == partitions {
			return cfg
		}
		select {
		case <-ctx.Done():
			t.Fatalf("topic %s on %s: partitions not ready: %v", cfg.Topic, cfg.Brokers, ctx.Err())
		case <-time.After(50 * time.Millisecond): // polling metadata, bounded by ctx
		}
	}
}

func sanitize(name string) string {
	var b strings.Builder
	for _, r := range name {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		default:
			b.WriteByte('_')
		}
	}
	s := b.String()
	if len(s) > 100 {
		s = s[len(s)-100:]
	}
	return s
}

// Compact returns a providertest.Harness.Compact for the provider of a
// topic named by topic(p), on a real broker, whose log cleaner does the
// work; nil on the in-process broker, which has none.
func Compact(topic func(provider.Provider) string) func(*testing.T, provider.Provider) {
	if !Real() {
		return nil
	}
	return func(t *testing.T, p provider.Provider) {
		name := topic(p)
		cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(Brokers(t), ",")...))
		if err != nil {
			t.Fatal(err)
		}
		defer cl.Close()
		ctx := t.Context()
		ps, err := p.Partitions(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var before int64
		for _, part := range ps {
			before += part.High - part.Low
		}
		set := func(v string) *string { return &v }
		res, err := kadm.NewClient(cl).AlterTopicConfigs(ctx, []kadm.AlterConfig{
			{Name: "cleanup.policy", Value: set("compact")},
			{Name: "segment.ms", Value: set("100")},
			{Name: "min.cleanable.dirty.ratio", Value: set("0.001")},
		}, name)
		if err == nil {
			_, err = res.On(name, nil)
		}
		if err != nil {
			t.Fatalf("alter %s: %v", name, err)
		}
		// The cleaner leaves the active segment alone: keep appending, so
		// that segments roll (segment.ms) and the older ones get cleaned.
		deadline := time.Now().Add(90 * time.Second)
		for i := 0; ; i++ {
			if time.Now().After(deadline) {
				t.Fatalf("the log cleaner did not compact %s in time", name)
			}
			e := event.Envelope{ID: event.NewID(), Type: "Tested", AggregateID: fmt.Sprintf("roll-%d", i%2), Version: 1,
				Time: time.Now(), ContentType: event.ContentTypeJSON, Payload: []byte(`{}`)}
			if _, err := p.Append(ctx, []event.Record{e.Record()}); err != nil {
				t.Fatal(err)
			}
			n := 0
			ps, err := p.Partitions(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := p.Read(ctx, provider.Ranges(ps), 0, func(b provider.Batch) error {
				n += len(b.Records)
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			if int64(n) < before {
				return
			}
			time.Sleep(200 * time.Millisecond) // the cleaner runs on its own clock; poll it, bounded by the deadline
		}
	}
}

// Kafka is what Harness needs of a Kafka provider.
type Kafka interface {
	provider.Provider
	Topic() string
}

// Harness returns the providertest.Harness of a Kafka provider opened with
// open: new topics on the test broker, compaction by the real broker's log
// cleaner, and an unreachable broker (port 1 on loopback, where nothing
// listens).
func Harness[P Kafka](open func(kafkaconfig.Config) (P, error)) providertest.Harness {
	return providertest.Harness{
		New: func(t *testing.T, partitions int) provider.Provider {
			p, err := open(Config(t, partitions, nil))
			if err != nil {
				t.Fatal(err)
			}
			return p
		},
		Compact: Compact(func(p provider.Provider) string { return p.(P).Topic() }),
		Unreachable: func(t *testing.T, timeout time.Duration) provider.Provider {
			p, err := open(kafkaconfig.Config{Brokers: "127.0.0.1:1", Topic: "nowhere", Timeout: timeout})
			if err != nil {
				t.Fatal(err)
			}
			return p
		},
	}
}

// Topics returns a repositorytest.NewProvider for a Kafka provider: each
// call a new topic with the given config, the providers opened with open
// on it and closed when the test ends.
func Topics[P provider.Provider](open func(kafkaconfig.Config) (P, error), config map[string]string) repositorytest.NewProvider {
	return func(t *testing.T, partitions int) (provider.Provider, func() provider.Provider) {
		cfg := Config(t, partitions, config)
		reopen := func() provider.Provider {
			p, err := open(cfg)
			if err != nil {
				t.Fatalf("open a provider on %s: %v", cfg.Topic, err)
			}
			t.Cleanup(func() { _ = p.Close() })
			return p
		}
		return reopen(), reopen
	}
}
