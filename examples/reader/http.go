package main

import (
	"fmt"
	"net/http"
	"strconv"

	"github.com/go-chi/chi/v5"

	"github.com/rehydrate/rehydrate/examples/serve"
)

const (
	defaultLimit = 50
	maxLimit     = 1000
)

func (rd *reader) routes() http.Handler {
	r := serve.NewRouter(rd.log)
	r.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		serve.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	r.Get("/readyz", rd.readyz)
	r.Get("/users", rd.listUsers)
	r.Get("/users/{id}", rd.getUser)
	return r
}

type readiness struct {
	Ready     bool   `json:"ready"`
	Mode      string `json:"mode"`
	Following bool   `json:"following"`
	// Lag is the number of records between what the model has applied and
	// the partitions' ends, as last measured; null until measured.
	Lag   *int64 `json:"lag"`
	Error string `json:"error,omitempty"`
	// Retries and DeadLettered count the records the handlers failed on:
	// tried again, and given up to the dead-letter topic (LastDeadLetter
	// says which and why).
	Retries        int64  `json:"retries"`
	DeadLettered   int64  `json:"dead_lettered"`
	LastDeadLetter string `json:"last_dead_letter,omitempty"`
	modelStats
}

func (rd *reader) readiness() readiness {
	r := readiness{
		Ready:      rd.caughtUp.Load(),
		Mode:       rd.mode.String(),
		Following:  rd.following.Load(),
		modelStats: rd.model.stats(),
	}
	if lag := rd.lag.Load(); lag >= 0 {
		r.Lag = &lag
	}
	if e := rd.lastErr.Load(); e != nil {
		r.Error = *e
	}
	r.Retries, r.DeadLettered = rd.retries.Load(), rd.deadLettered.Load()
	if f := rd.lastFailure.Load(); f != nil {
		r.LastDeadLetter = *f
	}
	return r
}

// readyz is 200 once the model has caught up with the end offsets the
// topic had at start; it stays 200 afterwards, reporting the lag, since a
// slightly stale model is still worth serving.
func (rd *reader) readyz(w http.ResponseWriter, _ *http.Request) {
	r := rd.readiness()
	status := http.StatusOK
	if !r.Ready {
		status = http.StatusServiceUnavailable
		w.Header().Set("Retry-After", "1")
	}
	serve.WriteJSON(w, status, r)
}

// notReady answers 503 until the model has caught up: before that it
// would serve a state that never existed.
func (rd *reader) notReady(w http.ResponseWriter) bool {
	if rd.caughtUp.Load() {
		return false
	}
	w.Header().Set("Retry-After", "1")
	serve.WriteError(w, http.StatusServiceUnavailable, "not ready: catching up with the topic")
	return true
}

type userList struct {
	Users []userView `json:"users"`
	Total int        `json:"total"`
}

func (rd *reader) listUsers(w http.ResponseWriter, r *http.Request) {
	limit, err := intParam(r, "limit", defaultLimit, maxLimit)
	if err != nil {
		serve.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	offset, err := intParam(r, "offset", 0, -1)
	if err != nil {
		serve.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	if rd.notReady(w) {
		return
	}
	users, total := rd.model.page(offset, limit)
	serve.WriteJSON(w, http.StatusOK, userList{Users: users, Total: total})
}

// intParam reads a non-negative integer query parameter, at most `most`
// unless that is negative.
func intParam(r *http.Request, name string, def, most int) (int, error) {
	s := r.URL.Query().Get(name)
	if s == "" {
		return def, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || most >= 0 && n > most {
		if most >= 0 {
			return 0, fmt.Errorf("%s must be an integer from 0 to %d, got %q", name, most, s)
		}
		return 0, fmt.Errorf("%s must be a non-negative integer, got %q", name, s)
	}
	return n, nil
}

func (rd *reader) getUser(w http.ResponseWriter, r *http.Request) {
	if rd.notReady(w) {
		return
	}
	id := chi.URLParam(r, "id")
	u, ok := rd.model.get(id)
	if !ok {
		serve.WriteError(w, http.StatusNotFound, fmt.Sprintf("user %s not found", id))
		return
	}
	w.Header().Set("ETag", `"`+strconv.FormatUint(u.Version, 10)+`"`)
	serve.WriteJSON(w, http.StatusOK, u)
}
