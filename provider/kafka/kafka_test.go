package kafka_test

import (
	"fmt"
	"testing"
	"time"

	ckafka "github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/stretchr/testify/require"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/internal/kafkatest"
	"github.com/rehydrate/rehydrate/provider"
	"github.com/rehydrate/rehydrate/provider/kafka"
	"github.com/rehydrate/rehydrate/provider/providertest"
	"github.com/rehydrate/rehydrate/repository/repositorytest"
)

func TestConformance(t *testing.T) {
	providertest.Run(t, providertest.Harness{
		New: func(t *testing.T, partitions int) provider.Provider {
			p, err := kafka.New(kafkatest.Config(t, partitions, nil))
			require.NoError(t, err)
			return p
		},
		Compact: compactOnRealBroker(),
		Unreachable: func(t *testing.T, timeout time.Duration) provider.Provider {
			// Port 1 on loopback: nothing listens, connections are refused.
			p, err := kafka.New(kafka.Config{Brokers: "127.0.0.1:1", Topic: "nowhere", Timeout: timeout})
			require.NoError(t, err)
			return p
		},
	})
}

func TestRepositorySuite(t *testing.T) {
	repositorytest.Run(t, func(t *testing.T, partitions int) (provider.Provider, func() provider.Provider) {
		cfg := kafkatest.Config(t, partitions, nil)
		open := func() provider.Provider {
			p, err := kafka.New(cfg)
			require.NoError(t, err)
			t.Cleanup(func() { _ = p.Close() })
			return p
		}
		return open(), open
	})
}

// compactOnRealBroker returns a Harness.Compact for a real broker, whose log
// cleaner does the work; the in-process broker has none.
func compactOnRealBroker() func(*testing.T, provider.Provider) {
	if !kafkatest.Real() {
		return nil
	}
	return func(t *testing.T, p provider.Provider) {
		topic := p.(*kafka.Provider).Topic()
		admin, err := ckafka.NewAdminClient(&ckafka.ConfigMap{"bootstrap.servers": kafkatest.Brokers(t)})
		require.NoError(t, err)
		defer admin.Close()
		ctx := t.Context()
		ps, err := p.Partitions(ctx)
		require.NoError(t, err)
		var before int64
		for _, part := range ps {
			before += part.High - part.Low
		}
		res, err := admin.IncrementalAlterConfigs(ctx, []ckafka.ConfigResource{{
			Type: ckafka.ResourceTopic, Name: topic,
			Config: []ckafka.ConfigEntry{
				{Name: "cleanup.policy", Value: "compact", IncrementalOperation: ckafka.AlterConfigOpTypeSet},
				{Name: "segment.ms", Value: "100", IncrementalOperation: ckafka.AlterConfigOpTypeSet},
				{Name: "min.cleanable.dirty.ratio", Value: "0.001", IncrementalOperation: ckafka.AlterConfigOpTypeSet},
			},
		}})
		require.NoError(t, err)
		for _, r := range res {
			require.Equal(t, ckafka.ErrNoError, r.Error.Code(), "alter %s: %v", r.Name, r.Error)
		}
		// The cleaner leaves the active segment alone: keep appending, so
		// that segments roll (segment.ms) and the older ones get cleaned.
		deadline := time.Now().Add(90 * time.Second)
		for i := 0; ; i++ {
			require.True(t, time.Now().Before(deadline), "the log cleaner did not compact %s in time", topic)
			e := event.Envelope{ID: event.NewID(), Type: "Tested", AggregateID: fmt.Sprintf("roll-%d", i%2), Version: 1,
				Time: time.Now(), ContentType: event.ContentTypeJSON, Payload: []byte(`{}`)}
			_, err := p.Append(ctx, []event.Record{e.Record()})
			require.NoError(t, err)
			n := 0
			ps, err := p.Partitions(ctx)
			require.NoError(t, err)
			require.NoError(t, p.Read(ctx, provider.Ranges(ps), 0, func(b provider.Batch) error {
				n += len(b.Records)
				return nil
			}))
			if int64(n) < before {
				return
			}
			time.Sleep(200 * time.Millisecond) // the cleaner runs on its own clock; poll it, bounded by the deadline
		}
	}
}

func BenchmarkExecuteKafka(b *testing.B) {
	p, err := kafka.New(kafkatest.Config(b, 6, nil))
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	repositorytest.BenchmarkExecute(b, p)
}

func BenchmarkRestoreKafka1M(b *testing.B) {
	p, err := kafka.New(kafkatest.Config(b, 6, nil))
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	repositorytest.BenchmarkRestore(b, p, 1_000_000)
}
