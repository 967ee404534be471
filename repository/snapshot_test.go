package repository_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/provider"
	"github.com/rehydrate/rehydrate/provider/memory"
	"github.com/rehydrate/rehydrate/repository"
	rt "github.com/rehydrate/rehydrate/repository/repositorytest"
	"github.com/rehydrate/rehydrate/snapshot"
)

var manual = repository.Snapshots{StateVersion: 1, Events: 1 << 40, Interval: 24 * time.Hour}

func withSnapshots(t *testing.T, store provider.Provider, cfg repository.Snapshots) repository.Option {
	return repository.WithSnapshots(rt.Store(t, store), cfg)
}

// snapshotted returns an event log of 3 partitions with accounts, a store
// holding a snapshot of every partition, and the live state.
func snapshotted(t *testing.T) (events, store provider.Provider, live *repository.Repository[rt.Account]) {
	t.Helper()
	events, store = seeded(t), newMemory(t, 3)
	live = rt.Restored(t, events, withSnapshots(t, store, manual))
	require.NoError(t, live.Snapshot(t.Context()))
	return events, store, live
}

func fromSnapshot(stats repository.Stats) (n int) {
	for _, p := range stats.Partitions {
		if p.Snapshot >= 0 {
			n++
		}
	}
	return n
}

func TestSnapshotUsedAndTailApplied(t *testing.T) {
	events, store, live := snapshotted(t)
	_, err := live.Execute(t.Context(), "acc-1", rt.Deposit(40))
	require.NoError(t, err)
	_, err = live.Execute(t.Context(), "acc-2", rt.Close())
	require.NoError(t, err)

	var logs bytes.Buffer
	r := rt.Restored(t, events, withSnapshots(t, store, manual),
		repository.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	stats := r.Stats()
	assert.Equal(t, 3, fromSnapshot(stats), "every partition from its snapshot: %+v", stats.Partitions)
	assert.EqualValues(t, 2, stats.Events, "only the tail is read")
	a, v, err := r.Get("acc-1")
	require.NoError(t, err)
	assert.Equal(t, uint64(4), v)
	assert.Equal(t, int64(1+2+40), a.Balance)
	_, _, err = r.Get("acc-2")
	assert.ErrorIs(t, err, repository.ErrNotFound)
	_, err = r.Create(t.Context(), "acc-2", rt.Open("again"))
	assert.ErrorIs(t, err, repository.ErrExists, "a deletion survives the snapshot")
	assert.Contains(t, logs.String(), "restore done")
}

func TestSnapshotFallbacks(t *testing.T) {
	for _, tc := range []struct {
		name   string
		reopen func(t *testing.T, events, store provider.Provider) (provider.Provider, repository.Option)
		reason string
	}{
		{"another state version", func(t *testing.T, events, store provider.Provider) (provider.Provider, repository.Option) {
			cfg := manual
			cfg.StateVersion = 2
			return events, withSnapshots(t, store, cfg)
		}, "state version 1, this repository's is 2"},
		{"beyond the end of a recreated topic", func(t *testing.T, _, store provider.Provider) (provider.Provider, repository.Option) {
			return newMemory(t, 3), withSnapshots(t, store, manual)
		}, "beyond the partition's end"},
		{"a recreated topic grown past the snapshot", func(t *testing.T, _, store provider.Provider) (provider.Provider, repository.Option) {
			recreated := newMemory(t, 3)
			r := rt.Restored(t, recreated)
			for i := range 40 {
				_, err := r.Create(t.Context(), fmt.Sprintf("new-%d", i), rt.Open("other"))
				require.NoError(t, err)
			}
			return recreated, withSnapshots(t, store, manual)
		}, "taken of another history"},
		{"no snapshot", func(t *testing.T, events, _ provider.Provider) (provider.Provider, repository.Option) {
			return events, withSnapshots(t, newMemory(t, 3), manual)
		}, "no snapshot stored"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			events, store, _ := snapshotted(t)
			p, opt := tc.reopen(t, events, store)
			var logs bytes.Buffer
			r := rt.Restored(t, p, opt, repository.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
			stats := r.Stats()
			assert.Zero(t, fromSnapshot(stats))
			for _, ps := range stats.Partitions {
				assert.Contains(t, ps.Fallback, tc.reason, "partition %d", ps.Partition)
			}
			assert.Contains(t, logs.String(), "replaying the partition")
			want := rt.Restored(t, p).Len()
			assert.Equal(t, want, r.Len(), "replayed in full")
		})
	}
}

func TestSnapshotCorruptFallsBack(t *testing.T) {
	events, store, _ := snapshotted(t)
	// Corrupt every chunk 0 of partition 1's snapshot.
	var keys []string
	ps, err := store.Partitions(t.Context())
	require.NoError(t, err)
	require.NoError(t, store.Read(t.Context(), provider.Ranges(ps[1:2]), 0, func(b provider.Batch) error {
		for _, r := range b.Records {
			if strings.HasPrefix(string(r.Key), "chunk/") && strings.HasSuffix(string(r.Key), "/0") {
				keys = append(keys, string(r.Key))
			}
		}
		return nil
	}))
	require.NotEmpty(t, keys)
	for _, k := range keys {
		_, err := store.(provider.PartitionAppender).AppendPartition(t.Context(), 1, []event.Record{{Key: []byte(k), Value: []byte("garbage")}})
		require.NoError(t, err)
	}
	r := rt.Restored(t, events, withSnapshots(t, store, manual))
	stats := r.Stats()
	assert.Equal(t, 2, fromSnapshot(stats))
	assert.Contains(t, stats.Partitions[1].Fallback, "corrupt")
	assert.Equal(t, 12, r.Len())
}

// TestSnapshotCoversTruncatedLog: a partition whose first events are gone
// restores from a snapshot at or above its first offset, and only from one.
func TestSnapshotCoversTruncatedLog(t *testing.T) {
	events, store, live := snapshotted(t)
	p := &truncated{Provider: events.(*memory.Provider)}
	p.part.Store(1)
	ps, err := events.Partitions(t.Context())
	require.NoError(t, err)
	p.low.Store(ps[1].High) // everything below the snapshot is gone

	r := rt.Restored(t, p, withSnapshots(t, store, manual))
	assert.Equal(t, 12, r.Len())

	// Without snapshots, the same log is refused.
	_, err = rt.NewRepository(t, p).Restore(t.Context())
	require.ErrorIs(t, err, provider.ErrNotRetained)
	// With a snapshot below the log start, too, naming why.
	for i := 0; ; i++ {
		if id := fmt.Sprintf("acc-%d", i); live.PartitionOf(id) == 1 {
			_, err = live.Execute(t.Context(), id, rt.Deposit(1))
			require.NoError(t, err)
			break
		}
	}
	p.low.Store(ps[1].High + 1)
	_, err = rt.NewRepository(t, p, withSnapshots(t, store, manual)).Restore(t.Context())
	require.ErrorIs(t, err, provider.ErrNotRetained)
	assert.ErrorContains(t, err, "below the partition's first offset")
}

// TestSnapshotWithUnresolvedAppend: an append whose outcome is unknown may
// have landed below offsets acknowledged later; a snapshot taken before it
// is resolved must still let a restore find it.
func TestSnapshotWithUnresolvedAppend(t *testing.T) {
	mem := newMemory(t, 1)
	f := &faultyProvider{Provider: mem}
	store := newMemory(t, 1)
	live := rt.Restored(t, f, withSnapshots(t, store, manual))
	ctx := t.Context()
	_, err := live.Create(ctx, "a", rt.Open("ada"))
	require.NoError(t, err)
	f.set(func(f *faultyProvider) { f.appendFault = unknownWritten })
	_, err = live.Execute(ctx, "a", rt.Deposit(5))
	require.ErrorIs(t, err, provider.ErrOutcomeUnknown)
	// Acknowledged after the unknown one, in the same partition.
	_, err = live.Create(ctx, "b", rt.Open("bob"))
	require.NoError(t, err)
	require.NoError(t, live.Snapshot(ctx))

	r := rt.Restored(t, mem, withSnapshots(t, store, manual))
	require.Equal(t, 1, fromSnapshot(r.Stats()))
	a, v, err := r.Get("a")
	require.NoError(t, err)
	assert.Equal(t, uint64(2), v, "the deposit that landed is found after the snapshot")
	assert.Equal(t, int64(5), a.Balance)
}

func TestSnapshotTriggers(t *testing.T) {
	events, store := newMemory(t, 2), newMemory(t, 2)
	live := rt.Restored(t, events, withSnapshots(t, store, repository.Snapshots{StateVersion: 1, Events: 10, Interval: time.Hour}))
	t.Cleanup(func() { _ = live.Close() })
	_, err := live.Create(t.Context(), "a", rt.Open("ada"))
	require.NoError(t, err)
	for range 10 {
		_, err = live.Execute(t.Context(), "a", rt.Deposit(1))
		require.NoError(t, err)
	}
	part := live.PartitionOf("a")
	s := rt.Store(t, store)
	require.Eventually(t, func() bool {
		l, err := s.Load(t.Context(), []int32{part}, func(*snapshot.Snapshot) error { return nil })
		return err == nil && l[part].Snapshot != nil
	}, 10*time.Second, 20*time.Millisecond, "a snapshot after 10 events")

	// Interval: one event, then the time passes.
	events2, store2 := newMemory(t, 1), newMemory(t, 1)
	live2 := rt.Restored(t, events2, withSnapshots(t, store2, repository.Snapshots{StateVersion: 1, Events: 1000, Interval: 50 * time.Millisecond}))
	t.Cleanup(func() { _ = live2.Close() })
	_, err = live2.Create(t.Context(), "a", rt.Open("ada"))
	require.NoError(t, err)
	s2 := rt.Store(t, store2)
	require.Eventually(t, func() bool {
		l, err := s2.Load(t.Context(), []int32{0}, func(*snapshot.Snapshot) error { return nil })
		return err == nil && l[0].Snapshot != nil
	}, 10*time.Second, 20*time.Millisecond, "a snapshot once the interval passed")
	require.NoError(t, live2.Close())
}

type (
	//lint:ignore U1000 the field is there to be refused (unexported state is not snapshotted)
	withUnexported struct{ hidden int }
	withFunc       struct{ F func() }
	withSkipped    struct {
		Cache map[string]int `json:"-"`
	}
	withInterface struct{ Any any }
	fine          struct {
		At    time.Time
		Tags  map[string][]string
		Inner *struct{ N int }
	}
)

func TestSnapshotsRefuseStatesTheCodecCannotCarry(t *testing.T) {
	reg := rt.Registry(t)
	store := rt.Store(t, newMemory(t, 1))
	check := func(err error, want string) {
		t.Helper()
		if want == "" {
			require.NoError(t, err)
			return
		}
		require.Error(t, err)
		assert.Contains(t, err.Error(), want)
	}
	opt := repository.WithSnapshots(store, manual)
	_, err := repository.New[withUnexported](newMemory(t, 1), reg, opt)
	check(err, "withUnexported.hidden is unexported")
	_, err = repository.New[withFunc](newMemory(t, 1), reg, opt)
	check(err, "withFunc.F is a func")
	_, err = repository.New[withSkipped](newMemory(t, 1), reg, opt)
	check(err, `withSkipped.Cache is tagged json:"-"`)
	_, err = repository.New[withInterface](newMemory(t, 1), reg, opt)
	check(err, "withInterface.Any is a interface")
	_, err = repository.New[fine](newMemory(t, 1), reg, opt)
	check(err, "")
	_, err = repository.New[withUnexported](newMemory(t, 1), reg)
	check(err, "") // without snapshots, any state goes
}

func TestSnapshotTinyIntervalDoesNotPanic(t *testing.T) {
	r := rt.Restored(t, newMemory(t, 1), withSnapshots(t, newMemory(t, 1), repository.Snapshots{StateVersion: 1, Interval: 1}))
	_, err := r.Create(t.Context(), "a", rt.Open("ada"))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return r.Stats().Partitions[0].Aggregates == 1 }, time.Second, time.Millisecond)
	require.NoError(t, r.Close())
}

func TestSnapshotWithoutStore(t *testing.T) {
	r := rt.Restored(t, newMemory(t, 1))
	assert.ErrorContains(t, r.Snapshot(t.Context()), "WithSnapshots")
}

// TestReadSnapshots: a reader gets what the writer snapshotted (checked
// against what the test did, not against a restore), where to read each
// partition's events from, and the repository's fallbacks.
func TestReadSnapshots(t *testing.T) {
	events, store := seeded(t), newMemory(t, 3) // acc-0..11: opened by ada, deposits 1 and 2
	live := rt.Restored(t, events, withSnapshots(t, store, manual))
	_, err := live.Execute(t.Context(), "acc-2", rt.Close())
	require.NoError(t, err)
	require.NoError(t, live.Snapshot(t.Context()))
	_, err = live.Execute(t.Context(), "acc-1", rt.Deposit(40)) // after the snapshot: not in it
	require.NoError(t, err)
	ps, err := events.Partitions(t.Context())
	require.NoError(t, err)

	read := func(events provider.Provider, cfg repository.Snapshots, ps []provider.Partition) (map[string]repository.SnapshotEntry[rt.Account], []repository.PartitionStats, error) {
		got := make(map[string]repository.SnapshotEntry[rt.Account])
		stats, err := repository.ReadSnapshots(t.Context(), events, rt.Registry(t), rt.Store(t, store), cfg, ps,
			func(partition int32, e repository.SnapshotEntry[rt.Account]) error {
				assert.Equal(t, provider.PartitionFor([]byte(e.ID), len(ps)), partition, e.ID)
				assert.NotContains(t, got, e.ID, "given once")
				got[e.ID] = e
				return nil
			})
		return got, stats, err
	}
	got, stats, err := read(events, manual, ps)
	require.NoError(t, err)
	require.Len(t, got, 12)
	for i := range 12 {
		id := fmt.Sprintf("acc-%d", i)
		want := repository.SnapshotEntry[rt.Account]{ID: id, Version: 3, State: rt.Account{Owner: "ada", Balance: 3, History: []int64{1, 2}}}
		if id == "acc-2" {
			want = repository.SnapshotEntry[rt.Account]{ID: id, Version: 4, Deleted: true}
		}
		e := got[id]
		assert.GreaterOrEqual(t, e.Offset, int64(0), id)
		e.Offset = 0
		assert.Equal(t, want, e, id)
	}
	require.Len(t, stats, 3)
	for i, st := range stats {
		assert.Equal(t, ps[i].ID, st.Partition)
		assert.GreaterOrEqual(t, st.Snapshot, int64(0), "partition %d: %s", i, st.Fallback)
		assert.Equal(t, st.Snapshot, st.Start, "the events are read from the snapshot's offset")
		assert.Equal(t, ps[i].High, st.End)
		assert.Empty(t, st.Fallback)
	}
	// Reading from Start gives the events after the snapshot, and only those.
	var tail []string
	require.NoError(t, events.Read(t.Context(), rangesFrom(stats), 0, func(b provider.Batch) error {
		for _, rec := range b.Records {
			tail = append(tail, string(rec.Key))
		}
		return nil
	}))
	assert.Equal(t, []string{"acc-1"}, tail)

	// The repository's own fallbacks: another state version, another history.
	other := manual
	other.StateVersion = 2
	recreated := newMemory(t, 3)
	r := rt.Restored(t, recreated)
	for i := range 100 { // every partition past the snapshot's offset
		_, err := r.Create(t.Context(), fmt.Sprintf("new-%d", i), rt.Open("other"))
		require.NoError(t, err)
	}
	recreatedPs, err := recreated.Partitions(t.Context())
	require.NoError(t, err)
	for _, c := range []struct {
		events provider.Provider
		cfg    repository.Snapshots
		ps     []provider.Partition
		reason string
	}{
		{events, other, ps, "state version 1, this repository's is 2"},
		{recreated, manual, recreatedPs, "taken of another history"},
	} {
		got, stats, err := read(c.events, c.cfg, c.ps)
		require.NoError(t, err)
		assert.Empty(t, got)
		for i, st := range stats {
			assert.EqualValues(t, -1, st.Snapshot)
			assert.Equal(t, c.ps[i].Low, st.Start)
			assert.Contains(t, st.Fallback, c.reason)
		}
	}

	_, _, err = read(events, manual, ps[1:])
	assert.ErrorContains(t, err, "give every partition of the topic")
	_, err = repository.ReadSnapshots(t.Context(), events, rt.Registry(t), rt.Store(t, store), manual, ps,
		func(int32, repository.SnapshotEntry[rt.Account]) error { return errStop })
	assert.ErrorIs(t, err, errStop)
}

var errStop = errors.New("stop")

func rangesFrom(stats []repository.PartitionStats) []provider.Range {
	rs := make([]provider.Range, len(stats))
	for i, st := range stats {
		rs[i] = provider.Range{Partition: st.Partition, Start: st.Start, End: st.End}
	}
	return rs
}

// TestRevocationHandsOverASnapshot: a partition that changed and is given
// up in a rebalance is snapshotted as it is revoked, so its next owner
// restores it from that snapshot and reads no event of it.
func TestRevocationHandsOverASnapshot(t *testing.T) {
	events, store := seeded(t), newMemory(t, 3)
	snaps := withSnapshots(t, store, manual) // never on their own
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	first := rt.NewRepository(t, events, repository.WithGroup(repository.Group{Name: "writers", Instance: "first"}), snaps)
	_, err := first.Restore(ctx)
	require.NoError(t, err)
	for i := range 12 {
		_, err := first.Execute(ctx, fmt.Sprintf("acc-%d", i), rt.Deposit(5))
		require.NoError(t, err)
	}
	second := rt.NewRepository(t, events, repository.WithGroup(repository.Group{Name: "writers", Instance: "second"}),
		withSnapshots(t, store, manual))
	_, err = second.Restore(ctx)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(second.Owned()) > 0 }, 10*time.Second, 10*time.Millisecond)
	checked := 0
	for _, ps := range second.Stats().Partitions {
		if ps.Applied < 0 {
			continue // not second's
		}
		checked++
		assert.GreaterOrEqual(t, ps.Snapshot, int64(0), "partition %d restored from a snapshot: %+v", ps.Partition, ps)
		assert.Equal(t, ps.Snapshot, ps.End, "partition %d: the snapshot is at its end: nothing read after it", ps.Partition)
		a, _, err := second.Get(fmt.Sprintf("acc-%d", accountIn(t, ps.Partition)))
		require.NoError(t, err)
		assert.Equal(t, int64(1+2+5), a.Balance, "the snapshot holds the last deposit")
	}
	assert.Positive(t, checked, "second serves a partition")
}
