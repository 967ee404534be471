package repository_test

import (
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/provider"
	"github.com/rehydrate/rehydrate/repository"
)

// The user's events over three releases: v1 "UserRegistered" {"name"};
// v2 "UserCreated" {"first","surname"}; v3 (today) {"first_name","last_name"};
// and "NameChanged", renamed "UserRenamed" with its field "given" now "first_name".
type (
	profile        struct{ First, Last string }
	profileCreated struct {
		FirstName string `json:"first_name"`
		LastName  string `json:"last_name"`
	}
	profileRenamed struct {
		FirstName string `json:"first_name"`
	}
)

func profiles(t *testing.T, opts ...event.RegistryOption) *event.Registry {
	reg := event.NewRegistry(opts...)
	require.NoError(t, event.Register[profileCreated](reg, "UserCreated", event.WithAliases("UserRegistered"), event.WithSchema(3,
		func(doc map[string]any) (map[string]any, error) {
			name, _ := doc["name"].(string)
			first, last, _ := strings.Cut(name, " ")
			return map[string]any{"first": first, "surname": last}, nil
		},
		func(doc map[string]any) (map[string]any, error) {
			return map[string]any{"first_name": doc["first"], "last_name": doc["surname"]}, nil
		})))
	require.NoError(t, event.Register[profileRenamed](reg, "UserRenamed", event.WithAliases("NameChanged"), event.WithSchema(2,
		func(doc map[string]any) (map[string]any, error) {
			return map[string]any{"first_name": doc["given"]}, nil
		})))
	return reg
}

func oldRecord(id, version, typ, schema, payload string) event.Record {
	hs := []event.Header{
		{Key: event.HeaderType, Value: []byte(typ)},
		{Key: event.HeaderID, Value: []byte(event.NewID())},
		{Key: event.HeaderVersion, Value: []byte(version)},
		{Key: event.HeaderTime, Value: []byte(time.Now().UTC().Format(time.RFC3339Nano))},
		{Key: event.HeaderContentType, Value: []byte(event.ContentTypeJSON)},
	}
	if schema != "" {
		hs = append(hs, event.Header{Key: event.HeaderSchema, Value: []byte(schema)})
	}
	return event.Record{Key: []byte(id), Value: []byte(payload), Headers: hs}
}

func newProfiles(t *testing.T, reg *event.Registry, p provider.Provider) (*repository.Repository[profile], error) {
	r, err := repository.New[profile](p, reg,
		repository.On(func(s *profile, e profileCreated) { s.First, s.Last = e.FirstName, e.LastName }),
		repository.On(func(s *profile, e profileRenamed) { s.First = e.FirstName }))
	require.NoError(t, err)
	_, err = r.Restore(t.Context())
	return r, err
}

func TestOldFormatEventsRestoreThroughUpcasters(t *testing.T) {
	p := newMemory(t, 1)
	_, err := p.Append(t.Context(), []event.Record{
		oldRecord("ada", "1", "UserRegistered", "", `{"name":"Ada Lovelace"}`),
		oldRecord("ada", "2", "NameChanged", "", `{"given":"Augusta Ada"}`),
		oldRecord("alan", "1", "UserCreated", "2", `{"first":"Alan","surname":"Turing"}`),
	})
	require.NoError(t, err)
	r, err := newProfiles(t, profiles(t), p)
	require.NoError(t, err)
	ada, v, err := r.Get("ada")
	require.NoError(t, err)
	assert.Equal(t, profile{First: "Augusta Ada", Last: "Lovelace"}, ada)
	assert.Equal(t, uint64(2), v)
	alan, _, err := r.Get("alan")
	require.NoError(t, err)
	assert.Equal(t, profile{First: "Alan", Last: "Turing"}, alan)

	// New events are written in today's format, and restore with the old.
	_, err = r.Execute(t.Context(), "alan", func(profile) ([]any, error) { return []any{profileRenamed{FirstName: "Alan M."}}, nil })
	require.NoError(t, err)
	again, err := newProfiles(t, profiles(t), p)
	require.NoError(t, err)
	alan, _, err = again.Get("alan")
	require.NoError(t, err)
	assert.Equal(t, "Alan M.", alan.First)
}

func TestStrictDecodingNamesTheRecord(t *testing.T) {
	p := newMemory(t, 1)
	_, err := p.Append(t.Context(), []event.Record{
		oldRecord("ada", "1", "UserCreated", "3", `{"first_name":"Ada","last_name":"Lovelace"}`),
		oldRecord("ada", "2", "UserRenamed", "2", `{"first_name":"Augusta","title":"Countess"}`),
	})
	require.NoError(t, err)
	_, err = newProfiles(t, profiles(t), p)
	require.NoError(t, err, "lenient: the unknown field is dropped")
	_, err = newProfiles(t, profiles(t, event.WithStrictDecoding()), p)
	var re *event.RecordError
	require.ErrorAs(t, err, &re)
	assert.Equal(t, int32(0), re.Partition)
	assert.Equal(t, int64(1), re.Offset)
	assert.ErrorContains(t, err, `unknown field "title"`)
}
