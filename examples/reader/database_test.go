package main

import (
	"context"
	crand "crypto/rand"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rehydrate/rehydrate/consume"
	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/examples/users"
	"github.com/rehydrate/rehydrate/projection"
	"github.com/rehydrate/rehydrate/provider"
	"github.com/rehydrate/rehydrate/provider/memory"
)

func TestParsePositions(t *testing.T) {
	got, err := parsePositions("0:41,3:7")
	require.NoError(t, err)
	assert.Equal(t, []provider.Position{{Partition: 0, Offset: 41}, {Partition: 3, Offset: 7}}, got)
	for _, bad := range []string{"", "1", "a:1", "1:b", "-1:3", "1:-3", "1:2,"} {
		_, err := parsePositions(bad)
		assert.Error(t, err, bad)
	}
}

// TestDatabaseReader projects users into PostgreSQL and waits for the
// positions of their events (DATABASE_URL; skipped without it, failed
// under CI=true).
func TestDatabaseReader(t *testing.T) {
	url := os.Getenv("DATABASE_URL")
	if url == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("DATABASE_URL unset under CI=true")
		}
		t.Skip("DATABASE_URL unset")
	}
	c := dbConfig{url: url, version: "t" + strings.ToLower(crand.Text()[:8])}
	pool, store, err := openDB(t.Context(), c)
	require.NoError(t, err)
	defer pool.Close()
	tbl := pgx.Identifier{c.table()}.Sanitize()
	_, err = pool.Exec(t.Context(), `CREATE TABLE `+tbl+` (id text PRIMARY KEY, first_name text NOT NULL, last_name text NOT NULL, version bigint NOT NULL, deleted boolean NOT NULL)`)
	require.NoError(t, err)
	t.Cleanup(func() {
		_, _ = pool.Exec(context.Background(), `DROP TABLE IF EXISTS `+tbl+` CASCADE`)
		_ = store.Forget(context.Background(), c.name())
	})
	h, err := dbHandlers(tbl)
	require.NoError(t, err)
	p, err := memory.New(2)
	require.NoError(t, err)
	runner, err := projection.New(projection.Config[pgx.Tx]{Name: c.name(), Provider: p, Store: store, Handler: h, Mode: consume.ReplayThenFollow})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	go func() { _ = runner.Run(ctx) }()

	var pos []provider.Position
	for _, rec := range []event.Record{
		record(t, "b", 1, users.Created{FirstName: "Ada", LastName: "Byron"}),
		record(t, "b", 2, users.Modified{FirstName: "Ada", LastName: "King"}),
		record(t, "c", 1, users.Created{FirstName: "Alan", LastName: "Turing"}),
		record(t, "c", 2, users.Deleted{}),
	} {
		ps, err := p.Append(t.Context(), []event.Record{rec})
		require.NoError(t, err)
		pos = append(pos, ps...)
	}
	wctx, wcancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer wcancel()
	require.NoError(t, runner.WaitFor(wctx, pos...))
	var first, last string
	var version int64
	require.NoError(t, pool.QueryRow(t.Context(), `SELECT first_name, last_name, version FROM `+tbl+` WHERE id = 'b'`).Scan(&first, &last, &version))
	assert.Equal(t, []any{"Ada", "King", int64(2)}, []any{first, last, version})
	var deleted bool
	require.NoError(t, pool.QueryRow(t.Context(), `SELECT deleted FROM `+tbl+` WHERE id = 'c'`).Scan(&deleted))
	assert.True(t, deleted)
}
