package projections_test

import (
	"context"
	crand "crypto/rand"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/require"

	"github.com/rehydrate/rehydrate/consume"
	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/internal/kafkatest"
	"github.com/rehydrate/rehydrate/provider"
	"github.com/rehydrate/rehydrate/provider/franz"
)

// world is one test's topic, table and checkpoint table.
type world struct {
	t           testing.TB
	db          *pgxpool.Pool
	p           *franz.Provider
	reg         *event.Registry
	topic       string
	table, cps  string
	brokers     string
	mu          sync.Mutex
	model       map[string]int // events appended per aggregate
	nextVersion map[string]int
}

func newWorld(t testing.TB, partitions int) *world {
	t.Helper()
	if os.Getenv("PROJECTION_LONG_TESTS") != "1" {
		if os.Getenv("CI") == "true" && os.Getenv("PROJECTION_LONG_TESTS_REQUIRED") == "1" {
			t.Fatal("PROJECTION_LONG_TESTS unset under CI: run make test-db")
		}
		t.Skip("the long projection tests: run make test-db")
	}
	url := os.Getenv("DATABASE_URL")
	if url == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("DATABASE_URL unset under CI=true (make test-db starts a PostgreSQL)")
		}
		t.Skip("DATABASE_URL unset")
	}
	cfg := kafkatest.Config(t, partitions, nil)
	p, err := franz.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	db, err := pgxpool.New(t.Context(), url)
	require.NoError(t, err)
	t.Cleanup(db.Close)
	suffix := strings.ToLower(crand.Text()[:10])
	w := &world{t: t, db: db, p: p, reg: registry(), topic: cfg.Topic, brokers: cfg.Brokers,
		table: "rows_" + suffix, cps: "checkpoints_" + suffix, model: map[string]int{}, nextVersion: map[string]int{}}
	_, err = db.Exec(t.Context(), `CREATE TABLE `+w.table+` (id text PRIMARY KEY, applied int NOT NULL, version bigint NOT NULL)`)
	require.NoError(t, err)
	t.Cleanup(func() {
		_, _ = db.Exec(context.Background(), `DROP TABLE IF EXISTS `+w.table+`, `+w.cps)
	})
	return w
}

func (w *world) readerEnv(extra ...string) []string {
	return append([]string{"READER_TOPIC=" + w.topic, "READER_TABLE=" + w.table, "READER_CHECKPOINTS=" + w.cps,
		"KAFKA_BROKERS=" + w.brokers}, extra...)
}

// write appends n events over keys aggregates, versions consecutive.
func (w *world) write(ctx context.Context, keys, n int) error {
	recs := make([]event.Record, 0, n)
	w.mu.Lock()
	for i := range n {
		id := "a" + strconv.Itoa((i*7+w.model["_seq"])%keys)
		w.model["_seq"]++
		w.nextVersion[id]++
		env, err := w.reg.NewEnvelope(id, uint64(w.nextVersion[id]), counted{N: i})
		if err != nil {
			w.mu.Unlock()
			return err
		}
		recs = append(recs, env.Record())
	}
	w.mu.Unlock()
	// Appends of one aggregate are ordered because one goroutine writes.
	if _, err := w.p.Append(ctx, recs); err != nil {
		return err
	}
	w.mu.Lock()
	for _, r := range recs {
		w.model[string(r.Key)]++
	}
	w.mu.Unlock()
	return nil
}

// busy tells which partitions hold records.
func (w *world) busy() map[int32]bool {
	w.t.Helper()
	ps, err := w.p.Partitions(w.t.Context())
	require.NoError(w.t, err)
	out := map[int32]bool{}
	for _, p := range ps {
		out[p.ID] = p.High > p.Low
	}
	return out
}

// load writes batches of 20 every 5 ms until the returned stop is called.
func (w *world) load() (stop func()) {
	ctx, cancel := context.WithCancel(w.t.Context())
	done := make(chan error, 1)
	go func() {
		for ctx.Err() == nil {
			// 240 aggregates: every partition gets some.
			if err := w.write(ctx, 240, 20); err != nil && ctx.Err() == nil {
				done <- err
				return
			}
			select {
			case <-ctx.Done():
			case <-time.After(5 * time.Millisecond): // a write rate, not a synchronisation
			}
		}
		done <- nil
	}()
	return func() {
		cancel()
		require.NoError(w.t, <-done)
	}
}

func (w *world) rows() map[string][2]int64 {
	w.t.Helper()
	return w.rowsOf(w.table)
}

// querier is the pool, or a transaction reading one snapshot.
type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

func (w *world) rowsOf(table string) map[string][2]int64 {
	w.t.Helper()
	return w.rowsIn(w.db, table)
}

func (w *world) rowsIn(q querier, table string) map[string][2]int64 {
	w.t.Helper()
	rows, err := q.Query(w.t.Context(), `SELECT id, applied, version FROM `+table)
	require.NoError(w.t, err)
	out := map[string][2]int64{}
	var id string
	var applied, version int64
	_, err = pgx.ForEachRow(rows, []any{&id, &applied, &version}, func() error {
		out[id] = [2]int64{applied, version}
		return nil
	})
	require.NoError(w.t, err)
	return out
}

func (w *world) checkpoints() map[int32]int64 {
	w.t.Helper()
	return w.checkpointsIn(w.db)
}

func (w *world) checkpointsIn(q querier) map[int32]int64 {
	w.t.Helper()
	out := map[int32]int64{}
	rows, err := q.Query(w.t.Context(), `SELECT partition, next_offset FROM `+w.cps+` WHERE projection = 'users'`)
	if err != nil { // not created yet
		return out
	}
	var p int32
	var next int64
	_, err = pgx.ForEachRow(rows, []any{&p, &next}, func() error {
		out[p] = next
		return nil
	})
	require.NoError(w.t, err)
	return out
}

// checkInvariants: every row applied each of its events once (applied ==
// version), and the checkpoints are exactly the rows (the offsets below
// them hold as many events as were applied: the topic has no gaps). Rows
// and checkpoints are read in one snapshot: a COMMIT that a killed reader
// sent before it died may land between two reads (the rehearsal of
// 2026-12-08 read 4423 events in the rows, then checkpoints over 4434),
// and it lands whole in a snapshot or not at all.
func (w *world) checkInvariants(when string) {
	w.t.Helper()
	tx, err := w.db.BeginTx(w.t.Context(), pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly})
	require.NoError(w.t, err)
	defer func() { _ = tx.Rollback(w.t.Context()) }()
	rows, cps := w.rowsIn(tx, w.table), w.checkpointsIn(tx)
	var applied int64
	for id, r := range rows {
		require.Equal(w.t, r[1], r[0], "%s: %s applied %d events up to version %d", when, id, r[0], r[1])
		applied += r[0]
	}
	var below int64
	for _, next := range cps {
		below += max(next, 0)
	}
	require.Equal(w.t, below, applied, "%s: events below the checkpoints vs events applied", when)
}

// replay reads the topic anew (not through the projection) and counts
// each aggregate's events: what the table must hold.
func (w *world) replay() map[string][2]int64 {
	w.t.Helper()
	out := map[string][2]int64{}
	err := consume.Stream(w.t.Context(), w.p, consume.Replay, consume.StreamOptions{}, func(b provider.Batch) error {
		for _, r := range b.Records {
			env, err := event.ParseRecord(r)
			if err != nil {
				return err
			}
			c := out[env.AggregateID]
			out[env.AggregateID] = [2]int64{c[0] + 1, int64(env.Version)}
		}
		return nil
	})
	require.NoError(w.t, err)
	return out
}

// awaitEnd waits until every partition's checkpoint is at its end.
func (w *world) awaitEnd(timeout time.Duration) {
	w.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ps, err := w.p.Partitions(w.t.Context())
		require.NoError(w.t, err)
		cps := w.checkpoints()
		behind := []string{}
		for _, p := range ps {
			if next, ok := cps[p.ID]; p.High > p.Low && (!ok || next < p.High) {
				behind = append(behind, fmt.Sprintf("%d at %d of %d", p.ID, next, p.High))
			}
		}
		if len(behind) == 0 {
			return
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("partitions not caught up after %v: %v", timeout, behind)
		}
		time.Sleep(50 * time.Millisecond) // polling the database, bounded by the deadline
	}
}

// awaitClaims waits until n checkpoint rows of the projection exist
// (claimed by instance, when not "").
func (w *world) awaitClaims(instance string, n int) {
	w.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		var got int
		err := w.db.QueryRow(w.t.Context(), `SELECT count(*) FROM `+w.cps+` WHERE projection = 'users' AND ($1 = '' OR instance = $1)`, instance).Scan(&got)
		if err == nil && got == n {
			return
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("%d partitions claimed by %q, want %d (%v)", got, instance, n, err)
		}
		time.Sleep(50 * time.Millisecond) // polling the database, bounded by the deadline
	}
}

// claimRow is a checkpoint row: where the partition stands and who claimed
// it last.
type claimRow struct {
	next     int64
	instance string
}

// claimRows reads the projection's checkpoint rows (none before a reader
// created the table).
func (w *world) claimRows() map[int32]claimRow {
	w.t.Helper()
	out := map[int32]claimRow{}
	rows, err := w.db.Query(w.t.Context(), `SELECT partition, next_offset, instance FROM `+w.cps+` WHERE projection = 'users'`)
	if err != nil {
		requireTable(w.t, err)
		return out
	}
	var p int32
	var c claimRow
	_, err = pgx.ForEachRow(rows, []any{&p, &c.next, &c.instance}, func() error {
		out[p] = c
		return nil
	})
	requireTable(w.t, err)
	return out
}

// owned returns the checkpoints of the partitions instance claimed last.
func (w *world) owned(instance string) map[int32]int64 {
	w.t.Helper()
	out := map[int32]int64{}
	for p, c := range w.claimRows() {
		if c.instance == instance {
			out[p] = c.next
		}
	}
	return out
}

// sessionStates returns the states (pg_stat_activity) of the database
// sessions of a reader.
func (w *world) sessionStates(instance string) []string {
	w.t.Helper()
	rows, err := w.db.Query(w.t.Context(), `SELECT coalesce(state, '') FROM pg_stat_activity WHERE application_name = $1`, appName(instance))
	require.NoError(w.t, err)
	states, err := pgx.CollectRows(rows, pgx.RowTo[string])
	require.NoError(w.t, err)
	return states
}

// logLine is one line of a reader's log (slog's text format), its
// message and its partition attribute (-1 when it has none).
type logLine struct {
	msg       string
	partition int32
	next      int64
	text      string
}

var logAttr = regexp.MustCompile(`(\w+)=("(?:[^"\\]|\\.)*"|\S+)`)

func parseLog(out string) []logLine {
	var lines []logLine
	for _, text := range strings.Split(out, "\n") {
		l := logLine{partition: -1, next: -1, text: text}
		for _, m := range logAttr.FindAllStringSubmatch(text, -1) {
			v := strings.Trim(m[2], `"`)
			switch m[1] {
			case "msg":
				l.msg = v
			case "partition":
				if n, err := strconv.ParseInt(v, 10, 32); err == nil {
					l.partition = int32(n)
				}
			case "next":
				if n, err := strconv.ParseInt(v, 10, 64); err == nil {
					l.next = n
				}
			}
		}
		lines = append(lines, l)
	}
	return lines
}

// await polls cond (it may query the database) until it holds, for at most
// 60 s.
func (w *world) await(what string, cond func() bool) {
	w.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			w.t.Fatalf("after 60 s: %s: not yet", what)
		}
		time.Sleep(20 * time.Millisecond) // polling, bounded by the deadline
	}
}

// ownerOf returns the reader that claimed each partition last.
func (w *world) ownerOf() map[int32]string {
	w.t.Helper()
	out := map[int32]string{}
	for p, c := range w.claimRows() {
		out[p] = c.instance
	}
	return out
}

// requireTable fails on err unless it says the checkpoint table does not
// exist yet (no reader has started).
func requireTable(t testing.TB, err error) {
	t.Helper()
	if pe := (*pgconn.PgError)(nil); errors.As(err, &pe) && pe.Code == "42P01" {
		return
	}
	require.NoError(t, err)
}
