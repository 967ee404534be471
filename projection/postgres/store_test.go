package postgres_test

import (
	"context"
	crand "crypto/rand"
	"errors"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rehydrate/rehydrate/consume"
	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/projection"
	"github.com/rehydrate/rehydrate/projection/postgres"
	"github.com/rehydrate/rehydrate/provider"
	"github.com/rehydrate/rehydrate/provider/memory"
)

// pool connects to DATABASE_URL; without it the test is skipped, and fails
// under CI=true.
func pool(t testing.TB) *pgxpool.Pool {
	t.Helper()
	url := os.Getenv("DATABASE_URL")
	if url == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("DATABASE_URL is unset under CI=true: the PostgreSQL tests need a database (docker/postgres-local start)")
		}
		t.Skip("DATABASE_URL unset: start one with docker/postgres-local start")
	}
	p, err := pgxpool.New(context.Background(), url)
	require.NoError(t, err)
	t.Cleanup(p.Close)
	return p
}

// fixture is a projection of counted events into a table of its own:
// per aggregate, how many events were applied and the last version, so
// that an event applied twice or lost shows.
type fixture struct {
	reg   *event.Registry
	store *postgres.Store
	pool  *pgxpool.Pool
	table string
}

type counted struct {
	N int `msgpack:"n"`
}

func newFixture(t testing.TB) *fixture {
	t.Helper()
	db := pool(t)
	suffix := strings.ToLower(crand.Text()[:10])
	f := &fixture{reg: event.NewRegistry(), pool: db, table: "rows_" + suffix}
	require.NoError(t, event.Register[counted](f.reg, "Counted"))
	var err error
	f.store, err = postgres.New(t.Context(), db, postgres.WithTable("checkpoints_"+suffix))
	require.NoError(t, err)
	_, err = db.Exec(t.Context(), `CREATE TABLE `+f.table+` (id text PRIMARY KEY, applied int NOT NULL, version bigint NOT NULL)`)
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx := context.Background()
		_, _ = db.Exec(ctx, `DROP TABLE IF EXISTS `+f.table+`, checkpoints_`+suffix+` CASCADE`)
	})
	return f
}

func (f *fixture) handlers(t testing.TB, table string, before func(*event.Envelope) error) *event.HandlersWith[pgx.Tx] {
	t.Helper()
	h := event.NewHandlersWith[pgx.Tx](f.reg)
	require.NoError(t, event.AddHandlerWith(h, func(ctx context.Context, tx pgx.Tx, env *event.Envelope, _ counted) error {
		if before != nil {
			if err := before(env); err != nil {
				return err
			}
		}
		// version = excluded.version: a later event wins; applied counts.
		_, err := tx.Exec(ctx, `INSERT INTO `+table+` (id, applied, version) VALUES ($1, 1, $2)
			ON CONFLICT (id) DO UPDATE SET applied = `+table+`.applied + 1, version = excluded.version`, env.AggregateID, int64(env.Version))
		return err
	}))
	return h
}

func (f *fixture) rows(t testing.TB, table string) map[string][2]int64 {
	t.Helper()
	rows, err := f.pool.Query(t.Context(), `SELECT id, applied, version FROM `+table)
	require.NoError(t, err)
	out := map[string][2]int64{}
	var id string
	var applied, version int64
	_, err = pgx.ForEachRow(rows, []any{&id, &applied, &version}, func() error {
		out[id] = [2]int64{applied, version}
		return nil
	})
	require.NoError(t, err)
	return out
}

func appendEvents(t *testing.T, p provider.Provider, reg *event.Registry, keys, n int, model map[string]int) {
	t.Helper()
	recs := make([]event.Record, 0, n)
	for i := range n {
		id := "a" + strconv.Itoa(i%keys)
		model[id]++
		env, err := reg.NewEnvelope(id, uint64(model[id]), counted{N: i})
		require.NoError(t, err)
		recs = append(recs, env.Record())
	}
	_, err := p.Append(t.Context(), recs)
	require.NoError(t, err)
}

func want(model map[string]int) map[string][2]int64 {
	out := map[string][2]int64{}
	for id, n := range model {
		out[id] = [2]int64{int64(n), int64(n)}
	}
	return out
}

// TestStoppedAnywhereAppliesOnce stops a projection into PostgreSQL at
// random moments (inside a handler's statements, between a batch's
// statements and its COMMIT) and restarts it: no event is applied twice or
// lost, and the checkpoint is never ahead of the rows.
func TestStoppedAnywhereAppliesOnce(t *testing.T) {
	f := newFixture(t)
	p, err := memory.New(3)
	require.NoError(t, err)
	model := map[string]int{}
	rng := rand.New(rand.NewPCG(3, 4))
	for round := range 25 {
		appendEvents(t, p, f.reg, 12, 1+rng.IntN(80), model)
		ctx, cancel := context.WithCancel(t.Context())
		stopAfter, seen := rng.IntN(80), 0
		r, err := projection.New(projection.Config[pgx.Tx]{
			Name: "users", Provider: p, Store: f.store, Mode: consume.ReplayThenFollow, BatchSize: 1 + rng.IntN(20),
			Handler: f.handlers(t, f.table, func(*event.Envelope) error {
				if seen++; seen == stopAfter {
					cancel()
				}
				return nil
			}),
		})
		require.NoError(t, err)
		go func() {
			<-r.CaughtUp() // when the stop comes later than the events: stop anyway
			cancel()
		}()
		err = r.Run(ctx)
		require.ErrorIs(t, err, context.Canceled, "round %d", round)
		cancel()
		rows := f.rows(t, f.table)
		for id, got := range rows {
			require.Equal(t, got[0], got[1], "round %d: %s: an event applied twice or lost", round, id)
		}
		// Checkpoint never ahead of the data: the events below each
		// checkpoint are exactly those applied.
		cps, err := f.store.Checkpoints(t.Context(), "users")
		require.NoError(t, err)
		var below int64
		for _, next := range cps {
			below += max(next, 0)
		}
		var applied int64
		for _, got := range rows {
			applied += got[0]
		}
		require.Equal(t, below, applied, "round %d: events below the checkpoints vs applied", round)
	}
	r, err := projection.New(projection.Config[pgx.Tx]{Name: "users", Provider: p, Store: f.store, Handler: f.handlers(t, f.table, nil)})
	require.NoError(t, err)
	require.NoError(t, r.Run(t.Context()))
	assert.Equal(t, want(model), f.rows(t, f.table))
}

// TestStaleReaderIsRefused pauses a reader between two commits while
// another claims its partitions and applies them; resumed, every commit the
// stale one tries is refused by the database.
func TestStaleReaderIsRefused(t *testing.T) {
	f := newFixture(t)
	p, err := memory.New(2)
	require.NoError(t, err)
	model := map[string]int{}
	appendEvents(t, p, f.reg, 10, 200, model)
	paused, resume := make(chan struct{}), make(chan struct{})
	first := true
	stale, err := projection.New(projection.Config[pgx.Tx]{
		Name: "users", Provider: p, Store: f.store, Handler: f.handlers(t, f.table, nil), BatchSize: 10, Mode: consume.ReplayThenFollow,
		OnBatch: func(projection.Progress) {
			if first {
				first = false
				close(paused)
				<-resume
			}
		},
	})
	require.NoError(t, err)
	errc := make(chan error, 1)
	go func() { errc <- stale.Run(t.Context()) }()
	<-paused
	fresh, err := projection.New(projection.Config[pgx.Tx]{Name: "users", Provider: p, Store: f.store, Handler: f.handlers(t, f.table, nil)})
	require.NoError(t, err)
	require.NoError(t, fresh.Run(t.Context()))
	close(resume)
	select {
	case err := <-errc:
		require.ErrorIs(t, err, projection.ErrFenced)
	case <-time.After(30 * time.Second):
		t.Fatal("the stale reader was not refused")
	}
	assert.Equal(t, 1, stale.Fenced())
	assert.Equal(t, want(model), f.rows(t, f.table))
}

// TestRebuildSwitchesView runs a rebuild into a new table beside the live
// projection and switches the view once it has caught up.
func TestRebuildSwitchesView(t *testing.T) {
	f := newFixture(t)
	p, err := memory.New(3)
	require.NoError(t, err)
	model := map[string]int{}
	appendEvents(t, p, f.reg, 20, 300, model)
	live, err := projection.New(projection.Config[pgx.Tx]{Name: "users-v1", Provider: p, Store: f.store, Handler: f.handlers(t, f.table, nil)})
	require.NoError(t, err)
	require.NoError(t, live.Run(t.Context()))
	view := f.table + "_view"
	require.NoError(t, f.store.SwitchView(t.Context(), view, f.table))
	t.Cleanup(func() { _, _ = f.pool.Exec(context.Background(), `DROP VIEW IF EXISTS `+view) })
	v2 := f.table + "_v2"
	_, err = f.pool.Exec(t.Context(), `CREATE TABLE `+v2+` (id text PRIMARY KEY, applied int NOT NULL, version bigint NOT NULL)`)
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = f.pool.Exec(context.Background(), `DROP TABLE IF EXISTS `+v2+` CASCADE`) })

	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	rebuild, err := projection.New(projection.Config[pgx.Tx]{Name: "users-v2", Provider: p, Store: f.store, Handler: f.handlers(t, v2, nil), Mode: consume.ReplayThenFollow})
	require.NoError(t, err)
	errc := make(chan error, 1)
	go func() { errc <- rebuild.Run(ctx) }()
	select {
	case <-rebuild.CaughtUp():
	case err := <-errc:
		t.Fatal(err)
	}
	require.NoError(t, f.store.SwitchView(t.Context(), view, v2))
	assert.Equal(t, want(model), f.rows(t, view))
	assert.Equal(t, f.rows(t, f.table), f.rows(t, v2), "the rebuild has the live projection's rows")
	cancel()
	require.True(t, errors.Is(<-errc, context.Canceled))
	require.NoError(t, f.store.Forget(t.Context(), "users-v1"))
	cps, err := f.store.Checkpoints(t.Context(), "users-v1")
	require.NoError(t, err)
	assert.Empty(t, cps)
}

// TestNewConcurrently starts several stores on one new checkpoint table at
// once, as readers starting together do: each finds or creates it.
func TestNewConcurrently(t *testing.T) {
	db := pool(t)
	table := "checkpoints_" + strings.ToLower(crand.Text()[:10])
	t.Cleanup(func() { _, _ = db.Exec(context.Background(), `DROP TABLE IF EXISTS `+table) })
	errc := make(chan error, 8)
	for range cap(errc) {
		go func() {
			_, err := postgres.New(t.Context(), db, postgres.WithTable(table))
			errc <- err
		}()
	}
	for range cap(errc) {
		require.NoError(t, <-errc)
	}
}

// TestLostConnectionIsRetried ends the projection's database session (as a
// restart or a failover of the server does) in the middle of three batches:
// each batch is tried again on a new connection, the failure is the
// store's (not counted against the record, nothing dead-lettered), and
// every event lands once.
func TestLostConnectionIsRetried(t *testing.T) {
	f := newFixture(t)
	cfg, err := pgxpool.ParseConfig(os.Getenv("DATABASE_URL"))
	require.NoError(t, err)
	victim := "victim_" + f.table
	cfg.ConnConfig.RuntimeParams["application_name"] = victim
	vpool, err := pgxpool.NewWithConfig(t.Context(), cfg)
	require.NoError(t, err)
	t.Cleanup(vpool.Close)
	store, err := postgres.New(t.Context(), vpool, postgres.WithTable("checkpoints_"+strings.TrimPrefix(f.table, "rows_")))
	require.NoError(t, err)

	p, err := memory.New(4)
	require.NoError(t, err)
	dead, err := memory.New(1)
	require.NoError(t, err)
	model := map[string]int{}
	appendEvents(t, p, f.reg, 50, 2000, model)
	calls, kills := 0, 0
	h := f.handlers(t, f.table, func(*event.Envelope) error {
		calls++
		if kills < 3 && calls%600 == 300 {
			// Ends the session of the transaction this handler runs in;
			// waits until it is gone.
			var ended int
			// (OFFSET 0 keeps the filter before the call.)
			require.NoError(t, f.pool.QueryRow(t.Context(), `SELECT count(*) FILTER (WHERE pg_terminate_backend(pid, 5000))
				FROM (SELECT pid FROM pg_stat_activity WHERE application_name = $1 OFFSET 0) s`, victim).Scan(&ended))
			require.Positive(t, ended)
			kills++
		}
		return nil
	})
	recordRetries := 0
	r, err := projection.New(projection.Config[pgx.Tx]{
		Name: "users", Provider: p, Store: store, Handler: h, BatchSize: 100,
		Failures: consume.Failures{Retries: 2, Backoff: time.Millisecond, DeadLetter: dead,
			OnRetry: func(event.Record, error) { recordRetries++ }},
	})
	require.NoError(t, err)
	require.NoError(t, r.Run(t.Context()))
	assert.Equal(t, want(model), f.rows(t, f.table), "every event once")
	assert.Equal(t, 3, kills)
	// At least one store failure per kill: an idle connection of the pool
	// ended with it fails its next transaction too.
	assert.GreaterOrEqual(t, r.StoreFailures(), kills, "each lost session is a store failure, retried")
	assert.Zero(t, recordRetries, "no record was retried for the store's failure")
	ps, err := dead.Partitions(t.Context())
	require.NoError(t, err)
	assert.Equal(t, ps[0].Low, ps[0].High, "nothing dead-lettered")
}
