package repository

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rehydrate/rehydrate/provider"
)

// Restore reads every partition of the topic from its start up to the end
// offsets it has when Restore begins, and rebuilds the aggregates. Until it
// returns nil the repository serves nothing (ErrNotReady); then Ready is
// closed. Any unreadable record, unregistered type (unless
// WithSkipUnknownTypes), version gap or read failure stops it with an error
// naming partition and offset, and leaves the repository empty and not ready:
// Restore may then be called again.
//
// Restore reads nothing from a log that does not keep every event: when the
// provider implements provider.RetentionChecker and refuses its log, or
// when a partition no longer starts at offset 0, it fails with an error
// wrapping provider.ErrNotRetained that names the setting, or the partition
// and its first offset. That needs a human: a retry succeeds only once the
// topic is fixed.
//
// With WithGroup, Restore joins the group instead, and returns once the
// partitions of the instance's first assignment are restored. Under
// cooperative rebalancing a joining instance is often given its share a
// moment later, once the other instances have given it up: those partitions
// are restored in the background (Owned and Progress tell). See WithGroup.
func (r *Repository[A]) Restore(ctx context.Context) (Stats, error) {
	ctx, end, err := r.closer.begin(ctx) // Close cancels it, and waits
	if err != nil {
		return Stats{}, err
	}
	defer end()
	if !r.state.CompareAndSwap(stateIdle, stateRestoring) && !r.state.CompareAndSwap(stateFailed, stateRestoring) {
		if r.state.Load() == stateClosed {
			return Stats{}, ErrClosed
		}
		return Stats{}, errors.New("repository: Restore called twice")
	}
	start := time.Now()
	if r.settings.group != nil {
		err = r.join(ctx)
	} else {
		err = r.restoreAll(ctx)
	}
	r.statsMu.Lock()
	r.stats.Duration = time.Since(start)
	r.statsMu.Unlock()
	stats := r.Stats()
	if err != nil {
		if !r.state.CompareAndSwap(stateRestoring, stateFailed) {
			err = ErrClosed // whatever the cancelled read said
		}
		r.log.Error("restore failed", "err", err, "after", stats.Duration)
		return stats, err
	}
	if !r.state.CompareAndSwap(stateRestoring, stateReady) {
		return stats, ErrClosed // Close drops what was restored
	}
	close(r.ready)
	r.startSnapshots()
	r.log.Info("restore done", "events", stats.Events, "aggregates", stats.Aggregates,
		"duplicates", stats.Duplicates, "skipped", stats.Skipped, "bytes", stats.Bytes,
		"duration", stats.Duration, "events_per_second", int64(stats.EventsPerSecond()))
	return stats, nil
}

// restoreAll restores every partition: the repository owns the topic.
func (r *Repository[A]) restoreAll(ctx context.Context) error {
	ps, err := r.p.Partitions(ctx)
	if err != nil {
		return fmt.Errorf("repository: restore: %w", err)
	}
	if err := r.makePartitions(len(ps)); err != nil {
		return err
	}
	for i, p := range ps {
		if p.ID != int32(i) {
			return fmt.Errorf("repository: restore: partition ids are not 0..%d", len(ps)-1)
		}
	}
	return r.load(ctx, ps)
}

// makePartitions sizes the repository for a topic of n partitions, once.
func (r *Repository[A]) makePartitions(n int) error {
	if r.parts != nil {
		if len(r.parts) != n {
			return fmt.Errorf("repository: the topic has %d partitions, it had %d: aggregates would move", n, len(r.parts))
		}
		return nil
	}
	parts := make([]*partition[A], n)
	for i := range parts {
		pt := &partition[A]{id: int32(i), aggs: make(map[string]*entry[A]), held: &r.held}
		pt.acked.Store(-1)
		parts[i] = pt
	}
	// Stats, Owned and Progress may be called while Restore runs.
	r.statsMu.Lock()
	r.parts = parts
	r.statsMu.Unlock()
	r.partitions.Store(int32(n))
	t := &r.progress
	t.mu.Lock()
	t.starts = make([]int64, n)
	t.ends = make([]int64, n)
	t.tracked = make([]bool, n)
	t.applied = make([]*atomic.Int64, n)
	for i, pt := range r.parts {
		t.applied[i] = &pt.applied
	}
	t.mu.Unlock()
	return nil
}

// load restores the partitions ps from Low up to High, replacing what memory
// held of them, and marks them serving. On error they are left empty and not
// serving.
func (r *Repository[A]) load(ctx context.Context, ps []provider.Partition) (err error) {
	ids := make([]int32, len(ps))
	for i, p := range ps {
		ids[i] = p.ID
	}
	ctx, done := r.settings.observer.Restore(ctx, ids)
	var applied int64
	defer func() { done(applied, err) }()
	for _, p := range ps {
		// Memory is replaced below: no command may run on it meanwhile.
		if r.parts[p.ID].status.Load() == partServing {
			return fmt.Errorf("repository: restore: partition %d is being served", p.ID)
		}
	}
	if err := r.checkRetention(ctx); err != nil {
		return fmt.Errorf("repository: restore: %w", err)
	}
	var starts map[int32]*start[A]
	starts, err = r.starts(ctx, ps)
	if err != nil {
		return fmt.Errorf("repository: restore: %w", err)
	}
	ranges, err := r.install(ps, starts)
	if err != nil {
		return fmt.Errorf("repository: restore: %w", err)
	}
	r.log.Info("restore started", "partitions", len(ps), "records", total(ranges))
	c, err := r.readApply(ctx, ranges)
	if err != nil {
		r.forget(ps)
		return fmt.Errorf("repository: restore: %w", err)
	}
	r.serve(ps, starts, c)
	applied = c.events
	return nil
}

// install replaces what memory holds of the partitions ps with where their
// restores start (starts), and tracks their progress from there. It returns
// the ranges to read; on error (WithLimits exceeded) it leaves them empty.
func (r *Repository[A]) install(ps []provider.Partition, starts map[int32]*start[A]) ([]provider.Range, error) {
	ranges := make([]provider.Range, len(ps))
	t := &r.progress
	t.mu.Lock()
	if t.start.IsZero() {
		t.start = time.Now()
	}
	t.last = time.Now()
	var tooMany error
	for i, p := range ps {
		pt, st := r.parts[p.ID], starts[p.ID]
		if err := pt.replace(st.aggs); err != nil {
			tooMany = errors.Join(tooMany, err)
		}
		pt.applied.Store(st.stats.Start)
		pt.acked.Store(-1)
		pt.changes.Store(0)
		pt.lastSnapshot.Store(time.Now().UnixNano())
		ranges[i] = provider.Range{Partition: p.ID, Start: st.stats.Start, End: p.High}
		t.starts[p.ID], t.ends[p.ID], t.tracked[p.ID] = st.stats.Start, p.High, true
	}
	t.mu.Unlock()
	if tooMany != nil {
		r.forget(ps)
		return nil, tooMany
	}
	return ranges, nil
}

// readApply reads ranges to their ends and applies what it reads. It returns
// the counts of what it applied, or the first error of the read or of a
// worker.
func (r *Repository[A]) readApply(ctx context.Context, ranges []provider.Range) (readCounts, error) {
	// Partitions hold disjoint aggregates, so workers apply them in
	// parallel; each partition goes to one worker, keeping its order.
	workers := max(1, min(len(ranges), runtime.GOMAXPROCS(0)))
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	queues := make([]chan provider.Batch, workers)
	counts := make([]readCounts, workers)
	// applyErr keeps the first worker's error whatever happens to ctx: a
	// parent context cancelled after the read must not hide it.
	var applyErr atomic.Pointer[error]
	var wg sync.WaitGroup
	for w := range workers {
		queues[w] = make(chan provider.Batch, 4)
		wg.Go(func() {
			for b := range queues[w] {
				if err := r.applyBatch(r.parts[b.Partition], b, &counts[w], false); err != nil {
					applyErr.CompareAndSwap(nil, &err)
					cancel(err)
					for range queues[w] { // drain so the reader never blocks
					}
					return
				}
				r.reportProgress(false)
			}
		})
	}
	readErr := r.p.Read(ctx, ranges, r.settings.batchSize, func(b provider.Batch) error {
		select {
		case queues[int(b.Partition)%workers] <- b:
			return nil
		case <-ctx.Done():
			return context.Cause(ctx)
		}
	})
	for _, q := range queues {
		close(q)
	}
	wg.Wait()
	if e := applyErr.Load(); e != nil {
		return readCounts{}, *e
	}
	if readErr != nil {
		return readCounts{}, readErr
	}
	var sum readCounts
	for _, c := range counts {
		sum.events += c.events
		sum.duplicates += c.duplicates
		sum.skipped += c.skipped
		sum.bytes += c.bytes
	}
	return sum, nil
}

// serve marks the restored partitions ps serving and adds their restore to
// the stats.
func (r *Repository[A]) serve(ps []provider.Partition, starts map[int32]*start[A], c readCounts) {
	for _, p := range ps {
		r.parts[p.ID].status.Store(partServing)
	}
	r.statsMu.Lock()
	if r.partStats == nil {
		r.partStats = make(map[int32]PartitionStats)
	}
	for _, p := range ps {
		r.partStats[p.ID] = starts[p.ID].stats
	}
	r.stats.Events += c.events
	r.stats.Duplicates += c.duplicates
	r.stats.Skipped += c.skipped
	r.stats.Bytes += c.bytes
	r.statsMu.Unlock()
	r.reportProgress(true)
}

// checkRetention asks the provider, if it can tell, whether its log keeps
// every event (provider.RetentionChecker).
func (r *Repository[A]) checkRetention(ctx context.Context) error {
	if rc, ok := r.p.(provider.RetentionChecker); ok {
		return rc.CheckRetention(ctx)
	}
	return nil
}

// forget empties the partitions ps and stops reporting their progress; their
// status is the caller's.
func (r *Repository[A]) forget(ps []provider.Partition) {
	t := &r.progress
	t.mu.Lock()
	for _, p := range ps {
		t.tracked[p.ID] = false
	}
	t.mu.Unlock()
	for _, p := range ps {
		_ = r.parts[p.ID].replace(make(map[string]*entry[A])) // nothing to exceed
	}
}

func total(rs []provider.Range) int64 {
	var n int64
	for _, r := range rs {
		n += r.End - r.Start
	}
	return n
}
