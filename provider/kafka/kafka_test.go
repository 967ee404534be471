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
)

func TestConformance(t *testing.T) {
	providertest.Run(t, providertest.Harness{
		New: func(t *testing.T, partitions int) provider.Provider {
			p, err := kafka.New(kafkatest.Config(t, partitions, nil))
			require.NoError(t, err)
			return p
		},
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
