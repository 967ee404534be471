package repository_test

import (
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rehydrate/rehydrate/repository"
	rt "github.com/rehydrate/rehydrate/repository/repositorytest"
)

func TestLimitRefusesNewAggregates(t *testing.T) {
	p := newMemory(t, 3)
	r := rt.Restored(t, p, repository.WithLimits(repository.Limits{Aggregates: 3}))
	ctx := t.Context()
	for i := range 3 {
		_, err := r.Create(ctx, fmt.Sprint("a", i), rt.Open("o"))
		require.NoError(t, err)
	}
	before := endOffsets(t, p)
	_, err := r.Create(ctx, "a3", rt.Open("o"))
	var le *repository.LimitError
	require.ErrorAs(t, err, &le)
	assert.ErrorIs(t, err, repository.ErrLimit)
	assert.Equal(t, "a3", le.AggregateID)
	assert.EqualValues(t, 3, le.Limit)
	assert.Equal(t, before, endOffsets(t, p), "nothing appended")
	_, err = r.Execute(ctx, "a1", rt.Deposit(5))
	require.NoError(t, err, "the aggregates held still take commands")

	// A refused Create does not count; a failed one neither.
	_, err = r.Create(ctx, "a1", rt.Open("again"))
	require.ErrorIs(t, err, repository.ErrExists)
	_, err = r.Create(ctx, "a4", rt.Open("o"))
	require.ErrorIs(t, err, repository.ErrLimit)
}

func TestLimitFailsARestoreThatWouldExceedIt(t *testing.T) {
	p := seeded(t) // 12 accounts over 3 partitions
	r := rt.NewRepository(t, p, repository.WithLimits(repository.Limits{Aggregates: 5}))
	_, err := r.Restore(t.Context())
	var le *repository.LimitError
	require.ErrorAs(t, err, &le)
	assert.ErrorIs(t, err, repository.ErrLimit)
	assert.Contains(t, err.Error(), "partition")
	assert.Equal(t, 0, r.Len())
	assert.Zero(t, r.Stats().Aggregates, "a failed restore holds nothing")
	_, err = r.Restore(t.Context())
	require.ErrorIs(t, err, repository.ErrLimit, "a refused restore leaves the count right: refused again")

	// From snapshots too.
	store := newMemory(t, 3)
	full := rt.Restored(t, p, withSnapshots(t, store, manual))
	require.NoError(t, full.Snapshot(t.Context()))
	limited := rt.NewRepository(t, p, withSnapshots(t, store, manual), repository.WithLimits(repository.Limits{Aggregates: 5}))
	_, err = limited.Restore(t.Context())
	require.True(t, errors.Is(err, repository.ErrLimit), "%v", err)
}

func TestStatsReportMemoryPerPartition(t *testing.T) {
	r := rt.Restored(t, seeded(t))
	stats := r.Stats()
	require.Len(t, stats.Partitions, 3)
	n := 0
	for _, ps := range stats.Partitions {
		n += ps.Aggregates
		if ps.Aggregates > 0 {
			// An entry, its id, an owner's name and a history of two.
			assert.Greater(t, ps.Bytes, int64(ps.Aggregates)*100, "partition %d", ps.Partition)
			assert.Less(t, ps.Bytes, int64(ps.Aggregates)*1000, "partition %d", ps.Partition)
		}
	}
	assert.Equal(t, 12, n)
	assert.Equal(t, 12, stats.Aggregates)
}
