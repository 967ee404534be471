package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rehydrate/rehydrate/consume"
	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/examples/serve"
	"github.com/rehydrate/rehydrate/examples/users"
	"github.com/rehydrate/rehydrate/projection"
	"github.com/rehydrate/rehydrate/projection/postgres"
	"github.com/rehydrate/rehydrate/provider"
)

// dbConfig is the reader's configuration with READ_DATABASE_URL: the users
// projection in PostgreSQL.
//
//	READ_DATABASE_URL  the database (pgx connection string)
//	READ_GROUP         the consumer group the instances share (default users-readers)
//	READ_VERSION       the projection's version (default v1): projection
//	                   users-<version> into table users_<version>; the view
//	                   users, which the API reads, is created on the first
//	                   version that catches up
//
// A rebuild (a changed handler, say): run instances with READ_VERSION=v2 beside
// the v1 ones; once v2 has caught up, `reader switch` with READ_VERSION=v2
// points the view at users_v2 (it refuses while a partition is behind); then
// stop the v1 instances, DROP TABLE users_v1, and its checkpoints go with
// `reader forget` and READ_VERSION=v1.
type dbConfig struct {
	url, group, version string
}

var versionRE = regexp.MustCompile(`^[a-z0-9_]{1,20}$`)

func loadDBConfig() (dbConfig, bool, error) {
	c := dbConfig{url: os.Getenv("READ_DATABASE_URL"), group: serve.EnvOr("READ_GROUP", "users-readers"), version: serve.EnvOr("READ_VERSION", "v1")}
	if c.url == "" {
		return c, false, nil
	}
	if !versionRE.MatchString(c.version) {
		return c, true, fmt.Errorf("READ_VERSION %q: want lower-case letters, digits or _", c.version)
	}
	return c, true, nil
}

func (c dbConfig) name() string  { return "users-" + c.version }
func (c dbConfig) table() string { return "users_" + c.version }

// dbReader serves users from PostgreSQL.
type dbReader struct {
	cfg    dbConfig
	pool   *pgxpool.Pool
	store  *postgres.Store
	runner *projection.Runner[pgx.Tx]
	log    *slog.Logger
}

func openDB(ctx context.Context, c dbConfig) (*pgxpool.Pool, *postgres.Store, error) {
	pc, err := pgxpool.ParseConfig(c.url)
	if err != nil {
		return nil, nil, fmt.Errorf("READ_DATABASE_URL: %w", err)
	}
	// A reader stopped inside a transaction would hold the rows it wrote,
	// and the next owner's writes to them with it.
	if _, ok := pc.ConnConfig.RuntimeParams["idle_in_transaction_session_timeout"]; !ok {
		pc.ConnConfig.RuntimeParams["idle_in_transaction_session_timeout"] = "10000"
	}
	pool, err := pgxpool.NewWithConfig(ctx, pc)
	if err != nil {
		return nil, nil, err
	}
	store, err := postgres.New(ctx, pool)
	if err != nil {
		pool.Close()
		return nil, nil, err
	}
	return pool, store, nil
}

// runDatabase runs the users projection into PostgreSQL and serves it, or
// runs the switch and forget commands.
func runDatabase(ctx context.Context, c dbConfig, p provider.Provider, failures consume.Failures, addr string, log *slog.Logger) error {
	pool, store, err := openDB(ctx, c)
	if err != nil {
		return err
	}
	defer pool.Close()
	if len(os.Args) > 1 {
		switch os.Args[1] {
		case "switch":
			return switchTo(ctx, c, p, store, log)
		case "forget":
			return store.Forget(ctx, c.name())
		default:
			return fmt.Errorf("unknown command %q: want switch or forget", os.Args[1])
		}
	}
	t := pgx.Identifier{c.table()}.Sanitize()
	if _, err := pool.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+t+` (
		id text PRIMARY KEY, first_name text NOT NULL, last_name text NOT NULL,
		version bigint NOT NULL, deleted boolean NOT NULL)`); err != nil {
		return err
	}
	h, err := dbHandlers(t)
	if err != nil {
		return err
	}
	runner, err := projection.New(projection.Config[pgx.Tx]{
		Name: c.name(), Provider: p, Store: store, Handler: h, Mode: consume.ReplayThenFollow,
		BatchSize: 500, Failures: failures, Group: c.group, Logger: log,
	})
	if err != nil {
		return err
	}
	rd := &dbReader{cfg: c, pool: pool, store: store, runner: runner, log: log}
	srv := &http.Server{Handler: rd.routes(), ReadHeaderTimeout: 5 * time.Second}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info("listening", "addr", ln.Addr().String())
	log.Info("projecting users into PostgreSQL", "projection", c.name(), "table", c.table(), "group", c.group)
	ran := make(chan error, 1)
	go func() { ran <- runner.Run(ctx) }()
	go func() {
		select {
		case <-runner.CaughtUp():
		case <-ctx.Done():
			return
		}
		// The first version to catch up becomes what the API reads.
		if _, err := pool.Exec(ctx, `CREATE VIEW users AS SELECT * FROM `+t); err == nil {
			log.Info("view users created", "table", c.table())
		}
	}()
	var fatal error
	select {
	case <-ctx.Done():
	case err := <-served:
		fatal = err
	case err := <-ran:
		fatal = err
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return errors.Join(fatal, srv.Shutdown(sctx))
}

// dbHandlers are the users projection into table t: idempotent upserts by
// aggregate-version (not needed for exactly-once, which the store gives;
// they keep a hand-run replay harmless).
func dbHandlers(t string) (*event.HandlersWith[pgx.Tx], error) {
	reg, err := users.Registry()
	if err != nil {
		return nil, err
	}
	upsert := `INSERT INTO ` + t + ` (id, first_name, last_name, version, deleted) VALUES ($1, $2, $3, $4, $5)
		ON CONFLICT (id) DO UPDATE SET first_name = excluded.first_name, last_name = excluded.last_name,
		version = excluded.version, deleted = excluded.deleted WHERE ` + t + `.version < excluded.version`
	h := event.NewHandlersWith[pgx.Tx](reg, event.SkipUnhandled())
	err = errors.Join(
		event.AddHandlerWith(h, func(ctx context.Context, tx pgx.Tx, env *event.Envelope, e users.Created) error {
			_, err := tx.Exec(ctx, upsert, env.AggregateID, e.FirstName, e.LastName, int64(env.Version), false)
			return err
		}),
		event.AddHandlerWith(h, func(ctx context.Context, tx pgx.Tx, env *event.Envelope, e users.Modified) error {
			_, err := tx.Exec(ctx, upsert, env.AggregateID, e.FirstName, e.LastName, int64(env.Version), false)
			return err
		}),
		event.AddHandlerWith(h, func(ctx context.Context, tx pgx.Tx, env *event.Envelope, _ users.Deleted) error {
			_, err := tx.Exec(ctx, upsert, env.AggregateID, "", "", int64(env.Version), true)
			return err
		}))
	return h, err
}

// switchTo points the view users at this version's table once every
// partition of its projection has caught up with the topic's end now.
func switchTo(ctx context.Context, c dbConfig, p provider.Provider, store *postgres.Store, log *slog.Logger) error {
	ps, err := p.Partitions(ctx)
	if err != nil {
		return err
	}
	cps, err := store.Checkpoints(ctx, c.name())
	if err != nil {
		return err
	}
	var behind []string
	for _, part := range ps {
		if next, ok := cps[part.ID]; part.High > part.Low && (!ok || next < part.High) {
			behind = append(behind, fmt.Sprintf("%d at %d of %d", part.ID, next, part.High))
		}
	}
	if len(behind) > 0 {
		return fmt.Errorf("projection %s has not caught up: partitions %s", c.name(), strings.Join(behind, ", "))
	}
	if err := store.SwitchView(ctx, "users", c.table()); err != nil {
		return err
	}
	log.Info("view users now reads", "table", c.table())
	return nil
}

func (rd *dbReader) routes() http.Handler {
	r := serve.NewRouter(rd.log)
	r.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		serve.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	r.Get("/readyz", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-rd.runner.CaughtUp():
		default:
			serve.WriteJSON(w, http.StatusServiceUnavailable, map[string]any{"ready": false, "partitions": rd.runner.Progress()})
			return
		}
		lag, err := rd.runner.Lag(r.Context())
		if err != nil {
			serve.WriteJSON(w, http.StatusServiceUnavailable, map[string]any{"ready": true, "error": err.Error()})
			return
		}
		serve.WriteJSON(w, http.StatusOK, map[string]any{"ready": true, "lag": lag, "fenced": rd.runner.Fenced()})
	})
	r.Get("/users/{id}", rd.getUser)
	return r
}

// getUser serves GET /users/{id}?after=P:O,P:O: with after, it first waits
// (up to 5 s, then 504) until the projection has applied those positions —
// the ones the writer returned — so a client reads its own write.
func (rd *dbReader) getUser(w http.ResponseWriter, r *http.Request) {
	if after := r.URL.Query().Get("after"); after != "" {
		positions, err := parsePositions(after)
		if err != nil {
			serve.WriteJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		if err := rd.runner.WaitFor(ctx, positions...); err != nil {
			serve.WriteJSON(w, http.StatusGatewayTimeout, map[string]string{"error": err.Error()})
			return
		}
	}
	var v userView
	var deleted bool
	err := rd.pool.QueryRow(r.Context(), `SELECT id, first_name, last_name, version, deleted FROM users WHERE id = $1`, chi.URLParam(r, "id")).
		Scan(&v.ID, &v.FirstName, &v.LastName, &v.Version, &deleted)
	switch {
	case errors.Is(err, pgx.ErrNoRows) || (err == nil && deleted):
		serve.WriteJSON(w, http.StatusNotFound, map[string]string{"error": "user not found"})
	case err != nil:
		serve.WriteJSON(w, http.StatusServiceUnavailable, map[string]string{"error": err.Error()})
	default:
		serve.WriteJSON(w, http.StatusOK, v)
	}
}

func parsePositions(s string) ([]provider.Position, error) {
	var out []provider.Position
	for _, item := range strings.Split(s, ",") {
		p, o, ok := strings.Cut(item, ":")
		part, err1 := strconv.ParseInt(p, 10, 32)
		off, err2 := strconv.ParseInt(o, 10, 64)
		if !ok || err1 != nil || err2 != nil || part < 0 || off < 0 {
			return nil, fmt.Errorf("after %q: want partition:offset,…", s)
		}
		out = append(out, provider.Position{Partition: int32(part), Offset: off})
	}
	return out, nil
}
