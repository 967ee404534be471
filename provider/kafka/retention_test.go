//go:build cgo

package kafka_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	ckafka "github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rehydrate/rehydrate/internal/kafkatest"
	"github.com/rehydrate/rehydrate/provider"
	"github.com/rehydrate/rehydrate/provider/kafka"
	"github.com/rehydrate/rehydrate/repository"
	rt "github.com/rehydrate/rehydrate/repository/repositorytest"
)

// These run on kfake and on a real broker alike: kfake answers
// DescribeConfigs with Kafka's defaults (retention.ms 7 days, cleanup.policy
// delete) and the topic's own settings, and implements DeleteRecords.

func newAdmin(t *testing.T) *ckafka.AdminClient {
	t.Helper()
	admin, err := ckafka.NewAdminClient(&ckafka.ConfigMap{"bootstrap.servers": kafkatest.Brokers(t)})
	require.NoError(t, err)
	t.Cleanup(admin.Close)
	return admin
}

// describe reads a topic's effective configuration, as CheckRetention does.
func describe(t *testing.T, topic string) map[string]ckafka.ConfigEntryResult {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	res, err := newAdmin(t).DescribeConfigs(ctx, []ckafka.ConfigResource{{Type: ckafka.ResourceTopic, Name: topic}})
	require.NoError(t, err)
	require.Len(t, res, 1)
	require.Equal(t, ckafka.ErrNoError, res[0].Error.Code(), "describe %s: %v", topic, res[0].Error)
	return res[0].Config
}

func open(t *testing.T, cfg kafka.Config) *kafka.Provider {
	t.Helper()
	p, err := kafka.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// TestEnsureTopicKeepsEvents reads the configuration of a topic EnsureTopic
// created back from the broker, and restores from it.
func TestEnsureTopicKeepsEvents(t *testing.T) {
	cfg := kafkatest.Config(t, 2, map[string]string{"min.insync.replicas": "1"})
	configs := describe(t, cfg.Topic)
	for name, want := range map[string]string{
		"retention.ms": "-1", "retention.bytes": "-1", "cleanup.policy": "delete", "min.insync.replicas": "1",
	} {
		assert.Equal(t, want, configs[name].Value, name)
		assert.Equal(t, ckafka.ConfigSourceDynamicTopic, configs[name].Source, "%s is set on the topic", name)
	}
	p := open(t, cfg)
	require.NoError(t, p.CheckRetention(t.Context()))
	r := rt.Restored(t, p)
	_, err := r.Create(t.Context(), "acc", rt.Open("ada"))
	require.NoError(t, err)
}

// TestCheckRetentionRefuses: a topic that can lose events is refused by the
// provider and by a restore, plain or in a group, before anything is read;
// AllowExpiringTopic lets it through.
func TestCheckRetentionRefuses(t *testing.T) {
	for _, tc := range []struct {
		name   string
		config map[string]string // wins over EnsureTopic's
		names  []string          // in the error, with where the value comes from
		fix    string
	}{
		{"seven days", map[string]string{"retention.ms": "604800000"},
			[]string{"retention.ms=604800000 (set on the topic): records older than 7 days are deleted"},
			"--add-config retention.ms=-1"},
		{"a size limit", map[string]string{"retention.bytes": "1073741824"},
			[]string{"retention.bytes=1073741824 (set on the topic)"},
			"--add-config retention.bytes=-1"},
		{"compacted", map[string]string{"cleanup.policy": "compact"},
			[]string{"cleanup.policy=compact (set on the topic): the log cleaner keeps only the last record of each key"},
			"--add-config cleanup.policy=delete"},
		{"compacted and expiring", map[string]string{"cleanup.policy": "compact,delete", "retention.ms": "86400000"},
			[]string{"cleanup.policy=compact,delete", "retention.ms=86400000 (set on the topic): records older than 1 day"},
			"--add-config cleanup.policy=delete,retention.ms=-1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := kafkatest.Config(t, 2, tc.config)
			for k, v := range tc.config {
				require.Equal(t, v, describe(t, cfg.Topic)[k].Value, "EnsureTopic lets TopicSpec.Config win for %s", k)
			}
			p := open(t, cfg)
			err := p.CheckRetention(t.Context())
			require.ErrorIs(t, err, provider.ErrNotRetained)
			assert.NotErrorIs(t, err, provider.ErrUnavailable)
			for _, s := range tc.names {
				assert.ErrorContains(t, err, s)
			}
			assert.ErrorContains(t, err, fmt.Sprintf("kafka-configs --bootstrap-server %s --alter --entity-type topics --entity-name %s %s",
				cfg.Brokers, cfg.Topic, tc.fix))
			assert.ErrorContains(t, err, "KAFKA_ALLOW_EXPIRING_TOPIC=true")
			t.Log(err)

			r := rt.NewRepository(t, p)
			_, err = r.Restore(t.Context())
			require.ErrorIs(t, err, provider.ErrNotRetained)
			assert.ErrorContains(t, err, tc.names[0])
			g := rt.NewRepository(t, p, repository.WithGroup(repository.Group{Name: "g-" + cfg.Topic}))
			_, err = g.Restore(t.Context())
			require.ErrorIs(t, err, provider.ErrNotRetained, "a group member refuses before joining")

			cfg.AllowExpiringTopic = true
			allowed := open(t, cfg)
			require.NoError(t, allowed.CheckRetention(t.Context()))
			r = rt.Restored(t, allowed)
			_, err = r.Create(t.Context(), "acc", rt.Open("ada"))
			require.NoError(t, err)
		})
	}
}

// TestCheckRetentionBrokerDefault: a topic created without EnsureTopic
// (here by the admin API, with no config) has the brokers' retention; it is
// refused unless the brokers keep records for good.
func TestCheckRetentionBrokerDefault(t *testing.T) {
	cfg := kafkatest.Config(t, 1, nil)
	cfg.Topic += "-bare"
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	res, err := newAdmin(t).CreateTopics(ctx, []ckafka.TopicSpecification{{Topic: cfg.Topic, NumPartitions: 1, ReplicationFactor: 1}})
	require.NoError(t, err)
	require.Equal(t, ckafka.ErrNoError, res[0].Error.Code(), "%v", res[0].Error)
	ms := describe(t, cfg.Topic)["retention.ms"]
	require.NotEqual(t, ckafka.ConfigSourceDynamicTopic, ms.Source, "retention.ms is the brokers'")

	err = open(t, cfg).CheckRetention(t.Context())
	if n, _ := strconv.ParseInt(ms.Value, 10, 64); n < 0 {
		t.Logf("these brokers keep records for good by default (retention.ms=%s)", ms.Value)
		require.NoError(t, err)
		return
	}
	require.ErrorIs(t, err, provider.ErrNotRetained)
	assert.ErrorContains(t, err, "retention.ms="+ms.Value+" (")
	t.Log(err)
}

// TestCheckRetentionKeepsItsAcceptance: one DescribeConfigs per provider. A
// provider that accepted the topic keeps accepting it after the topic was
// changed; the next provider sees the change, and sees the fix too without
// being recreated: a refusal is not kept.
func TestCheckRetentionKeepsItsAcceptance(t *testing.T) {
	cfg := kafkatest.Config(t, 1, nil)
	p := open(t, cfg)
	require.NoError(t, p.CheckRetention(t.Context()))

	setRetention := func(ms string) {
		ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
		defer cancel()
		res, err := newAdmin(t).IncrementalAlterConfigs(ctx, []ckafka.ConfigResource{{
			Type: ckafka.ResourceTopic, Name: cfg.Topic,
			Config: []ckafka.ConfigEntry{{Name: "retention.ms", Value: ms, IncrementalOperation: ckafka.AlterConfigOpTypeSet}},
		}})
		require.NoError(t, err)
		require.Equal(t, ckafka.ErrNoError, res[0].Error.Code(), "%v", res[0].Error)
		require.Eventually(t, func() bool {
			return describe(t, cfg.Topic)["retention.ms"].Value == ms
		}, 10*time.Second, 50*time.Millisecond, "the broker describes retention.ms=%s", ms)
	}

	setRetention("3600000")
	require.NoError(t, p.CheckRetention(t.Context()), "the acceptance is kept")
	q := open(t, cfg)
	err := q.CheckRetention(t.Context())
	require.ErrorIs(t, err, provider.ErrNotRetained)
	assert.ErrorContains(t, err, "retention.ms=3600000 (set on the topic): records older than 1h0m0s are deleted")

	setRetention("-1")
	require.NoError(t, q.CheckRetention(t.Context()), "the refusal was not kept")
}

// TestRestoreRefusesAPartitionWhoseStartIsGone: with AllowExpiringTopic, a
// restore still refuses a partition whose first records are gone (here
// deleted with DeleteRecords, as retention would), naming it and its log
// start offset.
func TestRestoreRefusesAPartitionWhoseStartIsGone(t *testing.T) {
	cfg := kafkatest.Config(t, 2, map[string]string{"retention.ms": "604800000"})
	cfg.AllowExpiringTopic = true
	r := rt.Restored(t, open(t, cfg))
	const id = "acc"
	_, err := r.Create(t.Context(), id, rt.Open("ada"))
	require.NoError(t, err)
	res, err := r.Execute(t.Context(), id, rt.Deposit(1, 2, 3))
	require.NoError(t, err)
	part := res.Positions[0].Partition

	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	deleted, err := newAdmin(t).DeleteRecords(ctx, []ckafka.TopicPartition{{Topic: &cfg.Topic, Partition: part, Offset: 2}})
	require.NoError(t, err)
	require.Len(t, deleted.DeleteRecordsResults, 1)
	require.NoError(t, deleted.DeleteRecordsResults[0].TopicPartition.Error)

	p := open(t, cfg)
	require.Eventually(t, func() bool {
		ps, err := p.Partitions(t.Context())
		return err == nil && ps[part].Low == 2
	}, 10*time.Second, 50*time.Millisecond, "partition %d starts at offset 2", part)
	_, err = rt.NewRepository(t, p).Restore(t.Context())
	require.ErrorIs(t, err, provider.ErrNotRetained)
	assert.ErrorContains(t, err, fmt.Sprintf("partition %d starts at offset 2, not 0", part))
	t.Log(err)
}
