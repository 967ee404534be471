package e2e

import (
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// slot is one user a burst client creates and then updates, and what the
// writer acknowledged of it.
type slot struct {
	name  string
	id    string // "" until the create is acknowledged
	acked uint64 // last acknowledged version
	// names[v] are the names acknowledged at version v.
	names map[uint64][2]string
	// pending is a command sent without an answer (the writer died): it
	// may or may not be on the topic. Version 1 means a create, whose id
	// the client never learnt.
	pending *pendingCommand
}

type pendingCommand struct {
	version uint64
	names   [2]string
}

// burst is a workload of concurrent clients, each owning its slots, so the
// clients share nothing but the ack counter.
type burst struct {
	t       *testing.T
	updates int // per user, after the create
	clients [][]*slot
	acks    atomic.Int64
}

func newBurst(t *testing.T, clients, usersTotal, updates int) *burst {
	b := &burst{t: t, updates: updates, clients: make([][]*slot, clients)}
	for i := range usersTotal {
		c := i % clients
		b.clients[c] = append(b.clients[c], &slot{name: fmt.Sprintf("c%d-u%d", c, i), names: map[uint64][2]string{}})
	}
	return b
}

func (b *burst) slots() []*slot {
	var all []*slot
	for _, c := range b.clients {
		all = append(all, c...)
	}
	return all
}

// run has every client create its users, then update each in rounds with
// the expected version, until done or the writer stops answering (then
// that client stops and leaves the command it sent pending).
func (b *burst) run(w *service) {
	var wg sync.WaitGroup
	for _, slots := range b.clients {
		wg.Go(func() {
			for round := 0; round <= b.updates; round++ {
				for _, s := range slots {
					if !b.step(w, s, round) {
						return
					}
				}
			}
		})
	}
	wg.Wait()
}

// step brings s to version round+1 if it is behind; false means the writer
// is gone.
func (b *burst) step(w *service, s *slot, round int) bool {
	target := uint64(round + 1)
	if s.acked >= target {
		return true
	}
	names := [2]string{"First " + s.name, fmt.Sprintf("Last %s v%d", s.name, target)}
	var body string
	if s.acked == 0 {
		body = jsonBody(map[string]any{"type": "CreateUserCommand", "first_name": names[0], "last_name": names[1]})
	} else {
		body = jsonBody(map[string]any{"type": "UpdateUserCommand", "id": s.id, "first_name": names[0], "last_name": names[1], "expected_version": s.acked})
	}
	status, resp, err := w.call(http.MethodPost, "/", body, nil)
	if isTransport(err) {
		s.pending = &pendingCommand{version: target, names: names}
		return false
	}
	if err == nil && status == http.StatusServiceUnavailable {
		// A stopping writer that has handed its partitions over (to
		// nobody, alone) keeps its port open: its 503 says whether the
		// command may have been done.
		var e struct {
			OutcomeUnknown *bool `json:"outcome_unknown"`
		}
		if assert.NoError(b.t, jsonUnmarshal(resp, &e)) && e.OutcomeUnknown != nil && *e.OutcomeUnknown {
			s.pending = &pendingCommand{version: target, names: names}
		}
		return false
	}
	if !assert.NoError(b.t, err) || !assert.Contains(b.t, []int{http.StatusOK, http.StatusCreated}, status, "%s: %s", body, resp) {
		return false
	}
	a := decode[ack](b.t, resp)
	if !assert.Equal(b.t, target, a.Version, "%s: %s", body, resp) {
		return false
	}
	s.id, s.acked, s.names[target] = a.ID, target, names
	b.acks.Add(1)
	return true
}

// checkAcknowledged checks that the writer has every acknowledged change of
// every user: the version acknowledged last, or the one after it when a
// command was left pending, with the names of that version. Pending
// commands are then settled, so that the burst can go on.
func (b *burst) checkAcknowledged(w *service) {
	t := b.t
	for _, s := range b.slots() {
		if s.id == "" {
			s.pending = nil // a create never answered: its id is unknown; the replay check covers it
			continue
		}
		status, resp := w.mustCall(http.MethodGet, "/users/"+s.id, "", nil)
		require.Equal(t, http.StatusOK, status, "acknowledged user %s: %s", s.id, resp)
		u := decode[user](t, resp)
		want := s.acked
		if s.pending != nil && u.Version == s.pending.version {
			want, s.acked, s.names[s.pending.version] = s.pending.version, s.pending.version, s.pending.names
			b.acks.Add(1) // done after all, though never answered
		}
		s.pending = nil
		require.Equal(t, want, u.Version, "user %s", s.id)
		require.Equal(t, s.names[want], [2]string{u.FirstName, u.LastName}, "user %s at version %d", s.id, want)
	}
}

// checkTopic checks that the topic holds every acknowledged change: each
// version acknowledged with its names. It returns the replayed state.
func (b *burst) checkTopic(tp topic) map[string]*replayed {
	t := b.t
	rs := tp.replay(t)
	for _, s := range b.slots() {
		if s.id == "" {
			continue
		}
		r, ok := rs[s.id]
		require.True(t, ok, "acknowledged user %s is not on the topic", s.id)
		for v, names := range s.names {
			assert.Equal(t, names, r.names[v], "user %s version %d on the topic", s.id, v)
		}
	}
	return rs
}

// checkEqualsReplay checks that the writer's state is what replaying the
// topic gives, user by user.
func checkEqualsReplay(t *testing.T, w *service, rs map[string]*replayed) {
	for id, r := range rs {
		status, resp := w.mustCall(http.MethodGet, "/users/"+id, "", nil)
		if r.deleted {
			assert.Equal(t, http.StatusNotFound, status, "deleted user %s: %s", id, resp)
			continue
		}
		if assert.Equal(t, http.StatusOK, status, "user %s: %s", id, resp) {
			assert.Equal(t, r.user, decode[user](t, resp))
		}
	}
}
