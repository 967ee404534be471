package main

import (
	"context"
	"fmt"
	"slices"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/examples/internal/users"
	kafka "github.com/rehydrate/rehydrate/internal/kafkaclient"
	"github.com/rehydrate/rehydrate/provider"
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
func (rd *reader) seedFromSnapshots(ctx context.Context, store *snapshot.Store, ps []provider.Partition) (map[int32]int64, error) {
	reg, err := users.Registry()
	if err != nil {
		return nil, err
	}
	codec := reg.Codec()
	bounds := make(map[int32]provider.Partition, len(ps))
	ids := make([]int32, len(ps))
	for i, p := range ps {
		ids[i], bounds[p.ID] = p.ID, p
	}
	loaded, err := store.Load(ctx, ids, func(s *snapshot.Snapshot) error {
		p := bounds[s.Partition]
		switch {
		case s.StateVersion != users.StateVersion:
			return fmt.Errorf("state version %d, this reader's is %d", s.StateVersion, users.StateVersion)
		case s.Codec != codec.ContentType():
			return fmt.Errorf("states encoded as %s, not %s", s.Codec, codec.ContentType())
		case s.Offset < p.Low || s.Offset > p.High:
			return fmt.Errorf("offset %d outside the partition's [%d, %d]", s.Offset, p.Low, p.High)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	foreign, err := snapshot.CheckAnchors(ctx, rd.p, loaded)
	if err != nil {
		return nil, err
	}
	from := make(map[int32]int64)
	var seeds []seed
	for _, id := range ids {
		l := loaded[id]
		for _, rej := range l.Rejected {
			rd.log.Warn("writer snapshot unusable", "partition", id, "reason", rej.String())
		}
		if l.Snapshot == nil {
			continue
		}
		if why, bad := foreign[id]; bad {
			rd.log.Warn("writer snapshot unusable: replaying the partition", "partition", id, "reason", why)
			continue
		}
		before := len(seeds)
		if seeds, err = appendSeeds(seeds, l.Snapshot, codec); err != nil {
			rd.log.Warn("writer snapshot unusable: replaying the partition", "partition", id, "err", err)
			seeds = seeds[:before]
			continue
		}
		from[id] = l.Snapshot.Offset
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

func appendSeeds(seeds []seed, s *snapshot.Snapshot, codec event.Codec) ([]seed, error) {
	for e, err := range snapshot.Entries(s.Data) {
		if err != nil {
			return seeds, err
		}
		sd := seed{view: userView{ID: e.ID, Version: e.Version}, deleted: e.Deleted}
		if !e.Deleted {
			var u users.User
			if err := codec.Unmarshal(e.State, &u); err != nil {
				return seeds, fmt.Errorf("user %s: %w", e.ID, err)
			}
			sd.view.FirstName, sd.view.LastName = u.FirstName, u.LastName
		}
		seeds = append(seeds, sd)
	}
	return seeds, nil
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
