package repository

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/provider"
)

// Stats describes a finished restore.
type Stats struct {
	// Events is the number of events applied.
	Events int64
	// Duplicates counts events skipped because their version was not newer
	// than their aggregate's.
	Duplicates int64
	// Skipped counts events of unregistered types skipped under
	// WithSkipUnknownTypes, and events of other aggregate types
	// (WithAggregateType).
	Skipped int64
	// Aggregates is the number of aggregates in memory, deleted included.
	Aggregates int
	// Bytes is the size of the records read: keys, values and headers.
	Bytes    int64
	Duration time.Duration
	// Partitions says how each partition was last restored: from which
	// snapshot, or why from its first event (WithSnapshots).
	Partitions []PartitionStats
}

// EventsPerSecond is the restore's rate.
func (s Stats) EventsPerSecond() float64 {
	if s.Duration <= 0 {
		return 0
	}
	return float64(s.Events+s.Duplicates+s.Skipped) / s.Duration.Seconds()
}

// Progress is how far a restore is.
type Progress struct {
	// Done and Total count records: Total is the sum over partitions of
	// the offsets between start and the end captured when the restore
	// began. Done reaches Total when the restore is complete. With
	// WithGroup, only the partitions this instance owns count, each from
	// its latest takeover.
	Done, Total int64
	Partitions  []PartitionProgress
	Elapsed     time.Duration
}

// PartitionProgress is one partition's share of Progress.
type PartitionProgress struct {
	Partition   int32
	Done, Total int64
}

// EventsPerSecond is the rate so far.
func (p Progress) EventsPerSecond() float64 {
	if p.Elapsed <= 0 {
		return 0
	}
	return float64(p.Done) / p.Elapsed.Seconds()
}

type progressTracker struct {
	mu      sync.Mutex // serialises the callback
	start   time.Time
	starts  []int64 // by partition id
	ends    []int64
	tracked []bool // restored or being restored by this instance
	applied []*atomic.Int64
	last    time.Time
}

// Progress returns how far the restore is; before Restore starts, it is all
// zero.
func (r *Repository[A]) Progress() Progress {
	t := &r.progress
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.snapshot()
}

func (t *progressTracker) snapshot() Progress {
	var p Progress
	if !t.start.IsZero() {
		p.Elapsed = time.Since(t.start)
	}
	for i := range t.ends {
		if !t.tracked[i] {
			continue
		}
		total := t.ends[i] - t.starts[i]
		done := min(t.applied[i].Load()-t.starts[i], total)
		p.Partitions = append(p.Partitions, PartitionProgress{Partition: int32(i), Done: done, Total: total})
		p.Done += done
		p.Total += total
	}
	return p
}

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
	if !r.state.CompareAndSwap(stateIdle, stateRestoring) && !r.state.CompareAndSwap(stateFailed, stateRestoring) {
		return Stats{}, errors.New("repository: Restore called twice")
	}
	start := time.Now()
	var err error
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
		r.state.Store(stateFailed)
		r.log.Error("restore failed", "err", err, "after", stats.Duration)
		return stats, err
	}
	r.state.Store(stateReady)
	close(r.ready)
	r.startSnapshots()
	r.log.Info("restore done", "events", stats.Events, "aggregates", stats.Aggregates,
		"duplicates", stats.Duplicates, "skipped", stats.Skipped, "bytes", stats.Bytes,
		"duration", stats.Duration, "events_per_second", int64(stats.EventsPerSecond()))
	return stats, nil
}

// Stats returns the statistics of the restores so far (with WithGroup, of
// every partition taken over, summed); zero before the first one finished.
func (r *Repository[A]) Stats() Stats {
	r.statsMu.Lock()
	defer r.statsMu.Unlock()
	s := r.stats
	s.Partitions = sortedPartitionStats(r.partStats)
	for i, ps := range s.Partitions {
		s.Partitions[i].Applied = -1
		if pt := r.parts[ps.Partition]; pt.status.Load() == partServing {
			s.Partitions[i].Aggregates, s.Partitions[i].Bytes = pt.sampledBytes()
			s.Partitions[i].Applied = pt.upTo()
			s.Aggregates += s.Partitions[i].Aggregates
		}
	}
	return s
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
		return fmt.Errorf("repository: restore: %w", tooMany)
	}
	r.log.Info("restore started", "partitions", len(ps), "records", total(ranges))

	// Partitions hold disjoint aggregates, so workers apply them in
	// parallel; each partition goes to one worker, keeping its order.
	workers := max(1, min(len(ps), runtime.GOMAXPROCS(0)))
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
	var stats Stats
	for _, c := range counts {
		stats.Events += c.events
		stats.Duplicates += c.duplicates
		stats.Skipped += c.skipped
		stats.Bytes += c.bytes
	}
	err = readErr
	if e := applyErr.Load(); e != nil {
		err = *e
	}
	if err != nil {
		r.forget(ps)
		return fmt.Errorf("repository: restore: %w", err)
	}
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
	applied = stats.Events
	r.stats.Events += stats.Events
	r.stats.Duplicates += stats.Duplicates
	r.stats.Skipped += stats.Skipped
	r.stats.Bytes += stats.Bytes
	r.statsMu.Unlock()
	r.reportProgress(true)
	return nil
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

func (r *Repository[A]) reportProgress(final bool) {
	fn := r.settings.progress
	if fn == nil {
		return
	}
	interval := r.settings.progressInterval
	if interval <= 0 {
		interval = 250 * time.Millisecond
	}
	t := &r.progress
	if !final && !t.mu.TryLock() {
		return // another worker is reporting
	}
	if final {
		t.mu.Lock()
	}
	defer t.mu.Unlock()
	if !final && time.Since(t.last) < interval {
		return
	}
	t.last = time.Now()
	fn(t.snapshot())
}

type readCounts struct {
	events, duplicates, skipped, bytes int64
}

// applyBatch applies a batch read from the log. follow is set when the
// repository is live: it then checks for another writer's events.
func (r *Repository[A]) applyBatch(pt *partition[A], b provider.Batch, c *readCounts, follow bool) error {
	// One envelope for the batch: handlers do not keep theirs (OnEnvelope),
	// and one escaping to the heap per event (handlers are func values)
	// was a restore's most frequent allocation after the payloads.
	env := new(event.Envelope)
	for i := range b.Records {
		if err := r.applyRecord(pt, &b.Records[i], env, c, follow); err != nil {
			return err
		}
	}
	pt.changes.Add(int64(len(b.Records)))
	pt.applied.Store(b.Next)
	return nil
}

// applyRecord applies one record, decoded into env.
func (r *Repository[A]) applyRecord(pt *partition[A], rec *event.Record, env *event.Envelope, c *readCounts, follow bool) error {
	c.bytes += int64(len(rec.Key) + len(rec.Value))
	for _, h := range rec.Headers {
		c.bytes += int64(len(h.Key) + len(h.Value))
	}
	if rec.Partition != pt.id {
		return &event.RecordError{Partition: rec.Partition, Offset: rec.Offset,
			Err: fmt.Errorf("record delivered for partition %d", pt.id)}
	}
	if event.IsControl(*rec) {
		return nil
	}
	parsed, payload, skip, err := r.decode(rec)
	*env = parsed
	if err != nil || skip {
		if skip {
			c.skipped++
			if r.otherType(env) {
				return r.noteOtherType(pt, env)
			}
		}
		return err
	}
	if want := provider.PartitionFor(rec.Key, len(r.parts)); want != pt.id {
		return &event.RecordError{Partition: rec.Partition, Offset: rec.Offset, Err: fmt.Errorf(
			"aggregate %s belongs in partition %d (murmur2 of the key), not %d: the writer used another partitioner",
			env.AggregateID, want, pt.id)}
	}
	e, err := pt.lock(env.AggregateID, true)
	if err != nil {
		return &event.RecordError{Partition: rec.Partition, Offset: rec.Offset, Err: err}
	}
	defer e.mu.Unlock()
	applied, err := r.applyEnvelope(e, env, payload, follow)
	if err != nil {
		return err
	}
	if applied {
		c.events++
	} else {
		c.duplicates++
	}
	return nil
}

// otherType reports an event of another aggregate type (WithAggregateType):
// its aggregate-type header names another type, or it has none (written
// before types) and its event type has no handler here, though registered.
func (r *Repository[A]) otherType(env *event.Envelope) bool {
	t := r.settings.aggregateType
	if t == "" {
		return false
	}
	if env.AggregateType != "" {
		return env.AggregateType != t
	}
	_, handled := r.handlers[env.Type]
	return !handled && !r.deletes[env.Type] && r.reg.Known(env.Type)
}

// noteOtherType remembers that the topic holds an aggregate of another type
// under env's id, so that this repository does not create one.
func (r *Repository[A]) noteOtherType(pt *partition[A], env *event.Envelope) error {
	e, err := pt.lock(env.AggregateID, true)
	if err != nil {
		return &event.RecordError{Partition: env.Partition, Offset: env.Offset, Err: err}
	}
	defer e.mu.Unlock()
	if e.version == 0 && e.offset < env.Offset {
		e.offset = env.Offset // a snapshot may anchor to it
	}
	if e.version > 0 {
		// The log already has both: restore what is ours, and say so.
		r.log.Warn("an id with events of two aggregate types", "aggregate", env.AggregateID,
			"types", []string{r.settings.aggregateType, env.AggregateType}, "partition", env.Partition, "offset", env.Offset)
		return nil
	}
	e.otherType = env.AggregateType
	if e.otherType == "" {
		e.otherType = "unnamed (its events are " + env.Type + ")"
	}
	return nil
}

// decode parses a record and decodes its payload. skip reports an event
// of another aggregate type (WithAggregateType), or of an unregistered type
// skipped under WithSkipUnknownTypes.
func (r *Repository[A]) decode(rec *event.Record) (env event.Envelope, payload any, skip bool, err error) {
	env, err = event.ParseRecord(*rec)
	if err != nil {
		return env, nil, false, err
	}
	env.Type, _ = r.reg.CurrentName(env.Type) // a former name is handled as the type's
	if r.otherType(&env) {
		return env, nil, true, nil
	}
	if !r.reg.Known(env.Type) {
		if r.settings.skipUnknown {
			return env, nil, true, nil
		}
		return env, nil, false, &event.RecordError{Partition: rec.Partition, Offset: rec.Offset,
			Err: fmt.Errorf("aggregate %s: %w: %q", env.AggregateID, event.ErrUnknownType, env.Type)}
	}
	if _, ok := r.handlers[env.Type]; !ok && !r.deletes[env.Type] {
		return env, nil, false, &event.RecordError{Partition: rec.Partition, Offset: rec.Offset,
			Err: fmt.Errorf("aggregate %s: event type %s has no handler", env.AggregateID, env.Type)}
	}
	payload, err = r.reg.Decode(&env)
	if err != nil {
		return env, nil, false, &event.RecordError{Partition: rec.Partition, Offset: rec.Offset,
			Err: fmt.Errorf("aggregate %s: %w", env.AggregateID, err)}
	}
	return env, payload, false, nil
}

// applyEnvelope applies one event read from the log to its locked entry. It
// returns false for a duplicate (a version not newer than the entry's).
func (r *Repository[A]) applyEnvelope(e *entry[A], env *event.Envelope, payload any, follow bool) (bool, error) {
	fail := func(format string, args ...any) (bool, error) {
		return false, &event.RecordError{Partition: env.Partition, Offset: env.Offset,
			Err: fmt.Errorf("aggregate %s: "+format, append([]any{env.AggregateID}, args...)...)}
	}
	switch {
	case env.Version <= e.version:
		if follow && e.written && (env.Offset > e.offset || env.Version == e.version && env.Offset != e.offset) {
			return fail("%w: version %d, which this instance wrote at offset %d", ErrConflictingWriter, env.Version, e.offset)
		}
		return false, nil
	case env.Version != e.version+1:
		return fail("version gap: event version %d after version %d", env.Version, e.version)
	case e.deleted:
		return fail("event %s (version %d) after the aggregate was deleted", env.Type, env.Version)
	}
	r.apply(e, env, payload)
	e.version = env.Version
	e.offset = env.Offset
	return true, nil
}

// apply runs the handler of an event type on a locked entry.
func (r *Repository[A]) apply(e *entry[A], env *event.Envelope, payload any) {
	if h, ok := r.handlers[env.Type]; ok {
		h(&e.state, payload, env)
	}
	if r.deletes[env.Type] {
		var zero A
		e.state, e.deleted = zero, true
	}
}

// Follow applies, until ctx ends, the events appended after the restore by
// other writers (a standby instance stays current this way); events this
// instance wrote are skipped as duplicates. It returns ctx's error, or the
// first error that stops it (an undecodable record, a version gap,
// ErrConflictingWriter), naming partition and offset.
func (r *Repository[A]) Follow(ctx context.Context) error {
	if !r.isReady() {
		return ErrNotReady
	}
	if r.group != nil {
		return errors.New("repository: Follow: a group member is the only writer of the partitions it serves: there is nothing to follow")
	}
	ranges := make([]provider.Range, len(r.parts))
	for i, pt := range r.parts {
		ranges[i] = provider.Range{Partition: pt.id, Start: pt.applied.Load(), End: provider.Follow}
	}
	var c readCounts
	err := r.p.Read(ctx, ranges, r.settings.batchSize, func(b provider.Batch) error {
		return r.applyBatch(r.parts[b.Partition], b, &c, true)
	})
	if err != nil && ctx.Err() == nil {
		r.log.Error("follow stopped", "err", err)
	}
	return err
}
