package repository

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rehydrate/rehydrate/snapshot"
)

// Snapshot writes now a snapshot of every partition this instance serves
// that changed since its last one, and returns once they are stored (or
// why not); a partition revoked or restored again while it is copied is
// left out, not an error. Call it before a clean shutdown, so that the next
// start reads almost nothing but snapshots. Without WithSnapshots it
// returns an error.
func (r *Repository[A]) Snapshot(ctx context.Context) error {
	if err := r.readiness(); err != nil {
		return err
	}
	if r.snaps == nil {
		return errors.New("repository: Snapshot: no snapshot store (WithSnapshots)")
	}
	var errs []error
	for _, pt := range r.parts {
		if pt.status.Load() == partServing && pt.changes.Load() > 0 {
			errs = append(errs, r.snapshotPartition(ctx, pt))
		}
	}
	return errors.Join(errs...)
}

// snapshotPartition takes and stores a snapshot of pt.
//
// Why the snapshot is consistent: it must hold, for every aggregate, at
// least every event of it below its offset (it may hold later ones: a
// restore skips events not newer than an aggregate's version). The offset is
// taken first, as the partition's read position or just past this
// instance's last acknowledged append, whichever is later: every event below
// it was read or appended and acknowledged here, so it is applied, since this
// instance is the partition's only writer (the group fences any other). An
// append in flight at that moment is applied before its aggregate's lock is
// released, which the copy takes; one whose outcome is unknown may have
// landed anywhere after its aggregate's unresolved mark, so the offset is
// lowered below that. Appends that start later land beyond the offset.
// Aggregates are copied one at a time under their lock, each encoded at
// once: a command waits at most for one aggregate's encoding.
func (r *Repository[A]) snapshotPartition(ctx context.Context, pt *partition[A]) error {
	pt.snapMu.Lock()
	defer pt.snapMu.Unlock()
	epoch := pt.epoch.Load()
	if pt.status.Load() != partServing {
		return nil
	}
	began := time.Now()
	changes := pt.changes.Load()
	offset := pt.upTo()
	codec := r.snaps.codec
	var data []byte
	n := 0
	// longest is the longest an aggregate's lock was held for the copy: the
	// longest a command can have waited for the snapshot (reported).
	var longest time.Duration
	var anchor snapshot.Anchor // the entry of highest offset
	for id, e := range pt.entries() {
		e.mu.Lock()
		locked := time.Now()
		if e.unresolved != nil {
			offset = min(offset, *e.unresolved+1)
		}
		if e.removed || e.version == 0 && e.otherType == "" {
			e.mu.Unlock()
			continue
		}
		var state []byte
		if !e.deleted && e.otherType == "" {
			var err error
			if state, err = codec.Marshal(&e.state); err != nil {
				e.mu.Unlock()
				return fmt.Errorf("repository: snapshot of partition %d: aggregate %s: %w", pt.id, id, err)
			}
		}
		data = appendEntry(data, snapshotEntry{ID: id, Version: e.version, Offset: e.offset, Deleted: e.deleted,
			OtherType: e.otherType, State: state})
		if e.offset >= 0 && e.offset > anchor.Offset || anchor.AggregateID == "" {
			anchor = snapshot.Anchor{Offset: e.offset, AggregateID: id, Version: e.version}
		}
		e.mu.Unlock()
		longest = max(longest, time.Since(locked))
		n++
	}
	copied := time.Since(began)
	if pt.epoch.Load() != epoch || pt.status.Load() != partServing {
		return nil // revoked or restored again meanwhile: the copy may be partial
	}
	sn := &snapshot.Snapshot{Partition: pt.id, Offset: offset, StateVersion: r.snaps.cfg.StateVersion,
		Codec: codec.ContentType(), Aggregates: n, Data: data}
	if anchor.Offset >= 0 && anchor.AggregateID != "" {
		sn.Anchor = anchor
	}
	err := r.snaps.store.Save(ctx, sn)
	r.settings.observer.Snapshot(pt.id, offset, len(data), time.Since(began), err)
	if err != nil {
		return fmt.Errorf("repository: snapshot of partition %d: %w", pt.id, err)
	}
	if pt.epoch.Load() == epoch {
		// A restore meanwhile started the count again: leave it.
		pt.changes.Add(-changes)
		pt.lastSnapshot.Store(time.Now().UnixNano())
	}
	r.log.Info("snapshot saved", "partition", pt.id, "offset", offset, "aggregates", n, "bytes", len(data),
		"copy", copied, "longest_lock", longest, "took", time.Since(began))
	return nil
}

// snapshotLoop takes snapshots in the background, as Snapshots says, until
// Close. A failed snapshot is tried again after a pause.
func (r *Repository[A]) snapshotLoop() {
	s := r.snaps
	defer close(s.stopped)
	tick := max(time.Millisecond, min(time.Second, s.cfg.Interval/4))
	t := time.NewTicker(tick)
	defer t.Stop()
	retryAt := make(map[int32]time.Time)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-s.stop
		cancel()
	}()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		now := time.Now()
		for _, pt := range r.parts {
			changes := pt.changes.Load()
			due := changes >= s.cfg.Events ||
				changes > 0 && now.Sub(time.Unix(0, pt.lastSnapshot.Load())) >= s.cfg.Interval
			if !due || pt.status.Load() != partServing || now.Before(retryAt[pt.id]) {
				continue
			}
			if err := r.snapshotPartition(ctx, pt); err != nil {
				if ctx.Err() != nil {
					return
				}
				r.log.Error("snapshot failed; retrying", "partition", pt.id, "err", err)
				retryAt[pt.id] = now.Add(min(s.cfg.Interval, 10*time.Second))
			}
		}
	}
}

// startSnapshots starts the background snapshots, once.
func (r *Repository[A]) startSnapshots() {
	if r.snaps != nil {
		r.snaps.startLoop.Do(func() { go r.snapshotLoop() })
	}
}

// close stops the background snapshots, if they run, and waits for them.
func (s *snapshots) close() {
	if s == nil {
		return
	}
	s.startLoop.Do(func() { close(s.stopped) }) // never started: nothing to wait for
	s.stopLoop.Do(func() { close(s.stop) })
	<-s.stopped
}
