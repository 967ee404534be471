package kafkagroup

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rehydrate/rehydrate/provider"
)

// Await returns once the first assignment came and the second check
// passed; the callbacks wait until then, and serve nothing once stopped.
func TestJoinAwaitsTheFirstAssignment(t *testing.T) {
	j := NewJoin()
	served := make(chan bool)
	go func() { served <- j.Assigned() }()
	require.NoError(t, j.Await(t.Context(), func(context.Context) error { return nil }, nil))
	assert.True(t, <-served, "the first assignment is served once Await returned")
	assert.True(t, j.Assigned())
	j.Stop()
	// Once started and stopped, both of Assigned's waits are over: it is
	// asked often enough that each way through its select is taken.
	for range 50 {
		assert.False(t, j.Assigned(), "an assignment after Stop is not served")
	}
	assert.True(t, j.Stopping())
}

func TestJoinAwaitFails(t *testing.T) {
	t.Run("second check", func(t *testing.T) {
		j := NewJoin()
		go j.Assigned()
		errShared := errors.New("another topic's member")
		assert.ErrorIs(t, j.Await(t.Context(), func(context.Context) error { return errShared }, nil), errShared)
		j.Stop()
	})
	t.Run("stopped", func(t *testing.T) {
		j := NewJoin()
		j.Stop()
		assert.ErrorIs(t, j.Await(t.Context(), nil, nil), provider.ErrClosed)
		assert.False(t, j.Assigned(), "a callback of a stopped join serves nothing, and does not wait")
	})
	t.Run("deadline, with the client's last error", func(t *testing.T) {
		j := NewJoin()
		ctx, cancel := context.WithTimeout(t.Context(), time.Millisecond)
		defer cancel()
		err := j.Await(ctx, nil, func() error { return errors.New("broker down") })
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.ErrorContains(t, err, "no assignment yet")
		assert.ErrorContains(t, err, "last client error: broker down")
	})
}

// closingMember counts its Close, and removes itself as a member's Close does.
type closingMember struct {
	provider.Member
	ms     *Members
	closes atomic.Int32
}

func (m *closingMember) Close() error {
	m.closes.Add(1)
	m.ms.Remove(m)
	return errors.New("closed")
}

func TestMembersCloseAll(t *testing.T) {
	var ms Members
	a, b := &closingMember{ms: &ms}, &closingMember{ms: &ms}
	require.NoError(t, ms.Add(a))
	require.NoError(t, ms.Add(b))
	ms.Remove(b)
	err := ms.CloseAll()
	assert.EqualError(t, err, "closed", "the members' errors")
	assert.Equal(t, int32(1), a.closes.Load())
	assert.Equal(t, int32(0), b.closes.Load(), "removed: not closed")
	assert.ErrorIs(t, ms.Add(b), provider.ErrClosed)
	assert.NoError(t, ms.CloseAll(), "nothing left")
}
