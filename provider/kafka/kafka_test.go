//go:build cgo

package kafka_test

import (
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rehydrate/rehydrate/internal/kafkatest"
	"github.com/rehydrate/rehydrate/provider"
	"github.com/rehydrate/rehydrate/provider/kafka"
	"github.com/rehydrate/rehydrate/provider/providertest"
	"github.com/rehydrate/rehydrate/repository/repositorytest"
	"github.com/rehydrate/rehydrate/snapshot"
)

func TestConformance(t *testing.T) {
	providertest.Run(t, providertest.Harness{
		New: func(t *testing.T, partitions int) provider.Provider {
			p, err := kafka.New(kafkatest.Config(t, partitions, nil))
			require.NoError(t, err)
			return p
		},
		Compact: kafkatest.Compact(func(p provider.Provider) string { return p.(*kafka.Provider).Topic() }),
		Unreachable: func(t *testing.T, timeout time.Duration) provider.Provider {
			// Port 1 on loopback: nothing listens, connections are refused.
			p, err := kafka.New(kafka.Config{Brokers: "127.0.0.1:1", Topic: "nowhere", Timeout: timeout})
			require.NoError(t, err)
			return p
		},
	})
}

func TestRepositorySuite(t *testing.T) {
	repositorytest.Run(t, kafkatest.Topics(kafka.New, nil))
}

func TestSnapshotSuite(t *testing.T) {
	repositorytest.RunSnapshots(t, kafkatest.Topics(kafka.New, nil), kafkatest.Topics(kafka.New, snapshot.TopicConfig()))
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
