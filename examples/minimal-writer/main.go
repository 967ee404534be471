// Command minimal-writer is the smallest useful rehydrate service, to read
// first: a users aggregate restored from Kafka at start-up, changed by
// commands over HTTP whose events are appended (and acknowledged by Kafka)
// before they are applied. examples/simple-cqrs-writer is the same service
// hardened for production: several instances, snapshots, metrics, limits.
// It imports only public packages, franz-go's provider among them (pure Go,
// no cgo): copy it into a module of your own and it builds.
//
//	KAFKA_BROKERS=127.0.0.1:9092 go run ./examples/minimal-writer
//	curl -X POST localhost:4002/users/ada -d '{"name":"Ada Lovelace"}'
//	curl -X PUT  localhost:4002/users/ada -d '{"name":"Augusta Ada King"}'
//	curl localhost:4002/users/ada
package main

import (
	"context"
	"encoding/json"
	"errors"
	"log"
	"net/http"
	"os"
	"os/signal"
	"syscall"

	"github.com/go-chi/chi/v5"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/provider"
	"github.com/rehydrate/rehydrate/provider/franz"
	"github.com/rehydrate/rehydrate/repository"
)

// User is the aggregate: the state commands decide on.
type User struct{ Name string }

// The events: facts, named in the past tense, registered by name.
type (
	UserCreated struct {
		Name string `json:"name"`
	}
	UserRenamed struct {
		Name string `json:"name"`
	}
)

// Validate refuses an empty name: the repository runs it before appending.
func (e UserCreated) Validate() error { return validName(e.Name) }
func (e UserRenamed) Validate() error { return validName(e.Name) }

func validName(n string) error {
	if n == "" {
		return errors.New("name is required")
	}
	return nil
}

// newUsers wires the aggregate to the log: the registry names the events,
// the handlers say what each does to a User.
func newUsers(p provider.Provider) (*repository.Repository[User], error) {
	reg := event.NewRegistry()
	if err := errors.Join(
		event.Register[UserCreated](reg, "UserCreated"),
		event.Register[UserRenamed](reg, "UserRenamed"),
	); err != nil {
		return nil, err
	}
	return repository.New[User](p, reg,
		repository.On(func(u *User, e UserCreated) { u.Name = e.Name }),
		repository.On(func(u *User, e UserRenamed) { u.Name = e.Name }))
}

// routes is the HTTP API. A command returns the events that happen; the
// repository appends them, waits for Kafka, then applies them.
func routes(users *repository.Repository[User]) http.Handler {
	r := chi.NewRouter()
	r.Post("/users/{id}", func(w http.ResponseWriter, req *http.Request) {
		var body UserCreated
		if json.NewDecoder(req.Body).Decode(&body) != nil {
			http.Error(w, "bad JSON", http.StatusBadRequest)
			return
		}
		res, err := users.Create(req.Context(), chi.URLParam(req, "id"), func(User) ([]any, error) {
			return []any{body}, nil
		})
		reply(w, res.Version, err)
	})
	r.Put("/users/{id}", func(w http.ResponseWriter, req *http.Request) {
		var body UserRenamed
		if json.NewDecoder(req.Body).Decode(&body) != nil {
			http.Error(w, "bad JSON", http.StatusBadRequest)
			return
		}
		res, err := users.Execute(req.Context(), chi.URLParam(req, "id"), func(u User) ([]any, error) {
			if u.Name == body.Name {
				return nil, nil // nothing changes: no event
			}
			return []any{body}, nil
		})
		reply(w, res.Version, err)
	})
	r.Get("/users/{id}", func(w http.ResponseWriter, req *http.Request) {
		u, version, err := users.Get(chi.URLParam(req, "id"))
		if err != nil {
			reply(w, 0, err)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"name": u.Name, "version": version})
	})
	return r
}

// reply maps the repository's errors to HTTP statuses.
func reply(w http.ResponseWriter, version uint64, err error) {
	switch {
	case err == nil:
		_ = json.NewEncoder(w).Encode(map[string]any{"version": version})
	case errors.Is(err, repository.ErrNotFound):
		http.Error(w, err.Error(), http.StatusNotFound)
	case errors.Is(err, repository.ErrExists):
		http.Error(w, err.Error(), http.StatusConflict)
	case errors.Is(err, event.ErrInvalid):
		http.Error(w, err.Error(), http.StatusUnprocessableEntity)
	default: // Kafka unavailable, an unknown outcome, not restored yet
		http.Error(w, err.Error(), http.StatusServiceUnavailable)
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	cfg, err := franz.FromEnv() // KAFKA_BROKERS, KAFKA_TOPIC, …
	if err != nil {
		log.Fatal(err)
	}
	if cfg.Topic == "" {
		cfg.Topic = "minimal-users"
	}
	p, err := franz.New(cfg)
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close() // waits for appends in flight
	// A topic that keeps its events for good: the restore reads them all.
	if err := p.EnsureTopic(ctx, franz.TopicSpec{Partitions: 6}); err != nil {
		log.Fatal(err)
	}
	users, err := newUsers(p)
	if err != nil {
		log.Fatal(err)
	}
	stats, err := users.Restore(ctx) // serves nothing until every event is applied
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("restored %d users from %d events in %v", users.Len(), stats.Events, stats.Duration)

	srv := &http.Server{Addr: ":4002", Handler: routes(users)}
	go func() {
		<-ctx.Done()
		_ = srv.Shutdown(context.Background()) // lets commands in flight finish
	}()
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}
