package projection_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rehydrate/rehydrate/consume"
	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/projection"
	"github.com/rehydrate/rehydrate/provider"
	"github.com/rehydrate/rehydrate/provider/memory"
)

// row is a read model row: how many events of its aggregate were applied,
// and the last version seen, so that a duplicate or a gap shows.
type row struct {
	Applied int
	Version uint64
}

type counted struct {
	N int `msgpack:"n" json:"n"`
}

func newRegistry(t *testing.T) *event.Registry {
	t.Helper()
	reg := event.NewRegistry()
	require.NoError(t, event.Register[counted](reg, "Counted"))
	return reg
}

// counting is the projection under test: it counts each aggregate's events,
// and fails (without dead-lettering a stale row) on a version out of order.
func counting(t *testing.T, reg *event.Registry, fail func(env *event.Envelope) error) *event.HandlersWith[*projection.MemoryTx[row]] {
	t.Helper()
	h := event.NewHandlersWith[*projection.MemoryTx[row]](reg)
	require.NoError(t, event.AddHandlerWith(h, func(_ context.Context, tx *projection.MemoryTx[row], env *event.Envelope, _ counted) error {
		if fail != nil {
			if err := fail(env); err != nil {
				return err
			}
		}
		r, _ := tx.Get(env.AggregateID)
		r.Applied++
		r.Version = env.Version
		tx.Put(env.AggregateID, r)
		return nil
	}))
	return h
}

// appendEvents appends n events over keys aggregates, versions in order,
// and returns the model: events per aggregate.
func appendEvents(t *testing.T, p provider.Provider, reg *event.Registry, keys, n int, model map[string]int) []provider.Position {
	t.Helper()
	recs := make([]event.Record, 0, n)
	for i := range n {
		id := "a" + strconv.Itoa(i%keys)
		model[id]++
		env, err := reg.NewEnvelope(id, uint64(model[id]), counted{N: i})
		require.NoError(t, err)
		recs = append(recs, env.Record())
	}
	pos, err := p.Append(t.Context(), recs)
	require.NoError(t, err)
	return pos
}

func wantRows(model map[string]int) map[string]row {
	out := make(map[string]row, len(model))
	for id, n := range model {
		out[id] = row{Applied: n, Version: uint64(n)}
	}
	return out
}

func TestRunnerReplayResumesAtCheckpoints(t *testing.T) {
	p, err := memory.New(4)
	require.NoError(t, err)
	reg := newRegistry(t)
	model := map[string]int{}
	appendEvents(t, p, reg, 20, 300, model)
	store := projection.NewMemoryStore[row]()
	run := func() *projection.Runner[*projection.MemoryTx[row]] {
		r, err := projection.New(projection.Config[*projection.MemoryTx[row]]{
			Name: "users", Provider: p, Store: store, Handler: counting(t, reg, nil), BatchSize: 7,
		})
		require.NoError(t, err)
		require.NoError(t, r.Run(t.Context()))
		select {
		case <-r.CaughtUp():
		default:
			t.Fatal("a finished replay is caught up")
		}
		return r
	}
	run()
	assert.Equal(t, wantRows(model), store.Rows())
	appendEvents(t, p, reg, 20, 100, model)
	r := run()
	assert.Equal(t, wantRows(model), store.Rows(), "the second run applies only the new events")
	lag, err := r.Lag(t.Context())
	require.NoError(t, err)
	for part, l := range lag {
		assert.Zero(t, l, "partition %d", part)
	}
	cps, err := store.Checkpoints(t.Context(), "users")
	require.NoError(t, err)
	ps, err := p.Partitions(t.Context())
	require.NoError(t, err)
	for _, part := range ps {
		assert.Equal(t, part.High, cps[part.ID], "partition %d checkpoint", part.ID)
	}
}

// TestRunnerStopsAnywhere stops a following projection at random moments
// (a context cancelled in the middle of a handler, of a commit, of a read)
// while events are appended, and restarts it: each event is applied once.
func TestRunnerStopsAnywhere(t *testing.T) {
	p, err := memory.New(3)
	require.NoError(t, err)
	reg := newRegistry(t)
	model := map[string]int{}
	store := projection.NewMemoryStore[row]()
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 40 {
		appendEvents(t, p, reg, 15, 1+rng.IntN(60), model)
		ctx, cancel := context.WithCancel(t.Context())
		stopAfter := rng.IntN(50)
		seen := 0
		h := counting(t, reg, func(*event.Envelope) error {
			if seen++; seen == stopAfter {
				cancel() // mid-batch: the handler's transaction must not commit
			}
			return nil
		})
		r, err := projection.New(projection.Config[*projection.MemoryTx[row]]{
			Name: "users", Provider: p, Store: store, Handler: h, Mode: consume.ReplayThenFollow, BatchSize: 1 + rng.IntN(9),
		})
		require.NoError(t, err)
		go func() {
			<-r.CaughtUp() // when the stop comes later than the events: stop anyway
			cancel()
		}()
		err = r.Run(ctx)
		require.ErrorIs(t, err, context.Canceled, "round %d", round)
		cancel()
		for id, got := range store.Rows() {
			require.LessOrEqual(t, got.Applied, model[id], "round %d: %s applied more often than appended", round, id)
			require.Equal(t, uint64(got.Applied), got.Version, "round %d: %s: an event applied twice or lost", round, id)
		}
	}
	r, err := projection.New(projection.Config[*projection.MemoryTx[row]]{Name: "users", Provider: p, Store: store, Handler: counting(t, reg, nil)})
	require.NoError(t, err)
	require.NoError(t, r.Run(t.Context()))
	assert.Equal(t, wantRows(model), store.Rows())
}

func TestRunnerFailures(t *testing.T) {
	reg := newRegistry(t)
	poison := errors.New("poison")
	const bad = "a3"
	failing := func(env *event.Envelope) error {
		if env.AggregateID == bad && env.Version == 2 {
			return poison
		}
		return nil
	}
	t.Run("stop", func(t *testing.T) {
		p, err := memory.New(1)
		require.NoError(t, err)
		model := map[string]int{}
		appendEvents(t, p, reg, 5, 40, model) // a3's 2nd event is at offset 8
		store := projection.NewMemoryStore[row]()
		retries := 0
		r, err := projection.New(projection.Config[*projection.MemoryTx[row]]{
			Name: "users", Provider: p, Store: store, Handler: counting(t, reg, failing), BatchSize: 16,
			Failures: consume.Failures{Retries: 2, Backoff: time.Millisecond, OnRetry: func(event.Record, error) { retries++ }},
		})
		require.NoError(t, err)
		err = r.Run(t.Context())
		var re *event.RecordError
		require.ErrorAs(t, err, &re)
		assert.ErrorIs(t, err, poison)
		assert.Equal(t, int32(0), re.Partition)
		assert.Equal(t, int64(8), re.Offset)
		assert.Equal(t, 2, retries)
		cps, err := store.Checkpoints(t.Context(), "users")
		require.NoError(t, err)
		assert.Equal(t, int64(8), cps[0], "the checkpoint stays before the record given up")
		rows := store.Rows()
		assert.Len(t, rows, 5, "the records before it are applied")
		assert.Equal(t, row{Applied: 1, Version: 1}, rows[bad])
	})
	t.Run("dead letter", func(t *testing.T) {
		p, err := memory.New(1)
		require.NoError(t, err)
		dead, err := memory.New(1)
		require.NoError(t, err)
		model := map[string]int{}
		appendEvents(t, p, reg, 5, 40, model)
		store := projection.NewMemoryStore[row]()
		h := event.NewHandlersWith[*projection.MemoryTx[row]](reg)
		require.NoError(t, event.AddHandlerWith(h, func(_ context.Context, tx *projection.MemoryTx[row], env *event.Envelope, _ counted) error {
			if err := failing(env); err != nil {
				return err
			}
			r, _ := tx.Get(env.AggregateID)
			r.Applied++
			tx.Put(env.AggregateID, r)
			return nil
		}))
		r, err := projection.New(projection.Config[*projection.MemoryTx[row]]{
			Name: "users", Provider: p, Store: store, Handler: h, BatchSize: 16,
			Failures: consume.Failures{Retries: 1, Backoff: time.Millisecond, DeadLetter: dead},
		})
		require.NoError(t, err)
		require.NoError(t, r.Run(t.Context()))
		rows := store.Rows()
		for id, n := range model {
			if id == bad {
				n--
			}
			assert.Equal(t, n, rows[id].Applied, id)
		}
		var dl []event.Record
		require.NoError(t, consume.Stream(t.Context(), dead, consume.Replay, consume.StreamOptions{}, func(b provider.Batch) error {
			dl = append(dl, b.Records...)
			return nil
		}))
		require.Len(t, dl, 1)
		assert.Equal(t, bad, string(dl[0].Key))
		cps, err := store.Checkpoints(t.Context(), "users")
		require.NoError(t, err)
		assert.Equal(t, int64(40), cps[0])
	})
}

// TestStoreFencesAStaleReader has a reader stall inside its handler while
// another claims its partitions: the stalled reader's commit is refused and
// none of its effects land.
func TestStoreFencesAStaleReader(t *testing.T) {
	p, err := memory.New(2)
	require.NoError(t, err)
	reg := newRegistry(t)
	model := map[string]int{}
	appendEvents(t, p, reg, 10, 100, model)
	store := projection.NewMemoryStore[row]()
	stalled, release := make(chan struct{}), make(chan struct{})
	var once bool
	stale, err := projection.New(projection.Config[*projection.MemoryTx[row]]{
		Name: "users", Provider: p, Store: store, Mode: consume.ReplayThenFollow, BatchSize: 10,
		Handler: projection.HandlerFunc[*projection.MemoryTx[row]](func(ctx context.Context, tx *projection.MemoryTx[row], rec event.Record) (bool, error) {
			if !once {
				once = true
				close(stalled)
				<-release
			}
			tx.Put("stale/"+strconv.FormatInt(rec.Offset, 10), row{})
			return true, nil
		}),
	})
	require.NoError(t, err)
	errc := make(chan error, 1)
	go func() { errc <- stale.Run(t.Context()) }()
	<-stalled
	// The stale reader is inside its transaction: the new owner claims
	// every partition and applies them all.
	fresh, err := projection.New(projection.Config[*projection.MemoryTx[row]]{Name: "users", Provider: p, Store: store, Handler: counting(t, reg, nil)})
	require.NoError(t, err)
	require.NoError(t, fresh.Run(t.Context()))
	close(release)
	err = <-errc
	require.ErrorIs(t, err, projection.ErrFenced)
	var fe *projection.FencedError
	require.ErrorAs(t, err, &fe)
	assert.Equal(t, 1, stale.Fenced())
	assert.Equal(t, wantRows(model), store.Rows(), "nothing of the stale reader's batch")
}

func TestRunnerLiveStartsAtTheEndAndResumes(t *testing.T) {
	p, err := memory.New(2)
	require.NoError(t, err)
	reg := newRegistry(t)
	before := map[string]int{}
	appendEvents(t, p, reg, 4, 20, before)
	store := projection.NewMemoryStore[row]()
	newRunner := func() *projection.Runner[*projection.MemoryTx[row]] {
		r, err := projection.New(projection.Config[*projection.MemoryTx[row]]{Name: "live", Provider: p, Store: store, Handler: counting(t, reg, nil), Mode: consume.Live})
		require.NoError(t, err)
		return r
	}
	r := newRunner()
	ctx, cancel := context.WithCancel(t.Context())
	errc := make(chan error, 1)
	go func() { errc <- r.Run(ctx) }()
	<-r.CaughtUp()
	cancel()
	require.ErrorIs(t, <-errc, context.Canceled)
	assert.Empty(t, store.Rows(), "nothing from before the first start")
	// Appended while no reader runs: a restarted live projection resumes
	// at its checkpoint, it does not skip them.
	model := map[string]int{}
	for id, n := range before {
		model[id] = n
	}
	pos := appendEvents(t, p, reg, 4, 12, model)
	r = newRunner()
	ctx, cancel = context.WithCancel(t.Context())
	defer cancel()
	go func() { errc <- r.Run(ctx) }()
	wctx, wcancel := context.WithTimeout(ctx, 10*time.Second)
	defer wcancel()
	require.NoError(t, r.WaitFor(wctx, pos...))
	rows := store.Rows()
	for id, n := range model {
		assert.Equal(t, n-before[id], rows[id].Applied, id)
	}
	cancel()
	require.ErrorIs(t, <-errc, context.Canceled)
}

func TestWaitForIsBounded(t *testing.T) {
	p, err := memory.New(1)
	require.NoError(t, err)
	reg := newRegistry(t)
	store := projection.NewMemoryStore[row]()
	r, err := projection.New(projection.Config[*projection.MemoryTx[row]]{Name: "users", Provider: p, Store: store, Handler: counting(t, reg, nil)})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
	defer cancel()
	err = r.WaitFor(ctx, provider.Position{Partition: 0, Offset: 3})
	require.ErrorIs(t, err, context.DeadlineExceeded)
	assert.ErrorContains(t, err, "partition 0 offset 3")
}

func TestConfigValidate(t *testing.T) {
	_, err := projection.New(projection.Config[int]{Mode: 9, BatchSize: -1})
	for _, want := range []string{"no Name", "no Provider", "no Store", "no Handler", "unknown Mode", "negative BatchSize"} {
		assert.ErrorContains(t, err, want)
	}
}
