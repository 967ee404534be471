package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/observe/prom"
	"github.com/rehydrate/rehydrate/provider"
	"github.com/rehydrate/rehydrate/provider/memory"
	"github.com/rehydrate/rehydrate/repository"
)

// faulty is a memory provider whose appends (both ways) fail with err while it is set:
// the failures a black-box test cannot produce on demand.
type faulty struct {
	*memory.Provider
	err atomic.Pointer[error]
}

func (f *faulty) Append(ctx context.Context, recs []event.Record) ([]provider.Position, error) {
	if err := f.err.Load(); err != nil {
		return nil, *err
	}
	return f.Provider.Append(ctx, recs)
}

// AppendPartition fails as Append does: a plain repository appends through
// it when its provider has it (memory's does).
func (f *faulty) AppendPartition(ctx context.Context, partition int32, recs []event.Record) ([]provider.Position, error) {
	if err := f.err.Load(); err != nil {
		return nil, *err
	}
	return f.Provider.AppendPartition(ctx, partition, recs)
}

func (f *faulty) failWith(err error) { f.err.Store(&err) }

func newTestServer(t *testing.T, restored bool) (*httptest.Server, *faulty) {
	s, p := newServer(t, restored)
	ts := httptest.NewServer(s.routes())
	t.Cleanup(ts.Close)
	return ts, p
}

// newServer is the writer's API on a memory provider.
func newServer(t testing.TB, restored bool) (*server, *faulty) {
	s, p := newServerWith(t, restored, nil)
	s.metrics = newMetrics(s.users, prom.New())
	return s, p
}

// newServerWith is newServer with the given metrics and repository options.
func newServerWith(t testing.TB, restored bool, m *metrics, opts ...repository.Option) (*server, *faulty) {
	mem, err := memory.New(6)
	require.NoError(t, err)
	p := &faulty{Provider: mem}
	repo, err := newRepository(p, slog.New(slog.DiscardHandler), nil, nil, opts...)
	require.NoError(t, err)
	if restored {
		_, err = repo.Restore(t.Context())
		require.NoError(t, err)
	}
	return &server{users: repo, log: slog.New(slog.DiscardHandler), metrics: m, timeout: 5 * time.Second}, p
}

// ends is the end offset of every partition: unchanged when nothing was
// appended.
func ends(t testing.TB, p provider.Provider) []provider.Partition {
	t.Helper()
	ps, err := p.Partitions(t.Context())
	require.NoError(t, err)
	return ps
}

func send(t *testing.T, ts *httptest.Server, method, path, body string) (*http.Response, map[string]any) {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), method, ts.URL+path, strings.NewReader(body))
	require.NoError(t, err)
	resp, err := ts.Client().Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m), "%s", b)
	return resp, m
}

func TestUserLimitAnswers507(t *testing.T) {
	s, p := newServerWith(t, true, nil, repository.WithLimits(repository.Limits{Aggregates: 1}))
	s.metrics = newMetrics(s.users, prom.New())
	ts := httptest.NewServer(s.routes())
	t.Cleanup(ts.Close)
	resp, _ := send(t, ts, "POST", "/users", `{"first_name":"Ada","last_name":"Lovelace"}`)
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	before := ends(t, p)
	resp, body := send(t, ts, "POST", "/users", `{"first_name":"Alan","last_name":"Turing"}`)
	assert.Equal(t, http.StatusInsufficientStorage, resp.StatusCode)
	assert.Contains(t, body["error"], "WRITER_MAX_USERS")
	assert.Equal(t, before, ends(t, p), "nothing appended")
}

func TestNotReadyWhileRestoring(t *testing.T) {
	ts, _ := newTestServer(t, false)
	resp, body := send(t, ts, "GET", "/readyz", "")
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.Equal(t, false, body["ready"])
	assert.Contains(t, body, "done")
	assert.Contains(t, body, "total")

	resp, body = send(t, ts, "POST", "/users", `{"first_name":"Ada","last_name":"Lovelace"}`)
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.Equal(t, "1", resp.Header.Get("Retry-After"))
	assert.Contains(t, body["error"], "not ready")

	resp, _ = send(t, ts, "GET", "/healthz", "")
	assert.Equal(t, http.StatusOK, resp.StatusCode)
}

func TestKafkaFailuresSayWhetherTheOutcomeIsKnown(t *testing.T) {
	ts, p := newTestServer(t, true)
	resp, body := send(t, ts, "POST", "/users", `{"first_name":"Ada","last_name":"Lovelace"}`)
	require.Equal(t, http.StatusCreated, resp.StatusCode, "%v", body)
	id := body["id"].(string)

	for _, tc := range []struct {
		name    string
		err     error
		unknown bool
	}{
		{"not acknowledged in time", fmt.Errorf("append: %w: %w", provider.ErrUnavailable, provider.ErrOutcomeUnknown), true},
		{"refused before sending", fmt.Errorf("append: %w", provider.ErrUnavailable), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p.failWith(tc.err)
			resp, body := send(t, ts, "POST", "/", `{"type":"CreateUserCommand","first_name":"Grace","last_name":"Hopper"}`)
			assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
			assert.NotEmpty(t, resp.Header.Get("Retry-After"))
			assert.Equal(t, tc.unknown, body["outcome_unknown"], "%v", body)
		})
	}
	p.failWith(fmt.Errorf("append: %w", provider.ErrOutcomeUnknown))
	resp, body = send(t, ts, "PUT", "/users/"+id, `{"first_name":"Ada","last_name":"King"}`)
	assert.Equal(t, http.StatusServiceUnavailable, resp.StatusCode)
	assert.Equal(t, true, body["outcome_unknown"])

	// Once Kafka answers again, the next command finds out what happened
	// (here: nothing was written) and goes on.
	p.err.Store(nil)
	resp, body = send(t, ts, "PUT", "/users/"+id, `{"first_name":"Ada","last_name":"King"}`)
	assert.Equal(t, http.StatusOK, resp.StatusCode, "%v", body)
	assert.EqualValues(t, 2, body["version"])
}

func TestUnchangedUpdateAppendsNothing(t *testing.T) {
	ts, p := newTestServer(t, true)
	_, body := send(t, ts, "POST", "/users", `{"first_name":"Ada","last_name":"Lovelace"}`)
	id := body["id"].(string)
	before := ends(t, p)

	resp, body := send(t, ts, "PUT", "/users/"+id, `{"first_name":"  Ada ","last_name":"Lovelace"}`)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.EqualValues(t, 1, body["version"])
	assert.Equal(t, before, ends(t, p))

	resp, body = send(t, ts, "GET", "/users/"+id, "")
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, `"1"`, resp.Header.Get("ETag"))
	assert.Equal(t, map[string]any{"id": id, "first_name": "Ada", "last_name": "Lovelace", "version": 1.0}, body)
}

func TestNamesAreStoredTrimmed(t *testing.T) {
	ts, _ := newTestServer(t, true)
	resp, body := send(t, ts, "POST", "/", `{"type":"CreateUserCommand","first_name":"  Ada","last_name":"Lovelace  "}`)
	require.Equal(t, http.StatusCreated, resp.StatusCode)
	id := body["id"].(string)
	assert.Equal(t, "/users/"+id, resp.Header.Get("Location"))
	_, body = send(t, ts, "GET", "/users/"+id, "")
	assert.Equal(t, "Ada", body["first_name"])
	assert.Equal(t, "Lovelace", body["last_name"])
}

func TestMetrics(t *testing.T) {
	ts, _ := newTestServer(t, true)
	send(t, ts, "POST", "/users", `{"first_name":"Ada","last_name":"Lovelace"}`)
	send(t, ts, "POST", "/users", `{"first_name":"","last_name":"Lovelace"}`)
	resp, err := ts.Client().Get(ts.URL + "/metrics")
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	for _, want := range []string{
		`users_commands_total{command="create",result="ok"} 1`,
		`users_commands_total{command="create",result="invalid"} 1`,
		`users_append_duration_seconds_count{command="create"} 1`,
		`rehydrate_ready 1`,
		`rehydrate_restore_total_events 0`,
		`users_current 1`,
	} {
		assert.Contains(t, string(b), want)
	}
}
