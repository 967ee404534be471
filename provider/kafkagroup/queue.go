package kafkagroup

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/provider"
)

// Append is a member's Append on its way through a transaction: queued,
// then taken by one transaction, or cancelled by its caller first.
type Append struct {
	Records []event.Record
	Parts   []int32 // the partition of each record
	Touched []int32 // its distinct partitions, ascending
	// Retried is set when the append runs again after another append's
	// record spoiled its transaction.
	Retried bool

	state  atomic.Int32
	done   chan result
	pushed time.Time // when it was queued, for the lanes' step timings
}

type result struct {
	positions []provider.Position
	err       error
}

const (
	queued int32 = iota
	taken
	cancelled
)

// NewAppend returns the append of records to a topic of n partitions,
// refusing a record without a key (it has no partition). prefix starts
// errors.
func NewAppend(prefix string, records []event.Record, n int) (*Append, error) {
	a := &Append{Records: records, Parts: make([]int32, len(records)), done: make(chan result, 1)}
	for i, rec := range records {
		if len(rec.Key) == 0 {
			return nil, fmt.Errorf("%s: append record %d: empty key", prefix, i)
		}
		a.Parts[i] = provider.PartitionFor(rec.Key, n)
	}
	a.Touched = slices.Compact(slices.Sorted(slices.Values(a.Parts)))
	return a, nil
}

// Append is a member's Append up to its transaction (Lanes.Append): it refuses what
// cannot be appended, admits the append (Admit), hands it to push (which
// queues it for a producer) and waits for its outcome (Wait). prefix starts
// errors.
func (t *Table) Append(ctx context.Context, prefix string, records []event.Record, push func(*Append)) ([]provider.Position, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if t.Closing() {
		return nil, provider.ErrClosed
	}
	if len(records) == 0 {
		return nil, nil
	}
	a, err := NewAppend(prefix, records, len(t.parts))
	if err != nil {
		return nil, err
	}
	if err := t.Admit(ctx, a.Parts, a.Touched); err != nil {
		return nil, err
	}
	push(a)
	return t.Wait(ctx, a)
}

// The bounds of a member's transactions.
const (
	// MaxTxnRecords bounds the records of one transaction.
	MaxTxnRecords = 10_000
	// StaleGenerationWait is how long a transaction refused for an old
	// generation waits for the member's metadata to show the new one
	// before it runs again: a rebalance moves every member's generation
	// on, also of members that keep their partitions, and the member's
	// rejoin answer arrives within moments of the coordinator's move.
	StaleGenerationWait = time.Second
	// MaxTxnAttempts bounds the runs of one batch refused for an old
	// generation.
	MaxTxnAttempts = 3
)

// Finish ends an append a transaction took (or one never sent): its count
// in flight ends, and its caller gets the outcome.
func (t *Table) Finish(a *Append, positions []provider.Position, err error) {
	t.Release(a.Touched)
	a.done <- result{positions: positions, err: err}
}

// laneSteps are what runLane calls on a lane, on its goroutine.
type laneSteps struct {
	// broken reports whether the producer must be replaced before the next
	// transaction; settle replaces it, false once the lane stops.
	broken func() bool
	settle func() bool
	// commit runs a batch in a transaction, ends its appends, and returns
	// those to run again (finishAll).
	commit func(batch []*Append) (again []*Append)
}

// runLane is a lane's loop: one transaction after the other, replacing a
// broken producer first, until stop. Appends to run again go first, one per
// transaction: a record the broker refuses spoils its whole produce batch,
// so a transaction of one tells whose record it was. Then whatever q holds
// (Next). Each transaction holds a slot (InFlight): Next returns its batch
// with one, an append to run again takes one itself. Appends still held
// when the lane stops fail with provider.ErrClosed.
func (t *Table) runLane(q *Queue, stop <-chan struct{}, l laneSteps) {
	var again []*Append
	for {
		if l.broken() && !l.settle() {
			break
		}
		var batch []*Append
		if len(again) > 0 {
			batch, again = again[:1], again[1:]
			if !q.acquire(stop) {
				again = append(batch, again...)
				break
			}
		} else {
			var ok bool
			if batch, ok = q.Next(MaxTxnRecords, stop); !ok {
				break
			}
		}
		again = append(again, l.commit(batch)...)
		q.release()
	}
	for _, a := range again {
		t.Finish(a, nil, provider.ErrClosed)
	}
}

// Outcome is what a transaction of a batch of appends came to.
type Outcome struct {
	Positions [][]provider.Position // of each append, on success
	Err       error                 // for every append, on failure
	// Culprits are the appends whose own records the log refused (too
	// large, invalid), by index: the others were not at fault.
	Culprits map[int]error
}

// finishAll ends the appends of batch with their transaction's outcome. It
// returns those to run again, each in a transaction of its own, once, if
// rerun: the appends of a transaction that a refused record spoiled, the
// culprits included unless alone in it — a broker that refuses a record
// (too large, invalid) refuses its whole produce batch, so the culprit is
// certain only in a transaction of one.
//
// A lane whose producer must be replaced first passes rerun false: the
// replacement may take until the brokers answer, and appends held for it
// would hold up a revocation or Close that waits for them; they fail now
// with the transaction's error instead (nothing of it is visible).
func (t *Table) finishAll(batch []*Append, o Outcome, rerun bool) (again []*Append) {
	for i, a := range batch {
		switch {
		case o.Err == nil:
			t.Finish(a, o.Positions[i], nil)
		case o.Culprits[i] != nil && (len(batch) == 1 || a.Retried || !rerun):
			t.Finish(a, nil, o.Culprits[i])
		case rerun && len(o.Culprits) > 0 && !a.Retried:
			a.Retried = true
			again = append(again, a)
		default:
			t.Finish(a, nil, o.Err)
		}
	}
	return again
}

// Wait returns the outcome of an admitted, queued append. When ctx ends
// while no transaction has taken it, it is cancelled and released; once
// taken, the outcome is waited for whatever ctx says, as the Member
// contract wants (the transaction's own bounds bound it).
func (t *Table) Wait(ctx context.Context, a *Append) ([]provider.Position, error) {
	select {
	case res := <-a.done:
		return res.positions, res.err
	case <-ctx.Done():
		if a.state.CompareAndSwap(queued, cancelled) {
			t.Release(a.Touched)
			return nil, ctx.Err()
		}
		res := <-a.done
		return res.positions, res.err
	}
}

// Queue holds the appends waiting for a producer's next transaction, and
// the lanes' turns to run one. It is safe for concurrent use.
type Queue struct {
	mu   sync.Mutex
	q    []*Append
	wake chan struct{} // a token when the queue grows
	turn chan struct{} // held by the lane in Next: one gathers a batch at a time
	// slots holds a token per transaction that may run now; a lane takes
	// one before its transaction and gives it back after (runLane).
	slots chan struct{}

	lastBatch int // appends in the last batch Next returned, for Next only
}

// NewQueue returns an empty queue for lanes, of which at most inflight
// run a transaction at a time (InFlight).
func NewQueue(inflight int) *Queue {
	q := &Queue{wake: make(chan struct{}, 1), turn: make(chan struct{}, 1), slots: make(chan struct{}, inflight)}
	q.turn <- struct{}{}
	for range inflight {
		q.slots <- struct{}{}
	}
	return q
}

// InFlight is how many of n lanes run a transaction at a time: all but
// one, and the one when n is 1. The lanes take turns: while a lane runs
// its transaction, a lane that waited holds Next's turn and waits for the
// slot, then takes every append queued meanwhile, and the lane that has
// committed queues behind it for the turn, so with n > 1 a transactional
// id rests for at least one other transaction before its next. Why: the
// coordinator answers CONCURRENT_TRANSACTIONS to the first request of a
// transactional id's next transaction while it still writes the markers of
// the one before, and the request is retried only after a backoff (20 ms,
// the partition leader's add.partitions.to.txn.retry.backoff.ms or
// librdkafka's own), which a lane that starts again at once met in up to
// half of its transactions (README, "Where a fenced transaction's time
// goes"). Two lanes thus run one transaction at a time, alternately, each
// as large as one lane's.
func InFlight(n int) int { return max(n-1, 1) }

// acquire takes a transaction slot, false once stop is closed.
func (q *Queue) acquire(stop <-chan struct{}) bool {
	select {
	case <-q.slots:
		return true
	case <-stop:
		return false
	}
}

// release gives the slot back.
func (q *Queue) release() { q.slots <- struct{}{} }

// Push queues a.
func (q *Queue) Push(a *Append) {
	a.pushed = time.Now()
	q.mu.Lock()
	q.q = append(q.q, a)
	q.mu.Unlock()
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// Wake receives a token when the queue has grown since the last one.
func (q *Queue) Wake() <-chan struct{} { return q.wake }

// Len returns the number of appends queued.
func (q *Queue) Len() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return len(q.q)
}

// Pop removes the first queued appends, up to maxRecords records (at least
// one append), and returns those not cancelled, now taken.
func (q *Queue) Pop(maxRecords int) (batch []*Append) {
	q.mu.Lock()
	n, records := 0, 0
	for n < len(q.q) && (n == 0 || records+len(q.q[n].Records) <= maxRecords) {
		records += len(q.q[n].Records)
		n++
	}
	grabbed := slices.Clone(q.q[:n])
	q.q = slices.Delete(q.q, 0, n)
	q.mu.Unlock()
	for _, a := range grabbed {
		// An append whose context ended first has returned already.
		if a.state.CompareAndSwap(queued, taken) {
			batch = append(batch, a)
		}
	}
	return batch
}

// GatherWait bounds how long Next waits for appends to join a batch.
const GatherWait = time.Millisecond

// Next waits for queued appends, then for a transaction slot, and returns
// the next batch (as Pop does) for one transaction, with the slot held: the
// caller releases it once the transaction has ended. ok is false once stop
// is closed, with no slot held.
//
// The batch is taken once the slot is held, not before: a lane that took
// its batch and then waited for the slot would run the appends queued
// while it waited in a transaction after its own, and under steady load
// two lanes' batches would halve (measured: 29 appends per transaction
// against 58 at 64 closed-loop appenders, 0.6× the commands).
//
// When fewer appends are queued than the last batch carried, Next first
// waits up to GatherWait for as many: appenders acknowledged by that
// transaction are queueing their next appends at this moment, and without
// the wait the next transaction would start with the quickest of them and
// leave the others for the one after, halving the transactions' size under
// steady load. A lone appender never waits (its last batch was one append).
// One lane at a time is in Next (its turn).
func (q *Queue) Next(maxRecords int, stop <-chan struct{}) (batch []*Append, ok bool) {
	select {
	case <-q.turn:
	case <-stop:
		return nil, false
	}
	defer func() { q.turn <- struct{}{} }()
	for {
		for q.Len() == 0 {
			select {
			case <-q.wake:
			case <-stop:
				return nil, false
			}
		}
		// The slot once appends wait, the batch once the slot is held:
		// the batch takes every append queued behind the transaction
		// before, and a lane holds a slot only while a batch is about to
		// run, never while it waits for appends (those could be waiting
		// for appends to run again that another lane holds: runLane).
		if !q.acquire(stop) {
			return nil, false
		}
		if n := q.Len(); n > 0 && n < q.lastBatch {
			q.gather(stop)
		}
		batch := q.Pop(maxRecords)
		if len(batch) > 0 {
			q.lastBatch = len(batch)
			return batch, true
		}
		q.release() // every append was cancelled: wait again
	}
}

// gather waits, up to GatherWait, until as many appends are queued as the
// last batch carried.
func (q *Queue) gather(stop <-chan struct{}) {
	t := time.NewTimer(GatherWait)
	defer t.Stop()
	for {
		select {
		case <-q.wake:
			if q.Len() >= q.lastBatch {
				return
			}
		case <-t.C:
			return
		case <-stop:
			return
		}
	}
}

// Fail ends every queued append with err (nothing of them was sent).
func (t *Table) Fail(q *Queue, err error) {
	q.mu.Lock()
	all := q.q
	q.q = nil
	q.mu.Unlock()
	for _, a := range all {
		if a.state.CompareAndSwap(queued, taken) {
			t.Finish(a, nil, err)
		}
	}
}

// replace replaces a member's broken transactional producer: it calls
// reset, which makes a new one under the same transactional id (whose
// initialisation completes or aborts what the old one left open), until it
// succeeds (true) or stop is closed (false), backing off from 100 ms to 5 s;
// the appends queued meanwhile fail with reset's error. Once reset
// succeeded, the partitions of a commit of unknown outcome (unsettled) are
// settled.
func (t *Table) replace(q *Queue, stop <-chan struct{}, unsettled []int32, reset func(context.Context) error, log *slog.Logger) bool {
	for backoff := 100 * time.Millisecond; ; backoff = min(2*backoff, 5*time.Second) {
		err := reset(context.Background())
		if err == nil {
			t.Settle(unsettled)
			return true
		}
		log.Warn("replacing a transactional producer failed; retrying", "err", err, "in", backoff)
		t.Fail(q, err)
		select {
		case <-stop:
			return false
		case <-time.After(backoff):
		}
	}
}

// shutdown ends a member's transactional producer's queue at Close. A
// broken producer is replaced once more first (reset), so that a
// transaction it left open ends now rather than at the transaction timeout,
// which a successor would wait for. The caller then closes the producer.
func (t *Table) shutdown(q *Queue, broken bool, unsettled []int32, reset func(context.Context) error, log *slog.Logger) {
	if broken {
		if err := reset(context.Background()); err != nil {
			log.Warn("close: could not end the open transaction; the broker aborts it after the transaction timeout", "err", err)
		} else {
			t.Settle(unsettled)
		}
	}
	t.Fail(q, provider.ErrClosed)
}
