package kafkagroup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/provider"
)

// The group-member core (Table, Queue, Lanes, the outcomes) against
// txnLog, a model of what the brokers do with a member's transactions: a
// partitioned log whose records are pending until their transaction ends,
// producer epochs per transactional id (a newer initialisation fences the
// older producer, and ends the transaction it left open: committed if its
// commit reached the coordinator, aborted if not), and a group coordinator
// that knows one member at one generation. No broker, no sleeps but the
// short ones that show something does not happen.

// The fake brokers' errors, classified by txnLog.Class as a client's error
// table would.
var (
	errFenced        = errors.New("PRODUCER_FENCED")
	errUnknownMember = errors.New("UNKNOWN_MEMBER_ID")
	errIllegalGen    = errors.New("ILLEGAL_GENERATION")
	errTimedOut      = errors.New("REQUEST_TIMED_OUT")
)

type recState int

const (
	pending recState = iota
	committed
	aborted
)

type logRec struct {
	value string
	state recState
}

// txnLog is the brokers of one topic and one group, in memory.
type txnLog struct {
	t  *testing.T
	mu sync.Mutex

	// The group coordinator: the member it knows, at its generation.
	member Metadata
	// What the member's client believes (Client.Metadata).
	client    Metadata
	clientErr error

	parts  map[int32][]logRec
	epochs map[string]int      // transactional id → epoch of its newest producer
	open   map[string]*openTxn // transactional id → its open transaction
	live   int                 // producers not closed
	inits  int                 // NewProducer calls that succeeded
	stale  int                 // transactions begun on a producer after it was told it is fenced

	// Hooks, called without mu held.
	beforeCommit func(txid string)                  // e.g. waits for a gate
	commitFails  func(txid string) (lands, ok bool) // !ok: the commit times out; lands: it reached the coordinator
	initGate     chan struct{}                      // NewProducer waits for it to close, when set
	initDelay    func() time.Duration               // how long each NewProducer takes, when set
	initFailures int                                // the next NewProducer calls that fail
	gate         *gate                              // gateCommits's
}

type openTxn struct {
	recs       []struct{ part, off int32 }
	commitSent bool // EndTxn(commit) reached the coordinator
}

func newTxnLog(t *testing.T) *txnLog {
	md := Metadata{Generation: 1, MemberID: "m-1"}
	return &txnLog{t: t, member: md, client: md, parts: map[int32][]logRec{}, epochs: map[string]int{}, open: map[string]*openTxn{}}
}

// end ends txid's open transaction, committed or aborted.
func (l *txnLog) end(txid string, commit bool) {
	txn := l.open[txid]
	if txn == nil {
		return
	}
	for _, r := range txn.recs {
		if commit {
			l.parts[r.part][r.off].state = committed
		} else {
			l.parts[r.part][r.off].state = aborted
		}
	}
	delete(l.open, txid)
}

func (l *txnLog) NewProducer(ctx context.Context, txid string) (Producer, error) {
	l.mu.Lock()
	gate := l.initGate
	l.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if l.initDelay != nil {
		time.Sleep(l.initDelay()) // an initialisation's round trips
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.initFailures > 0 {
		l.initFailures--
		return nil, fmt.Errorf("init transactions: %w", errTimedOut)
	}
	return l.initLocked(txid), nil
}

// initLocked is InitProducerID: a new epoch, which fences the older
// producer, and the end of what it left open.
func (l *txnLog) initLocked(txid string) *txnProducer {
	l.epochs[txid]++
	if txn := l.open[txid]; txn != nil {
		l.end(txid, txn.commitSent)
	}
	l.inits++
	l.live++
	return &txnProducer{l: l, txid: txid, epoch: l.epochs[txid]}
}

func (l *txnLog) Metadata() (Metadata, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.client, l.clientErr
}

func (l *txnLog) Class(err error) Class {
	switch {
	case errors.Is(err, errFenced):
		return ClassFatal
	case errors.Is(err, errUnknownMember):
		return ClassRefused
	case errors.Is(err, errIllegalGen):
		return ClassStaleGeneration
	case errors.Is(err, errTimedOut):
		return ClassRetriable
	}
	return ClassAbortable
}

func (l *txnLog) Annotate(err error) error { return err }

// rebalance moves the coordinator to md; the member's client learns it
// only when told (learn).
func (l *txnLog) rebalance(md Metadata) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.member = md
}

func (l *txnLog) learn(md Metadata) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.client = md
}

// values returns partition p's records in offset order with their states.
func (l *txnLog) values(p int32) []logRec {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.parts[p])
}

// find returns the state of the record holding value, and whether it is
// in the log.
func (l *txnLog) find(value string) (recState, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, recs := range l.parts {
		for _, r := range recs {
			if r.value == value {
				return r.state, true
			}
		}
	}
	return 0, false
}

func (l *txnLog) initsNow() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.inits
}

func (l *txnLog) openTxns() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.open)
}

// txnProducer is one producer of txnLog.
type txnProducer struct {
	l      *txnLog
	txid   string
	epoch  int
	fenced bool // told so once
	closed bool
}

// current checks the producer's epoch, with l.mu held, as a broker does on
// every request of a transactional producer.
func (p *txnProducer) current() error {
	if p.closed {
		p.l.t.Errorf("%s: a call on a closed producer", p.txid)
	}
	if p.l.epochs[p.txid] != p.epoch {
		p.fenced = true
		return fmt.Errorf("%s epoch %d: %w", p.txid, p.epoch, errFenced)
	}
	return nil
}

func (p *txnProducer) Begin() error {
	p.l.mu.Lock()
	defer p.l.mu.Unlock()
	if p.closed {
		p.l.t.Errorf("%s: Begin on a closed producer", p.txid)
	}
	if p.l.open[p.txid] != nil {
		p.l.t.Errorf("%s: Begin with a transaction open", p.txid)
	}
	if p.fenced {
		p.l.stale++ // a transaction on a producer it was told is fenced
	}
	p.l.open[p.txid] = &openTxn{}
	return nil
}

func (p *txnProducer) Produce(batch []*Append, _ time.Duration) ([][]int64, [][]error, bool) {
	p.l.mu.Lock()
	defer p.l.mu.Unlock()
	offsets, errs := make([][]int64, len(batch)), make([][]error, len(batch))
	err := p.current()
	txn := p.l.open[p.txid]
	for bi, a := range batch {
		offsets[bi], errs[bi] = make([]int64, len(a.Records)), make([]error, len(a.Records))
		for i, rec := range a.Records {
			if err != nil {
				errs[bi][i] = err
				continue
			}
			part := a.Parts[i]
			offsets[bi][i] = int64(len(p.l.parts[part]))
			p.l.parts[part] = append(p.l.parts[part], logRec{value: string(rec.Value)})
			txn.recs = append(txn.recs, struct{ part, off int32 }{part, int32(offsets[bi][i])})
		}
	}
	return offsets, errs, true
}

func (p *txnProducer) SendOffsets(md Metadata, _ map[int32]int64) (bool, error) {
	p.l.mu.Lock()
	defer p.l.mu.Unlock()
	if err := p.current(); err != nil {
		return true, err
	}
	switch co := p.l.member; {
	case md.MemberID != co.MemberID:
		return true, fmt.Errorf("member %s: %w", md.MemberID, errUnknownMember)
	case md.Generation != co.Generation:
		return true, fmt.Errorf("generation %d: %w", md.Generation, errIllegalGen)
	}
	return true, nil
}

func (p *txnProducer) Commit() error {
	if hook := p.l.beforeCommit; hook != nil {
		hook(p.txid)
	}
	lands, ok := true, true
	if f := p.l.commitFails; f != nil {
		lands, ok = f(p.txid)
	}
	p.l.mu.Lock()
	defer p.l.mu.Unlock()
	if err := p.current(); err != nil {
		return err
	}
	if !ok {
		// The commit's answer is lost; whether the request reached the
		// coordinator shows when the next initialisation ends it.
		if lands {
			p.l.open[p.txid].commitSent = true
		}
		return fmt.Errorf("end transaction: %w", errTimedOut)
	}
	p.l.end(p.txid, true)
	return nil
}

func (p *txnProducer) Abort() error {
	p.l.mu.Lock()
	defer p.l.mu.Unlock()
	if err := p.current(); err != nil {
		return err
	}
	p.l.end(p.txid, false)
	return nil
}

func (p *txnProducer) Close() {
	p.l.mu.Lock()
	defer p.l.mu.Unlock()
	if !p.closed {
		p.closed = true
		p.l.live--
	}
}

// member is a Table and its Lanes on a txnLog, owning every partition of
// a topic of 4, as a provider's member is after its first assignment.
type member struct {
	l     *txnLog
	own   *Table
	lanes *Lanes
	gc    provider.GroupConfig
	// revoked records OnRevoked's calls.
	mu      sync.Mutex
	revoked [][]int32
	lost    []bool
}

func newMember(t *testing.T, l *txnLog, lanes int) *member {
	t.Helper()
	m := &member{l: l, own: New("test", 4, 5*time.Second)}
	m.gc = provider.GroupConfig{Group: "g", Instance: "i", OnRevoked: func(ids []int32, lost bool) {
		m.mu.Lock()
		defer m.mu.Unlock()
		m.revoked = append(m.revoked, ids)
		m.lost = append(m.lost, lost)
	}}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	m.own.Assigned([]int32{0, 1, 2, 3}, m.gc, log)
	m.lanes = NewLanes(m.own, l, LanesConfig{Name: "test", Topic: "t", TxIDs: TxIDs("g", "i", lanes),
		Timeout: 5 * time.Second, DeliveryBound: time.Second, Log: log})
	if err := m.lanes.Start(t.Context()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if l.gate != nil {
			l.gate.release() // Close waits for a held commit
		}
		m.close()
	})
	return m
}

// close is a provider's Close: no new appends, every partition revoked
// (waiting for what is in flight), then the lanes.
func (m *member) close() {
	m.own.Close()
	m.own.Revoked(m.own.Held(), false, m.gc, slog.New(slog.NewTextHandler(io.Discard, nil)))
	m.lanes.Close()
}

// keyOn returns a key (with prefix) whose records go to partition p.
func keyOn(prefix string, p int32) string {
	for i := 0; ; i++ {
		if k := fmt.Sprintf("%s-%d", prefix, i); provider.PartitionFor([]byte(k), 4) == p {
			return k
		}
	}
}

// appendAsync appends one record of value to key and sends the outcome.
func (m *member) appendAsync(key, value string) <-chan error {
	done := make(chan error, 1)
	go func() {
		_, err := m.lanes.Append(context.Background(), "test", []event.Record{{Key: []byte(key), Value: []byte(value)}})
		done <- err
	}()
	return done
}

func (m *member) append(key, value string) error { return <-m.appendAsync(key, value) }

// gate makes commits wait, each announcing itself on entered, until
// release.
type gate struct {
	entered chan string
	open    chan struct{}
	once    sync.Once
}

func (l *txnLog) gateCommits(t *testing.T) *gate {
	g := &gate{entered: make(chan string, 16), open: make(chan struct{})}
	l.beforeCommit = func(txid string) {
		g.entered <- txid
		<-g.open
	}
	l.gate = g
	return g
}

func (g *gate) release() { g.once.Do(func() { close(g.open) }) }

func (g *gate) waitEntered(t *testing.T) {
	t.Helper()
	select {
	case <-g.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("no commit within 5 s")
	}
}

// notWithin fails the test if ch delivers within d: what it shows is that
// something does not happen, which no condition can be polled for.
func notWithin[T any](t *testing.T, ch <-chan T, d time.Duration, what string) {
	t.Helper()
	select {
	case v := <-ch:
		t.Fatalf("%s, and it did (%v)", what, v)
	case <-time.After(d):
	}
}

func within[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: not within 5 s", what)
		panic("unreachable")
	}
}

func stateOf(t *testing.T, l *txnLog, value string) recState {
	t.Helper()
	st, ok := l.find(value)
	if !ok {
		t.Fatalf("%s is not in the log", value)
	}
	return st
}

// TestRevokeWaitsForTheTransactionInFlight: a revocation makes its
// partitions refuse new appends at once, but returns (lets the group move
// them) only once the transaction in flight on them has committed; an
// append still queued when the revocation started is refused before any
// of it is written.
func TestRevokeWaitsForTheTransactionInFlight(t *testing.T) {
	l := newTxnLog(t)
	g := l.gateCommits(t)
	m := newMember(t, l, 1)
	a, b := keyOn("a", 0), keyOn("b", 1)
	inFlight := m.appendAsync(a, "a1")
	g.waitEntered(t) // a1's transaction commits, held there; the only lane is busy
	queued := m.appendAsync(b, "b1")
	waitFor(t, func() bool { return m.lanes.queue.Len() == 1 })

	revoked := make(chan []int32, 1)
	go func() {
		revoked <- m.own.Revoke([]int32{0, 1})
	}()
	waitFor(t, func() bool { return !m.own.OwnsAll([]int32{0}) && !m.own.OwnsAll([]int32{1}) })
	if err := m.append(a, "a2"); !errors.Is(err, provider.ErrNotOwner) {
		t.Errorf("append to a partition being revoked: %v, want ErrNotOwner at once", err)
	}
	notWithin(t, revoked, 50*time.Millisecond, "the revocation returned while a transaction on its partition was committing")

	g.release()
	if err := within(t, inFlight, "the append in flight"); err != nil {
		t.Errorf("the append in flight during the revocation: %v, want it committed", err)
	}
	if err := within(t, queued, "the queued append"); !errors.Is(err, provider.ErrNotOwner) {
		t.Errorf("the append queued when the revocation started: %v, want ErrNotOwner", err)
	}
	within(t, revoked, "the revocation")
	if st := stateOf(t, l, "a1"); st != committed {
		t.Errorf("a1: state %d, want committed", st)
	}
	if _, ok := l.find("b1"); ok {
		t.Error("b1, refused as revoked, was written")
	}
	if _, ok := l.find("a2"); ok {
		t.Error("a2, refused as not owned, was written")
	}
}

// TestLostAssignment: a member whose session the coordinator ended (the
// group gave its partitions to another member) before its client noticed
// sends its old metadata: the coordinator refuses it, the transaction is
// aborted, and the append fails with ErrNotOwner; nothing of it is
// visible. The client's lost-partitions callback then revokes them with
// lost set, and appends fail at once.
func TestLostAssignment(t *testing.T) {
	l := newTxnLog(t)
	m := newMember(t, l, 2)
	a := keyOn("a", 2)
	if err := m.append(a, "before"); err != nil {
		t.Fatal(err)
	}
	l.rebalance(Metadata{Generation: 2, MemberID: "m-2"}) // another member, its session ended
	err := m.append(a, "after")
	if !errors.Is(err, provider.ErrNotOwner) || !errors.Is(err, errUnknownMember) {
		t.Fatalf("append of a member the coordinator dropped: %v, want ErrNotOwner (the coordinator's refusal)", err)
	}
	if st := stateOf(t, l, "after"); st != aborted {
		t.Errorf("the refused transaction's record: state %d, want aborted", st)
	}

	m.own.Revoked([]int32{0, 1, 2, 3}, true, m.gc, slog.New(slog.NewTextHandler(io.Discard, nil)))
	m.mu.Lock()
	if len(m.revoked) != 1 || len(m.revoked[0]) != 4 || !m.lost[0] {
		t.Errorf("OnRevoked calls %v lost %v, want one of the 4 partitions, lost", m.revoked, m.lost)
	}
	m.mu.Unlock()
	inits := l.initsNow()
	if err := m.append(a, "lost"); !errors.Is(err, provider.ErrNotOwner) {
		t.Errorf("append after the loss: %v, want ErrNotOwner", err)
	}
	if _, ok := l.find("lost"); ok || l.initsNow() != inits {
		t.Error("an append after the loss reached the producers")
	}

	// The client's own view gone (it left the group): refused before
	// anything is committed.
	m2 := newMember(t, newTxnLog(t), 1)
	m2.l.mu.Lock()
	m2.l.clientErr = fmt.Errorf("left the group: %w", provider.ErrNotOwner)
	m2.l.mu.Unlock()
	if err := m2.append(a, "left"); !errors.Is(err, provider.ErrNotOwner) {
		t.Errorf("append of a member that left: %v, want ErrNotOwner", err)
	}
	if st := stateOf(t, m2.l, "left"); st != aborted {
		t.Errorf("left: state %d, want aborted", st)
	}
}

// TestStaleGenerationRunsAgain: a rebalance that leaves the member its
// partitions moves its generation on; a transaction that sent the old one
// is refused by the coordinator and runs again, once the member's client
// has the new generation, and commits once.
func TestStaleGenerationRunsAgain(t *testing.T) {
	l := newTxnLog(t)
	m := newMember(t, l, 1)
	l.rebalance(Metadata{Generation: 2, MemberID: "m-1"})
	go func() {
		time.Sleep(50 * time.Millisecond) // the client's rejoin answer arrives a moment later
		l.learn(Metadata{Generation: 2, MemberID: "m-1"})
	}()
	if err := m.append(keyOn("a", 0), "v"); err != nil {
		t.Fatalf("append during a rebalance that kept the partition: %v, want it run again and committed", err)
	}
	recs := l.values(0)
	var states []recState
	for _, r := range recs {
		states = append(states, r.state)
	}
	if !slices.Equal(states, []recState{aborted, committed}) {
		t.Errorf("partition 0: states %v, want the refused run aborted, the second committed", states)
	}
}

// TestFencedProducerIsReplaced: a producer fenced by a newer one with its
// transactional id (an instance of the same name initialised late) fails
// its transaction, which nothing commits, and the lane replaces it before
// the next: the next append commits through a new producer, and the fenced
// one is never called again.
func TestFencedProducerIsReplaced(t *testing.T) {
	l := newTxnLog(t)
	m := newMember(t, l, 1)
	a := keyOn("a", 3)
	if err := m.append(a, "v1"); err != nil {
		t.Fatal(err)
	}
	l.mu.Lock()
	zombie := l.initLocked(TxIDs("g", "i", 1)[0]) // fences the lane's producer
	inits := l.inits
	l.mu.Unlock()
	err := m.append(a, "v2")
	if !errors.Is(err, provider.ErrUnavailable) || errors.Is(err, provider.ErrOutcomeUnknown) {
		t.Fatalf("append through a fenced producer: %v, want ErrUnavailable with a known outcome", err)
	}
	if st, ok := l.find("v2"); ok && st == committed {
		t.Error("v2, failed through a fenced producer, committed")
	}
	if err := m.append(a, "v3"); err != nil {
		t.Fatalf("append after the fence: %v, want it through a new producer", err)
	}
	if n := l.initsNow() - inits; n != 1 {
		t.Errorf("producers initialised after the fence: %d, want 1", n)
	}
	if st := stateOf(t, l, "v3"); st != committed {
		t.Errorf("v3: state %d, want committed", st)
	}
	zombie.Close()
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.stale > 0 {
		t.Errorf("%d transactions begun on the producer after it was told it is fenced", l.stale)
	}
}

// TestUnknownOutcomeSettlesBeforeTheNextAppend: a commit whose answer is
// lost fails its append with ErrOutcomeUnknown; the next append to the
// partition, through the other (free) lane, waits until the replacement of
// the first lane's producer has ended that transaction (committed when the
// commit had reached the coordinator, aborted when not), so that when the
// next is acknowledged, the earlier one's outcome is final and before it
// in the log.
func TestUnknownOutcomeSettlesBeforeTheNextAppend(t *testing.T) {
	for _, lands := range []bool{true, false} {
		t.Run(fmt.Sprintf("commit reached the coordinator=%v", lands), func(t *testing.T) {
			l := newTxnLog(t)
			m := newMember(t, l, 2)
			var failOnce atomic.Bool
			failOnce.Store(true)
			l.commitFails = func(string) (bool, bool) {
				if failOnce.CompareAndSwap(true, false) {
					return lands, false
				}
				return true, true
			}
			l.mu.Lock()
			l.initGate = make(chan struct{}) // the replacement waits
			l.mu.Unlock()
			a := keyOn("a", 1)
			if err := m.append(a, "first"); !errors.Is(err, provider.ErrOutcomeUnknown) {
				t.Fatalf("append whose commit's answer was lost: %v, want ErrOutcomeUnknown", err)
			}
			next := m.appendAsync(a, "next")
			notWithin(t, next, 50*time.Millisecond, "the next append to the partition ended before the unknown outcome was settled")
			if st := stateOf(t, l, "first"); st != pending {
				t.Fatalf("first: state %d before the replacement, want pending", st)
			}
			close(l.initGate)
			if err := within(t, next, "the next append"); err != nil {
				t.Fatal(err)
			}
			want := map[bool]recState{true: committed, false: aborted}[lands]
			recs := l.values(1)
			if len(recs) != 2 || recs[0].value != "first" || recs[0].state != want || recs[1].value != "next" || recs[1].state != committed {
				t.Errorf("partition 1: %+v, want first (state %d) then next (committed)", recs, want)
			}
		})
	}
}

// TestOrderWithinAPartition: appenders on keys of one partition through
// three lanes, with commits that take random times and some whose answer is
// lost (landed or not): an append that starts after another returned is
// after it in the log, and when it is acknowledged the other's outcome is
// final. The model is a logical clock of each append's start and return.
func TestOrderWithinAPartition(t *testing.T) {
	l := newTxnLog(t)
	rng := rand.New(rand.NewPCG(1, 2))
	var rmu sync.Mutex
	l.beforeCommit = func(string) {
		rmu.Lock()
		d := time.Duration(rng.IntN(2000)) * time.Microsecond
		rmu.Unlock()
		time.Sleep(d) // a commit's round trip, random so that lanes overtake each other
	}
	l.commitFails = func(string) (bool, bool) {
		rmu.Lock()
		defer rmu.Unlock()
		if rng.IntN(10) == 0 {
			return rng.IntN(2) == 0, false
		}
		return true, true
	}
	l.initDelay = func() time.Duration {
		rmu.Lock()
		defer rmu.Unlock()
		return time.Duration(rng.IntN(5000)) * time.Microsecond
	}
	m := newMember(t, l, 3)
	type op struct {
		value      string
		start, end int64
		err        error
		finalAtAck map[string]bool // values of earlier-returned appends: final when this one returned
	}
	var clock atomic.Int64
	var mu sync.Mutex
	var ops []*op
	returned := map[string]int64{} // value → its return tick
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Go(func() {
			key := keyOn(fmt.Sprintf("w%d", w), 0)
			for i := range 40 {
				o := &op{value: fmt.Sprintf("w%d-%d", w, i), start: clock.Add(1)}
				o.err = m.append(key, o.value)
				o.end = clock.Add(1)
				if o.err == nil {
					// What was final when it was acknowledged.
					mu.Lock()
					earlier := make([]string, 0, len(returned))
					for v, end := range returned {
						if end < o.start {
							earlier = append(earlier, v)
						}
					}
					mu.Unlock()
					l.mu.Lock()
					o.finalAtAck = map[string]bool{}
					for _, r := range l.parts[0] {
						if slices.Contains(earlier, r.value) {
							o.finalAtAck[r.value] = r.state != pending
						}
					}
					l.mu.Unlock()
				}
				mu.Lock()
				ops = append(ops, o)
				returned[o.value] = o.end
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	offset := map[string]int{}
	var unknown int
	for i, r := range l.values(0) {
		offset[r.value] = i
	}
	for _, o := range ops {
		if errors.Is(o.err, provider.ErrOutcomeUnknown) {
			unknown++
		}
		for v, final := range o.finalAtAck {
			if !final {
				t.Errorf("%s was acknowledged while %s, which returned before it started, was still pending", o.value, v)
			}
		}
	}
	for _, a := range ops {
		for _, b := range ops {
			oa, inA := offset[a.value]
			ob, inB := offset[b.value]
			if a.end < b.start && inA && inB && oa > ob {
				t.Errorf("%s started after %s returned but is before it in the log (offsets %d, %d)", b.value, a.value, ob, oa)
			}
		}
	}
	if unknown == 0 {
		t.Error("no unknown outcome happened: the test tried nothing")
	}
	t.Logf("%d appends, %d of unknown outcome", len(ops), unknown)
}

// TestCloseWithWorkInFlight: closing a member while a transaction commits
// and others are queued: new appends fail with ErrClosed at once, the one
// in flight gets its outcome (Close waits for it), the queued ones are
// refused with nothing of them written, and once Close returns no
// transaction is open and every producer is closed; a lane whose producer
// was broken (a commit of unknown outcome) replaces it once more, so that
// the transaction it left ends now, not at the broker's transaction
// timeout.
func TestCloseWithWorkInFlight(t *testing.T) {
	for _, broken := range []bool{false, true} {
		t.Run(fmt.Sprintf("broken=%v", broken), func(t *testing.T) {
			l := newTxnLog(t)
			g := l.gateCommits(t)
			if broken {
				l.commitFails = func(string) (bool, bool) { return true, false }
			}
			m := newMember(t, l, 1)
			if broken {
				// The replacement fails once, and the lane, backing off,
				// is stopped: Close's own replacement ends the transaction.
				l.mu.Lock()
				l.initFailures = 1
				l.mu.Unlock()
			}
			inFlight := m.appendAsync(keyOn("a", 0), "in-flight")
			g.waitEntered(t)
			queued := []<-chan error{m.appendAsync(keyOn("b", 1), "queued-1"), m.appendAsync(keyOn("c", 2), "queued-2")}
			waitFor(t, func() bool { return m.lanes.queue.Len() == 2 })

			closed := make(chan struct{})
			go func() {
				m.close()
				close(closed)
			}()
			waitFor(t, m.own.Closing)
			if err := m.append(keyOn("d", 3), "after"); !errors.Is(err, provider.ErrClosed) {
				t.Errorf("append once closing: %v, want ErrClosed", err)
			}
			notWithin(t, closed, 50*time.Millisecond, "Close returned while a transaction was committing")
			g.release()
			want := map[bool]error{false: nil, true: provider.ErrOutcomeUnknown}[broken]
			if err := within(t, inFlight, "the append in flight"); !errors.Is(err, want) || (want == nil && err != nil) {
				t.Errorf("the append in flight at Close: %v, want %v", err, want)
			}
			for i, q := range queued {
				if err := within(t, q, "a queued append"); err == nil {
					t.Errorf("queued append %d at Close: acknowledged, want refused", i+1)
				}
			}
			within(t, closed, "Close")
			for _, v := range []string{"queued-1", "queued-2", "after"} {
				if _, ok := l.find(v); ok {
					t.Errorf("%s, refused at Close, was written", v)
				}
			}
			if n := l.openTxns(); n != 0 {
				t.Errorf("%d transactions still open after Close", n)
			}
			if st := stateOf(t, l, "in-flight"); st != committed {
				t.Errorf("in-flight: state %d, want committed (its commit reached the coordinator)", st)
			}
			l.mu.Lock()
			defer l.mu.Unlock()
			if l.live != 0 {
				t.Errorf("%d producers not closed after Close", l.live)
			}
		})
	}
}
