package event_test

import (
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rehydrate/rehydrate/event"
)

func TestHandlersDispatchTypedEvents(t *testing.T) {
	reg := newRegistry(t)
	names := map[string]string{}
	h := event.NewHandlers(reg)
	require.NoError(t, event.AddHandler(h, func(env *event.Envelope, e userCreated) error {
		names[env.AggregateID] = e.FirstName
		return nil
	}))
	require.Error(t, event.AddHandler(h, func(*event.Envelope, userCreated) error { return nil }), "one handler per type")

	created, err := reg.NewEnvelope("u1", 1, userCreated{FirstName: "Ada"})
	require.NoError(t, err)
	ran, err := h.Handle(created.Record())
	require.NoError(t, err)
	assert.True(t, ran)
	assert.Equal(t, map[string]string{"u1": "Ada"}, names)

	renamed, err := reg.NewEnvelope("u1", 2, userRenamed{FirstName: "Grace"})
	require.NoError(t, err)
	_, err = h.Handle(renamed.Record())
	assert.ErrorIs(t, err, event.ErrUnknownType, "no handler for UserRenamed")

	skipping := event.NewHandlers(reg, event.SkipUnhandled())
	ran, err = skipping.Handle(renamed.Record())
	require.NoError(t, err)
	assert.False(t, ran)

	failing := event.NewHandlers(reg)
	boom := errors.New("boom")
	require.NoError(t, event.AddHandler(failing, func(*event.Envelope, userCreated) error { return boom }))
	rec := created.Record()
	rec.Partition, rec.Offset = 4, 2
	_, err = failing.Handle(rec)
	assert.ErrorIs(t, err, boom)
	assert.ErrorContains(t, err, "partition 4 offset 2")
}
