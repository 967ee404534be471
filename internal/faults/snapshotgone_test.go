package faults

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rehydrate/rehydrate/internal/kafkatest"
	kafka "github.com/rehydrate/rehydrate/provider/kafkaclient"
	"github.com/rehydrate/rehydrate/repository"
	rt "github.com/rehydrate/rehydrate/repository/repositorytest"
	snapstore "github.com/rehydrate/rehydrate/snapshot"
)

// The snapshot topic deleted under a running writer: the writer keeps
// serving commands (snapshots are an optimisation, never a condition), a
// snapshot it is asked for fails with an error, and a restart, finding no
// snapshot, replays every partition from the events, saying so (Stats'
// Fallback, a log line), into the live state; the usual checks (verify)
// hold.
func TestSnapshotTopicDeletedUnderARunningWriter(t *testing.T) {
	c := newCluster(t)
	cfg := c.topic(3, 10*time.Second)
	scfg := cfg
	scfg.Topic = snapstore.TopicName(cfg.Topic)
	sp := open(t, scfg)
	require.NoError(t, sp.EnsureTopic(t.Context(), kafka.TopicSpec{Partitions: 3, ReplicationFactor: 3, Config: snapstore.TopicConfig()}))
	manual := repository.Snapshots{StateVersion: 1, Events: 1 << 40, Interval: 24 * time.Hour}
	var logs kafkatest.SyncBuffer
	live := rt.Restored(t, open(t, cfg), repository.WithSnapshots(rt.Store(t, sp), manual),
		repository.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	t.Cleanup(func() { _ = live.Close() })
	var l rt.Ledger
	ids := createAccounts(t, live, 30, &l)
	for _, id := range ids {
		_, err := deposit(t.Context(), live, id, &l)
		require.NoError(t, err)
	}
	require.NoError(t, live.Snapshot(t.Context()), "a snapshot before the deletion")

	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(c.brokers, ",")...))
	require.NoError(t, err)
	defer cl.Close()
	resp, err := kadm.NewClient(cl).DeleteTopics(t.Context(), scfg.Topic)
	require.NoError(t, err)
	require.NoError(t, resp.Error())
	t.Logf("deleted %s", scfg.Topic)

	// The writer serves on.
	for _, id := range ids {
		_, err := deposit(t.Context(), live, id, &l)
		require.NoError(t, err, "a command after the snapshot topic was deleted")
	}
	snapErr := live.Snapshot(t.Context())
	assert.Error(t, snapErr, "a snapshot to a deleted topic")
	for _, id := range ids[:5] {
		_, err := deposit(t.Context(), live, id, &l)
		require.NoError(t, err, "a command after the failed snapshot")
	}

	// A restart finds no snapshot: it replays the events, and says so.
	var restartLogs kafkatest.SyncBuffer
	restarted := rt.NewRepository(t, open(t, cfg), repository.WithSnapshots(rt.Store(t, open(t, scfg)), manual),
		repository.WithLogger(slog.New(slog.NewTextHandler(&restartLogs, nil))))
	t.Cleanup(func() { _ = restarted.Close() })
	_, err = restarted.Restore(t.Context())
	require.NoError(t, err, "a restart without its snapshot topic")
	stats := restarted.Stats()
	for _, ps := range stats.Partitions {
		assert.Negative(t, ps.Snapshot, "partition %d restored from a snapshot", ps.Partition)
		assert.NotEmpty(t, ps.Fallback, "partition %d: no reason given for the replay", ps.Partition)
	}
	assert.Regexp(t, `replaying (the|every) partition`, restartLogs.String())
	t.Logf("RESULT %s: snapshot after the deletion: %v; restart fallbacks: %q", t.Name(), snapErr, stats.Partitions[0].Fallback)
	assert.Equal(t, snapshot(t, live, ids), snapshot(t, restarted, ids), "the restart's state == the live state")
	l.Check(t, restarted)
	verify(t, cfg, live, ids, &l)
}
