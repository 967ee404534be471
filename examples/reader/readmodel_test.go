package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/examples/users"
)

func record(t *testing.T, id string, version uint64, payload any) event.Record {
	t.Helper()
	reg, err := users.Registry()
	require.NoError(t, err)
	env, err := reg.NewEnvelope(id, version, payload)
	require.NoError(t, err)
	return env.Record()
}

func TestReadModelIsIdempotent(t *testing.T) {
	m := newReadModel()
	h, err := m.handlers()
	require.NoError(t, err)
	handle := func(recs ...event.Record) {
		for _, r := range recs {
			_, err := h.Handle(r)
			require.NoError(t, err)
		}
	}
	created := record(t, "b", 1, users.Created{FirstName: "Ada", LastName: "Byron"})
	modified := record(t, "b", 2, users.Modified{FirstName: "Ada", LastName: "King"})
	handle(created, modified, created, modified) // read twice
	handle(record(t, "a", 1, users.Created{FirstName: "Grace", LastName: "Hopper"}))
	handle(record(t, "c", 1, users.Created{FirstName: "Alan", LastName: "Turing"}), record(t, "c", 2, users.Deleted{}))
	handle(record(t, "c", 1, users.Created{FirstName: "Alan", LastName: "Turing"})) // a late duplicate does not resurrect

	u, ok := m.get("b")
	assert.True(t, ok)
	assert.Equal(t, userView{ID: "b", FirstName: "Ada", LastName: "King", Version: 2}, u)
	_, ok = m.get("c")
	assert.False(t, ok)

	page, total := m.page(0, 10)
	assert.Equal(t, 2, total)
	assert.Equal(t, []string{"a", "b"}, []string{page[0].ID, page[1].ID})
	page, total = m.page(1, 1)
	assert.Equal(t, 2, total)
	assert.Equal(t, "b", page[0].ID)
	page, _ = m.page(5, 10)
	assert.Empty(t, page)

	st := m.stats()
	assert.Equal(t, int64(3), st.Duplicates)
	assert.Equal(t, int64(0), st.Gaps)
}

func TestReadModelSkipsUnknownTypes(t *testing.T) {
	m := newReadModel()
	h, err := m.handlers()
	require.NoError(t, err)
	rec := record(t, "a", 1, users.Created{FirstName: "A", LastName: "B"})
	for i, hd := range rec.Headers {
		if hd.Key == event.HeaderType {
			rec.Headers[i].Value = []byte("InvoiceSent")
		}
	}
	ran, err := h.Handle(rec)
	require.NoError(t, err)
	assert.False(t, ran)
	assert.Equal(t, 0, m.stats().Users)
}
