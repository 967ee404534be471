package projection_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rehydrate/rehydrate/consume"
	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/projection"
	"github.com/rehydrate/rehydrate/provider/memory"
)

var errConnReset = errors.New("connection reset by peer")

// flakyStore fails the next commits that move a checkpoint, as a database
// whose connection breaks does: before anything lands, or (land) after the
// commit landed, so that the reader cannot know (a COMMIT whose answer was
// lost).
type flakyStore struct {
	*projection.MemoryStore[row]
	mu   sync.Mutex
	fail int
	land bool
}

func (s *flakyStore) Commit(ctx context.Context, name string, moves []projection.Move, apply func(context.Context, *projection.MemoryTx[row]) error) error {
	s.mu.Lock()
	failing := s.fail > 0 && len(moves) > 0
	if failing {
		s.fail--
	}
	s.mu.Unlock()
	switch {
	case !failing:
		return s.MemoryStore.Commit(ctx, name, moves, apply)
	case s.land:
		if err := s.MemoryStore.Commit(ctx, name, moves, apply); err != nil {
			return err
		}
	}
	return fmt.Errorf("commit: %w", errConnReset)
}

// TestRunnerRetriesStoreFailures breaks the store's commits: each failure
// is retried (and a commit that landed in spite of its error is not applied
// again), none is dead-lettered, and once the retries are spent the
// projection stops naming partition and checkpoint, which stays where it
// was.
func TestRunnerRetriesStoreFailures(t *testing.T) {
	reg := newRegistry(t)
	for _, tc := range []struct {
		name           string
		land, inHandle bool
	}{{"lost before commit", false, false}, {"landed but failed", true, false}, {"broke in the handler", false, true}} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := memory.New(2)
			require.NoError(t, err)
			dead, err := memory.New(1)
			require.NoError(t, err)
			model := map[string]int{}
			appendEvents(t, p, reg, 10, 200, model)
			broke := 0
			store := &flakyStore{MemoryStore: projection.NewMemoryStore[row](), fail: 3, land: tc.land}
			var fail func(*event.Envelope) error
			if tc.inHandle {
				// What the PostgreSQL store makes of a handler's statement
				// on a connection that broke.
				store.fail, fail = 0, func(*event.Envelope) error {
					if broke < 3 {
						broke++
						return fmt.Errorf("exec: %w: %w", projection.ErrStoreFailed, errConnReset)
					}
					return nil
				}
			}
			r, err := projection.New(projection.Config[*projection.MemoryTx[row]]{
				Name: "users", Provider: p, Store: store, Handler: counting(t, reg, fail), BatchSize: 16,
				Failures: consume.Failures{Retries: 3, Backoff: time.Millisecond, DeadLetter: dead},
			})
			require.NoError(t, err)
			require.NoError(t, r.Run(t.Context()))
			assert.Equal(t, wantRows(model), store.Rows(), "each event applied once")
			assert.Equal(t, 3, r.StoreFailures())
			ps, err := dead.Partitions(t.Context())
			require.NoError(t, err)
			assert.Equal(t, ps[0].Low, ps[0].High, "nothing dead-lettered for the store's failures")
		})
	}
	t.Run("retries spent", func(t *testing.T) {
		p, err := memory.New(1)
		require.NoError(t, err)
		model := map[string]int{}
		appendEvents(t, p, reg, 5, 40, model)
		store := &flakyStore{MemoryStore: projection.NewMemoryStore[row](), fail: 1 << 30}
		r, err := projection.New(projection.Config[*projection.MemoryTx[row]]{
			Name: "users", Provider: p, Store: store, Handler: counting(t, reg, nil), BatchSize: 16,
			Failures: consume.Failures{Retries: 2, Backoff: time.Millisecond},
		})
		require.NoError(t, err)
		err = r.Run(t.Context())
		var se *projection.StoreError
		require.ErrorAs(t, err, &se)
		assert.ErrorIs(t, err, errConnReset)
		assert.Equal(t, int32(0), se.Partition)
		assert.Equal(t, projection.NoCheckpoint, se.Offset)
		assert.Equal(t, 3, se.Attempts)
		var re *event.RecordError
		assert.False(t, errors.As(err, &re), "a store failure is not the record's")
		cps, err := store.Checkpoints(t.Context(), "users")
		require.NoError(t, err)
		assert.Equal(t, projection.NoCheckpoint, cps[0])
		assert.Empty(t, store.Rows())
	})
}
