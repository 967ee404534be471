package repository_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rehydrate/rehydrate/provider"
	"github.com/rehydrate/rehydrate/provider/memory"
	"github.com/rehydrate/rehydrate/repository"
	rt "github.com/rehydrate/rehydrate/repository/repositorytest"
)

// expiring is a memory log (with its group capability) whose retention
// check refuses, and which counts reads: a refused restore reads nothing.
type expiring struct {
	*memory.Provider
	checks, reads atomic.Int32
}

var errExpiring = fmt.Errorf("topic keeps events for 7 days (retention.ms=604800000): %w", provider.ErrNotRetained)

func (p *expiring) CheckRetention(context.Context) error {
	p.checks.Add(1)
	return errExpiring
}

func (p *expiring) Read(ctx context.Context, ranges []provider.Range, batchSize int, fn func(provider.Batch) error) error {
	p.reads.Add(1)
	return p.Provider.Read(ctx, ranges, batchSize, fn)
}

// truncated is a memory log whose partition part starts at offset low, as a
// Kafka partition does once its first records expired.
type truncated struct {
	*memory.Provider
	part atomic.Int32
	low  atomic.Int64
}

func (p *truncated) Partitions(ctx context.Context) ([]provider.Partition, error) {
	ps, err := p.Provider.Partitions(ctx)
	for i := range ps {
		if ps[i].ID == p.part.Load() {
			ps[i].Low = min(p.low.Load(), ps[i].High)
		}
	}
	return ps, err
}

// seeded returns a memory log of 3 partitions holding a few accounts.
func seeded(t *testing.T) *memory.Provider {
	t.Helper()
	p := newMemory(t, 3)
	r := rt.Restored(t, p)
	for i := range 12 {
		_, err := r.Create(t.Context(), fmt.Sprintf("acc-%d", i), rt.Open("ada"))
		require.NoError(t, err)
		_, err = r.Execute(t.Context(), fmt.Sprintf("acc-%d", i), rt.Deposit(1, 2))
		require.NoError(t, err)
	}
	return p
}

func TestRestoreRefusesALogThatDropsEvents(t *testing.T) {
	for _, group := range []bool{false, true} {
		t.Run(fmt.Sprintf("group=%v", group), func(t *testing.T) {
			p := &expiring{Provider: seeded(t)}
			var opts []repository.Option
			if group {
				opts = append(opts, repository.WithGroup(repository.Group{Name: "writers"}))
			}
			r := rt.NewRepository(t, p, opts...)
			_, err := r.Restore(t.Context())
			require.ErrorIs(t, err, provider.ErrNotRetained)
			assert.ErrorContains(t, err, "retention.ms=604800000")
			assert.Zero(t, p.reads.Load(), "a refused restore reads nothing")
			assert.Equal(t, 0, r.Len())
			_, _, err = r.Get("acc-1")
			assert.ErrorIs(t, err, repository.ErrNotReady)
		})
	}
}

func TestRestoreRefusesAPartitionWithoutItsFirstEvents(t *testing.T) {
	for _, group := range []bool{false, true} {
		t.Run(fmt.Sprintf("group=%v", group), func(t *testing.T) {
			p := &truncated{Provider: seeded(t)}
			p.part.Store(1)
			p.low.Store(2)
			var opts []repository.Option
			if group {
				opts = append(opts, repository.WithGroup(repository.Group{Name: "writers"}))
			}
			r := rt.NewRepository(t, p, opts...)
			ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
			defer cancel()
			_, err := r.Restore(ctx)
			require.ErrorIs(t, err, provider.ErrNotRetained)
			assert.ErrorContains(t, err, "partition 1 starts at offset 2, not 0")
			assert.NotContains(t, err.Error(), "partition 0", "partitions that start at 0 are not blamed")
			assert.Equal(t, 0, r.Len())

			// Once nothing is missing, the same repository restores.
			p.low.Store(0)
			_, err = r.Restore(ctx)
			require.NoError(t, err)
			assert.Equal(t, 12, r.Len())
			require.NoError(t, r.Close())
		})
	}
}

// TestTakeoverChecksTheLog: a member that restored its first partitions
// does not take over a partition whose first events are gone; it keeps
// trying, and serves it once the log is whole again.
func TestTakeoverChecksTheLog(t *testing.T) {
	mem := seeded(t)
	p := &truncated{Provider: mem}
	var logs lockedBuffer
	first := rt.NewRepository(t, p, repository.WithGroup(repository.Group{Name: "writers", Instance: "first"}),
		repository.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	_, err := first.Restore(ctx)
	require.NoError(t, err)
	require.Equal(t, []int32{0, 1, 2}, first.Owned())

	// A second member takes a partition; then it leaves, and first takes
	// it back while it starts at offset 2.
	second := rt.NewRepository(t, p, repository.WithGroup(repository.Group{Name: "writers", Instance: "second"}))
	_, err = second.Restore(ctx)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(second.Owned()) > 0 }, 10*time.Second, 10*time.Millisecond)
	moved := second.Owned()[0]
	p.part.Store(moved)
	p.low.Store(2)
	require.NoError(t, second.Close())
	refusal := fmt.Sprintf("partition %d starts at offset 2, not 0", moved)
	require.Eventually(t, func() bool { return strings.Contains(logs.String(), refusal) },
		10*time.Second, 10*time.Millisecond, "the takeover of partition %d is refused", moved)
	assert.Contains(t, logs.String(), "takeover failed; retrying")
	assert.NotContains(t, first.Owned(), moved)
	_, _, err = first.Get(fmt.Sprintf("acc-%d", accountIn(t, moved)))
	var pe *repository.PartitionError
	require.ErrorAs(t, err, &pe)
	assert.ErrorIs(t, err, repository.ErrNotReady)

	p.low.Store(0)
	require.Eventually(t, func() bool { return len(first.Owned()) == 3 }, 20*time.Second, 10*time.Millisecond,
		"the takeover retries and serves partition 1 once it starts at 0")
	require.NoError(t, first.Close())
}

// lockedBuffer is a log destination safe for concurrent use.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// accountIn returns the number of a seeded account in partition id.
func accountIn(t *testing.T, id int32) int {
	t.Helper()
	for i := range 12 {
		if provider.PartitionFor([]byte(fmt.Sprintf("acc-%d", i)), 3) == id {
			return i
		}
	}
	t.Fatalf("no seeded account in partition %d", id)
	return 0
}

func TestMemoryKeepsEverything(t *testing.T) {
	p := newMemory(t, 1)
	require.NoError(t, p.CheckRetention(t.Context()))
	require.NoError(t, p.Close())
	assert.True(t, errors.Is(p.CheckRetention(t.Context()), provider.ErrClosed))
}
