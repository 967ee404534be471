package main

import (
	"context"
	"fmt"
	"slices"

	"github.com/rehydrate/rehydrate/examples/users"
	"github.com/rehydrate/rehydrate/provider"
	kafka "github.com/rehydrate/rehydrate/provider/kafkaclient"
	"github.com/rehydrate/rehydrate/repository"
	"github.com/rehydrate/rehydrate/snapshot"
)

// openSnapshots opens the writer's snapshot store (the topic
// KAFKA_TOPIC-snapshots, created as the writer creates it when it is
// missing: the reader may start first).
func openSnapshots(ctx context.Context, cfg config, partitions int) (*snapshot.Store, func(), error) {
	kc := cfg.kafka
	kc.Topic = snapshot.TopicName(kc.Topic)
	sp, err := kafka.New(kc)
	if err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.startupTimeout)
	defer cancel()
	if err := sp.EnsureTopic(ctx, kafka.TopicSpec{Partitions: partitions, Config: snapshot.TopicConfig()}); err != nil {
		_ = sp.Close()
		return nil, nil, fmt.Errorf("snapshot topic %s: %w", kc.Topic, err)
	}
	store, err := snapshot.NewStore(sp)
	if err != nil {
		_ = sp.Close()
		return nil, nil, err
	}
	return store, func() { _ = sp.Close() }, nil
}

// seedFromSnapshots fills the model with the writer's newest usable snapshot
// of each partition (the writer's users.User states are what the model
// shows) and returns the offsets the stream starts from: each snapshot's.
// Partitions without one start from their first record. A restart of the
// reader then reads the state and the events after it, not the history.
// The snapshots are chosen and checked as the writer's repository does
// (repository.ReadSnapshots).
func (rd *reader) seedFromSnapshots(ctx context.Context, store *snapshot.Store, ps []provider.Partition) (map[int32]int64, error) {
	reg, err := users.Registry()
	if err != nil {
		return nil, err
	}
	var seeds []seed
	stats, err := repository.ReadSnapshots(ctx, rd.p, reg, store, repository.Snapshots{StateVersion: users.StateVersion}, ps,
		func(_ int32, e repository.SnapshotEntry[users.User]) error {
			seeds = append(seeds, seed{deleted: e.Deleted, view: userView{ID: e.ID, Version: e.Version,
				FirstName: e.State.FirstName, LastName: e.State.LastName}})
			return nil
		})
	if err != nil {
		return nil, err
	}
	from := make(map[int32]int64)
	for _, st := range stats {
		if st.Snapshot < 0 {
			rd.log.Warn("writer snapshot unusable: replaying the partition", "partition", st.Partition, "reason", st.Fallback)
			continue
		}
		from[st.Partition] = st.Start
	}
	rd.model.seed(seeds)
	rd.log.Info("seeded from the writer's snapshots", "partitions", len(from), "users", len(seeds))
	return from, nil
}

// seed is one user taken from a snapshot.
type seed struct {
	view    userView
	deleted bool
}

// seed puts users taken from snapshots into the model, before any event.
func (m *readModel) seed(seeds []seed) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, s := range seeds {
		m.users[s.view.ID] = &entry{view: s.view, deleted: s.deleted}
		if !s.deleted {
			m.ids = append(m.ids, s.view.ID)
		}
	}
	slices.Sort(m.ids)
}
