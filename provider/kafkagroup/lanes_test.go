package kafkagroup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/provider"
)

// fakeClient is a Client whose producers write to a log of their own and
// whose commits wait on commitGate when it is set.
type fakeClient struct {
	mu           sync.Mutex
	md           Metadata
	next         map[int32]int64 // the end of each partition's log
	open         int             // transactions begun and not ended
	maxOpen      int
	sentMD       []Metadata        // what each SendOffsets carried
	sentNext     []map[int32]int64 // and the offsets it carried
	produces     int               // Produce calls that returned
	produceGate  chan struct{}     // Produce waits for it to close
	purges       bool              // a refused fence has Produce drop every record (librdkafka's purge)
	fenceRefused bool              // a fence was refused since the last Produce
	serialFence  bool              // producers fence only after the produce (FencesWhileProducing false)
	commitErr    error             // returned once by the next commit
	gate         chan struct{}     // commits wait for it to close
	commits      int               // Commit calls begun (a gated one counts while it waits)
	initGate     chan struct{}     // new producers wait for it to close
	retriable    bool              // every error is ClassRetriable (a commit that timed out)
	begun        []string          // the transactional id of each transaction begun
	refuse       string            // the value of a record the log refuses (too large)
	initFails    int               // new producers fail as unavailable this many times
}

func newFakeClient() *fakeClient {
	return &fakeClient{md: Metadata{Generation: 1, MemberID: "m"}, next: map[int32]int64{}}
}

func (c *fakeClient) NewProducer(_ context.Context, txid string) (Producer, error) {
	c.mu.Lock()
	gate := c.initGate
	c.mu.Unlock()
	if gate != nil {
		<-gate
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.initFails > 0 {
		c.initFails--
		return nil, fmt.Errorf("init %s: NOT_COORDINATOR: %w", txid, provider.ErrUnavailable)
	}
	return &fakeProducer{c: c, txid: txid}, nil
}

func (c *fakeClient) Metadata() (Metadata, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.md, nil
}

func (c *fakeClient) Class(err error) Class {
	if errors.Is(err, errTooLarge) {
		return ClassRecordRefused
	}
	if errors.Is(err, errPurged) {
		return ClassPurged
	}
	if c.retriable {
		return ClassRetriable
	}
	if errors.Is(err, errRefused) {
		return ClassRefused
	}
	return ClassAbortable
}

func (c *fakeClient) Annotate(err error) error { return err }

var (
	errRefused  = errors.New("UNKNOWN_MEMBER_ID")
	errTooLarge = errors.New("MESSAGE_TOO_LARGE")
	errPurged   = errors.New("Local: Purged in queue")
)

type fakeProducer struct {
	c    *fakeClient
	txid string
}

func (p *fakeProducer) Begin() error {
	p.c.mu.Lock()
	defer p.c.mu.Unlock()
	p.c.begun = append(p.c.begun, p.txid)
	p.c.open++
	p.c.maxOpen = max(p.c.maxOpen, p.c.open)
	return nil
}

func (p *fakeProducer) Produce(batch []*Append, _ time.Duration) ([][]int64, [][]error, bool) {
	p.c.mu.Lock()
	gate := p.c.produceGate
	p.c.mu.Unlock()
	if gate != nil {
		<-gate
	}
	p.c.mu.Lock()
	defer p.c.mu.Unlock()
	defer func() { p.c.produces++ }()
	if p.c.purges && p.c.fenceRefused {
		p.c.fenceRefused = false
		offsets, errs := make([][]int64, len(batch)), make([][]error, len(batch))
		for bi, a := range batch {
			offsets[bi], errs[bi] = make([]int64, len(a.Records)), make([]error, len(a.Records))
			for i := range a.Records {
				errs[bi][i] = errPurged
			}
		}
		return offsets, errs, true
	}
	offsets, errs := make([][]int64, len(batch)), make([][]error, len(batch))
	for bi, a := range batch {
		offsets[bi], errs[bi] = make([]int64, len(a.Records)), make([]error, len(a.Records))
		for i, rec := range a.Records {
			if p.c.refuse != "" && string(rec.Value) == p.c.refuse {
				errs[bi][i] = errTooLarge
				continue
			}
			offsets[bi][i] = p.c.next[a.Parts[i]]
			p.c.next[a.Parts[i]]++
		}
	}
	return offsets, errs, true
}

func (p *fakeProducer) SendOffsets(md Metadata, next map[int32]int64) (bool, error) {
	p.c.mu.Lock()
	defer p.c.mu.Unlock()
	p.c.sentMD = append(p.c.sentMD, md)
	p.c.sentNext = append(p.c.sentNext, maps.Clone(next))
	if md.MemberID == "stale" {
		p.c.fenceRefused = true
		return true, errRefused
	}
	return true, nil
}

func (p *fakeProducer) FencesWhileProducing() bool {
	p.c.mu.Lock()
	defer p.c.mu.Unlock()
	return !p.c.serialFence
}

func (p *fakeProducer) Commit() error {
	p.c.mu.Lock()
	gate := p.c.gate
	p.c.commits++
	p.c.mu.Unlock()
	if gate != nil {
		<-gate
	}
	p.c.mu.Lock()
	defer p.c.mu.Unlock()
	p.c.open--
	err := p.c.commitErr
	p.c.commitErr = nil
	return err
}

func (p *fakeProducer) Abort() error {
	p.c.mu.Lock()
	defer p.c.mu.Unlock()
	p.c.open--
	return nil
}

func (p *fakeProducer) Close() {}

// startLanes returns started lanes of n producers on c, owning every
// partition of a topic of 4.
func startLanes(t *testing.T, c Client, n int) *Lanes {
	t.Helper()
	return startLanesLog(t, c, n, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// startLanesLog is startLanes logging to log.
func startLanesLog(t *testing.T, c Client, n int, log *slog.Logger) *Lanes {
	t.Helper()
	own := New("test", 4, time.Second)
	own.Assign([]int32{0, 1, 2, 3})
	ls := NewLanes(own, c, LanesConfig{Name: "test", Topic: "t", TxIDs: TxIDs("g", "i", n), Timeout: time.Second,
		DeliveryBound: time.Second, Log: log})
	if err := ls.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		own.Close()
		ls.Close()
	})
	return ls
}

func record(key string) []event.Record { return []event.Record{{Key: []byte(key), Value: []byte("v")}} }

// TestLanesTakeTurns: n lanes run InFlight(n) transactions at once: with
// one or two lanes a second transaction waits for the first's commit, with
// three it starts while the first waits; and two lanes alternate, so that
// a transactional id's next transaction never follows its last at once.
func TestLanesTakeTurns(t *testing.T) {
	for lanes, inflight := range map[int]int{1: 1, 2: 1, 3: 2} {
		c := newFakeClient()
		gate := make(chan struct{})
		c.gate = gate
		var once sync.Once
		release := func() { once.Do(func() { close(gate) }) }
		ls := startLanes(t, c, lanes)
		t.Cleanup(release) // before the lanes' Close, which waits for the commit
		results := make(chan error, 2)
		appendOne := func(key string) {
			_, err := ls.Append(context.Background(), "test", record(key))
			results <- err
		}
		go appendOne("a")
		waitFor(t, func() bool { c.mu.Lock(); defer c.mu.Unlock(); return c.open == 1 })
		go appendOne("b")
		if inflight == 2 {
			waitFor(t, func() bool { c.mu.Lock(); defer c.mu.Unlock(); return c.open == 2 })
		} else {
			time.Sleep(50 * time.Millisecond) // nothing to wait for: the second must not start
			c.mu.Lock()
			if c.open != 1 {
				t.Errorf("%d lanes: %d transactions open at once", lanes, c.open)
			}
			c.mu.Unlock()
		}
		release()
		for range 2 {
			if err := <-results; err != nil {
				t.Fatalf("%d lanes: %v", lanes, err)
			}
		}
		if c.maxOpen != inflight {
			t.Errorf("%d lanes: at most %d transactions open at once, want %d", lanes, c.maxOpen, inflight)
		}
	}

	// Two lanes alternate. Each transaction is held at its commit while
	// the next append is queued: the lane that is not running has long
	// been waiting for appends then, as it has behind a transaction of
	// milliseconds, and takes it.
	c := newFakeClient()
	gate := make(chan struct{})
	c.gate = gate
	ls := startLanes(t, c, 2)
	// Before the lanes' Close, which waits for the commit: a failed wait
	// below must not leave a commit held.
	t.Cleanup(func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.gate != nil {
			close(c.gate)
			c.gate = nil
		}
	})
	results := make(chan error, 8)
	appendOne := func(key string) {
		_, err := ls.Append(context.Background(), "test", record(key))
		results <- err
	}
	go appendOne("k0")
	for i := 1; i <= 6; i++ {
		// At its commit, holding the gate of this round: a transaction
		// only begun would read the next round's gate and wait for good.
		waitFor(t, func() bool {
			c.mu.Lock()
			defer c.mu.Unlock()
			return len(c.begun) == i && c.open == 1 && c.commits == i
		})
		go appendOne(fmt.Sprint("k", i))
		c.mu.Lock()
		held := gate
		gate = make(chan struct{})
		c.gate = gate
		c.mu.Unlock()
		close(held)
	}
	c.mu.Lock()
	close(gate)
	c.gate = nil
	c.mu.Unlock()
	for range 7 {
		require.NoError(t, <-results)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for i := 1; i < len(c.begun); i++ {
		assert.NotEqual(t, c.begun[i-1], c.begun[i], "two lanes alternate: transactions %v", c.begun)
	}
}

// TestLanesRunARefusedBatchAgain: a record the log refuses spoils its
// transaction, whose appends run again, each alone, while the other lane
// waits for appends that will not come (their appenders wait for these):
// the append with the culprit fails, the others land.
func TestLanesRunARefusedBatchAgain(t *testing.T) {
	c := newFakeClient()
	c.refuse = "bad"
	own := New("test", 4, time.Second)
	own.Assign([]int32{0, 1, 2, 3})
	ls := NewLanes(own, c, LanesConfig{Name: "test", Topic: "t", TxIDs: TxIDs("g", "i", 2), Timeout: time.Second,
		DeliveryBound: time.Second, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	t.Cleanup(func() {
		own.Close()
		ls.Close()
	})
	results := make(chan error, 3)
	for i, value := range []string{"v", "bad", "v"} {
		go func() {
			_, err := ls.Append(context.Background(), "test", []event.Record{{Key: []byte(fmt.Sprint("k", i)), Value: []byte(value)}})
			results <- err
		}()
	}
	// Queued before the lanes start: the first to take a batch takes all
	// three.
	waitFor(t, func() bool { return ls.queue.Len() == 3 })
	require.NoError(t, ls.Start(context.Background()))
	var failed []error
	for range 3 {
		select {
		case err := <-results:
			if err != nil {
				failed = append(failed, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("the appends to run again never ran")
		}
	}
	require.Len(t, failed, 1)
	require.ErrorIs(t, failed[0], errTooLarge)
	c.mu.Lock()
	defer c.mu.Unlock()
	assert.Len(t, c.begun, 4, "one transaction of three, then one each")
}

// TestLanesStartWaitsForTheCoordinator: on a fresh cluster the first
// initialisations meet a transaction coordinator still loading; Start
// tries again within its timeout rather than fail the member's join.
func TestLanesStartWaitsForTheCoordinator(t *testing.T) {
	c := newFakeClient()
	c.initFails = 3
	ls := startLanes(t, c, 2) // fails the test if Start does
	_, err := ls.Append(context.Background(), "test", record("a"))
	require.NoError(t, err)
	c.mu.Lock()
	defer c.mu.Unlock()
	assert.Zero(t, c.initFails)
}

// TestLanesFence: every transaction sends the member's metadata of that
// moment; metadata that names no membership is never sent, and a refusal
// fails the append with provider.ErrNotOwner.
func TestLanesFence(t *testing.T) {
	c := newFakeClient()
	ls := startLanes(t, c, 2)
	ctx := context.Background()
	if _, err := ls.Append(ctx, "test", record("a")); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	c.md = Metadata{Generation: -1}
	c.mu.Unlock()
	if _, err := ls.Append(ctx, "test", record("b")); !errors.Is(err, provider.ErrNotOwner) {
		t.Fatalf("append with no membership: %v, want ErrNotOwner", err)
	}
	c.mu.Lock()
	c.md = Metadata{Generation: 3, MemberID: "stale"}
	c.mu.Unlock()
	if _, err := ls.Append(ctx, "test", record("c")); !errors.Is(err, provider.ErrNotOwner) {
		t.Fatalf("append refused by the coordinator: %v, want ErrNotOwner", err)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, md := range c.sentMD {
		if !md.named() {
			t.Errorf("sent metadata that names no membership: %+v", md)
		}
	}
	if len(c.sentMD) != 2 || c.sentMD[0].MemberID != "m" || c.sentMD[1].MemberID != "stale" {
		t.Errorf("sent %+v, want the metadata of each moment, none for generation -1", c.sentMD)
	}
}

// TestLanesFenceWhileProducing: the first transaction on a partition sends
// the fence once its records are written, with their end; the next sends
// it while its records are still being produced, with the end of what the
// member committed there, a real offset no later than the partition's end;
// unless the producer is no ConcurrentFencer, which fences after the
// produce every time.
func TestLanesFenceWhileProducing(t *testing.T) {
	for _, concurrent := range []bool{true, false} {
		t.Run(fmt.Sprintf("concurrent=%v", concurrent), func(t *testing.T) {
			c := newFakeClient()
			c.serialFence = !concurrent
			ls := startLanes(t, c, 2)
			ctx := context.Background()
			first, err := ls.Append(ctx, "test", record("a"))
			require.NoError(t, err)
			part, end := first[0].Partition, first[0].Offset+1
			c.mu.Lock()
			require.Equal(t, []map[int32]int64{{part: end}}, c.sentNext, "the first fence: after the produce, its end")
			gate := make(chan struct{})
			c.produceGate = gate
			c.mu.Unlock()
			var once sync.Once
			release := func() { once.Do(func() { close(gate) }) }
			t.Cleanup(release) // before the lanes' Close, which waits for the produce

			done := make(chan []provider.Position, 1)
			go func() {
				pos, err := ls.Append(ctx, "test", record("a"))
				assert.NoError(t, err)
				done <- pos
			}()
			if concurrent {
				waitFor(t, func() bool { c.mu.Lock(); defer c.mu.Unlock(); return len(c.sentNext) == 2 })
				c.mu.Lock()
				assert.Equal(t, 1, c.produces, "the second fence came before its produce returned")
				assert.Equal(t, map[int32]int64{part: end}, c.sentNext[1], "the second fence: the end of the first commit")
				c.mu.Unlock()
				release()
				<-done
				return
			}
			time.Sleep(50 * time.Millisecond) // nothing to wait for: the fence must not come
			c.mu.Lock()
			assert.Len(t, c.sentNext, 1, "a fence before the produce returned")
			c.mu.Unlock()
			release()
			second := <-done
			c.mu.Lock()
			defer c.mu.Unlock()
			assert.Equal(t, map[int32]int64{part: second[0].Offset + 1}, c.sentNext[1], "the second fence: after the produce, its end")
		})
	}
}

// TestLanesFenceRefusedWhileProducing: a fence refused while the records
// are produced, which has the client drop them, fails the appends with
// the refusal (ErrNotOwner), not with the dropped records.
func TestLanesFenceRefusedWhileProducing(t *testing.T) {
	c := newFakeClient()
	c.purges = true
	ls := startLanes(t, c, 2)
	ctx := context.Background()
	_, err := ls.Append(ctx, "test", record("a"))
	require.NoError(t, err)
	gate := make(chan struct{})
	c.mu.Lock()
	c.md = Metadata{Generation: 3, MemberID: "stale"}
	c.produceGate = gate
	c.mu.Unlock()
	var once sync.Once
	release := func() { once.Do(func() { close(gate) }) }
	t.Cleanup(release)
	done := make(chan error, 1)
	go func() {
		_, err := ls.Append(ctx, "test", record("a"))
		done <- err
	}()
	waitFor(t, func() bool { c.mu.Lock(); defer c.mu.Unlock(); return c.fenceRefused })
	release()
	err = <-done
	require.ErrorIs(t, err, provider.ErrNotOwner)
	require.ErrorIs(t, err, errRefused)
}

// TestLanesUnknownOutcome: a commit of unknown outcome unsettles its
// partition, and the next append to it waits, also when another lane is
// free, until the lane's replacement producer has settled it.
func TestLanesUnknownOutcome(t *testing.T) {
	c := newFakeClient()
	c.retriable = true // the commit's error: it timed out, nothing proves it did not happen
	c.commitErr = errors.New("commit timed out")
	ls := startLanes(t, c, 2)
	ctx := context.Background()
	c.mu.Lock()
	c.initGate = make(chan struct{}) // the replacement waits
	c.mu.Unlock()
	if _, err := ls.Append(ctx, "test", record("a")); !errors.Is(err, provider.ErrOutcomeUnknown) {
		t.Fatalf("append whose commit failed: %v, want ErrOutcomeUnknown", err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := ls.Append(ctx, "test", record("a"))
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("the next append to the partition ended (%v) before the producer was replaced", err)
	case <-time.After(100 * time.Millisecond): // nothing to wait for: it must not end
	}
	close(c.initGate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// stepRecords keeps the records logged at TxnLevel.
type stepRecords struct {
	mu      sync.Mutex
	records []slog.Record
}

func (h *stepRecords) Enabled(_ context.Context, l slog.Level) bool { return l == TxnLevel }
func (h *stepRecords) WithAttrs([]slog.Attr) slog.Handler           { return h }
func (h *stepRecords) WithGroup(string) slog.Handler                { return h }
func (h *stepRecords) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.records = append(h.records, r)
	return nil
}

// TestLanesStepTimings: a lane logs one TxnCommittedMsg record at TxnLevel
// per committed transaction, with its appends, partitions and the time of
// each step, and none for a transaction the coordinator refused; a handler
// enabled for Debug gets none.
func TestLanesStepTimings(t *testing.T) {
	c := newFakeClient()
	h := &stepRecords{}
	ls := startLanesLog(t, c, 1, slog.New(h))
	ctx := context.Background()
	// Two records on two partitions, in one append.
	second := "b"
	for i := 0; provider.PartitionFor([]byte(second), 4) == provider.PartitionFor([]byte("a"), 4); i++ {
		second = fmt.Sprintf("b%d", i)
	}
	if _, err := ls.Append(ctx, "test", []event.Record{{Key: []byte("a"), Value: []byte("1")}, {Key: []byte(second), Value: []byte("2")}}); err != nil {
		t.Fatal(err)
	}
	c.mu.Lock()
	c.md = Metadata{Generation: 3, MemberID: "stale"}
	c.mu.Unlock()
	if _, err := ls.Append(ctx, "test", record("c")); !errors.Is(err, provider.ErrNotOwner) {
		t.Fatalf("append refused by the coordinator: %v, want ErrNotOwner", err)
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.records) != 1 || h.records[0].Message != TxnCommittedMsg {
		t.Fatalf("logged %d records at TxnLevel, want one %q for the one committed transaction", len(h.records), TxnCommittedMsg)
	}
	got := map[string]slog.Value{}
	h.records[0].Attrs(func(a slog.Attr) bool { got[a.Key] = a.Value; return true })
	if got["appends"].Int64() != 1 {
		t.Errorf("appends = %v, want 1", got["appends"])
	}
	if got["partitions"].Int64() != 2 {
		t.Errorf("partitions = %v, want 2", got["partitions"])
	}
	for _, step := range []string{"queued", "produce", "send_offsets", "commit"} {
		if v, ok := got[step]; !ok || v.Kind() != slog.KindDuration || v.Duration() < 0 {
			t.Errorf("step %s = %v, want a duration", step, v)
		}
	}
	if slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelDebug})).Enabled(ctx, TxnLevel) {
		t.Error("a handler enabled for Debug is enabled for TxnLevel")
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached within 5 s")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestLanesBatchWhatQueuedBehind: the appends queued while a transaction
// runs go together into the next one, however they trickled in: the lane
// that runs it takes its batch once it holds the slot, not before.
func TestLanesBatchWhatQueuedBehind(t *testing.T) {
	c := newFakeClient()
	gate := make(chan struct{})
	c.gate = gate
	ls := startLanes(t, c, 2)
	var once sync.Once
	release := func() { once.Do(func() { close(gate) }) }
	t.Cleanup(release)
	results := make(chan error, 6)
	appendOne := func(key string) {
		_, err := ls.Append(context.Background(), "test", record(key))
		results <- err
	}
	go appendOne("k0")
	waitFor(t, func() bool { c.mu.Lock(); defer c.mu.Unlock(); return c.open == 1 })
	for i := 1; i <= 5; i++ {
		go appendOne(fmt.Sprint("k", i))
		// One at a time: each is alone in the queue for a moment, as a
		// lane that took its batch first would take it alone.
		waitFor(t, func() bool { return ls.queue.Len() == i })
	}
	release()
	for range 6 {
		require.NoError(t, <-results)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	assert.Len(t, c.begun, 2, "the five appends queued behind the first transaction run in one")
}
