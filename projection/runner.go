package projection

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/rehydrate/rehydrate/consume"
	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/provider"
)

// finishBound is how long a batch under way may take to finish once its
// context has ended.
const finishBound = 10 * time.Second

// Progress is where one partition of a projection stands.
type Progress struct {
	Partition int32
	// Next is the offset of the next record to apply: everything below it
	// is committed with its checkpoint (NoCheckpoint before the first
	// commit of a partition never applied).
	Next int64
	// End is the partition's end offset when the reader took it over;
	// CaughtUp is set once Next has reached it.
	End      int64
	CaughtUp bool
	// Owner is the reader's owner token for the partition.
	Owner int64
}

// Runner runs one projection: it claims its partitions' checkpoints, reads
// each partition from its checkpoint and commits every batch with the
// checkpoint after it in one store transaction. It is safe for concurrent
// use; Run is called once.
type Runner[Tx any] struct {
	cfg Config[Tx]
	log *slog.Logger

	mu       sync.Mutex
	parts    map[int32]*Progress // the partitions this reader serves now
	started  bool
	assigned bool          // the reader has its first share of partitions
	changed  chan struct{} // closed and replaced at every commit
	caughtUp chan struct{}
	fenced   int // commits refused by the store
	// storeFailures counts the store's failures (each retried or, the
	// last, stopping the projection).
	storeFailures int
}

// New validates cfg and returns its runner.
func New[Tx any](cfg Config[Tx]) (*Runner[Tx], error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Instance == "" {
		cfg.Instance = rand.Text()
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Runner[Tx]{
		cfg: cfg, log: log.With("projection", cfg.Name),
		parts:   make(map[int32]*Progress),
		changed: make(chan struct{}), caughtUp: make(chan struct{}),
	}, nil
}

// Run reads and applies until ctx ends (or, for consume.Replay, until the
// end offsets at start are applied, when it returns nil). It returns the
// first error that stops the projection: a record given up without a
// dead-letter topic (an *event.RecordError naming partition and offset), a
// store that kept failing (a *StoreError naming partition and checkpoint,
// after the retries of Config.Failures: see retry.go), a provider failure,
// or, for a reader outside a group, an ErrFenced when another reader
// claimed its partitions. In a group, any of these but ErrFenced stops the
// whole reader, which leaves the group: its partitions move to the others.
func (r *Runner[Tx]) Run(ctx context.Context) error {
	r.mu.Lock()
	if r.started {
		r.mu.Unlock()
		return errors.New("projection: Run called twice")
	}
	r.started = true
	r.mu.Unlock()
	if r.cfg.Group != "" {
		return r.runGroup(ctx)
	}
	ps, err := r.cfg.Provider.Partitions(ctx)
	if err != nil {
		return err
	}
	ids := make([]int32, len(ps))
	for i, p := range ps {
		ids[i] = p.ID
	}
	return r.serve(ctx, ids)
}

// serve claims partitions and applies them until ctx ends (or the replay
// does).
func (r *Runner[Tx]) serve(ctx context.Context, ids []int32) error {
	var claims []Claim
	err := r.retrying(ctx, ids[0], func(int) (err error) {
		claims, err = r.cfg.Store.Claim(ctx, r.cfg.Name, ids, r.cfg.Instance)
		return err
	}, func(attempts int, err error) error {
		return fmt.Errorf("projection %s: claim partitions %v: %d attempts: %w", r.cfg.Name, ids, attempts, err)
	})
	if err != nil {
		return err
	}
	ps, err := r.cfg.Provider.Partitions(ctx)
	if err != nil {
		return err
	}
	opts := consume.StreamOptions{BatchSize: r.cfg.BatchSize, From: make(map[int32]int64), Partitions: ids}
	var live []Move // partitions a Live projection starts at their end
	for _, c := range claims {
		i := slices.IndexFunc(ps, func(p provider.Partition) bool { return p.ID == c.Partition })
		if i < 0 {
			return fmt.Errorf("projection %s: no partition %d", r.cfg.Name, c.Partition)
		}
		st := &Progress{Partition: c.Partition, Next: c.Next, End: ps[i].High, Owner: c.Owner}
		switch {
		case c.Next != NoCheckpoint:
			opts.From[c.Partition] = c.Next
		case r.cfg.Mode == consume.Live:
			opts.From[c.Partition] = ps[i].High
			live = append(live, Move{Partition: c.Partition, Owner: c.Owner, From: NoCheckpoint, To: ps[i].High})
		}
		st.CaughtUp = st.Next >= st.End || (st.Next == NoCheckpoint && ps[i].Low >= st.End)
		r.mu.Lock()
		r.parts[c.Partition] = st
		r.mu.Unlock()
		r.log.Info("projection: partition claimed", "partition", c.Partition, "next", c.Next, "owner", c.Owner)
	}
	if len(live) > 0 {
		// A Live projection's first start is where it begins for good: a
		// restart must resume there, not at a later end.
		if err := r.commit(ctx, live, nil); err != nil {
			return err
		}
	}
	r.checkCaughtUp()
	mode := consume.ReplayThenFollow
	if r.cfg.Mode == consume.Replay {
		mode = consume.Replay
	}
	return consume.Stream(ctx, r.cfg.Provider, mode, opts, func(b provider.Batch) error { return r.applyRetrying(ctx, b) })
}

// apply commits a batch with its partition's checkpoint after it. When the
// handler fails on a record, the transaction rolls back; then the records
// before it commit, the failed one runs alone through the Failures, and
// the rest go on as a batch.
func (r *Runner[Tx]) apply(ctx context.Context, b provider.Batch) error {
	records := b.Records
	for {
		st := r.progress(b.Partition)
		if len(records) == 0 && st.Next == b.Next {
			return nil
		}
		failed := -1
		err := r.commit(ctx, []Move{{Partition: b.Partition, Owner: st.Owner, From: st.Next, To: b.Next}}, func(ctx context.Context, tx Tx) error {
			for i, rec := range records {
				if _, err := r.cfg.Handler.Handle(ctx, tx, rec); err != nil {
					failed = i
					return err
				}
			}
			return nil
		})
		if failed < 0 || errors.Is(err, ErrStoreFailed) {
			return err // nil, or the store's (applyRetrying retries it)
		}
		if failed > 0 {
			before := Move{Partition: b.Partition, Owner: st.Owner, From: st.Next, To: records[failed].Offset}
			if err := r.commit(ctx, []Move{before}, r.handleAll(records[:failed])); err != nil {
				return err
			}
		}
		if err := r.applyOne(ctx, records[failed]); err != nil {
			return err
		}
		records = records[failed+1:]
	}
}

// applyOne applies a record that failed in its batch in a transaction of
// its own, retried and dead-lettered as r.cfg.Failures says. A dead-lettered
// record's checkpoint moves past it without its effects.
func (r *Runner[Tx]) applyOne(ctx context.Context, rec event.Record) error {
	var storeErr error
	applied := false
	handle := func(rec event.Record) error {
		st := r.progress(rec.Partition)
		var handlerErr error
		err := r.commit(ctx, []Move{{Partition: rec.Partition, Owner: st.Owner, From: st.Next, To: rec.Offset + 1}}, func(ctx context.Context, tx Tx) error {
			_, handlerErr = r.cfg.Handler.Handle(ctx, tx, rec)
			return handlerErr
		})
		switch {
		case handlerErr != nil && !errors.Is(err, ErrStoreFailed):
			return handlerErr // for the Failures: retry, dead letter or stop
		case err != nil:
			storeErr = err // not the record's fault: never dead-letter it for this
		default:
			applied = true
		}
		return nil
	}
	one := provider.Batch{Partition: rec.Partition, Records: []event.Record{rec}, Next: rec.Offset + 1}
	if err := consume.EachRecord(ctx, r.cfg.Failures, handle)(one); err != nil {
		return err
	}
	if storeErr != nil || applied {
		return storeErr
	}
	st := r.progress(rec.Partition)
	return r.commit(ctx, []Move{{Partition: rec.Partition, Owner: st.Owner, From: st.Next, To: rec.Offset + 1}}, nil)
}

func (r *Runner[Tx]) handleAll(records []event.Record) func(context.Context, Tx) error {
	return func(ctx context.Context, tx Tx) error {
		for _, rec := range records {
			if _, err := r.cfg.Handler.Handle(ctx, tx, rec); err != nil {
				return err
			}
		}
		return nil
	}
}

// commit runs apply (nil: only the moves) with moves in one store
// transaction and, once committed, records the new checkpoints.
func (r *Runner[Tx]) commit(ctx context.Context, moves []Move, apply func(context.Context, Tx) error) error {
	if apply == nil {
		apply = func(context.Context, Tx) error { return nil }
	}
	// A batch under way when ctx ends (its partition revoked, Run stopped)
	// is finished, for at most finishBound, rather than abandoned half way:
	// if another reader has claimed the partition meanwhile, the store
	// refuses it. So a reader stopped inside a batch and resumed (SIGSTOP,
	// a long pause) meets the fence instead of leaving unnoticed.
	cctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	defer cancel()
	defer context.AfterFunc(ctx, func() {
		select {
		case <-time.After(finishBound):
			cancel()
		case <-cctx.Done():
		}
	})()
	err := r.cfg.Store.Commit(cctx, r.cfg.Name, moves, apply)
	if errors.Is(err, ErrFenced) {
		r.mu.Lock()
		r.fenced++
		r.mu.Unlock()
		r.log.Warn("projection: commit refused by the store: another reader claimed the partition", "partition", moves[0].Partition, "err", err)
	}
	if err != nil {
		return err
	}
	r.moved(moves)
	return nil
}

// moved records committed moves: the partitions' new checkpoints.
func (r *Runner[Tx]) moved(moves []Move) {
	r.mu.Lock()
	var done []Progress
	for _, m := range moves {
		st := r.parts[m.Partition]
		if st == nil {
			continue // revoked while committing: what is stored is the truth
		}
		st.Next = m.To
		if !st.CaughtUp && st.Next >= st.End {
			st.CaughtUp = true
		}
		done = append(done, *st)
	}
	close(r.changed)
	r.changed = make(chan struct{})
	r.mu.Unlock()
	r.checkCaughtUp()
	if r.cfg.OnBatch != nil {
		for _, p := range done {
			r.cfg.OnBatch(p)
		}
	}
}

func (r *Runner[Tx]) progress(p int32) Progress {
	r.mu.Lock()
	defer r.mu.Unlock()
	if st := r.parts[p]; st != nil {
		return *st
	}
	return Progress{Partition: p, Next: NoCheckpoint}
}

// checkCaughtUp closes CaughtUp once the reader has its partitions and each
// has reached its end at take-over.
func (r *Runner[Tx]) checkCaughtUp() {
	r.mu.Lock()
	defer r.mu.Unlock()
	select {
	case <-r.caughtUp:
		return
	default:
	}
	if !r.assigned && r.cfg.Group != "" {
		return
	}
	for _, st := range r.parts {
		if !st.CaughtUp {
			return
		}
	}
	close(r.caughtUp)
}

// CaughtUp is closed once every partition the reader serves has been
// applied up to its end offset at the moment the reader took it over (in a
// group: the partitions of its first assignment). A service marks itself
// ready then.
func (r *Runner[Tx]) CaughtUp() <-chan struct{} { return r.caughtUp }

// Progress returns where each partition the reader serves now stands,
// ascending by partition.
func (r *Runner[Tx]) Progress() []Progress {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]Progress, 0, len(r.parts))
	for _, p := range slices.Sorted(maps.Keys(r.parts)) {
		out = append(out, *r.parts[p])
	}
	return out
}

// Fenced returns how many commits the store refused because another reader
// had claimed the partition.
func (r *Runner[Tx]) Fenced() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.fenced
}

// StoreFailures returns how many times the store failed (a lost
// connection, a failed COMMIT): each is retried as Config.Failures says.
func (r *Runner[Tx]) StoreFailures() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.storeFailures
}

// Lag returns, for each partition the reader serves, how many offsets lie
// between its checkpoint and the partition's end now.
func (r *Runner[Tx]) Lag(ctx context.Context) (map[int32]int64, error) {
	ps, err := r.cfg.Provider.Partitions(ctx)
	if err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	lag := make(map[int32]int64, len(r.parts))
	for _, p := range ps {
		if st := r.parts[p.ID]; st != nil {
			next := st.Next
			if next == NoCheckpoint {
				next = p.Low
			}
			lag[p.ID] = max(0, p.High-next)
		}
	}
	return lag, nil
}
