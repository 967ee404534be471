package e2e

import (
	"fmt"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/examples/users"
	"github.com/rehydrate/rehydrate/internal/kafkatest"
)

const (
	burstClients = 16
	burstUsers   = 500
	burstUpdates = 2 // per user: 500 creates + 1000 updates
)

// A crash loses nothing that was acknowledged: 16 clients create and
// update 500 users, the writer is killed with SIGKILL mid-burst and
// restarted; every acknowledged change is there with its version, the
// burst completes, and the writer's state is what replaying the topic gives.
func TestKill9MidBurstLosesNoAcknowledgedChange(t *testing.T) {
	tp := newTopic(t)
	// The restarted writer keeps the instance name, as a pod does: it then
	// aborts the transaction the killed one left open at once. Under
	// another name, that transaction hides every later commit from
	// read-committed readers (the topic check below) until the broker
	// aborts it after the transaction timeout.
	env := append(tp.env, "WRITER_INSTANCE=kill9-writer")
	w := start(t, writerBin, env...)
	w.waitReady()

	b := newBurst(t, burstClients, burstUsers, burstUpdates)
	total := int64(burstUsers * (1 + burstUpdates))
	killed := make(chan struct{})
	go func() {
		defer close(killed)
		// Mid-burst: once about 40% of the commands are acknowledged.
		for b.acks.Load() < total*4/10 && w.running() {
			time.Sleep(time.Millisecond)
		}
		w.kill9()
	}()
	b.run(w)
	<-killed
	acked := b.acks.Load()
	require.Less(t, acked, total, "the writer was killed after the burst, not during it")
	t.Logf("killed after %d of %d commands acknowledged", acked, total)

	w = start(t, writerBin, env...)
	w.waitReady()
	b.checkAcknowledged(w)

	b.run(w) // the rest of the burst
	require.Equal(t, total, b.acks.Load())
	rs := b.checkTopic(tp)
	assert.GreaterOrEqual(t, len(rs), burstUsers)
	checkEqualsReplay(t, w, rs)
	for _, s := range b.slots() {
		assert.Equal(t, uint64(1+burstUpdates), rs[s.id].Version, "user %s", s.id)
	}
}

// SIGTERM during a burst: the writer finishes the commands in flight,
// answers what still arrives with 503 (nothing changed: alone, it has
// nobody to hand over to) until it stops accepting, and exits 0; every
// command that got a 2xx is on the topic, and none that got a 503 saying
// nothing changed.
func TestSIGTERMDuringBurstKeepsEveryAcknowledgedCommand(t *testing.T) {
	tp := newTopic(t)
	w := start(t, writerBin, tp.env...)
	w.waitReady()

	b := newBurst(t, burstClients, 200, burstUpdates)
	var code int
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		for b.acks.Load() < 150 {
			time.Sleep(time.Millisecond)
		}
		code = w.terminate()
	}()
	b.run(w)
	<-stopped
	assert.Equal(t, 0, code, "exit code after SIGTERM")
	t.Logf("SIGTERM after %d commands acknowledged", b.acks.Load())
	assert.Less(t, b.acks.Load(), int64(200*(1+burstUpdates)), "SIGTERM came after the burst, not during it")

	rs := b.checkTopic(tp)
	for _, s := range b.slots() {
		if s.id == "" {
			continue
		}
		// No command was lost, and none was written without its answer
		// except one the client was still waiting for.
		v := rs[s.id].Version
		if s.pending != nil && v == s.pending.version {
			continue
		}
		assert.Equal(t, s.acked, v, "user %s", s.id)
	}
	w.mu.Lock()
	logs := strings.Join(w.logs, "\n")
	w.mu.Unlock()
	assert.Contains(t, logs, "every acknowledged command is in Kafka")
}

// With no broker, start-up fails within seconds and says what to do.
func TestStartupFailsFastWithoutBroker(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close()) // nothing listens there now

	for _, bin := range []string{writerBin, readerBin} {
		cmd := exec.Command(bin)
		cmd.Env = append(cmd.Environ(), "KAFKA_BROKERS="+addr, "STARTUP_TIMEOUT=2s", "PORT=0")
		began := time.Now()
		out, err := cmd.CombinedOutput()
		elapsed := time.Since(began)
		var exit *exec.ExitError
		require.ErrorAs(t, err, &exit, "%s", out)
		assert.Equal(t, 1, exit.ExitCode())
		assert.Less(t, elapsed, 15*time.Second)
		assert.Contains(t, string(out), "make kafka-up", "%s", out)
		assert.Contains(t, string(out), addr)
	}
}

// On a topic whose events expire the writer stops at start-up, naming the
// setting and the fix, instead of retrying forever; KAFKA_ALLOW_EXPIRING_TOPIC
// lets it start.
func TestWriterRefusesATopicThatDropsEvents(t *testing.T) {
	t.Parallel()
	cfg := kafkatest.Config(t, 6, map[string]string{"retention.ms": "604800000"})
	env := []string{"KAFKA_BROKERS=" + cfg.Brokers, "KAFKA_TOPIC=" + cfg.Topic, "PORT=0"}
	cmd := exec.Command(writerBin)
	cmd.Env = append(cmd.Environ(), env...)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit, "%s", out)
	assert.Equal(t, 1, exit.ExitCode())
	assert.Contains(t, string(out), "retention.ms=604800000", "%s", out)
	assert.Contains(t, string(out), "--entity-name "+cfg.Topic+" --add-config retention.ms=-1")

	w := start(t, writerBin, append(env, "KAFKA_ALLOW_EXPIRING_TOPIC=true")...)
	w.waitReady()
	assert.Equal(t, 0, w.terminate())
}

// Every bad request gets its 4xx and a JSON error, and nothing reaches the
// topic.
func TestBadRequestsChangeNothing(t *testing.T) {
	tp := newTopic(t)
	w := start(t, writerBin, tp.env...)
	w.waitReady()

	status, resp := w.mustCall(http.MethodPost, "/users", `{"first_name":"Ada","last_name":"Lovelace"}`, nil)
	require.Equal(t, http.StatusCreated, status, "%s", resp)
	id := decode[ack](t, resp).ID
	status, resp = w.mustCall(http.MethodPut, "/users/"+id, `{"first_name":"Ada","last_name":"King"}`, nil)
	require.Equal(t, http.StatusOK, status, "%s", resp)
	status, resp = w.mustCall(http.MethodPost, "/users", `{"first_name":"Gone","last_name":"Soon"}`, nil)
	require.Equal(t, http.StatusCreated, status, "%s", resp)
	deleted := decode[ack](t, resp).ID
	status, resp = w.mustCall(http.MethodDelete, "/users/"+deleted, "", nil)
	require.Equal(t, http.StatusOK, status, "%s", resp)

	before := tp.ends(t)
	long := strings.Repeat("é", 101)
	update := func(fields string) string {
		return fmt.Sprintf(`{"type":"UpdateUserCommand","id":%q,%s}`, id, fields)
	}
	for _, tc := range []struct {
		name, method, path, body string
		header                   map[string]string
		status                   int
		errorHas                 string
	}{
		{"malformed JSON", "POST", "/", `{"type":"CreateUserCommand",`, nil, 400, "malformed JSON"},
		{"not JSON", "POST", "/", `type=CreateUserCommand`, nil, 400, "malformed JSON"},
		{"empty body", "POST", "/", ``, nil, 400, "empty"},
		{"array", "POST", "/", `[]`, nil, 400, "JSON object"},
		{"missing type", "POST", "/", `{"first_name":"A","last_name":"B"}`, nil, 400, `missing "type"`},
		{"unknown type", "POST", "/", `{"type":"RenameUserCommand","id":"x"}`, nil, 400, "unknown command type"},
		{"unknown field", "POST", "/", `{"type":"CreateUserCommand","first_name":"A","last_name":"B","age":3}`, nil, 400, `unknown field "age"`},
		{"name of the wrong type", "POST", "/", `{"type":"CreateUserCommand","first_name":1,"last_name":"B"}`, nil, 400, `"first_name" must be a string`},
		{"type of the wrong type", "POST", "/", `{"type":["CreateUserCommand"]}`, nil, 400, `"type" must be a string`},
		{"trailing data", "POST", "/", `{"type":"CreateUserCommand","first_name":"A","last_name":"B"} {}`, nil, 400, "trailing data"},
		{"negative expected version", "POST", "/", update(`"first_name":"A","last_name":"B","expected_version":-1`), nil, 400, "non-negative integer"},
		{"expected version 1e1000000", "POST", "/", update(`"first_name":"A","last_name":"B","expected_version":1e1000000`), nil, 400, "non-negative integer"},
		{"10 000-digit expected version", "PUT", "/users/" + id, `{"first_name":"A","last_name":"B","expected_version":` + strings.Repeat("9", 10000) + `}`, nil, 400, "non-negative integer"},
		{"fractional expected version", "PUT", "/users/" + id, `{"first_name":"A","last_name":"B","expected_version":1.5}`, nil, 400, "non-negative integer"},
		{"100 000 nested arrays", "POST", "/", strings.Repeat("[", 100000), nil, 400, "exceeded max depth"},
		{"a name nested 100 000 deep", "POST", "/users", `{"first_name":` + strings.Repeat(`{"a":`, 100000), nil, 400, "exceeded max depth"},
		{"id on create", "POST", "/", `{"type":"CreateUserCommand","id":"mine","first_name":"A","last_name":"B"}`, nil, 400, `"id" is not allowed`},
		{"update without id", "POST", "/", `{"type":"UpdateUserCommand","first_name":"A","last_name":"B"}`, nil, 400, `"id" is required`},
		{"names on delete", "POST", "/", fmt.Sprintf(`{"type":"DeleteUserCommand","id":%q,"first_name":"A"}`, id), nil, 400, `"first_name" is not allowed`},
		{"body over 1 MiB", "POST", "/", `{"type":"CreateUserCommand","first_name":"` + strings.Repeat("a", 1<<20) + `","last_name":"B"}`, nil, 413, "larger than"},
		{"missing last name", "POST", "/", `{"type":"CreateUserCommand","first_name":"A"}`, nil, 422, "last_name: is required"},
		{"blank first name", "POST", "/users", `{"first_name":" \t ","last_name":"B"}`, nil, 422, "first_name: is required"},
		{"null name", "POST", "/users", `{"first_name":null,"last_name":"B"}`, nil, 422, "first_name: is required"},
		{"name too long", "POST", "/", `{"type":"CreateUserCommand","first_name":"` + long + `","last_name":"B"}`, nil, 422, "at most 100 characters"},
		{"invalid UTF-8", "POST", "/users", "{\"first_name\":\"A\xff\",\"last_name\":\"B\"}", nil, 422, "valid UTF-8"},
		{"control character", "POST", "/users", `{"first_name":"A\u0007","last_name":"B"}`, nil, 422, "control characters"},
		{"invalid update", "PUT", "/users/" + id, `{"first_name":"A","last_name":""}`, nil, 422, "last_name: is required"},
		{"update of an unknown id", "POST", "/", `{"type":"UpdateUserCommand","id":"nobody","first_name":"A","last_name":"B"}`, nil, 404, "not found"},
		{"update of a deleted user", "PUT", "/users/" + deleted, `{"first_name":"A","last_name":"B"}`, nil, 404, "not found"},
		{"delete of a deleted user", "DELETE", "/users/" + deleted, ``, nil, 404, "not found"},
		{"get of an unknown id", "GET", "/users/nobody", ``, nil, 404, "not found"},
		{"stale expected version", "POST", "/", update(`"first_name":"A","last_name":"B","expected_version":1`), nil, 409, "is at version 2"},
		{"stale If-Match", "PUT", "/users/" + id, `{"first_name":"A","last_name":"B"}`, map[string]string{"If-Match": `"1"`}, 409, "is at version 2"},
		{"stale If-Match on delete", "DELETE", "/users/" + id, ``, map[string]string{"If-Match": `"5"`}, 409, "is at version 2"},
		{"malformed If-Match", "PUT", "/users/" + id, `{"first_name":"A","last_name":"B"}`, map[string]string{"If-Match": `W/"x"`}, 400, "If-Match"},
		{"If-Match against the body", "PUT", "/users/" + id, `{"first_name":"A","last_name":"B","expected_version":2}`, map[string]string{"If-Match": `"1"`}, 400, "disagree"},
		{"expected version on create", "POST", "/users", `{"first_name":"A","last_name":"B","expected_version":0}`, nil, 400, "not allowed"},
		{"command type on a resource", "POST", "/users", `{"type":"CreateUserCommand","first_name":"A","last_name":"B"}`, nil, 400, `unknown field "type"`},
		{"method not allowed", "PATCH", "/users/" + id, `{}`, nil, 405, "not allowed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			status, resp := w.mustCall(tc.method, tc.path, tc.body, tc.header)
			assert.Equal(t, tc.status, status, "%s", resp)
			body := decode[map[string]any](t, resp)
			msg, _ := body["error"].(string)
			assert.Contains(t, msg, tc.errorHas)
			if tc.status == http.StatusConflict {
				assert.EqualValues(t, 2, body["actual_version"], "the body says the actual version")
			}
		})
	}
	assert.Equal(t, before, tp.ends(t), "bad requests appended nothing")
	status, resp = w.mustCall(http.MethodGet, "/users/"+id, "", nil)
	require.Equal(t, http.StatusOK, status)
	assert.Equal(t, user{ID: id, FirstName: "Ada", LastName: "King", Version: 2}, decode[user](t, resp))
}

// kill -9 mid-restore: a writer killed while restoring leaves nothing to
// repair; the next one restores the same state as a replay of the topic.
// The log is big enough (200 000 events) for the restore to be seen under
// way; the test fails, rather than passing untried, when it is not.
func TestKill9MidRestore(t *testing.T) {
	tp := newTopic(t)
	reg, err := users.Registry()
	require.NoError(t, err)
	p := tp.provider(t)
	const people, versions = 2000, 100
	var recs []event.Record
	for v := 1; v <= versions; v++ {
		for i := range people {
			var payload any = users.Modified{FirstName: fmt.Sprint("First", v), LastName: fmt.Sprint("Last", i)}
			if v == 1 {
				payload = users.Created{FirstName: "First", LastName: fmt.Sprint("Last", i)}
			}
			env, err := reg.NewEnvelope(fmt.Sprintf("user-%05d", i), uint64(v), payload)
			require.NoError(t, err)
			recs = append(recs, env.Record())
		}
		_, err := p.Append(t.Context(), recs)
		require.NoError(t, err)
		recs = recs[:0]
	}

	w := start(t, writerBin, tp.env...)
	var at struct{ Done, Total int64 }
	eventually(t, "the restore under way", func() (bool, string) {
		status, body, err := w.call(http.MethodGet, "/readyz", "", nil)
		if err != nil {
			return false, err.Error()
		}
		require.NotEqual(t, http.StatusOK, status, "the writer finished its restore before the poll saw it under way: %s", body)
		if err := jsonUnmarshal(body, &at); err != nil {
			return false, err.Error()
		}
		return at.Done > 0 && at.Done < at.Total, string(body)
	})
	w.kill9()
	t.Logf("RESULT killed mid-restore, at %d of %d events", at.Done, at.Total)

	w = start(t, writerBin, tp.env...)
	w.waitReady()
	rs := tp.replay(t)
	require.Len(t, rs, people)
	checkEqualsReplay(t, w, rs)
}
