package snapshot_test

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/provider"
	"github.com/rehydrate/rehydrate/provider/memory"
	"github.com/rehydrate/rehydrate/snapshot"
)

func newStore(t *testing.T, p provider.Provider) *snapshot.Store {
	t.Helper()
	s, err := snapshot.NewStore(p, snapshot.WithChunkSize(100))
	require.NoError(t, err)
	return s
}

func newTopic(t *testing.T, partitions int) *memory.Provider {
	t.Helper()
	p, err := memory.New(partitions)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// data is n aggregates' worth of bytes naming their offset: the store
// carries a snapshot's data without reading it.
func data(n int, offset int64) []byte {
	var buf []byte
	for i := range n {
		buf = fmt.Appendf(buf, `agg-%d v%d {"at":%d};`, i, i+1, offset)
	}
	return buf
}

func snap(partition int32, offset int64, n int) *snapshot.Snapshot {
	return &snapshot.Snapshot{Partition: partition, Offset: offset, StateVersion: 1,
		Codec: event.ContentTypeJSON, Aggregates: n, Data: data(n, offset)}
}

func acceptAll(*snapshot.Snapshot) error { return nil }

func load(t *testing.T, s *snapshot.Store, partition int32, accept func(*snapshot.Snapshot) error) snapshot.Loaded {
	t.Helper()
	got, err := s.Load(t.Context(), []int32{partition}, accept)
	require.NoError(t, err)
	return got[partition]
}

// live returns the keys of a partition of the store's topic as compaction
// would leave them.
func live(t *testing.T, p provider.Provider, partition int32) []string {
	t.Helper()
	ps, err := p.Partitions(t.Context())
	require.NoError(t, err)
	keys := map[string]bool{}
	require.NoError(t, p.Read(t.Context(), []provider.Range{{Partition: partition, Start: 0, End: ps[partition].High}}, 0,
		func(b provider.Batch) error {
			for _, r := range b.Records {
				keys[string(r.Key)] = len(r.Value) > 0
			}
			return nil
		}))
	var out []string
	for k, ok := range keys {
		if ok {
			out = append(out, k)
		}
	}
	slices.Sort(out)
	return out
}

func TestSaveLoadRoundTripInChunks(t *testing.T) {
	p := newTopic(t, 3)
	s := newStore(t, p)
	want := snap(2, 500, 40) // ~1 KB in chunks of 100 bytes
	require.NoError(t, s.Save(t.Context(), want))
	assert.NotEmpty(t, want.ID)

	got := load(t, newStore(t, p), 2, acceptAll)
	require.NotNil(t, got.Snapshot)
	assert.Empty(t, got.Rejected)
	assert.Equal(t, want.Data, got.Snapshot.Data)
	assert.Equal(t, want.ID, got.Snapshot.ID)
	assert.Equal(t, int64(500), got.Snapshot.Offset)
	assert.Equal(t, 40, got.Snapshot.Aggregates)
	assert.Equal(t, event.ContentTypeJSON, got.Snapshot.Codec)
	assert.GreaterOrEqual(t, len(live(t, p, 2)), 10, "9 chunks and a manifest")

	none, err := s.Load(t.Context(), []int32{0, 1}, acceptAll)
	require.NoError(t, err)
	assert.Nil(t, none[0].Snapshot)
	assert.Nil(t, none[1].Snapshot)
}

func TestSaveDeletesOlderSnapshots(t *testing.T) {
	p := newTopic(t, 1)
	s := newStore(t, p)
	require.NoError(t, s.Save(t.Context(), snap(0, 100, 20)))
	newer := snap(0, 200, 20)
	require.NoError(t, s.Save(t.Context(), newer))
	for _, k := range live(t, p, 0) {
		assert.Contains(t, k, newer.ID, "only the newest snapshot's keys stay")
	}

	// A store that only loaded deletes what it saw, too.
	s2 := newStore(t, p)
	require.NotNil(t, load(t, s2, 0, acceptAll).Snapshot)
	newest := snap(0, 300, 5)
	require.NoError(t, s2.Save(t.Context(), newest))
	for _, k := range live(t, p, 0) {
		assert.Contains(t, k, newest.ID)
	}
}

// failing fails AppendPartition calls from the nth on, as a writer that
// crashes mid-snapshot would stop writing.
type failing struct {
	*memory.Provider
	calls, failFrom atomic.Int64
}

func (f *failing) AppendPartition(ctx context.Context, partition int32, recs []event.Record) ([]provider.Position, error) {
	if n := f.calls.Add(1); n >= f.failFrom.Load() {
		return nil, fmt.Errorf("%w: test", provider.ErrUnavailable)
	}
	return f.Provider.AppendPartition(ctx, partition, recs)
}

func TestCrashMidWriteKeepsThePreviousSnapshot(t *testing.T) {
	p := &failing{Provider: newTopic(t, 1)}
	p.failFrom.Store(1 << 30)
	s := newStore(t, p)
	old := snap(0, 100, 20)
	require.NoError(t, s.Save(t.Context(), old))

	// 100 entries make more than 16 chunks: two chunk appends, then the
	// manifest. The second chunk append fails.
	p.calls.Store(0)
	p.failFrom.Store(2)
	err := s.Save(t.Context(), snap(0, 200, 100))
	require.ErrorIs(t, err, provider.ErrUnavailable)

	got := load(t, newStore(t, p.Provider), 0, acceptAll)
	require.NotNil(t, got.Snapshot)
	assert.Equal(t, old.ID, got.Snapshot.ID)
	require.Len(t, got.Rejected, 1)
	assert.Contains(t, got.Rejected[0].Err.Error(), "no manifest")
	assert.Equal(t, int64(200), got.Rejected[0].Offset)

	// The next snapshot deletes the partial one with the old one.
	p.failFrom.Store(1 << 30)
	s2 := newStore(t, p.Provider)
	load(t, s2, 0, acceptAll)
	next := snap(0, 300, 3)
	require.NoError(t, s2.Save(t.Context(), next))
	for _, k := range live(t, p.Provider, 0) {
		assert.Contains(t, k, next.ID)
	}
}

func TestCorruptChunkIsRejected(t *testing.T) {
	p := newTopic(t, 1)
	s := newStore(t, p)
	sn := snap(0, 100, 20)
	require.NoError(t, s.Save(t.Context(), sn))
	// Overwrite chunk 3 with other bytes of the same length.
	key := "chunk/" + sn.ID + "/3"
	_, err := p.AppendPartition(t.Context(), 0, []event.Record{{Key: []byte(key), Value: bytes.Repeat([]byte("x"), 100)}})
	require.NoError(t, err)

	got := load(t, newStore(t, p), 0, acceptAll)
	assert.Nil(t, got.Snapshot)
	require.Len(t, got.Rejected, 1)
	assert.ErrorIs(t, got.Rejected[0].Err, snapshot.ErrCorrupt)
	assert.Contains(t, got.Rejected[0].Err.Error(), "checksum")
}

func TestRejectedByCallerFallsBackToOlder(t *testing.T) {
	p := newTopic(t, 1)
	// Two writers that never saw each other's snapshots: neither deletes
	// the other's.
	require.NoError(t, newStore(t, p).Save(t.Context(), snap(0, 100, 2)))
	v2 := snap(0, 200, 2)
	v2.StateVersion = 2
	require.NoError(t, newStore(t, p).Save(t.Context(), v2))

	wantV1 := func(s *snapshot.Snapshot) error {
		if s.StateVersion != 1 {
			return fmt.Errorf("state version %d", s.StateVersion)
		}
		return nil
	}
	got := load(t, newStore(t, p), 0, wantV1)
	require.NotNil(t, got.Snapshot)
	assert.Equal(t, int64(100), got.Snapshot.Offset)
	require.Len(t, got.Rejected, 1)
	assert.Equal(t, "state version 2", got.Rejected[0].Err.Error())
}

// TestStaleWriterNeitherHidesNorDeletesNewer: a writer that saw only old
// snapshots saves one at a lower offset after the owner saved a newer one.
func TestStaleWriterNeitherHidesNorDeletesNewer(t *testing.T) {
	p := newTopic(t, 1)
	owner, stale := newStore(t, p), newStore(t, p)
	require.NoError(t, owner.Save(t.Context(), snap(0, 100, 2)))
	load(t, stale, 0, acceptAll) // the stale writer's takeover, long ago
	newer := snap(0, 300, 2)
	require.NoError(t, owner.Save(t.Context(), newer))
	require.NoError(t, stale.Save(t.Context(), snap(0, 200, 2)))

	got := load(t, newStore(t, p), 0, acceptAll)
	require.NotNil(t, got.Snapshot)
	assert.Equal(t, newer.ID, got.Snapshot.ID)
}

func TestEmptySnapshot(t *testing.T) {
	p := newTopic(t, 1)
	s := newStore(t, p)
	require.NoError(t, s.Save(t.Context(), &snapshot.Snapshot{Offset: 7, Codec: event.ContentTypeMsgpack}))
	got := load(t, s, 0, acceptAll)
	require.NotNil(t, got.Snapshot)
	assert.Empty(t, got.Snapshot.Data)
	assert.Equal(t, int64(7), got.Snapshot.Offset)
}

func TestMissingPartitionIsNoSnapshot(t *testing.T) {
	s := newStore(t, newTopic(t, 1))
	got := load(t, s, 3, acceptAll)
	assert.Nil(t, got.Snapshot)
	require.Len(t, got.Rejected, 1)
	assert.Contains(t, got.Rejected[0].Err.Error(), "no partition 3")
	err := s.Save(t.Context(), snap(3, 10, 1))
	require.ErrorContains(t, err, "snapshot: save partition 3 at offset 10")
}

func TestNewStoreNeedsPartitionAppender(t *testing.T) {
	_, err := snapshot.NewStore(struct{ provider.Provider }{newTopic(t, 1)})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "PartitionAppender")
}

// FuzzLoad: whatever a manifest and a chunk under a snapshot's keys hold,
// Load neither panics nor returns a snapshot its manifest does not vouch for.
func FuzzLoad(f *testing.F) {
	f.Add([]byte(`{"format":1,"id":"0000000000000007-00000001","partition":0,"offset":7,"chunks":1,"size":2,"crc32c":0}`), []byte("ab"))
	f.Add([]byte(`{"format":1,"chunks":-1}`), []byte{})
	f.Add([]byte(`not json`), []byte("x"))
	f.Fuzz(func(t *testing.T, manifest, chunk []byte) {
		p, err := memory.New(1)
		require.NoError(t, err)
		defer p.Close()
		const id = "0000000000000007-00000001"
		_, err = p.AppendPartition(t.Context(), 0, []event.Record{
			{Key: []byte("chunk/" + id + "/0"), Value: chunk},
			{Key: []byte("manifest/" + id), Value: manifest},
		})
		require.NoError(t, err)
		got := load(t, newStore(t, p), 0, acceptAll)
		if got.Snapshot == nil {
			require.LessOrEqual(t, len(got.Rejected), 1, "empty values are tombstones")
			return
		}
		require.Equal(t, id, got.Snapshot.ID)
		require.Equal(t, int64(7), got.Snapshot.Offset)
	})
}

// TestRollingStateVersionKeepsEachVersionsNewest: during a rolling upgrade
// of the state version, old and new instances keep each other's newest
// snapshot.
func TestRollingStateVersionKeepsEachVersionsNewest(t *testing.T) {
	p := newTopic(t, 1)
	version := func(v uint32, offset int64) *snapshot.Snapshot {
		s := snap(0, offset, 2)
		s.StateVersion = v
		return s
	}
	only := func(v uint32) func(*snapshot.Snapshot) error {
		return func(s *snapshot.Snapshot) error {
			if s.StateVersion != v {
				return fmt.Errorf("state version %d", s.StateVersion)
			}
			return nil
		}
	}
	old, upgraded := newStore(t, p), newStore(t, p)
	v1 := version(1, 100)
	require.NoError(t, old.Save(t.Context(), v1))
	load(t, upgraded, 0, only(2))
	require.NoError(t, upgraded.Save(t.Context(), version(2, 200)))
	v2 := version(2, 300)
	require.NoError(t, upgraded.Save(t.Context(), v2))

	got := load(t, newStore(t, p), 0, only(1))
	require.NotNil(t, got.Snapshot, "the old version's newest survives the new version's snapshots")
	assert.Equal(t, v1.ID, got.Snapshot.ID)
	got = load(t, newStore(t, p), 0, only(2))
	require.NotNil(t, got.Snapshot)
	assert.Equal(t, v2.ID, got.Snapshot.ID)
	assert.Len(t, got.Rejected, 0)
	keys := live(t, p, 0)
	for _, k := range keys {
		assert.NotContains(t, k, "00000000000000c8", "version 2 at offset 200 was replaced by 300")
	}
}
