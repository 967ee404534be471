package repository

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/provider"
	"github.com/rehydrate/rehydrate/snapshot"
)

// SnapshotEntry is one aggregate of a snapshot, as ReadSnapshots gives it.
type SnapshotEntry[A any] struct {
	ID      string
	Version uint64
	// Offset is that of the aggregate's last event in its partition.
	Offset int64
	// Deleted is set for an aggregate a delete event ended; its State is
	// zero.
	Deleted bool
	State   A
}

// ReadSnapshots lets a reader of the topic (a projection) start from the
// state its writers snapshotted, instead of reading the whole history. For
// each partition of ps, which must be every partition of the event topic
// (as events.Partitions returns them), it picks the snapshot a
// Repository[A] on reg with WithSnapshots(store, cfg) would restore from
// (of cfg only StateVersion matters here), with the same checks: state version and codec, an offset within the
// partition, its anchor event found in events. It then calls fn with each
// aggregate of the chosen snapshots, partition by partition, in id order;
// ids of other aggregate types (WithAggregateType) are left out. An error
// of fn stops it and is returned.
//
// The stats say where each partition's events are to be read from: Start,
// the snapshot's offset, or the partition's first offset when Snapshot is
// -1 (Fallback then says why no snapshot was used). A reader that skips a
// partition's snapshot must read that partition from its first offset.
//
// The snapshots' data is the repository's encoding; this is how code
// outside it reads them.
func ReadSnapshots[A any](ctx context.Context, events provider.Provider, reg *event.Registry, store *snapshot.Store,
	cfg Snapshots, ps []provider.Partition, fn func(partition int32, e SnapshotEntry[A]) error) ([]PartitionStats, error) {
	switch {
	case events == nil || reg == nil || store == nil || fn == nil:
		return nil, errors.New("repository: ReadSnapshots: nil events, registry, store or fn")
	case len(ps) == 0:
		return nil, errors.New("repository: ReadSnapshots: no partitions")
	}
	for i, p := range ps {
		if p.ID != int32(i) {
			return nil, fmt.Errorf("repository: ReadSnapshots: partition ids are not 0..%d: give every partition of the topic", len(ps)-1)
		}
	}
	out := replays[A](ps)
	src := snapshotSource{events: events, store: store, codec: reg.Codec(), stateVersion: cfg.StateVersion,
		partitions: len(ps), log: slog.New(slog.DiscardHandler)} // why is in the stats
	fromSnapshots(ctx, src, ps, out)
	if err := ctx.Err(); err != nil {
		return nil, err // not a reason to read the whole history
	}
	stats := make([]PartitionStats, len(ps))
	for i, p := range ps {
		st := out[p.ID]
		stats[i] = st.stats
		stats[i].Applied = -1 // nothing is served here
		for _, id := range slices.Sorted(maps.Keys(st.aggs)) {
			e := st.aggs[id]
			if e.otherType != "" || e.version == 0 {
				continue
			}
			err := fn(p.ID, SnapshotEntry[A]{ID: id, Version: e.version, Offset: e.offset, Deleted: e.deleted, State: e.state})
			if err != nil {
				return nil, err
			}
		}
	}
	return stats, nil
}
