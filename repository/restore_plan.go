package repository

import (
	"context"
	"fmt"
	"log/slog"
	"strings"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/provider"
	"github.com/rehydrate/rehydrate/snapshot"
)

// start is where a partition's restore begins: its aggregates from a
// snapshot (none for a replay), and the offset to read from.
type start[A any] struct {
	aggs  map[string]*entry[A]
	stats PartitionStats
}

// starts returns where the restore of each partition of ps begins: the
// newest usable snapshot, else the partition's first offset. A partition
// that cannot be replayed (its first events are gone) and has no usable
// snapshot fails, wrapping provider.ErrNotRetained.
func (r *Repository[A]) starts(ctx context.Context, ps []provider.Partition) (map[int32]*start[A], error) {
	out := replays[A](ps)
	if r.snaps != nil {
		fromSnapshots(ctx, r.snapshotSource(), ps, out)
	}
	var gone []string
	for _, p := range ps {
		if st := out[p.ID]; st.stats.Snapshot < 0 && p.Low > 0 {
			why := ""
			if st.stats.Fallback != "" {
				why = " (" + st.stats.Fallback + ")"
			}
			gone = append(gone, fmt.Sprintf("partition %d starts at offset %d%s", p.ID, p.Low, why))
		}
	}
	if len(gone) > 0 {
		return nil, fmt.Errorf("%s, not 0: the events below are gone (expired or deleted) and no snapshot holds them: %w",
			strings.Join(gone, ", "), provider.ErrNotRetained)
	}
	return out, nil
}

// replays returns, for each partition of ps, a restore from its first offset.
func replays[A any](ps []provider.Partition) map[int32]*start[A] {
	out := make(map[int32]*start[A], len(ps))
	for _, p := range ps {
		out[p.ID] = &start[A]{aggs: make(map[string]*entry[A]),
			stats: PartitionStats{Partition: p.ID, Snapshot: -1, Start: p.Low, End: p.High}}
	}
	return out
}

// snapshotSource is what choosing a partition's snapshot takes: the
// repository's, or a reader's (ReadSnapshots).
type snapshotSource struct {
	events       provider.Provider // the event log the anchors are checked in
	store        *snapshot.Store
	codec        event.Codec
	stateVersion uint32
	partitions   int // of the event topic
	log          *slog.Logger
}

func (r *Repository[A]) snapshotSource() snapshotSource {
	return snapshotSource{events: r.p, store: r.snaps.store, codec: r.snaps.codec, stateVersion: r.snaps.cfg.StateVersion,
		partitions: len(r.parts), log: r.log}
}

// fromSnapshots fills out with the partitions' newest usable snapshots. A
// partition without one is replayed; why is logged and kept in its stats.
func fromSnapshots[A any](ctx context.Context, src snapshotSource, ps []provider.Partition, out map[int32]*start[A]) {
	ids := make([]int32, len(ps))
	bounds := make(map[int32]provider.Partition, len(ps))
	for i, p := range ps {
		ids[i], bounds[p.ID] = p.ID, p
	}
	decoded := make(map[int32]map[string]*entry[A], len(ps))
	// Load calls accept newest first: a snapshot refused here, one that
	// does not decode included, leaves the next older one to try.
	loaded, err := src.store.Load(ctx, ids, func(sn *snapshot.Snapshot) error {
		p := bounds[sn.Partition]
		switch {
		case sn.StateVersion != src.stateVersion:
			return fmt.Errorf("state version %d, this repository's is %d", sn.StateVersion, src.stateVersion)
		case sn.Codec != src.codec.ContentType():
			return fmt.Errorf("states encoded as %s, this repository's codec is %s", sn.Codec, src.codec.ContentType())
		case sn.Offset < p.Low:
			return fmt.Errorf("offset %d is below the partition's first offset %d: the events between are gone", sn.Offset, p.Low)
		case sn.Offset > p.High:
			return fmt.Errorf("offset %d is beyond the partition's end %d: a snapshot of another history (was the topic recreated?)", sn.Offset, p.High)
		case sn.Anchor == (snapshot.Anchor{}) && sn.Offset > p.Low:
			return fmt.Errorf("holds no event to check it against the partition's history")
		}
		aggs, err := decodeSnapshot[A](src, sn)
		if err != nil {
			return err
		}
		decoded[sn.Partition] = aggs
		return nil
	})
	if err != nil {
		src.log.Error("snapshots unreadable: replaying every partition", "err", err)
		for _, st := range out {
			st.stats.Fallback = "snapshots unreadable: " + err.Error()
		}
		return
	}
	foreign, err := checkAnchors(ctx, src.events, loaded)
	if err != nil {
		src.log.Error("snapshots not checked against the log: replaying every partition", "err", err)
		for _, st := range out {
			st.stats.Fallback = "snapshots not checked against the log: " + err.Error()
		}
		return
	}
	for _, id := range ids {
		st, l := out[id], loaded[id]
		var reasons []string
		for _, rej := range l.Rejected {
			reasons = append(reasons, rej.String())
		}
		if sn := l.Snapshot; sn != nil {
			if why, bad := foreign[id]; !bad {
				st.aggs = decoded[id]
				st.stats.Snapshot, st.stats.Start = sn.Offset, sn.Offset
				if len(reasons) > 0 {
					src.log.Warn("newer snapshots unusable", "partition", id, "used", sn.Offset, "reasons", reasons)
				}
				continue
			} else {
				reasons = append(reasons, fmt.Sprintf("snapshot %s at offset %d: %s", sn.ID, sn.Offset, why))
			}
		}
		if len(reasons) == 0 {
			reasons = append(reasons, "no snapshot stored")
		}
		st.stats.Fallback = strings.Join(reasons, "; ")
		src.log.Warn("no usable snapshot: replaying the partition", "partition", id, "reasons", reasons)
	}
}

// decodeSnapshot decodes a snapshot's entries into a partition's map.
func decodeSnapshot[A any](src snapshotSource, sn *snapshot.Snapshot) (map[string]*entry[A], error) {
	aggs := make(map[string]*entry[A], sn.Aggregates)
	for e, err := range snapshotEntries(sn.Data) {
		if err != nil {
			return nil, err
		}
		if provider.PartitionFor([]byte(e.ID), src.partitions) != sn.Partition {
			return nil, fmt.Errorf("aggregate %s belongs in partition %d", e.ID, provider.PartitionFor([]byte(e.ID), src.partitions))
		}
		ent := &entry[A]{version: e.Version, offset: e.Offset, deleted: e.Deleted, otherType: e.OtherType}
		if !e.Deleted && e.OtherType == "" {
			if err := src.codec.Unmarshal(e.State, &ent.state); err != nil {
				return nil, fmt.Errorf("aggregate %s: state: %w", e.ID, err)
			}
		}
		aggs[e.ID] = ent
	}
	if len(aggs) != sn.Aggregates {
		return nil, fmt.Errorf("%d aggregates, the manifest says %d", len(aggs), sn.Aggregates)
	}
	return aggs, nil
}
