// Command simple-cqrs-writer is a command service for users, the example to
// start from: it restores its users from a Kafka topic at start-up, keeps
// them in memory, and appends the events of each command to the topic,
// waiting for Kafka's acknowledgement, before it answers.
//
// HTTP on :PORT (default 4000):
//
//	POST   /                 {"type":"CreateUserCommand","first_name":"Ada","last_name":"Lovelace"}
//	                         {"type":"UpdateUserCommand","id":"…","first_name":"…","last_name":"…","expected_version":1}
//	                         {"type":"DeleteUserCommand","id":"…","expected_version":2}
//	POST   /users            {"first_name":"Ada","last_name":"Lovelace"}        → 201
//	PUT    /users/{id}       {"first_name":"…","last_name":"…"} [If-Match: "N"] → 200
//	DELETE /users/{id}       [If-Match: "N"]                                    → 200
//	GET    /users/{id}       → 200 {"id","first_name","last_name","version"}
//	GET    /healthz, /readyz (503 with restore progress until restored), /metrics
//
// Configuration comes from the environment: KAFKA_CLIENT (confluent, the
// default, or franz: the pure-Go client), the KAFKA_* variables of
// kafkaconfig.FromEnv (KAFKA_BROKERS, KAFKA_TIMEOUT, SASL/TLS, KAFKA_PROPERTY_*),
// KAFKA_TOPIC (default users, created with 6 partitions if missing), PORT
// (default 4000; 0 picks a free port, logged as "listening"), LOG_FORMAT
// (text or json), LOG_LEVEL (debug, info, warn, error), STARTUP_TIMEOUT
// (default 5s: how long to wait for a first answer from Kafka),
// READ_HEADER_TIMEOUT (default 5s: how long a client may take to send its
// request's headers) and WRITER_TOKEN (when set, the commands and
// GET /users/{id} need Authorization: Bearer and it; 401 otherwise).
//
// Several instances: every writer joins the group WRITER_GROUP (default
// KAFKA_TOPIC-writer) and serves the partitions the group gives it; Kafka fences an
// instance that lost its partitions. WRITER_INSTANCE names the instance,
// stable across restarts (default hostname-PORT); it is the instance's static
// group membership, so a writer restarted under its name (after a crash
// too) takes its partitions back at once. WRITER_LEAVE (on, the default, or
// off) says whether a clean stop hands the partitions over to the other
// instances (and gets them back on return) or keeps them for a return
// under the same WRITER_INSTANCE, unserved meanwhile. WRITER_ADVERTISE is the
// URL the other instances forward its users' commands to (default
// http://HOSTNAME:PORT). A command for a user another instance owns is
// forwarded there; when the owner is unknown or moving the answer is 503 with
// Retry-After. WRITER_GROUP=none runs the writer alone on the topic, unfenced,
// as before groups.
//
// Snapshots: the writer keeps snapshots of its partitions in the compacted
// topic KAFKA_TOPIC-snapshots (created with as many partitions as the event
// topic), so that a restart or a takeover reads the state and the events
// after it rather than the whole history. WRITER_SNAPSHOT_EVENTS (default
// 50000) and WRITER_SNAPSHOT_INTERVAL (default 10m) say how often;
// WRITER_SNAPSHOTS=off turns them off. WRITER_MAX_USERS caps the users an
// instance holds (deleted ones included): a create beyond it answers 507,
// and a restore beyond it stops the writer, instead of running out of
// memory.
//
// A command for a partition that is moving (a deploy, a scale up or down, a
// restart) waits up to WRITER_HANDOVER_WAIT (default 5s) for it to be served
// again, here or at its new owner (forwarded once), before it answers 503.
//
// SIGINT or SIGTERM turns /readyz to 503 with "stopping": true at once,
// snapshots the partitions that changed, leaves the group (the others take
// the partitions over at once; commands in flight finish first), and keeps
// the port open for WRITER_DRAIN (default 2s), forwarding what still
// arrives to the new owners; then it stops accepting connections, lets the
// requests in flight finish, flushes the producer and exits 0. With
// WRITER_LEAVE=off it serves as usual for WRITER_DRAIN first, then stops
// accepting, snapshots and exits, keeping its partitions for its return.
// Without a group it stops accepting at once.
package main

import (
	"context"
	"crypto/sha256"
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

	"go.opentelemetry.io/otel"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/examples/serve"
	"github.com/rehydrate/rehydrate/examples/users"
	"github.com/rehydrate/rehydrate/observe/prom"
	"github.com/rehydrate/rehydrate/observe/tracing"
	"github.com/rehydrate/rehydrate/provider"
	kafka "github.com/rehydrate/rehydrate/provider/kafkaclient"
	"github.com/rehydrate/rehydrate/repository"
	"github.com/rehydrate/rehydrate/snapshot"
)

const (
	defaultTopic      = "users"
	defaultPort       = "4000"
	topicPartitions   = 6
	defaultKafkaWait  = 10 * time.Second // kafka.Config's default Timeout
	minShutdownPeriod = 15 * time.Second
	// defaultReadHeaderTimeout bounds how long a client may take to send
	// its headers: a client that sends them a byte at a time (slowloris)
	// holds a connection no longer than this.
	defaultReadHeaderTimeout = 5 * time.Second
	// readTimeout bounds reading a whole request, body included.
	readTimeout = 15 * time.Second
	// defaultHandover is WRITER_HANDOVER_WAIT's default: a handover from
	// snapshots takes about a second.
	defaultHandover = 5 * time.Second
	// defaultDrain is WRITER_DRAIN's default.
	defaultDrain = 2 * time.Second
)

func main() { serve.Main("simple-cqrs-writer", run) }

type config struct {
	kafka          kafka.Config
	addr           string
	startupTimeout time.Duration
	// readHeaderTimeout is READ_HEADER_TIMEOUT.
	readHeaderTimeout time.Duration
	// token is WRITER_TOKEN: the bearer token commands need, "" for none.
	token string
	// inMemoryBroker is set by `make run` when it started devkafka.
	inMemoryBroker bool
	// group is WRITER_GROUP, "" for none; instance and advertise are
	// WRITER_INSTANCE and WRITER_ADVERTISE, "" for their defaults, which
	// depend on the port listened on.
	group, instance, advertise string
	// stayOnClose is WRITER_LEAVE=off: a clean stop keeps the partitions
	// for this instance's return instead of handing them over.
	stayOnClose bool
	// handover is WRITER_HANDOVER_WAIT: how long a command for a moving
	// partition waits for it to be served again.
	handover time.Duration
	// drain is WRITER_DRAIN: how long a stopping instance keeps its port
	// open after it has handed its partitions over, forwarding.
	drain time.Duration
	// maxUsers is WRITER_MAX_USERS, 0 for no cap.
	maxUsers int64
	// snapshots is WRITER_SNAPSHOTS (not "off") with
	// WRITER_SNAPSHOT_EVENTS and WRITER_SNAPSHOT_INTERVAL; nil for none.
	snapshots *repository.Snapshots
}

func loadConfig() (config, error) {
	kc, err := kafka.FromEnv()
	if err != nil {
		return config{}, err
	}
	if kc.Topic == "" {
		kc.Topic = defaultTopic
	}
	if kc.Timeout == 0 {
		kc.Timeout = defaultKafkaWait
	}
	c := config{
		kafka:             kc,
		startupTimeout:    5 * time.Second,
		readHeaderTimeout: defaultReadHeaderTimeout,
		token:             os.Getenv("WRITER_TOKEN"),
		inMemoryBroker:    os.Getenv("KAFKA_IN_MEMORY") != "",
		group:             serve.EnvOr("WRITER_GROUP", kc.Topic+"-writer"),
		instance:          os.Getenv("WRITER_INSTANCE"),
		advertise:         os.Getenv("WRITER_ADVERTISE"),
	}
	if c.group == "none" {
		c.group = ""
	}
	switch v := serve.EnvOr("WRITER_LEAVE", "on"); v {
	case "on":
	case "off":
		if c.instance == "" {
			return config{}, errors.New("WRITER_LEAVE=off needs WRITER_INSTANCE: an instance keeps its partitions only for a return under its name")
		}
		c.stayOnClose = true
	default:
		return config{}, fmt.Errorf("WRITER_LEAVE %q: want on or off", v)
	}
	if c.snapshots, err = snapshotConfig(); err != nil {
		return config{}, err
	}
	if v := os.Getenv("WRITER_MAX_USERS"); v != "" {
		if c.maxUsers, err = strconv.ParseInt(v, 10, 64); err != nil || c.maxUsers <= 0 {
			return config{}, fmt.Errorf("WRITER_MAX_USERS %q: want a positive number of users", v)
		}
	}
	port := serve.EnvOr("PORT", defaultPort)
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return config{}, fmt.Errorf("PORT %q: want a port number", port)
	}
	c.addr = ":" + strconv.FormatUint(n, 10)
	if s := os.Getenv("STARTUP_TIMEOUT"); s != "" {
		if c.startupTimeout, err = time.ParseDuration(s); err != nil || c.startupTimeout <= 0 {
			return config{}, fmt.Errorf("STARTUP_TIMEOUT %q: want a positive Go duration such as 5s", s)
		}
	}
	for _, d := range []struct {
		name string
		to   *time.Duration
		def  time.Duration
	}{{"WRITER_HANDOVER_WAIT", &c.handover, defaultHandover}, {"WRITER_DRAIN", &c.drain, defaultDrain}} {
		*d.to = d.def
		if s := os.Getenv(d.name); s != "" {
			if *d.to, err = time.ParseDuration(s); err != nil || *d.to < 0 {
				return config{}, fmt.Errorf("%s %q: want a Go duration such as 5s", d.name, s)
			}
		}
	}
	if s := os.Getenv("READ_HEADER_TIMEOUT"); s != "" {
		if c.readHeaderTimeout, err = time.ParseDuration(s); err != nil || c.readHeaderTimeout <= 0 {
			return config{}, fmt.Errorf("READ_HEADER_TIMEOUT %q: want a positive Go duration such as 5s", s)
		}
	}
	if c.token != "" && !bearerToken.MatchString(c.token) {
		// Not quoted: the message is logged, and the token must not be.
		return config{}, errors.New("WRITER_TOKEN: want a bearer token of letters, digits and -._~+/ (RFC 6750), such as the output of `openssl rand -hex 32`")
	}
	return c, nil
}

// snapshotConfig reads WRITER_SNAPSHOTS, WRITER_SNAPSHOT_EVENTS and
// WRITER_SNAPSHOT_INTERVAL.
func snapshotConfig() (*repository.Snapshots, error) {
	switch v := serve.EnvOr("WRITER_SNAPSHOTS", "on"); v {
	case "off":
		return nil, nil
	case "on":
	default:
		return nil, fmt.Errorf("WRITER_SNAPSHOTS %q: want on or off", v)
	}
	s := &repository.Snapshots{StateVersion: users.StateVersion}
	if v := os.Getenv("WRITER_SNAPSHOT_EVENTS"); v != "" {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil || n <= 0 {
			return nil, fmt.Errorf("WRITER_SNAPSHOT_EVENTS %q: want a positive number of events", v)
		}
		s.Events = n
	}
	if v := os.Getenv("WRITER_SNAPSHOT_INTERVAL"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d <= 0 {
			return nil, fmt.Errorf("WRITER_SNAPSHOT_INTERVAL %q: want a positive Go duration such as 10m", v)
		}
		s.Interval = d
	}
	return s, nil
}

// bearerToken is RFC 6750's b64token: what Authorization: Bearer can carry.
var bearerToken = regexp.MustCompile(`^[A-Za-z0-9\-._~+/]+=*$`)

// run serves until ctx ends (a signal), then shuts down in order: /readyz
// says stopping, the restore if still running ends, a last snapshot, the
// group left (its partitions handed over), WRITER_DRAIN of forwarding, the
// HTTP server (requests in flight finish), then the provider, which
// flushes. Without a group the HTTP server stops first; with
// WRITER_LEAVE=off it serves for WRITER_DRAIN and stops before the
// snapshot.
func run(ctx context.Context, log *slog.Logger) (err error) {
	cfg, err := loadConfig()
	if err != nil {
		return err
	}
	cfg.kafka.Logger = log.With("component", "kafka")
	if cfg.inMemoryBroker {
		warnInMemory(log, cfg.kafka.Brokers)
	}
	p, err := kafka.New(cfg.kafka)
	if err != nil {
		return err
	}
	defer func() {
		// Close waits for appends in flight; after a clean HTTP shutdown
		// there are none left, so this flushes nothing but says so.
		if cerr := p.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("close kafka provider: %w", cerr))
		} else if err == nil {
			log.Info("stopped: every acknowledged command is in Kafka")
		}
	}()

	// kafka.Config logs itself without its secrets.
	log.Info("connecting to Kafka", "kafka", cfg.kafka)
	if _, err := serve.EnsureTopic(ctx, p, kafka.TopicSpec{Partitions: topicPartitions}, cfg.kafka.Brokers, cfg.startupTimeout); err != nil {
		return err
	}

	// Metrics, and spans for whatever tracer provider the program sets
	// (none here: the global no-op one); events carry the trace context.
	observer := prom.New()
	extra := []repository.Option{
		repository.WithLimits(repository.Limits{Aggregates: cfg.maxUsers}),
		repository.WithObserver(repository.Observers(observer, tracing.New(otel.GetTracerProvider()))),
	}
	if cfg.snapshots != nil {
		store, closeStore, err := openSnapshots(ctx, p, cfg, log)
		if err != nil {
			return err
		}
		defer closeStore()
		extra = append(extra, repository.WithSnapshots(store, *cfg.snapshots))
	}

	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return err
	}
	var group *repository.Group
	if cfg.group != "" {
		group = groupOf(cfg, ln.Addr())
		log.Info("joining group", "group", group.Name, "instance", group.Instance, "advertise", group.Address)
	}
	repo, err := newRepository(p, log.With("component", "repository"), group, func(pr repository.Progress) {
		log.Info("restoring", "done", pr.Done, "total", pr.Total, "events_per_second", int64(pr.EventsPerSecond()))
	}, extra...)
	if err != nil {
		ln.Close()
		return err
	}
	m := newMetrics(repo, observer)
	observer.WatchLog(p) // lag_offsets: how far memory is behind the log
	srv := &server{users: repo, log: log, metrics: m, timeout: cfg.kafka.Timeout + 2*time.Second, handover: cfg.handover}
	if group != nil {
		srv.router = &router{users: repo, self: group.Address, client: &http.Client{Timeout: srv.timeout}}
	}
	if cfg.token != "" {
		sum := sha256.Sum256([]byte(cfg.token))
		srv.tokenSum = &sum
	} else {
		log.Warn("WRITER_TOKEN is unset: anyone who reaches the port can run commands")
	}
	httpServer := newHTTPServer(srv.routes(), cfg.readHeaderTimeout, srv.timeout, log)
	served := make(chan error, 1)
	go func() { served <- httpServer.Serve(ln) }()
	log.Info("listening", "addr", ln.Addr().String(), "bearer_token", cfg.token != "", "read_header_timeout", cfg.readHeaderTimeout)

	// Restore after the server listens, so /readyz reports progress.
	restoreCtx, cancelRestore := context.WithCancel(ctx)
	defer cancelRestore()
	restored := make(chan error, 1)
	go func() { restored <- restore(restoreCtx, repo, srv, log) }()

	var fatal error
	for waiting := true; waiting; {
		select {
		case <-ctx.Done():
			log.Info("signal received: shutting down")
			waiting = false
		case err := <-served:
			fatal, waiting = fmt.Errorf("http server: %w", err), false
		case err := <-restored:
			restored = nil // done: keep serving
			if err != nil {
				fatal, waiting = err, false
			}
		}
	}

	// /readyz says so from now on: load balancers stop sending here.
	srv.stopping.Store(true)
	// Stop accepting, and wait for the commands in flight: each has its
	// own timeout, shorter than this.
	shutdownCtx, cancel := context.WithTimeout(context.Background(), max(minShutdownPeriod, srv.timeout+3*time.Second)+cfg.drain)
	defer cancel()
	shutdownHTTP := func() {
		if err := httpServer.Shutdown(shutdownCtx); err != nil {
			fatal = errors.Join(fatal, fmt.Errorf("http shutdown: %w", err))
		}
	}
	drain := func(what string) {
		log.Info(what, "for", cfg.drain)
		select {
		case <-time.After(cfg.drain):
		case err := <-served:
			fatal = errors.Join(fatal, fmt.Errorf("http server: %w", err))
		}
	}
	switch {
	case group == nil:
		// Nobody to hand over to, nor to forward to.
		shutdownHTTP()
	case cfg.stayOnClose:
		// The partitions wait for this instance's return, unserved:
		// serve them while load balancers learn it is stopping, and
		// stop accepting before leaving.
		drain("stopping: serving while load balancers learn it")
		shutdownHTTP()
	}
	cancelRestore()
	if restored != nil {
		<-restored
	}
	if cfg.snapshots != nil {
		// The next start, here or on the instances taking the
		// partitions over, then reads almost nothing but snapshots.
		snapCtx, cancel := context.WithTimeout(context.Background(), cfg.kafka.Timeout)
		if err := repo.Snapshot(snapCtx); err != nil && !errors.Is(err, repository.ErrNotReady) {
			log.Warn("shutdown snapshot failed: the next start reads more events", "err", err)
		}
		cancel()
	}
	// Leave the group now rather than when the session times out: the
	// other instances take the partitions over at once (unless
	// WRITER_LEAVE=off). What still reaches this instance from now on
	// waits for the new owners and is forwarded there, for WRITER_DRAIN:
	// the port stays open while load balancers learn it is stopping.
	if err := repo.Close(); err != nil {
		fatal = errors.Join(fatal, fmt.Errorf("leave group: %w", err))
	}
	if group != nil && !cfg.stayOnClose {
		drain("left the group: forwarding what still arrives")
		shutdownHTTP()
	}
	return fatal
}

// groupOf is the writer's membership: WRITER_INSTANCE and WRITER_ADVERTISE,
// or defaults from the host name and the port listened on.
func groupOf(cfg config, addr net.Addr) *repository.Group {
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	port := "0"
	if tcp, ok := addr.(*net.TCPAddr); ok {
		port = strconv.Itoa(tcp.Port)
	}
	g := &repository.Group{Name: cfg.group, Instance: cfg.instance, Address: cfg.advertise, StayOnClose: cfg.stayOnClose}
	if g.Instance == "" {
		g.Instance = host + "-" + port
	}
	if g.Address == "" {
		g.Address = "http://" + net.JoinHostPort(host, port)
	}
	return g
}

// newHTTPServer is the writer's server: slow clients cannot hold
// connections open (slowloris), and a command that waits the whole
// commandTimeout still gets its answer written. WriteTimeout, counted from
// the request, bounds the answers written otherwise (the metrics);
// serve.WriteJSON gives an answer its own bound from when it is ready, so
// that a writer paused while it served a command still answers it.
func newHTTPServer(h http.Handler, readHeaderTimeout, commandTimeout time.Duration, log *slog.Logger) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       max(readTimeout, readHeaderTimeout),
		WriteTimeout:      commandTimeout + 10*time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
}

// openSnapshots opens the snapshot store on the event topic's snapshot
// topic, creating it (compacted, with as many partitions as the event topic)
// if it is missing.
func openSnapshots(ctx context.Context, events *kafka.Provider, cfg config, log *slog.Logger) (*snapshot.Store, func(), error) {
	ctx, cancel := context.WithTimeout(ctx, cfg.startupTimeout)
	defer cancel()
	ps, err := events.Partitions(ctx)
	if err != nil {
		return nil, nil, fmt.Errorf("topic %s: %w", cfg.kafka.Topic, err)
	}
	kc := cfg.kafka
	kc.Topic = snapshot.TopicName(kc.Topic)
	sp, err := kafka.New(kc)
	if err != nil {
		return nil, nil, err
	}
	if err := sp.EnsureTopic(ctx, kafka.TopicSpec{Partitions: len(ps), Config: snapshot.TopicConfig()}); err != nil {
		_ = sp.Close()
		return nil, nil, fmt.Errorf("snapshot topic %s: %w", kc.Topic, err)
	}
	store, err := snapshot.NewStore(sp, snapshot.WithLogger(log.With("component", "snapshots")))
	if err != nil {
		_ = sp.Close()
		return nil, nil, err
	}
	return store, func() { _ = sp.Close() }, nil
}

// restore restores the users. A record it cannot apply (undecodable, of an
// unknown type, a version gap: an *event.RecordError naming partition and
// offset), a topic that does not keep its events (provider.ErrNotRetained,
// naming the setting and the fix), or more users than WRITER_MAX_USERS
// (repository.ErrLimit), needs a human:
// it is returned and the service stops rather than serve half a state.
// Anything else is the broker's (unreachable, a
// partition without a leader yet, …) and is retried with backoff, reported
// by /readyz meanwhile.
func restore(ctx context.Context, repo *repository.Repository[users.User], srv *server, log *slog.Logger) error {
	backoff := 500 * time.Millisecond
	for {
		stats, err := repo.Restore(ctx)
		if err == nil {
			srv.restoreErr.Store(nil)
			fromSnapshots := 0
			for _, p := range stats.Partitions {
				if p.Snapshot >= 0 {
					fromSnapshots++
				}
			}
			log.Info("restored: ready", "events", stats.Events, "users", repo.Len(),
				"duration", stats.Duration, "events_per_second", int64(stats.EventsPerSecond()),
				"duplicates", stats.Duplicates, "partitions", len(stats.Partitions), "from_snapshots", fromSnapshots)
			return nil
		}
		if ctx.Err() != nil {
			return nil
		}
		if bad := (*event.RecordError)(nil); errors.As(err, &bad) || errors.Is(err, provider.ErrNotRetained) || errors.Is(err, repository.ErrLimit) {
			return fmt.Errorf("restore: %w", err)
		}
		msg := err.Error()
		srv.restoreErr.Store(&msg)
		log.Warn("restore failed, retrying", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

func warnInMemory(log *slog.Logger, brokers string) {
	banner := strings.Repeat("!", 78)
	log.Warn(banner)
	log.Warn("KAFKA_IN_MEMORY: the broker at " + brokers + " is devkafka, an in-memory Kafka-protocol broker (kfake).")
	log.Warn("Restarting this writer restores its users from it, but NOTHING SURVIVES A RESTART OF devkafka itself.")
	log.Warn("A reader can use it: KAFKA_BROKERS=" + brokers + " make run-reader")
	log.Warn(banner)
}
