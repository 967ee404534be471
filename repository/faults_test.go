package repository_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/provider"
	"github.com/rehydrate/rehydrate/repository"
	rt "github.com/rehydrate/rehydrate/repository/repositorytest"
)

type fault int

const (
	noFault        fault = iota
	refused              // the log refuses: nothing written
	unknownWritten       // written, but the acknowledgement is lost
	unknownLost          // not written, and the writer cannot tell
	down                 // the log is unreachable: every call fails
	unknownLate          // not acknowledged; written just before the next append
)

// faultyProvider injects failures into a memory provider.
type faultyProvider struct {
	provider.Provider
	mu          sync.Mutex
	appendFault fault
	late        []event.Record // written just before the next append
	down        bool
	readFailAt  int // fail a read at its n-th batch; 0 never
}

func (f *faultyProvider) set(fn func(*faultyProvider)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *faultyProvider) Partitions(ctx context.Context) ([]provider.Partition, error) {
	f.mu.Lock()
	isDown := f.down
	f.mu.Unlock()
	if isDown {
		return nil, fmt.Errorf("injected: %w", provider.ErrUnavailable)
	}
	return f.Provider.Partitions(ctx)
}

func (f *faultyProvider) Append(ctx context.Context, records []event.Record) ([]provider.Position, error) {
	f.mu.Lock()
	mode := f.appendFault
	f.appendFault = noFault
	if f.down {
		mode = refused
	}
	f.mu.Unlock()
	if len(f.late) > 0 && mode != refused {
		f.mu.Lock()
		late := f.late
		f.late = nil
		f.mu.Unlock()
		if _, err := f.Provider.Append(ctx, late); err != nil {
			return nil, err
		}
	}
	switch mode {
	case unknownLate:
		f.mu.Lock()
		f.late = records
		f.mu.Unlock()
		return nil, fmt.Errorf("injected timeout, the request still on its way: %w", provider.ErrOutcomeUnknown)
	case refused:
		return nil, fmt.Errorf("injected refusal: %w", provider.ErrUnavailable)
	case unknownWritten:
		if _, err := f.Provider.Append(ctx, records); err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("injected lost acknowledgement: %w", provider.ErrOutcomeUnknown)
	case unknownLost:
		return nil, fmt.Errorf("injected timeout: %w", provider.ErrOutcomeUnknown)
	}
	return f.Provider.Append(ctx, records)
}

func (f *faultyProvider) Read(ctx context.Context, ranges []provider.Range, batchSize int, fn func(provider.Batch) error) error {
	f.mu.Lock()
	failAt := f.readFailAt
	f.mu.Unlock()
	n := 0
	return f.Provider.Read(ctx, ranges, batchSize, func(b provider.Batch) error {
		n++
		if n == failAt {
			return fmt.Errorf("injected read failure at batch %d: %w", n, provider.ErrUnavailable)
		}
		return fn(b)
	})
}

func TestFailedAppendLeavesMemoryUnchanged(t *testing.T) {
	for _, tc := range []struct {
		name        string
		fault       fault
		unknown     bool
		wantVersion uint64 // after the next command, which resolves first
		wantBalance int64
	}{
		{"refused", refused, false, 3, 10 + 1},
		{"unknown outcome, was written", unknownWritten, true, 4, 10 + 5 + 1},
		{"unknown outcome, was not written", unknownLost, true, 3, 10 + 1},
		{"unknown outcome, written after the end was read", unknownLate, true, 4, 10 + 5 + 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := newMemory(t, 2)
			f := &faultyProvider{Provider: mem}
			r := rt.Restored(t, f)
			ctx := t.Context()
			_, err := r.Create(ctx, "a", rt.Open("ada"))
			require.NoError(t, err)
			_, err = r.Execute(ctx, "a", rt.Deposit(10))
			require.NoError(t, err)
			// Another aggregate of the same partition moves on meanwhile.
			_, err = r.Create(ctx, "b", rt.Open("bob"))
			require.NoError(t, err)

			f.set(func(f *faultyProvider) { f.appendFault = tc.fault })
			_, err = r.Execute(ctx, "a", rt.Deposit(5))
			require.Error(t, err)
			assert.Equal(t, tc.unknown, errors.Is(err, provider.ErrOutcomeUnknown), "the error says whether the outcome is known: %v", err)
			acct, v, err := r.Get("a")
			require.NoError(t, err)
			assert.Equal(t, uint64(2), v, "memory unchanged")
			assert.Equal(t, int64(10), acct.Balance, "memory unchanged")

			res, err := r.Execute(ctx, "a", rt.Deposit(1))
			require.NoError(t, err)
			assert.Equal(t, tc.wantVersion, res.Version)
			acct, _, err = r.Get("a")
			require.NoError(t, err)
			assert.Equal(t, tc.wantBalance, acct.Balance)

			fresh := rt.Restored(t, mem)
			restored, v, err := fresh.Get("a")
			require.NoError(t, err)
			assert.Equal(t, acct, restored, "memory equals the log")
			assert.Equal(t, tc.wantVersion, v)
		})
	}
}

func TestUnresolvedAggregateTakesNoCommandUntilTheLogAnswers(t *testing.T) {
	mem := newMemory(t, 1)
	f := &faultyProvider{Provider: mem}
	r := rt.Restored(t, f)
	ctx := t.Context()
	_, err := r.Create(ctx, "a", rt.Open("ada"))
	require.NoError(t, err)
	f.set(func(f *faultyProvider) { f.appendFault = unknownWritten })
	_, err = r.Execute(ctx, "a", rt.Deposit(5))
	require.ErrorIs(t, err, provider.ErrOutcomeUnknown)

	f.set(func(f *faultyProvider) { f.down = true })
	_, err = r.Execute(ctx, "a", rt.Deposit(1))
	require.ErrorIs(t, err, repository.ErrUnresolved)
	require.ErrorIs(t, err, provider.ErrUnavailable)
	require.NotErrorIs(t, err, provider.ErrOutcomeUnknown, "this command appended nothing")
	_, v, err := r.Get("a")
	require.NoError(t, err)
	assert.Equal(t, uint64(1), v)

	f.set(func(f *faultyProvider) { f.down = false })
	res, err := r.Execute(ctx, "a", rt.Deposit(1), repository.ExpectVersion(2))
	require.NoError(t, err, "the resolved version is what the expectation sees")
	assert.Equal(t, uint64(3), res.Version)
}

func TestFailedRestoreServesNothingAndCanBeRetried(t *testing.T) {
	mem := newMemory(t, 2)
	for i := range 50 {
		appendRaw(t, mem, rawEvent(t, fmt.Sprint("acct-", i), 1, rt.Opened{Owner: "x"}))
	}
	f := &faultyProvider{Provider: mem, readFailAt: 2}
	r := rt.NewRepository(t, f, repository.WithBatchSize(5))
	_, err := r.Restore(t.Context())
	require.ErrorIs(t, err, provider.ErrUnavailable)
	_, _, err = r.Get("acct-0")
	require.ErrorIs(t, err, repository.ErrNotReady)
	assert.Equal(t, 0, r.Len())

	f.set(func(f *faultyProvider) { f.readFailAt = 0 })
	stats, err := r.Restore(t.Context())
	require.NoError(t, err)
	assert.Equal(t, 50, stats.Aggregates)
	assert.Equal(t, 50, r.Len())
}

func TestCancelledRestoreReturnsTheContextError(t *testing.T) {
	mem := newMemory(t, 2)
	for i := range 20 {
		appendRaw(t, mem, rawEvent(t, fmt.Sprint("acct-", i), 1, rt.Opened{Owner: "x"}))
	}
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	r := rt.NewRepository(t, mem)
	_, err := r.Restore(ctx)
	require.ErrorIs(t, err, context.Canceled)
	_, _, err = r.Get("acct-0")
	require.ErrorIs(t, err, repository.ErrNotReady)
}

// cancellingProvider cancels the restore's context once its read is done,
// as a signal arriving at that moment would.
type cancellingProvider struct {
	provider.Provider
	cancel context.CancelFunc
}

func (c *cancellingProvider) Read(ctx context.Context, ranges []provider.Range, batchSize int, fn func(provider.Batch) error) error {
	err := c.Provider.Read(ctx, ranges, batchSize, fn)
	c.cancel()
	return err
}

func TestRestoreErrorSurvivesALateCancel(t *testing.T) {
	mem := newMemory(t, 1)
	appendRaw(t, mem,
		rawEvent(t, "a", 1, rt.Opened{Owner: "x"}),
		rawEvent(t, "a", 2, rt.Deposited{Amount: 1}),
		rawEvent(t, "a", 4, rt.Deposited{Amount: 1})) // a gap
	ctx, cancel := context.WithCancel(t.Context())
	r := rt.NewRepository(t, &cancellingProvider{Provider: mem, cancel: cancel})
	_, err := r.Restore(ctx)
	require.Error(t, err)
	assert.NotErrorIs(t, err, context.Canceled, "a version gap is never hidden by a cancelled context")
	var re *event.RecordError
	require.ErrorAs(t, err, &re, "the gap, with its partition and offset: %v", err)
	assert.Equal(t, event.RecordError{Partition: 0, Offset: 2, Err: re.Err}, *re)
	assert.ErrorContains(t, err, "version gap: event version 4 after version 2")
	_, _, err = r.Get("a")
	assert.ErrorIs(t, err, repository.ErrNotReady)
}

func TestRefusedCreatesLeaveNothingBehind(t *testing.T) {
	mem := newMemory(t, 2)
	f := &faultyProvider{Provider: mem}
	r := rt.Restored(t, f)
	ctx := t.Context()
	for i := range 100 {
		_, err := r.Create(ctx, fmt.Sprint("bad-", i), func(rt.Account) ([]any, error) { return nil, errTest })
		require.ErrorIs(t, err, errTest)
		_, err = r.Create(ctx, fmt.Sprint("invalid-", i), rt.Deposit(0))
		require.ErrorIs(t, err, event.ErrInvalid)
		f.set(func(f *faultyProvider) { f.appendFault = refused })
		_, err = r.Create(ctx, fmt.Sprint("refused-", i), rt.Open("x"))
		require.ErrorIs(t, err, provider.ErrUnavailable)
	}
	n := 0
	r.Range(func(string, rt.Account, uint64) bool { n++; return true })
	assert.Zero(t, n)
	// The ids are free: a later Create of one succeeds.
	_, err := r.Create(ctx, "refused-1", rt.Open("x"))
	require.NoError(t, err)
	assert.Equal(t, 1, r.Len())
}

// slowProvider holds the appends of aggregate "slow" until released.
type slowProvider struct {
	provider.Provider
	holding, release chan struct{}
}

func (s *slowProvider) Append(ctx context.Context, records []event.Record) ([]provider.Position, error) {
	if string(records[0].Key) == "slow" {
		s.holding <- struct{}{}
		<-s.release
	}
	return s.Provider.Append(ctx, records)
}

func TestASlowAppendBlocksOnlyItsAggregate(t *testing.T) {
	mem := newMemory(t, 1)
	appendRaw(t, mem, rawEvent(t, "slow", 1, rt.Opened{Owner: "x"}), rawEvent(t, "other", 1, rt.Opened{Owner: "y"}))
	s := &slowProvider{Provider: mem, holding: make(chan struct{}), release: make(chan struct{})}
	r := rt.Restored(t, s)
	slowDone := make(chan error, 1)
	go func() {
		_, err := r.Execute(context.Background(), "slow", rt.Deposit(1))
		slowDone <- err
	}()
	<-s.holding // the append of "slow" is in flight, under its lock

	// Meanwhile the rest of the partition serves.
	_, err := r.Create(t.Context(), "new", rt.Open("z"))
	require.NoError(t, err, "a create in the same partition goes through")

	// Len visits every aggregate under its lock: it waits for the append
	// of "slow" instead of counting a state in the middle of a command.
	lenDone := make(chan int, 1)
	go func() { lenDone <- r.Len() }()
	_, _, err = r.Get("other")
	require.NoError(t, err, "a reader of another aggregate is not held up")
	select {
	case n := <-lenDone:
		t.Fatalf("Len returned %d while the append of slow held its lock", n)
	case <-time.After(100 * time.Millisecond): // checking an absence, bounded
	}

	close(s.release)
	require.NoError(t, <-slowDone)
	assert.Equal(t, 3, <-lenDone)
}
