package event_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rehydrate/rehydrate/event"
)

// The history of a payload: v1 {"name": "Ada Lovelace"} as "UserRegistered";
// v2 {"first", "surname"}; v3, today, {"first_name", "last_name"} as
// "UserCreated".
type profileCreated struct {
	FirstName string `json:"first_name"`
	LastName  string `json:"last_name"`
	Nickname  string `json:"nickname,omitempty"`
}

func splitName(doc map[string]any) (map[string]any, error) {
	name, _ := doc["name"].(string)
	first, last, _ := strings.Cut(name, " ")
	return map[string]any{"first": first, "surname": last}, nil
}

func renameFields(doc map[string]any) (map[string]any, error) {
	return map[string]any{"first_name": doc["first"], "last_name": doc["surname"]}, nil
}

func evolvingRegistry(t *testing.T, opts ...event.RegistryOption) *event.Registry {
	reg := event.NewRegistry(opts...)
	require.NoError(t, event.Register[profileCreated](reg, "UserCreated",
		event.WithAliases("UserRegistered"),
		event.WithSchema(3, splitName, renameFields)))
	return reg
}

// rawRecord is an event as kcat would write it: headers by hand.
func rawRecord(typ string, schema, contentType string, payload []byte) event.Record {
	hs := []event.Header{
		{Key: event.HeaderType, Value: []byte(typ)},
		{Key: event.HeaderID, Value: []byte(event.NewID())},
		{Key: event.HeaderVersion, Value: []byte("1")},
		{Key: event.HeaderTime, Value: []byte(time.Now().UTC().Format(time.RFC3339Nano))},
		{Key: event.HeaderContentType, Value: []byte(contentType)},
	}
	if schema != "" {
		hs = append(hs, event.Header{Key: event.HeaderSchema, Value: []byte(schema)})
	}
	return event.Record{Key: []byte("u1"), Value: payload, Headers: hs}
}

func decodeRecord(t *testing.T, reg *event.Registry, rec event.Record) (event.Envelope, any, error) {
	t.Helper()
	env, err := event.ParseRecord(rec)
	require.NoError(t, err)
	v, err := reg.Decode(&env)
	return env, v, err
}

func TestOldEventsAreUpcast(t *testing.T) {
	reg := evolvingRegistry(t)
	want := profileCreated{FirstName: "Ada", LastName: "Lovelace"}
	msgpackV2, err := event.Msgpack.Marshal(map[string]any{"first": "Ada", "surname": "Lovelace"})
	require.NoError(t, err)
	for _, tc := range []struct {
		name string
		rec  event.Record
	}{
		{"v1 under its former name, no schema header", rawRecord("UserRegistered", "", event.ContentTypeJSON, []byte(`{"name":"Ada Lovelace"}`))},
		{"v2", rawRecord("UserCreated", "2", event.ContentTypeJSON, []byte(`{"first":"Ada","surname":"Lovelace"}`))},
		{"v2 in msgpack", rawRecord("UserCreated", "2", event.ContentTypeMsgpack, msgpackV2)},
		{"v3, current", rawRecord("UserCreated", "3", event.ContentTypeJSON, []byte(`{"first_name":"Ada","last_name":"Lovelace"}`))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env, v, err := decodeRecord(t, reg, tc.rec)
			require.NoError(t, err)
			assert.Equal(t, want, *v.(*profileCreated))
			assert.Equal(t, "UserCreated", env.Type, "the current name")
		})
	}

	// New events carry the current version.
	env, err := reg.NewEnvelope("u2", 1, want)
	require.NoError(t, err)
	assert.EqualValues(t, 3, env.Schema)
	rec := env.Record()
	parsed, err := event.ParseRecord(rec)
	require.NoError(t, err)
	assert.EqualValues(t, 3, parsed.Schema)

	// A version this build does not know yet.
	_, _, err = decodeRecord(t, reg, rawRecord("UserCreated", "4", event.ContentTypeJSON, []byte(`{}`)))
	require.ErrorIs(t, err, event.ErrMalformed)
	assert.ErrorContains(t, err, "schema version 4 is newer than this build's 3")
}

func TestUpcastKeepsLargeIntegers(t *testing.T) {
	type counted struct{ N int64 }
	reg := event.NewRegistry()
	require.NoError(t, event.Register[counted](reg, "Counted", event.WithSchema(2, func(doc map[string]any) (map[string]any, error) {
		return map[string]any{"N": doc["count"]}, nil
	})))
	_, v, err := decodeRecord(t, reg, rawRecord("Counted", "", event.ContentTypeJSON, []byte(`{"count":9007199254740993}`)))
	require.NoError(t, err)
	assert.Equal(t, int64(9007199254740993), v.(*counted).N, "2^53+1 survives the document")
}

func TestSchemaNeedsAnUpcasterPerOlderVersion(t *testing.T) {
	reg := event.NewRegistry()
	err := event.Register[profileCreated](reg, "UserCreated", event.WithSchema(3, splitName))
	require.ErrorContains(t, err, "schema version 3 needs 2 upcasters")
	err = event.Register[profileCreated](reg, "UserCreated", event.WithAliases("UserCreated"))
	require.ErrorContains(t, err, "alias")
}

func TestStrictDecoding(t *testing.T) {
	lenient := evolvingRegistry(t)
	strict := evolvingRegistry(t, event.WithStrictDecoding())
	extra := rawRecord("UserCreated", "3", event.ContentTypeJSON, []byte(`{"first_name":"Ada","last_name":"Lovelace","title":"Countess"}`))
	missing := rawRecord("UserCreated", "3", event.ContentTypeJSON, []byte(`{"first_name":"Ada"}`))
	optional := rawRecord("UserCreated", "3", event.ContentTypeJSON, []byte(`{"first_name":"Ada","last_name":"Lovelace"}`))

	for _, rec := range []event.Record{extra, missing, optional} {
		_, _, err := decodeRecord(t, lenient, rec)
		require.NoError(t, err, "lenient decoding drops and zeroes")
	}
	_, _, err := decodeRecord(t, strict, extra)
	require.ErrorIs(t, err, event.ErrMalformed)
	assert.ErrorContains(t, err, `unknown field "title"`)
	_, _, err = decodeRecord(t, strict, missing)
	assert.ErrorContains(t, err, `missing field "last_name"`)
	_, v, err := decodeRecord(t, strict, optional)
	require.NoError(t, err, "an omitempty field may be absent")
	assert.Equal(t, "Lovelace", v.(*profileCreated).LastName)
	// Upcast documents are checked too.
	_, _, err = decodeRecord(t, strict, rawRecord("UserRegistered", "", event.ContentTypeJSON, []byte(`{"name":"Ada Lovelace"}`)))
	require.NoError(t, err)

	// What the registry encodes, it decodes strictly.
	env, err := strict.NewEnvelope("u", 1, profileCreated{FirstName: "A", LastName: "B"})
	require.NoError(t, err)
	_, err = strict.Decode(&env)
	require.NoError(t, err)
	var doc map[string]any
	require.NoError(t, event.Msgpack.Unmarshal(env.Payload, &doc))
	assert.NotContains(t, doc, "nickname")
}
