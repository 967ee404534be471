package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/internal/kafkatest"
	"github.com/rehydrate/rehydrate/provider"
	"github.com/rehydrate/rehydrate/provider/memory"
)

type (
	created struct {
		First string `json:"first_name"`
		Last  string `json:"last_name"`
	}
	renamed struct {
		First string `json:"first_name"`
	}
)

// unclosed keeps the seeded log open across commands.
type unclosed struct{ *memory.Provider }

func (unclosed) Close() error { return nil }

// seed writes two users' events to a log of 2 partitions, returning it and
// the time between ada's two events.
func seed(t *testing.T) (*memory.Provider, time.Time) {
	p, err := memory.New(2)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	reg := event.NewRegistry()
	require.NoError(t, event.Register[created](reg, "UserCreated"))
	require.NoError(t, event.Register[renamed](reg, "UserRenamed", event.WithTypeCodec(event.JSON)))
	add := func(id string, v uint64, payload any, at time.Time) {
		env, err := reg.NewEnvelope(id, v, payload)
		require.NoError(t, err)
		env.Time = at
		_, err = p.Append(t.Context(), []event.Record{env.Record()})
		require.NoError(t, err)
	}
	t0 := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	add("ada", 1, created{First: "Ada", Last: "Lovelace"}, t0)
	add("alan", 1, created{First: "Alan", Last: "Turing"}, t0)
	add("ada", 2, renamed{First: "Augusta Ada"}, t0.Add(time.Hour))
	_, err = p.Append(t.Context(), []event.Record{event.FenceRecord("ada")})
	require.NoError(t, err)
	return p, t0.Add(30 * time.Minute)
}

func cli(t *testing.T, p provider.Provider, args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := run(context.Background(), args, &out, &errOut, func() (provider.Provider, error) { return p, nil })
	return code, out.String(), errOut.String()
}

func TestTopicsAndHistory(t *testing.T) {
	mem, _ := seed(t)
	p := unclosed{mem}
	code, out, _ := cli(t, p, "topics")
	require.Equal(t, 0, code)
	assert.Contains(t, out, "2 partitions, 4 records; retention: keeps its events")

	code, out, _ = cli(t, p, "history", "ada")
	require.Equal(t, 0, code, out)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 2, "ada's events only, no fence")
	assert.Contains(t, lines[0], `ada v1  UserCreated`)
	assert.Contains(t, lines[0], `"first_name":"Ada"`, "msgpack decoded")
	assert.Contains(t, lines[1], `ada v2  UserRenamed`)

	code, out, _ = cli(t, p, "-json", "history", "ada")
	require.Equal(t, 0, code)
	var row eventRow
	require.NoError(t, json.Unmarshal([]byte(strings.Split(out, "\n")[1]), &row))
	assert.Equal(t, uint64(2), row.Version)
	assert.Equal(t, map[string]any{"first_name": "Augusta Ada"}, row.Payload)

	code, _, errOut := cli(t, p, "history", "nobody")
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, "no events of aggregate nobody")
}

func TestStateAsOf(t *testing.T) {
	mem, between := seed(t)
	p := unclosed{mem}
	code, out, _ := cli(t, p, "state", "ada")
	require.Equal(t, 0, code)
	assert.Contains(t, out, `ada v2 (last UserRenamed`)
	assert.Contains(t, out, `{"first_name":"Augusta Ada","last_name":"Lovelace"}`)

	code, out, _ = cli(t, p, "state", "-at", between.Format(time.RFC3339), "ada")
	require.Equal(t, 0, code)
	assert.Contains(t, out, `ada v1 (last UserCreated`)

	code, out, _ = cli(t, p, "-json", "state", "-at", "1", "ada")
	require.Equal(t, 0, code)
	var s stateRow
	require.NoError(t, json.Unmarshal([]byte(out), &s))
	assert.Equal(t, uint64(1), s.Version, "events before offset 1")

	part := provider.PartitionFor([]byte("alan"), 2)
	code, out, _ = cli(t, p, "state", "-partition", strconv.Itoa(int(part)))
	require.Equal(t, 0, code)
	assert.Contains(t, out, "alan v1")

	code, _, _ = cli(t, p, "state")
	assert.Equal(t, 2, code, "an id or a partition")
	code, _, errOut := cli(t, p, "state", "-at", "yesterday", "ada")
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, "want an offset or an RFC 3339 time")
}

func TestVerify(t *testing.T) {
	mem, _ := seed(t)
	p := unclosed{mem}
	code, out, _ := cli(t, p, "verify")
	require.Equal(t, 0, code, out)
	assert.Contains(t, out, "3 events of 2 aggregates, 1 control records: 0 problems")

	// Inject what restores trip on: a gap, a duplicate, a record in the
	// wrong partition, an undecodable one.
	ada := provider.PartitionFor([]byte("ada"), 2)
	env := event.Envelope{ID: event.NewID(), Type: "UserRenamed", AggregateID: "ada", Version: 4, Time: time.Now(),
		ContentType: event.ContentTypeJSON, Payload: []byte(`{"first_name":"A"}`)}
	dup := env
	dup.Version = 2
	wrong := env
	wrong.AggregateID, wrong.Version = "alan", 2
	_, err := mem.AppendPartition(t.Context(), ada, []event.Record{env.Record(), dup.Record(), {Key: []byte("ada"), Value: []byte("?")}})
	require.NoError(t, err)
	_, err = mem.AppendPartition(t.Context(), 1-provider.PartitionFor([]byte("alan"), 2), []event.Record{wrong.Record()})
	require.NoError(t, err)

	code, out, _ = cli(t, p, "verify")
	assert.Equal(t, 1, code, "problems found")
	for _, want := range []string{"version gap: aggregate ada version 4 after version 2", "duplicate: aggregate ada version 2 after version 4",
		"undecodable:", "foreign partition: aggregate alan belongs in partition", ": 4 problems"} {
		assert.Contains(t, out, want)
	}
	code, out, _ = cli(t, p, "-json", "verify")
	assert.Equal(t, 1, code)
	var first problem
	require.NoError(t, json.Unmarshal([]byte(strings.Split(out, "\n")[0]), &first))
	assert.NotEmpty(t, first.Kind)
}

func TestTail(t *testing.T) {
	mem, _ := seed(t)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	var out kafkatest.SyncBuffer
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"tail"}, &out, &bytes.Buffer{}, func() (provider.Provider, error) { return unclosed{mem}, nil })
	}()
	env := event.Envelope{ID: event.NewID(), Type: "UserRenamed", AggregateID: "grace", Version: 1, Time: time.Now(),
		ContentType: event.ContentTypeJSON, Payload: []byte(`{"first_name":"Grace"}`)}
	require.Eventually(t, func() bool {
		// Appended until tail has started and shows one.
		_, err := mem.Append(ctx, []event.Record{env.Record()})
		require.NoError(t, err)
		return strings.Contains(out.String(), "grace v1")
	}, 5*time.Second, 50*time.Millisecond)
	assert.NotContains(t, out.String(), "ada", "only what is appended from now on")
	cancel()
	assert.Equal(t, 0, <-done)
}

func TestUsage(t *testing.T) {
	code, out, errOut := cli(t, nil, "nonsense")
	assert.Equal(t, 2, code)
	assert.Contains(t, errOut, "usage: rehydrate")
	assert.Empty(t, out)
	for _, args := range [][]string{{}, {"-json"}, {"-nonsense", "topics"}, {"history", "-at", "1", "ada"},
		{"state", "-since", "1h", "ada"}, {"history", "ada", "alan"}, {"topics", "extra"}} {
		code, out, errOut := cli(t, nil, args...)
		assert.Equal(t, 2, code, "%q", args)
		assert.Contains(t, errOut, "usage: rehydrate", "%q", args)
		assert.Empty(t, out, "%q", args)
	}
}

// TestHelp: asked for, the usage is an answer (stdout, status 0), not a
// mistake, and nothing is opened.
func TestHelp(t *testing.T) {
	for _, args := range [][]string{{"--help"}, {"-h"}, {"-help"}, {"help"}, {"help", "history"}, {"-json", "-h"},
		{"history", "-h"}, {"state", "--help"}, {"verify", "-h"}} {
		var out, errOut bytes.Buffer
		code := run(context.Background(), args, &out, &errOut, func() (provider.Provider, error) {
			t.Errorf("%q opened the topic", args)
			return nil, errors.New("not for help")
		})
		assert.Equal(t, 0, code, "%q", args)
		assert.True(t, strings.HasPrefix(out.String(), "usage: rehydrate"), "%q: usage on stdout, got %q", args, out.String())
		assert.Contains(t, out.String(), "-from-version N", "%q", args)
		assert.Empty(t, errOut.String(), "%q", args)
	}
}

// TestHistorySpan selects versions and times the way an event store's
// getEventsByRevision and getEventsSince do, in text and JSON.
func TestHistorySpan(t *testing.T) {
	mem, _ := seed(t)
	p := unclosed{mem}
	reg := event.NewRegistry()
	require.NoError(t, event.Register[renamed](reg, "UserRenamed", event.WithTypeCodec(event.JSON)))
	// grace v1..v5, one an hour from t0, with alan's events between them
	// in her partition or not: only hers may show.
	t0 := time.Date(2026, 11, 2, 8, 0, 0, 0, time.UTC)
	for v := uint64(1); v <= 5; v++ {
		env, err := reg.NewEnvelope("grace", v, renamed{First: "G" + strconv.FormatUint(v, 10)})
		require.NoError(t, err)
		env.Time = t0.Add(time.Duration(v-1) * time.Hour)
		_, err = mem.Append(t.Context(), []event.Record{env.Record()})
		require.NoError(t, err)
		other, err := reg.NewEnvelope("alan", v+1, renamed{First: "A"})
		require.NoError(t, err)
		other.Time = env.Time
		_, err = mem.AppendPartition(t.Context(), provider.PartitionFor([]byte("grace"), 2), []event.Record{other.Record()})
		require.NoError(t, err)
	}
	clock := t0.Add(5 * time.Hour) // an hour after v5
	now = func() time.Time { return clock }
	t.Cleanup(func() { now = time.Now })

	versions := func(args ...string) []uint64 {
		t.Helper()
		code, out, errOut := cli(t, p, args...)
		require.Equal(t, 0, code, "%q: %s", args, errOut)
		var vs []uint64
		for line := range strings.Lines(out) {
			if slices.Contains(args, "-json") {
				var row eventRow
				require.NoError(t, json.Unmarshal([]byte(line), &row), line)
				require.Equal(t, "grace", row.Aggregate)
				vs = append(vs, row.Version)
				continue
			}
			var v uint64
			_, err := fmt.Sscanf(line[strings.Index(line, "grace v"):], "grace v%d", &v)
			require.NoError(t, err, line)
			vs = append(vs, v)
		}
		return vs
	}
	since := func(v int) string { return t0.Add(time.Duration(v-1) * time.Hour).Format(time.RFC3339) }
	for _, c := range []struct {
		args []string
		want []uint64
	}{
		{[]string{"history", "grace"}, []uint64{1, 2, 3, 4, 5}},
		{[]string{"history", "-from-version", "2", "-to-version", "4", "grace"}, []uint64{2, 3, 4}},
		{[]string{"history", "-from-version", "3", "-to-version", "3", "grace"}, []uint64{3}},
		{[]string{"history", "-from-version", "4", "grace"}, []uint64{4, 5}},
		{[]string{"history", "-to-version", "2", "grace"}, []uint64{1, 2}},
		{[]string{"history", "-since", since(3), "grace"}, []uint64{3, 4, 5}},
		{[]string{"history", "-since", t0.Add(150 * time.Minute).Format(time.RFC3339Nano), "grace"}, []uint64{4, 5}},
		{[]string{"history", "-since", "150m", "grace"}, []uint64{4, 5}},
		{[]string{"history", "-since", "3h", "grace"}, []uint64{3, 4, 5}}, // v3 is exactly 3 h old
		{[]string{"history", "-from-version", "2", "-to-version", "4", "-since", since(3), "grace"}, []uint64{3, 4}},
		{[]string{"-json", "history", "-from-version", "2", "-to-version", "3", "grace"}, []uint64{2, 3}},
		{[]string{"history", "-json", "-since", "2h", "grace"}, []uint64{4, 5}},
	} {
		assert.Equal(t, c.want, versions(c.args...), "%q", c.args)
	}

	// An empty range is an empty answer, with a word on stderr.
	code, out, errOut := cli(t, p, "history", "-from-version", "6", "grace")
	assert.Equal(t, 0, code)
	assert.Empty(t, out)
	assert.Contains(t, errOut, "aggregate grace: none of its 5 events (last version 5) in the range")
	code, out, _ = cli(t, p, "-json", "history", "-since", "1m", "grace")
	assert.Equal(t, 0, code)
	assert.Empty(t, out)

	for _, c := range []struct {
		args []string
		msg  string
	}{
		{[]string{"history", "-from-version", "4", "-to-version", "2", "grace"}, "-from-version 4 is after -to-version 2"},
		{[]string{"history", "-since", "yesterday", "grace"}, `-since "yesterday": want an RFC 3339 time or a duration`},
		{[]string{"history", "-since", "-1h", "grace"}, `-since "-1h": want`},
		{[]string{"history", "-from-version", "-1", "grace"}, "usage: rehydrate"},
		{[]string{"history", "-from-version", "2", "nobody"}, "no events of aggregate nobody"},
	} {
		code, out, errOut := cli(t, p, c.args...)
		assert.Equal(t, 2, code, "%q", c.args)
		assert.Empty(t, out, "%q", c.args)
		assert.Contains(t, errOut, c.msg, "%q", c.args)
	}
}

// TestOnKafka runs the commands through the Kafka client KAFKA_CLIENT
// picks, on kfake or the broker of KAFKA_BROKERS.
func TestOnKafka(t *testing.T) {
	cfg := kafkatest.Config(t, 3, nil)
	t.Setenv("KAFKA_BROKERS", cfg.Brokers)
	t.Setenv("KAFKA_TOPIC", cfg.Topic)
	p, err := openKafka()
	require.NoError(t, err)
	defer p.Close()
	env := event.Envelope{ID: event.NewID(), Type: "UserRenamed", AggregateID: "ada", Version: 1, Time: time.Now(),
		ContentType: event.ContentTypeJSON, Payload: []byte(`{"first_name":"Ada"}`)}
	_, err = p.Append(t.Context(), []event.Record{env.Record()})
	require.NoError(t, err)
	var out, errOut bytes.Buffer
	require.Equal(t, 0, run(t.Context(), []string{"history", "ada"}, &out, &errOut, openKafka), errOut.String())
	assert.Contains(t, out.String(), `ada v1  UserRenamed`)
	out.Reset()
	require.Equal(t, 0, run(t.Context(), []string{"verify"}, &out, &errOut, openKafka), errOut.String())
	assert.Contains(t, out.String(), "1 events of 1 aggregates, 0 control records: 0 problems")
	out.Reset()
	require.Equal(t, 0, run(t.Context(), []string{"topics"}, &out, &errOut, openKafka), errOut.String())
	assert.Contains(t, out.String(), "3 partitions, 1 records; retention: keeps its events")
}
