package e2e

import (
	"context"
	crand "crypto/rand"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// commandAck is the writer's answer to a command, with where its events
// were written.
type commandAck struct {
	ID        string `json:"id"`
	Version   uint64 `json:"version"`
	Positions []struct {
		Partition int32
		Offset    int64
	} `json:"positions"`
}

func (a commandAck) after() string {
	var out []string
	for _, p := range a.Positions {
		out = append(out, fmt.Sprintf("%d:%d", p.Partition, p.Offset))
	}
	return strings.Join(out, ",")
}

// databaseURL is DATABASE_URL with search_path set to a schema of the
// test's own (the reader's tables, its view users and its checkpoints land
// there); without DATABASE_URL the test skips, and fails under CI=true.
func databaseURL(t *testing.T) string {
	t.Helper()
	url := os.Getenv("DATABASE_URL")
	if url == "" {
		if os.Getenv("CI") == "true" {
			t.Fatal("DATABASE_URL unset under CI=true (make test starts a PostgreSQL)")
		}
		t.Skip("DATABASE_URL unset: docker/postgres-local start")
	}
	schema := "e2e_" + strings.ToLower(crand.Text()[:10])
	pool, err := pgxpool.New(t.Context(), url)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	_, err = pool.Exec(t.Context(), `CREATE SCHEMA `+schema)
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = pool.Exec(context.Background(), `DROP SCHEMA `+schema+` CASCADE`) })
	sep := "?"
	if strings.Contains(url, "?") {
		sep = "&"
	}
	return url + sep + "search_path=" + schema
}

// TestReaderDatabaseReadsYourWrites runs the example reader with
// READ_DATABASE_URL (the users projection in PostgreSQL) beside the writer
// under a stream of commands: every write, read back from the reader at
// once with the positions the writer returned (?after=), is there with its
// version; a delete read so is gone; a position not written yet makes the
// read wait its bound and answer 504.
func TestReaderDatabaseReadsYourWrites(t *testing.T) {
	url := databaseURL(t)
	tp := newTopic(t)
	w := start(t, writerBin, tp.env...)
	w.waitReady()
	r := start(t, readerBin, append(tp.env, "READ_DATABASE_URL="+url, "READ_GROUP=e2e-"+tp.cfg.Topic)...)
	r.waitReady()

	command := func(method, path string, body string) commandAck {
		t.Helper()
		status, resp := w.mustCall(method, path, body, nil)
		require.Contains(t, []int{http.StatusOK, http.StatusCreated}, status, "%s %s: %s", method, path, resp)
		ack := decode[commandAck](t, resp)
		require.NotEmpty(t, ack.Positions, "%s %s: no positions in %s", method, path, resp)
		return ack
	}
	read := func(id string, ack commandAck) (int, user) {
		t.Helper()
		status, resp := r.mustCall(http.MethodGet, "/users/"+id+"?after="+ack.after(), "", nil)
		if status != http.StatusOK {
			return status, user{}
		}
		return status, decode[user](t, resp)
	}
	for i := range 30 {
		created := command(http.MethodPost, "/users", jsonBody(map[string]string{"first_name": "Ada", "last_name": fmt.Sprint("Lovelace ", i)}))
		status, got := read(created.ID, created)
		require.Equal(t, http.StatusOK, status, "user %s just created: not read back", created.ID)
		assert.Equal(t, user{ID: created.ID, FirstName: "Ada", LastName: fmt.Sprint("Lovelace ", i), Version: created.Version}, got)

		renamed := command(http.MethodPut, "/users/"+created.ID, jsonBody(map[string]string{"first_name": "Augusta", "last_name": fmt.Sprint("King ", i)}))
		status, got = read(created.ID, renamed)
		require.Equal(t, http.StatusOK, status)
		assert.Equal(t, user{ID: created.ID, FirstName: "Augusta", LastName: fmt.Sprint("King ", i), Version: renamed.Version}, got, "the rename, read back at once")

		if i%3 == 0 {
			deleted := command(http.MethodDelete, "/users/"+created.ID, "")
			status, _ = read(created.ID, deleted)
			assert.Equal(t, http.StatusNotFound, status, "user %s just deleted: still served", created.ID)
		}
	}

	// A position beyond the end: the read waits its bound (5 s), then 504.
	began := time.Now()
	status, resp := r.mustCall(http.MethodGet, fmt.Sprintf("/users/nobody?after=0:%d", tp.ends(t)[0]+1_000_000), "", nil)
	assert.Equal(t, http.StatusGatewayTimeout, status, "%s", resp)
	assert.GreaterOrEqual(t, time.Since(began), 5*time.Second)
	assert.Equal(t, 0, r.terminate())
}
