package repository_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rehydrate/rehydrate/provider"
	"github.com/rehydrate/rehydrate/repository"
	rt "github.com/rehydrate/rehydrate/repository/repositorytest"
)

// stuckReads is a log whose reads wait for their context: a Restore or
// Follow on it runs until it is cancelled.
type stuckReads struct {
	provider.Provider
	reading chan struct{} // closed once a read waits
}

func (s *stuckReads) Read(ctx context.Context, _ []provider.Range, _ int, _ func(provider.Batch) error) error {
	close(s.reading)
	<-ctx.Done()
	return ctx.Err()
}

// requireClosed checks that every call of a closed repository fails with
// ErrClosed and that it holds nothing any more.
func requireClosed(t *testing.T, r *repository.Repository[rt.Account]) {
	t.Helper()
	ctx := t.Context()
	_, err := r.Execute(ctx, "acc-1", rt.Deposit(1))
	assert.ErrorIs(t, err, repository.ErrClosed, "Execute")
	_, err = r.Create(ctx, "new", rt.Open("x"))
	assert.ErrorIs(t, err, repository.ErrClosed, "Create")
	_, _, err = r.Get("acc-1")
	assert.ErrorIs(t, err, repository.ErrClosed, "Get")
	assert.ErrorIs(t, r.Follow(ctx), repository.ErrClosed, "Follow")
	assert.ErrorIs(t, r.Snapshot(ctx), repository.ErrClosed, "Snapshot")
	_, err = r.Restore(ctx)
	assert.ErrorIs(t, err, repository.ErrClosed, "Restore")
	assert.Zero(t, r.Len())
	assert.Empty(t, r.Owned())
	assert.NoError(t, r.Close(), "a second Close")
}

func TestCloseIsTerminal(t *testing.T) {
	events := seeded(t) // acc-0..11, 3 events each
	r := rt.Restored(t, events, withSnapshots(t, newMemory(t, 3), manual))
	require.Equal(t, 12, r.Len())
	require.NoError(t, r.Close())
	requireClosed(t, r)
	assert.EqualValues(t, 36, r.Stats().Events, "Stats still tells what was restored")

	t.Run("before Restore", func(t *testing.T) {
		r := rt.NewRepository(t, events)
		require.NoError(t, r.Close())
		requireClosed(t, r)
	})
	t.Run("with a group", func(t *testing.T) {
		r := rt.Restored(t, newMemory(t, 3), repository.WithGroup(repository.Group{Name: "g", Instance: "a"}))
		_, err := r.Create(t.Context(), "acc-1", rt.Open("ada"))
		require.NoError(t, err)
		require.NoError(t, r.Close())
		requireClosed(t, r)
	})
}

// TestCloseEndsWhatRuns: a command in flight ends first (and its events
// count), a Restore or a Follow that runs is cancelled with ErrClosed.
func TestCloseEndsWhatRuns(t *testing.T) {
	deadline := 10 * time.Second
	t.Run("a command in flight", func(t *testing.T) {
		r := rt.Restored(t, seeded(t))
		inCmd, release := make(chan struct{}), make(chan struct{})
		result := make(chan error, 1)
		go func() {
			_, err := r.Execute(t.Context(), "acc-1", func(rt.Account) ([]any, error) {
				close(inCmd)
				<-release
				return []any{rt.Deposited{Amount: 5}}, nil
			})
			result <- err
		}()
		<-inCmd
		closed := make(chan error, 1)
		go func() { closed <- r.Close() }()
		require.Eventually(t, func() bool {
			// Snapshot (none configured) takes no lock the command holds.
			return errors.Is(r.Snapshot(t.Context()), repository.ErrClosed)
		}, deadline, time.Millisecond, "Close refuses new calls at once")
		select {
		case <-closed:
			t.Fatal("Close returned while a command was in flight")
		default:
		}
		close(release)
		require.NoError(t, <-result, "the command in flight ends, appended")
		require.NoError(t, <-closed)
		requireClosed(t, r)
	})
	t.Run("a Restore", func(t *testing.T) {
		log := &stuckReads{Provider: seeded(t), reading: make(chan struct{})}
		r := rt.NewRepository(t, log)
		restored := make(chan error, 1)
		go func() { _, err := r.Restore(context.Background()); restored <- err }()
		<-log.reading
		requireCancelledByClose(t, r, restored, "Restore")
		requireClosed(t, r)
	})
	t.Run("a Follow", func(t *testing.T) {
		events := seeded(t)
		r := rt.Restored(t, events)
		writer := rt.Restored(t, events)
		followed := make(chan error, 1)
		go func() { followed <- r.Follow(context.Background()) }()
		_, err := writer.Execute(t.Context(), "acc-1", rt.Deposit(7))
		require.NoError(t, err)
		require.Eventually(t, func() bool { // Follow runs
			a, _, err := r.Get("acc-1")
			return err == nil && a.Balance == 10
		}, deadline, time.Millisecond)
		requireCancelledByClose(t, r, followed, "Follow")
		requireClosed(t, r)
	})
}

// requireCancelledByClose closes r and checks that the call whose result
// comes on running returns ErrClosed at once; Close waits for it.
func requireCancelledByClose(t *testing.T, r *repository.Repository[rt.Account], running <-chan error, what string) {
	t.Helper()
	closed := make(chan error, 1)
	go func() { closed <- r.Close() }()
	select {
	case err := <-running:
		assert.ErrorIs(t, err, repository.ErrClosed, what)
	case <-time.After(10 * time.Second):
		t.Fatalf("%s not cancelled by Close", what)
	}
	require.NoError(t, <-closed)
}

// TestPartitionOf answers -1 until the topic's partitions are known, then
// the key's partition, whatever the repository's state.
func TestPartitionOf(t *testing.T) {
	log := &stuckReads{Provider: seeded(t), reading: make(chan struct{})}
	r := rt.NewRepository(t, log)
	assert.EqualValues(t, -1, r.PartitionOf("acc-1"), "before Restore")
	go func() { _, _ = r.Restore(context.Background()) }()
	<-log.reading
	want := make(map[string]int32)
	for _, id := range []string{"acc-0", "acc-1", "acc-2", "acc-3", "x"} {
		want[id] = provider.PartitionFor([]byte(id), 3)
		assert.Equal(t, want[id], r.PartitionOf(id), "%s during Restore", id)
	}
	parts := make(map[int32]bool)
	for _, p := range want {
		parts[p] = true
	}
	require.Greater(t, len(parts), 1, "the ids span partitions")
	require.NoError(t, r.Close())
	for id, p := range want {
		assert.Equal(t, p, r.PartitionOf(id), "%s after Close", id)
	}
	restored := rt.Restored(t, seeded(t))
	for id, p := range want {
		assert.Equal(t, p, restored.PartitionOf(id), "%s after Restore", id)
	}
}
