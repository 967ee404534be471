//go:build cgo

package kafka_test

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rehydrate/rehydrate/internal/kafkatest"
	"github.com/rehydrate/rehydrate/provider"
	"github.com/rehydrate/rehydrate/provider/kafka"
	"github.com/rehydrate/rehydrate/repository/repositorytest"
	"github.com/rehydrate/rehydrate/snapshot"
)

func TestSnapshotSuite(t *testing.T) {
	repositorytest.RunSnapshots(t, topics(nil), topics(snapshot.TopicConfig()))
}

// topics returns a suite's adapter: each call a new topic with config.
func topics(config map[string]string) repositorytest.NewProvider {
	return func(t *testing.T, partitions int) (provider.Provider, func() provider.Provider) {
		cfg := kafkatest.Config(t, partitions, config)
		open := func() provider.Provider {
			p, err := kafka.New(cfg)
			require.NoError(t, err)
			t.Cleanup(func() { _ = p.Close() })
			return p
		}
		return open(), open
	}
}
