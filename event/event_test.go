package event_test

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rehydrate/rehydrate/event"
)

type userCreated struct {
	FirstName string `json:"first_name"`
	LastName  string `json:"last_name"`
}

func (u userCreated) Validate() error {
	if u.FirstName == "" {
		return errors.New("first_name is required")
	}
	return nil
}

type userRenamed struct {
	FirstName string `json:"first_name"`
}

func newRegistry(t *testing.T, opts ...event.RegistryOption) *event.Registry {
	t.Helper()
	r := event.NewRegistry(opts...)
	require.NoError(t, event.Register[userCreated](r, "UserCreated"))
	require.NoError(t, event.Register[userRenamed](r, "UserRenamed", event.WithTypeCodec(event.JSON)))
	return r
}

func TestEnvelopeRecordRoundTrip(t *testing.T) {
	want := event.Envelope{
		ID:            event.NewID(),
		Type:          "UserCreated",
		AggregateID:   "user-1",
		AggregateType: "user",
		Version:       12,
		Time:          time.Date(2026, 11, 25, 10, 0, 0, 123456789, time.UTC),
		Metadata:      map[string]string{"correlation-id": "c-1", "causation-id": "k-1"},
		ContentType:   event.ContentTypeMsgpack,
		Payload:       []byte{0x80},
	}
	rec := want.Record()
	rec.Partition, rec.Offset = 3, 42
	got, err := event.ParseRecord(rec)
	require.NoError(t, err)
	want.Partition, want.Offset = 3, 42
	assert.Equal(t, want, got)
}

func TestRecordHeadersFollowTheWireFormat(t *testing.T) {
	e := event.Envelope{ID: "id-1", Type: "UserCreated", AggregateID: "user-1", Version: 1,
		Time: time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("x", 3600)), ContentType: event.ContentTypeJSON,
		Metadata: map[string]string{"correlation-id": "c"}, Payload: []byte(`{}`)}
	rec := e.Record()
	headers := map[string]string{}
	for _, h := range rec.Headers {
		headers[h.Key] = string(h.Value)
	}
	assert.Equal(t, "user-1", string(rec.Key))
	assert.Equal(t, map[string]string{
		"event-type":          "UserCreated",
		"event-id":            "id-1",
		"aggregate-version":   "1",
		"event-time":          "2026-01-02T02:04:05.000000006Z",
		"content-type":        "application/json",
		"meta-correlation-id": "c",
	}, headers)
}

func TestParseRecordRefusesWhatTheWireFormatDoesNot(t *testing.T) {
	valid := func() event.Record {
		return event.Record{Key: []byte("a"), Value: []byte(`{}`), Partition: 2, Offset: 7, Headers: []event.Header{
			{"event-type", []byte("UserCreated")},
			{"event-id", []byte("x")},
			{"aggregate-version", []byte("1")},
			{"event-time", []byte("2026-01-02T03:04:05Z")},
			{"content-type", []byte("application/json")},
		}}
	}
	set := func(key, value string) func(*event.Record) {
		return func(r *event.Record) {
			for i := range r.Headers {
				if r.Headers[i].Key == key {
					r.Headers[i].Value = []byte(value)
				}
			}
		}
	}
	drop := func(key string) func(*event.Record) {
		return func(r *event.Record) {
			for i := range r.Headers {
				if r.Headers[i].Key == key {
					r.Headers[i].Key = "ignored"
				}
			}
		}
	}
	for _, tc := range []struct {
		name   string
		change func(*event.Record)
	}{
		{"no key", func(r *event.Record) { r.Key = nil }},
		{"no type", drop("event-type")},
		{"empty type", set("event-type", "")},
		{"no id", drop("event-id")},
		{"no version", drop("aggregate-version")},
		{"version zero", set("aggregate-version", "0")},
		{"negative version", set("aggregate-version", "-1")},
		{"version with leading zero", set("aggregate-version", "01")},
		{"version not a number", set("aggregate-version", "1a")},
		{"version too large", set("aggregate-version", "99999999999999999999")},
		{"no time", drop("event-time")},
		{"time not RFC 3339", set("event-time", "yesterday")},
		{"no content type", drop("content-type")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := valid()
			tc.change(&r)
			_, err := event.ParseRecord(r)
			require.ErrorIs(t, err, event.ErrMalformed)
			var re *event.RecordError
			require.ErrorAs(t, err, &re)
			assert.Equal(t, int32(2), re.Partition)
			assert.Equal(t, int64(7), re.Offset)
			assert.Contains(t, err.Error(), "partition 2 offset 7")
		})
	}
	_, err := event.ParseRecord(valid())
	require.NoError(t, err, "the valid record parses")
}

func TestRegistryEncodesAndDecodesEachCodec(t *testing.T) {
	for _, codec := range []event.Codec{event.Msgpack, event.JSON} {
		t.Run(codec.ContentType(), func(t *testing.T) {
			r := newRegistry(t, event.WithCodec(codec))
			env, err := r.NewEnvelope("user-1", 1, userCreated{FirstName: "Ada", LastName: "Lovelace"})
			require.NoError(t, err)
			assert.Equal(t, "UserCreated", env.Type)
			assert.Equal(t, codec.ContentType(), env.ContentType)
			assert.Equal(t, uint64(1), env.Version)
			got, err := r.Decode(&env)
			require.NoError(t, err)
			assert.Equal(t, &userCreated{FirstName: "Ada", LastName: "Lovelace"}, got)
		})
	}
}

func TestRegistryDecodesWhicheverCodecARecordNames(t *testing.T) {
	r := newRegistry(t) // msgpack by default, JSON for userRenamed
	renamed, err := r.NewEnvelope("u", 2, &userRenamed{FirstName: "Grace"})
	require.NoError(t, err)
	assert.Equal(t, event.ContentTypeJSON, renamed.ContentType)

	// A record another writer encoded in JSON for a msgpack type still decodes.
	foreign := event.Envelope{Type: "UserCreated", ContentType: event.ContentTypeJSON, Payload: []byte(`{"first_name":"Ada","last_name":"L"}`)}
	got, err := r.Decode(&foreign)
	require.NoError(t, err)
	assert.Equal(t, &userCreated{FirstName: "Ada", LastName: "L"}, got)
}

func TestMsgpackUsesJSONFieldNames(t *testing.T) {
	data, err := event.Msgpack.Marshal(userCreated{FirstName: "Ada"})
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, event.Msgpack.Unmarshal(data, &m))
	assert.Equal(t, map[string]any{"first_name": "Ada", "last_name": ""}, m)
}

// TestMsgpackAfterFailures decodes and encodes after failures of each, and
// after trailing bytes: pooled decoders and encoders are reused only in a
// clean state.
func TestMsgpackAfterFailures(t *testing.T) {
	good, err := event.Msgpack.Marshal(userCreated{FirstName: "Ada", LastName: "L"})
	require.NoError(t, err)
	for range 100 {
		var u userCreated
		require.Error(t, event.Msgpack.Unmarshal(good[:len(good)-2], &u), "cut short")
		require.ErrorContains(t, event.Msgpack.Unmarshal(append(bytes.Clone(good), 0x01), &u), "1 bytes after")
		_, err := event.Msgpack.Marshal(make(chan int))
		require.Error(t, err)
		u = userCreated{}
		require.NoError(t, event.Msgpack.Unmarshal(good, &u))
		require.Equal(t, userCreated{FirstName: "Ada", LastName: "L"}, u)
		again, err := event.Msgpack.Marshal(u)
		require.NoError(t, err)
		require.Equal(t, good, again)
	}
}

func TestRegistryErrors(t *testing.T) {
	r := newRegistry(t)
	t.Run("unknown type name", func(t *testing.T) {
		_, err := r.Decode(&event.Envelope{Type: "Nope", ContentType: event.ContentTypeJSON})
		assert.ErrorIs(t, err, event.ErrUnknownType)
	})
	t.Run("unregistered Go type", func(t *testing.T) {
		_, err := r.NewEnvelope("u", 1, struct{ X int }{})
		assert.ErrorIs(t, err, event.ErrUnknownType)
	})
	t.Run("invalid payload", func(t *testing.T) {
		_, err := r.NewEnvelope("u", 1, userCreated{})
		assert.ErrorIs(t, err, event.ErrInvalid)
		assert.ErrorContains(t, err, "first_name is required")
	})
	t.Run("unsupported content type", func(t *testing.T) {
		_, err := r.Decode(&event.Envelope{Type: "UserCreated", ContentType: "text/plain"})
		assert.ErrorIs(t, err, event.ErrMalformed)
	})
	t.Run("undecodable payload", func(t *testing.T) {
		_, err := r.Decode(&event.Envelope{Type: "UserCreated", ContentType: event.ContentTypeMsgpack, Payload: []byte{0xc1}})
		assert.ErrorIs(t, err, event.ErrMalformed)
	})
	t.Run("trailing bytes", func(t *testing.T) {
		data, err := event.Msgpack.Marshal(userCreated{FirstName: "A"})
		require.NoError(t, err)
		_, err = r.Decode(&event.Envelope{Type: "UserCreated", ContentType: event.ContentTypeMsgpack, Payload: append(data, 0)})
		assert.ErrorIs(t, err, event.ErrMalformed)
	})
	t.Run("name registered twice", func(t *testing.T) {
		assert.Error(t, event.Register[struct{ Y int }](r, "UserCreated"))
	})
	t.Run("type registered twice", func(t *testing.T) {
		assert.Error(t, event.Register[userCreated](r, "Other"))
	})
	t.Run("pointer type", func(t *testing.T) {
		assert.Error(t, event.Register[*userCreated](r, "Pointer"))
	})
	t.Run("empty name", func(t *testing.T) {
		assert.Error(t, event.Register[struct{ Z int }](r, ""))
	})
}

func TestNewIDIsAUniqueUUIDv7(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := event.NewID()
		require.Len(t, id, 36)
		assert.Equal(t, byte('7'), id[14], "version nibble")
		assert.False(t, seen[id])
		seen[id] = true
	}
}

// TestNewIDIsStrictlyIncreasing: id order is creation order, also for ids
// made within one millisecond.
func TestNewIDIsStrictlyIncreasing(t *testing.T) {
	prev := event.NewID()
	for i := range 100_000 {
		id := event.NewID()
		require.Greater(t, id, prev, "id %d", i)
		require.Equal(t, byte('7'), id[14], "version nibble")
		require.Contains(t, "89ab", string(id[19]), "variant")
		prev = id
	}
	// The timestamp is the clock's, in milliseconds.
	ms, err := strconv.ParseUint(strings.ReplaceAll(prev[:13], "-", ""), 16, 64)
	require.NoError(t, err)
	assert.InDelta(t, time.Now().UnixMilli(), int64(ms), 5000)
}

func TestControlRecordsAreNotEvents(t *testing.T) {
	fence := event.FenceRecord("user-1")
	fence.Partition, fence.Offset = 1, 5
	assert.True(t, event.IsControl(fence))
	assert.Equal(t, "user-1", string(fence.Key))
	_, err := event.ParseRecord(fence)
	assert.ErrorIs(t, err, event.ErrControlRecord)
	ran, err := event.NewHandlers(event.NewRegistry()).Handle(fence)
	require.NoError(t, err, "handlers skip control records")
	assert.False(t, ran)
	e := event.Envelope{ID: "x", Type: "T", AggregateID: "a", Version: 1, ContentType: event.ContentTypeJSON}
	assert.False(t, event.IsControl(e.Record()))
}
