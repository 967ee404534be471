package faults

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rehydrate/rehydrate/provider"
	"github.com/rehydrate/rehydrate/repository"
	rt "github.com/rehydrate/rehydrate/repository/repositorytest"
)

// Partitions added to the event topic while a writer runs (3 → 6), then a
// restart. Keys are partitioned by the count a writer started with: while
// it runs, every aggregate's events stay in the partition they were in
// (the writer keeps its count; librdkafka is told to refresh its metadata
// every second, so that it sees the new count); the restart, which would
// find aggregates in partitions their keys no longer hash to, is refused
// with an error naming the partition; and nothing acknowledged is lost
// from the log.
func TestPartitionsAddedAtRuntimeAndAcrossARestart(t *testing.T) {
	c := newCluster(t)
	for _, group := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "group"}[group], func(t *testing.T) {
			cfg := c.topic(3, 10*time.Second)
			cfg.Properties = map[string]string{"topic.metadata.refresh.interval.ms": "1000"}
			r := c.writer(t, cfg, group, 3)
			var l rt.Ledger
			ids := createAccounts(t, r, 30, &l)

			cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(c.brokers, ",")...))
			require.NoError(t, err)
			defer cl.Close()
			resp, err := kadm.NewClient(cl).UpdatePartitions(t.Context(), 6, cfg.Topic)
			require.NoError(t, err)
			require.NoError(t, resp.Error())
			t.Logf("partitions of %s: 3 → 6", cfg.Topic)

			// The writer runs on (for a while after the clients' metadata
			// refresh: a load, not a synchronisation).
			moved := 0
			for end := time.Now().Add(5 * time.Second); time.Now().Before(end); {
				for _, id := range ids {
					res, err := deposit(t.Context(), r, id, &l)
					if err != nil {
						t.Logf("deposit on %s after the partitions were added: %v", id, err)
						continue
					}
					if want := provider.PartitionFor([]byte(id), 3); res.Positions[0].Partition != want {
						moved++
						if moved <= 3 {
							t.Errorf("%s: acknowledged in partition %d, but its events are in %d (the count the writer started with)", id, res.Positions[0].Partition, want)
						}
					}
				}
			}
			assert.Zero(t, moved, "acknowledged events in another partition than their aggregate's")
			require.NoError(t, r.Close())

			// Nothing acknowledged is lost from the log.
			awaitMarkers(t, cfg)
			p := open(t, cfg)
			lost := l.CheckLog(t, p)
			assert.Zero(t, lost)

			// The restart is refused, naming what is wrong.
			again := rt.NewRepository(t, p)
			_, err = again.Restore(t.Context())
			t.Logf("RESULT %s: acknowledged=%d failed=%d moved=%d lost=%d; restart: %v", t.Name(), l.Acknowledged(), l.Failed(), moved, lost, err)
			require.Error(t, err, "a restore with aggregates in partitions their keys no longer hash to")
			assert.Contains(t, err.Error(), "belongs in partition")
			_, _, err = again.Get(ids[0])
			assert.ErrorIs(t, err, repository.ErrNotReady, "a refused restore serves nothing")
		})
	}
}
