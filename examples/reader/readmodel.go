package main

import (
	"slices"
	"sync"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/examples/users"
)

// userView is one user as the read model keeps it.
type userView struct {
	ID        string `json:"id"`
	FirstName string `json:"first_name"`
	LastName  string `json:"last_name"`
	Version   uint64 `json:"version"`
}

// readModel is the users projection: every live user by id, and their ids
// in order for paging. It is idempotent: an event whose aggregate-version is
// not newer than the user's is a duplicate (a re-read after a reconnect, a
// producer retry) and changes nothing.
type readModel struct {
	mu    sync.RWMutex
	users map[string]*entry
	// ids of live users, sorted. Ids are UUIDv7, so new ones sort last and
	// insertion is usually an append.
	ids []string

	events, duplicates, gaps int64
}

type entry struct {
	view    userView
	deleted bool // kept as a tombstone, so a late duplicate cannot resurrect it
}

func newReadModel() *readModel {
	return &readModel{users: make(map[string]*entry)}
}

// handlers returns the event handlers that feed m. Events of other types
// are skipped: a projection reads what it needs from a shared topic.
func (m *readModel) handlers() (*event.Handlers, error) {
	reg, err := users.Registry()
	if err != nil {
		return nil, err
	}
	h := event.NewHandlers(reg, event.SkipUnhandled())
	err = event.AddHandler(h, func(env *event.Envelope, e users.Created) error {
		m.apply(env, func(v *userView) { v.FirstName, v.LastName = e.FirstName, e.LastName }, false)
		return nil
	})
	if err == nil {
		err = event.AddHandler(h, func(env *event.Envelope, e users.Modified) error {
			m.apply(env, func(v *userView) { v.FirstName, v.LastName = e.FirstName, e.LastName }, false)
			return nil
		})
	}
	if err == nil {
		err = event.AddHandler(h, func(env *event.Envelope, _ users.Deleted) error {
			m.apply(env, nil, true)
			return nil
		})
	}
	return h, err
}

// apply changes the user of env, unless env is not newer than what the
// model has. A version gap (events missing, say expired by retention) is
// counted and applied anyway: names are replaced whole, so the view is the
// latest known.
func (m *readModel) apply(env *event.Envelope, change func(*userView), deletes bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.events++
	e, ok := m.users[env.AggregateID]
	if !ok {
		e = &entry{view: userView{ID: env.AggregateID}, deleted: true}
		m.users[env.AggregateID] = e
	}
	if env.Version <= e.view.Version {
		m.duplicates++
		return
	}
	if env.Version != e.view.Version+1 {
		m.gaps++
	}
	e.view.Version = env.Version
	if change != nil {
		change(&e.view)
	}
	switch {
	case deletes && !e.deleted:
		e.deleted = true
		if i, found := slices.BinarySearch(m.ids, e.view.ID); found {
			m.ids = slices.Delete(m.ids, i, i+1)
		}
	case !deletes && e.deleted:
		e.deleted = false
		if i, found := slices.BinarySearch(m.ids, e.view.ID); !found {
			m.ids = slices.Insert(m.ids, i, e.view.ID)
		}
	}
}

func (m *readModel) get(id string) (userView, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	e, ok := m.users[id]
	if !ok || e.deleted {
		return userView{}, false
	}
	return e.view, true
}

// page returns up to limit users from offset, in id order (creation order
// for the writer's UUIDv7 ids), and the number of users.
func (m *readModel) page(offset, limit int) ([]userView, int) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	total := len(m.ids)
	start := min(offset, total)
	end := min(start+limit, total)
	out := make([]userView, 0, end-start)
	for _, id := range m.ids[start:end] {
		out = append(out, m.users[id].view)
	}
	return out, total
}

type modelStats struct {
	Users      int   `json:"users"`
	Events     int64 `json:"events"`
	Duplicates int64 `json:"duplicates"`
	Gaps       int64 `json:"version_gaps"`
}

func (m *readModel) stats() modelStats {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return modelStats{Users: len(m.ids), Events: m.events, Duplicates: m.duplicates, Gaps: m.gaps}
}
