// Package kafkatest hands tests a Kafka broker and fresh topics: the real
// broker named by KAFKA_BROKERS, or, where it is unset, an in-process
// Kafka-protocol broker (kfake), so that a plain `go test ./...` runs every
// test instead of skipping. Under CI=true a missing KAFKA_BROKERS fails.
package kafkatest

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/rehydrate/rehydrate/provider/kafka"
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
// partitions, created before it returns. The timeout bounds every broker wait.
func Config(t testing.TB, partitions int, topicConfig map[string]string) kafka.Config {
	t.Helper()
	cfg := kafka.Config{
		Brokers: Brokers(t),
		Topic:   fmt.Sprintf("test-%s-%d-%d", sanitize(t.Name()), time.Now().UnixNano(), topicSeq.Add(1)),
		Timeout: 20 * time.Second,
	}
	p, err := kafka.New(cfg)
	if err != nil {
		t.Fatalf("kafka.New: %v", err)
	}
	defer p.Close()
	if err := p.EnsureTopic(t.Context(), kafka.TopicSpec{Partitions: partitions, ReplicationFactor: 1, Config: topicConfig}); err != nil {
		t.Fatalf("create topic %s on %s: %v", cfg.Topic, cfg.Brokers, err)
	}
	return cfg
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
