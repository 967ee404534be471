package kafkagroup

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"sync"
	"time"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/provider"
)

// Lanes are a member's transactional producers, its lanes, and the appends
// queued for them. The lanes take turns: n of them run at most n−1
// transactions at a time (one when n is 1; InFlight says why), and the
// lane whose turn it is takes the next batch of what is queued, so with
// three or more one produces its transaction while another commits the
// one before (pipelining). One lane runs one transaction at a time:
// everything queued when it starts rides in it (group commit), and every
// append of it is acknowledged after its commit.
//
// A transaction is (lane.transact):
//
//  1. Producer.Begin, then Producer.Produce of every record to its
//     partition, waiting for every record's outcome: the records are in
//     the log, invisible to read-committed readers, and their offsets
//     known.
//  2. Producer.SendOffsets with the member's group metadata read just
//     before (Client.Metadata), refused here when it names no membership,
//     and an offset for every partition written, the offset's metadata
//     naming the producer (Leavers). The group coordinator checks
//     generation and member id here: this is the fence. Where the producer
//     allows it (ConcurrentFencer) and the member's lanes have committed on
//     every partition of the batch before, the fence is sent while the
//     records are produced, on a goroutine of its own, with the end of what
//     they committed on each (Lanes.ends); otherwise after the produce,
//     with the end of what the transaction wrote. Either is a
//     real offset (clients send nothing for logical ones, and nothing
//     would be checked) no later than the end of the partition, which is
//     all a takeover asks of it (Table.Stable); the commit waits for both
//     steps either way, so the order of the two changes nothing of what
//     can commit.
//  3. Producer.Commit, once both steps succeeded.
//
// What a failure means for the appends of the transaction:
//
//   - Before Commit was called, nothing can become visible: no commit is
//     ever asked for, and the transaction ends aborted (by Abort, by the
//     next initialisation of its transactional id, or by the broker's
//     transaction timeout). The appends fail with provider.ErrNotOwner when
//     the coordinator refused the member, provider.ErrUnavailable
//     otherwise. A refusal for an old generation of a member the
//     coordinator still knows runs the batch again once the member's
//     metadata shows the new one (up to MaxTxnAttempts runs, within
//     StaleGenerationWait each), as long as the member owns its partitions.
//   - After Commit was called, the transaction is known not to be
//     committed only if Abort succeeds; otherwise its appends fail with
//     provider.ErrOutcomeUnknown, their partitions are unsettled, and the
//     lane replaces its producer before anything else: the new producer's
//     initialisation under the same transactional id completes or aborts
//     whatever the old one left, so once it returns the outcome is final
//     and visible. An append to an unsettled partition waits for that
//     (through any lane), which keeps a partition's appends ordered across
//     an unknown outcome: an append that starts after another returned
//     lands after it, if at all.
//   - A record the log refused for what it is (ClassRecordRefused) spoils
//     its whole transaction: the appends run again, each alone, once
//     (Table.finishAll).
//
// Lanes are safe for concurrent use.
type Lanes struct {
	cfg   LanesConfig
	own   *Table
	c     Client
	queue *Queue
	lanes []*lane

	mu      sync.Mutex
	stop    chan struct{} // closed by Close, under mu
	closed  bool
	started bool // the lanes' goroutines run
	// ends is, for each partition, the end of what the member's lanes
	// have committed there (the highest next offset a committed
	// transaction sent), under mu: what an early fence sends.
	ends map[int32]int64
}

// LanesConfig is what a member's Lanes are.
type LanesConfig struct {
	// Name starts errors: "<client>: group <group>".
	Name  string
	Topic string
	// TxIDs are the lanes' transactional ids, one lane each (TxIDs).
	TxIDs []string
	// Timeout bounds each producer's initialisation.
	Timeout time.Duration
	// DeliveryBound bounds Producer.Produce's wait.
	DeliveryBound time.Duration
	Log           *slog.Logger
}

// TxnCommittedMsg is the message of the record a lane logs at TxnLevel for
// every transaction it committed, with its appends and partitions, their
// mean wait in the queue and the time of each step (queued, produce,
// send_offsets, commit: time.Duration values).
const TxnCommittedMsg = "transaction committed"

// TxnLevel is the level of TxnCommittedMsg: below Debug, so that a handler
// enabled for Debug (and a client that narrates at Debug when its logger
// is) does not get a record per transaction; a benchmark enables it alone.
const TxnLevel = slog.LevelDebug - 4

// TxIDs returns the transactional ids of n lanes of a member of group
// named instance: stable across the instance's restarts, so that a
// restarted instance's producers fence its predecessor's and end what they
// left open, and distinct across instances, so that no instance's
// initialisation fences another's producers.
func TxIDs(group, instance string, n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("%s-%s-%d", group, instance, i)
	}
	return ids
}

// NewLanes returns the lanes of a member whose ownership is own, on client
// c. Start initialises them.
func NewLanes(own *Table, c Client, cfg LanesConfig) *Lanes {
	ls := &Lanes{cfg: cfg, own: own, c: c, queue: NewQueue(InFlight(len(cfg.TxIDs))), stop: make(chan struct{}), ends: make(map[int32]int64)}
	for _, txid := range cfg.TxIDs {
		ls.lanes = append(ls.lanes, &lane{
			ls:   ls,
			txid: txid,
			log:  cfg.Log.With("transactional_id", txid),
			done: make(chan struct{}),
		})
	}
	return ls
}

// Start initialises every lane's producer, which ends whatever a previous
// incarnation of the instance left open under the same transactional ids,
// and starts the lanes. ctx bounds the initialisations. On error nothing
// runs, and Close is still to be called.
func (ls *Lanes) Start(ctx context.Context) error {
	errs := make([]error, len(ls.lanes))
	var wg sync.WaitGroup
	for i, l := range ls.lanes {
		wg.Go(func() { errs[i] = l.start(ctx) })
	}
	wg.Wait()
	ls.mu.Lock()
	defer ls.mu.Unlock()
	err := errors.Join(errs...)
	if err == nil && ls.closed {
		err = provider.ErrClosed
	}
	if err != nil {
		for _, l := range ls.lanes {
			l.closeProducer()
		}
		return err
	}
	ls.started = true
	for _, l := range ls.lanes {
		go l.run()
	}
	return nil
}

// Attach sets the member's lanes (set, called with mu held) unless the
// member is closing, then starts them (Start). A member's Close that reads
// its lanes under mu after Table.Close so either finds them, or makes this
// fail with provider.ErrClosed.
func (ls *Lanes) Attach(ctx context.Context, mu sync.Locker, set func(*Lanes)) error {
	mu.Lock()
	if ls.own.Closing() {
		mu.Unlock()
		return provider.ErrClosed
	}
	set(ls)
	mu.Unlock()
	return ls.Start(ctx)
}

// Append is a member's Append: it admits the append (Table.Append), queues
// it for the next free lane, and waits for its outcome. prefix starts
// errors.
func (ls *Lanes) Append(ctx context.Context, prefix string, records []event.Record) ([]provider.Position, error) {
	return ls.own.Append(ctx, prefix, records, ls.queue.Push)
}

// Close stops the lanes: each ends the transaction it runs, replaces a
// broken producer once more (so that what it left open ends now rather
// than at the transaction timeout), fails what is still queued with
// provider.ErrClosed, and closes its producer. Call it after the member's
// partitions were revoked.
func (ls *Lanes) Close() {
	ls.mu.Lock()
	if !ls.closed {
		ls.closed = true
		close(ls.stop)
	}
	started := ls.started
	ls.mu.Unlock()
	if started {
		for _, l := range ls.lanes {
			<-l.done
		}
	}
}

// lane is one transactional producer of a member.
type lane struct {
	ls   *Lanes
	txid string
	log  *slog.Logger
	done chan struct{}

	// Owned by the lane's goroutine once it runs:
	p         Producer
	broken    bool    // the producer must be replaced before the next transaction
	unsettled []int32 // partitions of a commit of unknown outcome, until the replacement settles it
}

// run is the lane's goroutine: one transaction after the other with what
// is queued, replacing a broken producer first, until Close.
func (l *lane) run() {
	defer close(l.done)
	own := l.ls.own
	own.runLane(l.ls.queue, l.ls.stop, laneSteps{
		broken: func() bool { return l.broken },
		settle: l.settle,
		commit: l.commit,
	})
	own.shutdown(l.ls.queue, l.broken, l.unsettled, l.reset, l.log)
	l.closeProducer()
}

// start initialises the lane's first producer (reset), trying again while
// the brokers answer provider.ErrUnavailable, for up to the lanes' Timeout
// (untilAvailable): on a fresh cluster the first initialisation meets the
// transaction coordinator while __transaction_state is created and loaded
// (NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS), which franz-go's own
// retries can outlast, and a member's start must wait for it, not fail.
func (l *lane) start(ctx context.Context) error {
	return untilAvailable(ctx, l.ls.cfg.Timeout, func() error {
		err := l.reset(ctx)
		if err != nil {
			l.log.Debug(l.ls.cfg.Name+": initialising a transactional producer failed", "err", err)
		}
		return err
	})
}

// reset replaces the lane's producer by a new one with the same
// transactional id, initialised (Client.NewProducer).
func (l *lane) reset(ctx context.Context) error {
	l.closeProducer()
	ctx, cancel := context.WithTimeout(ctx, l.ls.cfg.Timeout)
	defer cancel()
	p, err := l.ls.c.NewProducer(ctx, l.txid)
	if err != nil {
		return fmt.Errorf("%s: init transactions of %s: %w", l.ls.cfg.Name, l.txid, err)
	}
	l.p = p
	return nil
}

func (l *lane) closeProducer() {
	if l.p != nil {
		l.p.Close()
		l.p = nil
	}
}

// settle replaces the broken producer (Table.replace).
func (l *lane) settle() bool {
	if !l.ls.own.replace(l.ls.queue, l.ls.stop, l.unsettled, l.reset, l.log) {
		return false
	}
	l.broken, l.unsettled = false, nil
	return true
}

// commit runs batch in a transaction and ends its appends. It returns the
// appends to run again in a transaction of their own: those whose
// transaction another append's refused record spoiled.
func (l *lane) commit(batch []*Append) []*Append {
	ls := l.ls
	for attempt := 1; ; attempt++ {
		// A revocation that started since the append was queued does not
		// wait for it: the append is refused before anything is sent.
		batch = slices.DeleteFunc(batch, func(a *Append) bool {
			if ls.own.OwnsAll(a.Touched) {
				return false
			}
			ls.own.Finish(a, nil, fmt.Errorf("%s: partitions %v: revoked before the append was sent: %w", ls.cfg.Name, a.Touched, provider.ErrNotOwner))
			return true
		})
		if len(batch) == 0 {
			return nil
		}
		res := l.transact(batch)
		if res.staleGeneration != nil && attempt < MaxTxnAttempts && l.awaitNewGeneration(*res.staleGeneration, batch) {
			continue // nothing was written: run it under the new generation
		}
		return ls.own.finishAll(batch, res.Outcome, !l.broken)
	}
}

// awaitNewGeneration waits, briefly, for the member's metadata to move past
// the generation the coordinator refused, as long as the member still owns
// batch's partitions.
func (l *lane) awaitNewGeneration(old Metadata, batch []*Append) bool {
	deadline := time.Now().Add(StaleGenerationWait)
	owns := func() bool {
		return !slices.ContainsFunc(batch, func(a *Append) bool { return !l.ls.own.OwnsAll(a.Touched) })
	}
	for time.Now().Before(deadline) && owns() {
		if md, err := l.ls.c.Metadata(); err == nil && (md.Generation != old.Generation || md.MemberID != old.MemberID) {
			return true
		}
		select {
		case <-l.ls.stop:
			return false
		case <-time.After(10 * time.Millisecond): // the rejoin answer is processed by the client's own goroutines
		}
	}
	return false
}

type txnResult struct {
	Outcome
	// staleGeneration is the metadata the coordinator refused as an old
	// generation of a member it still knows.
	staleGeneration *Metadata
}

// allFailed is the result of a transaction that failed for every append.
func allFailed(err error) txnResult { return txnResult{Outcome: Outcome{Err: err}} }

// fenceResult is what a transaction's SendOffsets answered, with the
// metadata it sent.
type fenceResult struct {
	md       Metadata
	answered bool
	err      error
	// refused is Lanes.metadata's error: nothing was sent.
	refused error
}

// transact runs one transaction of batch. See Lanes for what each step and
// failure means.
func (l *lane) transact(batch []*Append) txnResult {
	ls := l.ls
	t0 := time.Now()
	if err := l.p.Begin(); err != nil {
		if !errors.Is(err, provider.ErrUnavailable) {
			l.broken = true
		}
		return allFailed(ls.appendError(provider.ErrUnavailable, "begin transaction", err))
	}

	// 2, early: the fence, on its own goroutine while the records are
	// produced, where the producer allows it and the member has committed
	// on every partition of the batch before (earlyFence: the offsets
	// sent are the ends of those commits).
	var early chan fenceResult
	if ends := l.earlyFence(batch); ends != nil {
		early = make(chan fenceResult, 1)
		p := l.p
		go func() { early <- ls.sendFence(p, ends) }()
	}
	// awaitFence waits for the early fence, if any: no other call of the
	// producer overlaps SendOffsets. It reports false when the producer
	// was given up in it (it closes itself; the lane must not touch it).
	awaitFence := func() (fenceResult, bool) {
		if early == nil {
			return fenceResult{answered: true}, true
		}
		f := <-early
		early = nil
		if !f.answered {
			l.p, l.broken = nil, true
		}
		return f, f.answered
	}

	// 1. Produce, and wait for every record's outcome.
	offsets, errs, answered := l.p.Produce(batch, ls.cfg.DeliveryBound)
	produced := time.Now()
	if !answered {
		// No commit was asked for: nothing of the transaction can become
		// visible, and the replacement's initialisation aborts it.
		awaitFence()
		l.broken = true
		return allFailed(ls.appendError(provider.ErrUnavailable, "produce", fmt.Errorf("no answer within %v", ls.cfg.DeliveryBound)))
	}
	positions := make([][]provider.Position, len(batch))
	next := make(map[int32]int64)
	culprits := make(map[int]error)
	var failed error
	for bi, a := range batch {
		positions[bi] = make([]provider.Position, len(a.Records))
		for i, err := range errs[bi] {
			if err == nil {
				positions[bi][i] = provider.Position{Partition: a.Parts[i], Offset: offsets[bi][i]}
				next[a.Parts[i]] = max(next[a.Parts[i]], offsets[bi][i]+1)
				continue
			}
			if errors.Is(err, ErrNotSent) {
				continue
			}
			err = fmt.Errorf("record %d of %d: %w", i+1, len(a.Records), err)
			if ls.c.Class(err) == ClassRecordRefused {
				culprits[bi] = cmp(culprits[bi], ls.appendError(nil, "produce", err))
			}
			// The first error that says something of its own record.
			if failed == nil || ls.c.Class(failed) == ClassPurged {
				failed = err
			}
		}
	}
	if failed != nil {
		f, ok := awaitFence()
		if ok && ls.c.Class(failed) == ClassPurged && f.err != nil {
			// No record failed of its own: the early fence's refusal
			// failed the transaction, and the client dropped its records
			// (librdkafka purges them once SendOffsetsToTransaction is
			// refused). The fence's error says why. (A fence refused
			// here, before it was sent, cannot have dropped them.)
			res, _ := l.fenced(f)
			return res
		}
		if ok {
			l.abort()
		}
		if len(culprits) > 0 {
			failed = fmt.Errorf("transaction aborted for another append's record: %w", failed)
		}
		return txnResult{Outcome: Outcome{Err: ls.appendError(provider.ErrUnavailable, "produce", failed), Culprits: culprits}}
	}

	// 2. The fence, unless sent early: offsets of every partition written,
	// with fresh group metadata.
	var f fenceResult
	if early != nil {
		f, _ = awaitFence()
	} else {
		f = ls.sendFence(l.p, next)
	}
	sent := time.Now()
	if res, ok := l.fenced(f); !ok {
		return res
	}

	// 3. Commit.
	if err := l.p.Commit(); err != nil {
		// Only a successful abort proves the commit did not happen.
		if l.abortable(err) && l.abort() {
			return allFailed(ls.appendError(provider.ErrUnavailable, "commit", err))
		}
		l.broken = true
		l.unsettled = slices.Sorted(maps.Keys(next))
		ls.own.Unsettle(l.unsettled)
		return allFailed(ls.appendError(provider.ErrOutcomeUnknown, "commit", err))
	}
	ls.committed(next)
	// Where a transaction's time goes, for whoever measures it (the
	// bench): a log handler that is not enabled for TxnLevel costs a check.
	if ctx := context.Background(); l.log.Enabled(ctx, TxnLevel) {
		var queued time.Duration
		for _, a := range batch {
			queued += t0.Sub(a.pushed)
		}
		l.log.Log(ctx, TxnLevel, TxnCommittedMsg, "appends", len(batch), "partitions", len(next), "queued", queued/time.Duration(len(batch)),
			"produce", produced.Sub(t0), "send_offsets", sent.Sub(produced), "commit", time.Since(sent))
	}
	return txnResult{Outcome: Outcome{Positions: positions}}
}

// sendFence sends the fence with p: the member's group metadata read now,
// and the offsets next.
func (ls *Lanes) sendFence(p Producer, next map[int32]int64) fenceResult {
	md, err := ls.metadata()
	if err != nil {
		return fenceResult{answered: true, refused: err}
	}
	answered, err := p.SendOffsets(md, next)
	return fenceResult{md: md, answered: answered, err: err}
}

// fenced tells what the fence's answer f means for the transaction: ok
// to go on to the commit, or the transaction's result (see Lanes).
func (l *lane) fenced(f fenceResult) (res txnResult, ok bool) {
	ls := l.ls
	if f.refused != nil {
		l.abort()
		return allFailed(f.refused), false
	}
	if !f.answered {
		// Given up: it closes itself once the call returns, and its
		// transaction is never committed; the replacement's
		// initialisation fences it and aborts the transaction.
		l.p, l.broken = nil, true
		return allFailed(ls.appendError(provider.ErrUnavailable, "send offsets to transaction", f.err)), false
	}
	if f.err == nil {
		return txnResult{}, true
	}
	switch class := ls.c.Class(f.err); class {
	case ClassRefused, ClassStaleGeneration:
		l.abort()
		res := allFailed(fmt.Errorf("%s refused member %s at generation %d: %w: %w", ls.cfg.Name, f.md.MemberID, f.md.Generation, provider.ErrNotOwner, f.err))
		if class == ClassStaleGeneration {
			res.staleGeneration = &f.md
		}
		return res, false
	case ClassFatal:
		l.broken = true // replacing it aborts the transaction
	default:
		l.abort()
	}
	return allFailed(ls.appendError(provider.ErrUnavailable, "send offsets to transaction", f.err)), false
}

// abortable reports whether a failed commit leaves an abort possible: the
// transaction failed before the commit took effect. A commit that timed out
// or whose producer is unusable cannot be aborted.
func (l *lane) abortable(commitErr error) bool {
	switch l.ls.c.Class(commitErr) {
	case ClassRetriable, ClassFatal:
		return false
	}
	return true
}

// abort aborts the open transaction and reports whether it did. On failure
// the producer must be replaced: the replacement aborts the transaction.
func (l *lane) abort() bool {
	if err := l.p.Abort(); err != nil {
		l.log.Debug(l.ls.cfg.Name+": abort failed; replacing the producer", "err", err)
		l.broken = true
		return false
	}
	return true
}

// earlyFence returns the offsets of batch's fence when the lane's producer
// may send it while the records are produced (ConcurrentFencer) and the
// member has committed on every partition of batch (committedEnds).
func (l *lane) earlyFence(batch []*Append) map[int32]int64 {
	if cf, ok := l.p.(ConcurrentFencer); !ok || !cf.FencesWhileProducing() {
		return nil
	}
	return l.ls.committedEnds(batch)
}

// committedEnds returns, for every partition batch writes, the end of what
// the member's lanes committed there (Lanes.ends); nil when one of them
// has none, where the fence waits for the produce's offsets.
func (ls *Lanes) committedEnds(batch []*Append) map[int32]int64 {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	ends := make(map[int32]int64)
	for _, a := range batch {
		for _, p := range a.Parts {
			end, ok := ls.ends[p]
			if !ok {
				return nil
			}
			ends[p] = end
		}
	}
	return ends
}

// committed records the ends next of a committed transaction.
func (ls *Lanes) committed(next map[int32]int64) {
	ls.mu.Lock()
	defer ls.mu.Unlock()
	for p, end := range next {
		ls.ends[p] = max(ls.ends[p], end)
	}
}

// metadata returns the member's group metadata now, refusing metadata that
// names no membership: the coordinator would accept it without any check.
func (ls *Lanes) metadata() (Metadata, error) {
	md, err := ls.c.Metadata()
	if err != nil {
		return Metadata{}, err
	}
	if !md.named() {
		return Metadata{}, fmt.Errorf("%s: the member is not in the group now (generation %d, member %q): %w",
			ls.cfg.Name, md.Generation, md.MemberID, provider.ErrNotOwner)
	}
	return md, nil
}

// appendError wraps err, marked with sentinel unless nil.
func (ls *Lanes) appendError(sentinel error, step string, err error) error {
	if sentinel == nil {
		return fmt.Errorf("%s: append to %s: %s: %w", ls.cfg.Name, ls.cfg.Topic, step, err)
	}
	if sentinel == provider.ErrUnavailable || sentinel == provider.ErrOutcomeUnknown {
		err = ls.c.Annotate(err)
	}
	return fmt.Errorf("%s: append to %s: %s: %w: %w", ls.cfg.Name, ls.cfg.Topic, step, sentinel, err)
}

// cmp keeps the first error.
func cmp(first, err error) error {
	if first != nil {
		return first
	}
	return err
}
