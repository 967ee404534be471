package e2e

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rehydrate/rehydrate/consume"
	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/examples/users"
	"github.com/rehydrate/rehydrate/provider"
)

// commands drives the writer for the reader tests and remembers the ids.
type commands struct {
	t   *testing.T
	w   *service
	ids []string
}

func (c *commands) create(first, last string) string {
	status, resp := c.w.mustCall(http.MethodPost, "/users", jsonBody(map[string]string{"first_name": first, "last_name": last}), nil)
	require.Equal(c.t, http.StatusCreated, status, "%s", resp)
	id := decode[ack](c.t, resp).ID
	c.ids = append(c.ids, id)
	return id
}

func (c *commands) update(id, first, last string) {
	status, resp := c.w.mustCall(http.MethodPut, "/users/"+id, jsonBody(map[string]string{"first_name": first, "last_name": last}), nil)
	require.Equal(c.t, http.StatusOK, status, "%s", resp)
}

func (c *commands) remove(id string) {
	status, resp := c.w.mustCall(http.MethodDelete, "/users/"+id, "", nil)
	require.Equal(c.t, http.StatusOK, status, "%s", resp)
}

// some creates n users and updates and deletes a few of them.
func (c *commands) some(n int, tag string) {
	from := len(c.ids)
	for i := range n {
		c.create("First "+tag, fmt.Sprintf("Last %s %d", tag, i))
	}
	for i, id := range c.ids[from:] {
		switch i % 5 {
		case 1, 2:
			c.update(id, "Renamed "+tag, fmt.Sprintf("Last %s %d", tag, i))
		case 3:
			c.remove(id)
		}
	}
}

// writerState is what the writer has for every id the test created, sorted
// by id as the reader pages them; deleted users are left out.
func (c *commands) writerState() []user {
	var out []user
	for _, id := range c.ids {
		status, resp := c.w.mustCall(http.MethodGet, "/users/"+id, "", nil)
		if status == http.StatusNotFound {
			continue
		}
		require.Equal(c.t, http.StatusOK, status, "%s", resp)
		out = append(out, decode[user](c.t, resp))
	}
	slices.SortFunc(out, func(a, b user) int { return strings.Compare(a.ID, b.ID) })
	return out
}

type readerReadiness struct {
	Ready      bool   `json:"ready"`
	Mode       string `json:"mode"`
	Lag        *int64 `json:"lag"`
	Users      int    `json:"users"`
	Duplicates int64  `json:"duplicates"`
}

// readerState pages through the reader's users, 7 at a time to exercise
// paging.
func readerState(r *service) ([]user, error) {
	var all []user
	for offset := 0; ; offset += 7 {
		status, resp, err := r.call(http.MethodGet, fmt.Sprintf("/users?limit=7&offset=%d", offset), "", nil)
		if err != nil {
			return nil, err
		}
		if status != http.StatusOK {
			return nil, fmt.Errorf("GET /users: %d %s", status, resp)
		}
		var page struct {
			Users []user `json:"users"`
			Total int    `json:"total"`
		}
		if err := jsonUnmarshal(resp, &page); err != nil {
			return nil, err
		}
		all = append(all, page.Users...)
		if len(page.Users) < 7 {
			if len(all) != page.Total {
				return nil, fmt.Errorf("paged %d users, total says %d", len(all), page.Total)
			}
			return all, nil
		}
	}
}

// converges waits until the reader serves exactly the writer's users and
// reports no lag.
func converges(t *testing.T, r *service, want []user) readerReadiness {
	var last readerReadiness
	eventually(t, "reader converges to the writer", func() (bool, string) {
		if !r.running() {
			t.Fatalf("the reader exited: %v", r.waitErr)
		}
		got, err := readerState(r)
		if err != nil {
			return false, err.Error()
		}
		if !slices.Equal(got, want) {
			return false, fmt.Sprintf("reader has %d users, writer %d", len(got), len(want))
		}
		status, resp, err := r.call(http.MethodGet, "/readyz", "", nil)
		if err != nil || status != http.StatusOK {
			return false, fmt.Sprintf("readyz %d %s %v", status, resp, err)
		}
		if err := jsonUnmarshal(resp, &last); err != nil {
			return false, err.Error()
		}
		return last.Lag != nil && *last.Lag == 0, "lag " + string(resp)
	})
	return last
}

// The reader replays what was written before it started, follows what is
// written after, skips duplicates, and serves the writer's state.
func TestReaderConvergesToWriter(t *testing.T) {
	tp := newTopic(t)
	w := start(t, writerBin, tp.env...)
	w.waitReady()
	c := &commands{t: t, w: w}
	c.some(40, "before")

	r := start(t, readerBin, append(tp.env, "LAG_INTERVAL=100ms")...)
	r.waitReady()
	c.some(30, "after")
	converges(t, r, c.writerState())

	// Records appended twice (a producer retry, a replayed backup) are
	// skipped by version.
	p := tp.provider(t)
	var again []event.Record
	require.NoError(t, consume.Stream(t.Context(), p, consume.Replay, consume.StreamOptions{}, func(b provider.Batch) error {
		for _, rec := range b.Records {
			if len(again) < 10 {
				again = append(again, event.Record{Key: rec.Key, Value: rec.Value, Headers: rec.Headers})
			}
		}
		return nil
	}))
	_, err := p.Append(t.Context(), again)
	require.NoError(t, err)
	c.some(5, "last")
	ready := converges(t, r, c.writerState())
	assert.GreaterOrEqual(t, ready.Duplicates, int64(len(again)))
	assert.Equal(t, "replay-then-follow", ready.Mode)

	// A reader that restarts after a crash replays to the same state.
	r.kill9()
	r = start(t, readerBin, append(tp.env, "LAG_INTERVAL=100ms")...)
	converges(t, r, c.writerState())

	t.Run("replay mode serves the snapshot at start", func(t *testing.T) {
		snap := start(t, readerBin, append(tp.env, "READ_MODE=replay", "LAG_INTERVAL=100ms")...)
		before := c.writerState()
		converges(t, snap, before)
		c.create("After", "Snapshot")
		converges(t, r, c.writerState()) // the follower sees it…
		got, err := readerState(snap)
		require.NoError(t, err)
		assert.Equal(t, before, got) // …the snapshot does not
		assert.Equal(t, 0, snap.terminate())
	})
	t.Run("live mode sees only new events", func(t *testing.T) {
		live := start(t, readerBin, append(tp.env, "READ_MODE=live", "LAG_INTERVAL=100ms")...)
		live.waitReady()
		id := c.create("Live", "One")
		var want user
		for _, u := range c.writerState() {
			if u.ID == id {
				want = u
			}
		}
		converges(t, live, []user{want})
		assert.Equal(t, 0, live.terminate())
	})
	assert.Equal(t, 0, r.terminate())
}

// A reader started after the writer snapshotted loads the writer's
// snapshots and reads only the events after them, and still serves exactly
// the writer's state; with READ_SNAPSHOTS=off it replays everything to the
// same state.
func TestReaderStartsFromWriterSnapshots(t *testing.T) {
	tp := newTopic(t)
	w := start(t, writerBin, append(tp.env, "WRITER_SNAPSHOT_INTERVAL=50ms")...)
	w.waitReady()
	c := &commands{t: t, w: w}
	c.some(40, "before")
	eventually(t, "the writer snapshots", func() (bool, string) {
		n := w.countLogs(`"snapshot saved"`)
		return n >= 6, fmt.Sprint(n, " snapshots")
	})
	assert.Equal(t, 0, w.terminate(), "SIGTERM snapshots what changed since")
	w = start(t, writerBin, tp.env...) // no more snapshots for 10 min
	w.waitReady()
	c.w = w
	c.some(10, "tail")

	r := start(t, readerBin, append(tp.env, "LAG_INTERVAL=100ms")...)
	converges(t, r, c.writerState())
	seeded := r.logRecord("seeded from the writer's snapshots")
	assert.EqualValues(t, 6, seeded["partitions"], "every partition from a snapshot")
	assert.Positive(t, seeded["users"])
	ready := r.logRecord("caught up: ready")
	assert.Less(t, ready["events"], float64(40), "only the tail's events were read: %v", ready)

	full := start(t, readerBin, append(tp.env, "LAG_INTERVAL=100ms", "READ_SNAPSHOTS=off")...)
	converges(t, full, c.writerState())
}

// A record the reader cannot apply: with a dead-letter topic, it is tried
// again, written there with its error, and the reader goes on and says so;
// without one, the reader stops naming the record.
func TestReaderDeadLettersWhatItCannotApply(t *testing.T) {
	tp := newTopic(t)
	p := tp.provider(t)
	reg, err := users.Registry()
	require.NoError(t, err)
	var recs []event.Record
	for i, name := range []string{"Ada", "Alan"} {
		env, err := reg.NewEnvelope(fmt.Sprint("u", i), 1, users.Created{FirstName: name, LastName: "X"})
		require.NoError(t, err)
		recs = append(recs, env.Record())
	}
	bad, err := reg.NewEnvelope("u-bad", 1, users.Created{FirstName: "B", LastName: "X"})
	require.NoError(t, err)
	bad.Payload = []byte("not msgpack at all")
	pos, err := p.Append(t.Context(), append(recs[:1:1], bad.Record(), recs[1]))
	require.NoError(t, err)

	dlqTopic := tp.cfg.Topic + "-dlq"
	r := start(t, readerBin, append(tp.env, "READ_RETRIES=1", "READ_DEAD_LETTER_TOPIC="+dlqTopic, "READ_SNAPSHOTS=off")...)
	eventually(t, "the reader goes on past the bad record", func() (bool, string) {
		status, body, err := r.call(http.MethodGet, "/readyz", "", nil)
		if err != nil || status != http.StatusOK {
			return false, fmt.Sprint(status, string(body), err)
		}
		var full struct {
			Users          int    `json:"users"`
			DeadLettered   int64  `json:"dead_lettered"`
			Retries        int64  `json:"retries"`
			LastDeadLetter string `json:"last_dead_letter"`
		}
		require.NoError(t, jsonUnmarshal(body, &full))
		return full.Users == 2 && full.DeadLettered == 1 && full.Retries == 1 &&
			strings.Contains(full.LastDeadLetter, fmt.Sprintf("offset %d", pos[1].Offset)), string(body)
	})

	dlqCfg := tp.cfg
	dlqCfg.Topic = dlqTopic
	dlq := topic{cfg: dlqCfg}.provider(t)
	var dead []event.Record
	require.NoError(t, consume.Stream(t.Context(), dlq, consume.Replay, consume.StreamOptions{}, func(b provider.Batch) error {
		dead = append(dead, b.Records...)
		return nil
	}))
	require.Len(t, dead, 1)
	assert.Equal(t, "u-bad", string(dead[0].Key))
	headers := map[string]string{}
	for _, h := range dead[0].Headers {
		headers[h.Key] = string(h.Value)
	}
	assert.Contains(t, headers[consume.HeaderDeadLetterError], "offset")
	assert.Equal(t, fmt.Sprint(pos[1].Offset), headers[consume.HeaderDeadLetterOffset])
	assert.Equal(t, "2", headers[consume.HeaderDeadLetterAttempts])

	stops := start(t, readerBin, append(tp.env, "READ_RETRIES=0", "READ_SNAPSHOTS=off")...)
	select {
	case <-stops.exited:
	case <-time.After(time.Minute):
		t.Fatal("the reader without a dead-letter topic did not stop")
	}
	assert.NotZero(t, stops.cmd.ProcessState.ExitCode())
	assert.Positive(t, stops.countLogs(fmt.Sprintf("offset %d", pos[1].Offset)), "the reader names the record it stopped at")
}
