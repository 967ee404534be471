package repositorytest

import (
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rehydrate/rehydrate/provider"
	"github.com/rehydrate/rehydrate/repository"
	"github.com/rehydrate/rehydrate/snapshot"
)

// RunSnapshots runs the suite of repositories with snapshots
// (repository.WithSnapshots): events gives providers on event topics,
// snapshots on snapshot topics (compacted on Kafka), whose providers must
// implement provider.PartitionAppender.
func RunSnapshots(t *testing.T, events, snapshots NewProvider) {
	t.Run("SnapshotPlusTailEqualsReplayEqualsLive", func(t *testing.T) { testSnapshotPlusTail(t, events, snapshots) })
}

// Store returns a snapshot store on p.
func Store(t testing.TB, p provider.Provider) *snapshot.Store {
	t.Helper()
	s, err := snapshot.NewStore(p, snapshot.WithChunkSize(1000)) // several chunks per snapshot
	require.NoError(t, err)
	return s
}

// manualSnapshots never triggers on its own: the test calls Snapshot.
var manualSnapshots = repository.Snapshots{StateVersion: 1, Events: 1 << 40, Interval: 24 * time.Hour}

// testSnapshotPlusTail is the invariant snapshots must keep: for random
// command histories with snapshots taken at random points, mid-burst
// included, restore(snapshot + tail) == restore(full replay) == the live
// state.
func testSnapshotPlusTail(t *testing.T, events, snapshots NewProvider) {
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			p, reopen := events(t, 4)
			sp, sreopen := snapshots(t, 4)
			live := Restored(t, p, repository.WithSnapshots(Store(t, sp), manualSnapshots))
			t.Cleanup(func() { _ = live.Close() })
			ctx := t.Context()
			rng := rand.New(rand.NewPCG(seed, 99))
			taken := 0
			var l Ledger
			for burst := range 3 + rng.IntN(3) {
				// Snapshots while commands run: copies race with appends.
				var wg sync.WaitGroup
				runCommands(t, live, seed*10+uint64(burst), 4, 25, &wg, &l)
				for range 1 + rng.IntN(3) {
					require.NoError(t, live.Snapshot(ctx))
					taken++
				}
				wg.Wait()
			}
			// A tail after the last snapshot, for some seeds.
			if seed%2 == 1 {
				var wg sync.WaitGroup
				runCommands(t, live, seed*100, 4, 25, &wg, &l)
				wg.Wait()
			}

			l.Check(t, live)
			want := stateOf(live)
			replayed := Restored(t, reopen())
			assert.Equal(t, want, stateOf(replayed), "restore(full replay) == live")

			fromSnap := Restored(t, reopen(), repository.WithSnapshots(Store(t, sreopen()), manualSnapshots))
			t.Cleanup(func() { _ = fromSnap.Close() })
			assert.Equal(t, want, stateOf(fromSnap), "restore(snapshot + tail) == live")
			l.Check(t, fromSnap)
			used := 0
			for _, ps := range fromSnap.Stats().Partitions {
				if ps.Snapshot >= 0 {
					used++
					assert.Empty(t, ps.Fallback)
				}
			}
			assert.Positive(t, used, "some partitions restored from the %d snapshots taken", taken)
			t.Logf("%d aggregates; %d of 4 partitions from a snapshot; %d events read after them",
				len(want), used, fromSnap.Stats().Events)
		})
	}
}
