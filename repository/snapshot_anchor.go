package repository

import (
	"context"
	"fmt"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/provider"
	"github.com/rehydrate/rehydrate/snapshot"
)

// checkAnchors reads from events, the event log, in one read, the event
// each loaded snapshot is anchored to, and returns the partitions whose
// snapshot is of another history, with why: its anchor event is not in the
// partition at its offset (the topic was deleted and created again, say).
// It reads the event log, not the snapshot topic: it is the repository's
// check of a snapshot against its history, not the store's.
func checkAnchors(ctx context.Context, events provider.Provider, loaded map[int32]snapshot.Loaded) (map[int32]string, error) {
	anchors := make(map[int32]snapshot.Anchor)
	var ranges []provider.Range
	for id, l := range loaded {
		if l.Snapshot != nil && l.Snapshot.Anchor != (snapshot.Anchor{}) {
			a := l.Snapshot.Anchor
			anchors[id] = a
			ranges = append(ranges, provider.Range{Partition: id, Start: a.Offset, End: a.Offset + 1})
		}
	}
	found := make(map[int32]bool)
	foreign := make(map[int32]string)
	err := events.Read(ctx, ranges, 0, func(b provider.Batch) error {
		a := anchors[b.Partition]
		for _, rec := range b.Records {
			if rec.Offset != a.Offset {
				continue
			}
			found[b.Partition] = true
			env, err := event.ParseRecord(rec)
			if err != nil || env.AggregateID != a.AggregateID || a.Version != 0 && env.Version != a.Version {
				foreign[b.Partition] = fmt.Sprintf("taken of another history: offset %d holds %s version %d, not %s version %d (was the topic recreated?)",
					a.Offset, env.AggregateID, env.Version, a.AggregateID, a.Version)
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for id, a := range anchors {
		if !found[id] {
			foreign[id] = fmt.Sprintf("taken of another history: no event at offset %d, where %s version %d was", a.Offset, a.AggregateID, a.Version)
		}
	}
	return foreign, nil
}
