// Command reader is a projection: it reads the users topic that
// simple-cqrs-writer appends to, builds a read model of the users, and serves
// it. It is the pattern for your own projections: consume.Stream delivers
// the topic in batches, event.Handlers decodes each record and calls the
// typed handler of its event type, and the handlers skip duplicates by
// aggregate-version, so reading a record twice is harmless.
//
// READ_MODE picks the stream mode:
//
//	follow (default)  consume.ReplayThenFollow: every event from the start, then live ones
//	replay            consume.Replay: up to the end offsets at start, then serve that snapshot
//	live              consume.Live: only events appended after start
//
// HTTP on :PORT (default 4001):
//
//	GET /users?limit=50&offset=0  → {"users":[{"id","first_name","last_name","version"}…],"total":N}
//	GET /users/{id}               → {"id","first_name","last_name","version"}
//	GET /readyz                   → 200 once caught up with the end offsets seen at start, else 503; both report the lag
//	GET /healthz
//
// In follow and replay modes the reader starts from the writer's snapshots
// (the topic KAFKA_TOPIC-snapshots): it loads each partition's newest one
// into the read model and reads only the events after it, so a restart is
// bounded by the state, not the history. READ_SNAPSHOTS=off replays every
// event instead.
//
// A record the read model cannot take (undecodable, say) is tried
// READ_RETRIES more times (default 3, with back-off); then, when
// READ_DEAD_LETTER_TOPIC is set, it is written there with its error in
// dead-letter-* headers and the reader goes on, else the reader stops naming
// it. /readyz reports retries, dead_lettered and the last dead letter.
//
// Configuration: KAFKA_CLIENT (confluent or franz), the KAFKA_* variables
// of kafkaconfig.FromEnv, KAFKA_TOPIC
// (default users), PORT, READ_MODE, READ_SNAPSHOTS (on or off), READ_RETRIES,
// READ_DEAD_LETTER_TOPIC, READ_DATABASE_URL (the users projection in
// PostgreSQL instead of memory, with READ_GROUP and READ_VERSION: see
// database.go), LAG_INTERVAL
// (default 2s: how often the lag is measured), LOG_FORMAT (text or json),
// LOG_LEVEL and STARTUP_TIMEOUT (default 5s).
package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rehydrate/rehydrate/consume"
	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/examples/serve"
	"github.com/rehydrate/rehydrate/provider"
	kafka "github.com/rehydrate/rehydrate/provider/kafkaclient"
)

func main() { serve.Main("reader", run) }

type config struct {
	kafka          kafka.Config
	addr           string
	mode           consume.StreamMode
	lagInterval    time.Duration
	startupTimeout time.Duration
	// snapshots is READ_SNAPSHOTS: start from the writer's snapshots.
	snapshots bool
	// retries is READ_RETRIES; deadLetterTopic is READ_DEAD_LETTER_TOPIC,
	// "" to stop at a record that still fails.
	retries         int
	deadLetterTopic string
}

func loadConfig() (config, error) {
	kc, err := kafka.FromEnv()
	if err != nil {
		return config{}, err
	}
	if kc.Topic == "" {
		kc.Topic = "users"
	}
	c := config{kafka: kc, lagInterval: 2 * time.Second, startupTimeout: 5 * time.Second}
	var errs []error
	port := serve.EnvOr("PORT", "4001")
	if n, err := strconv.ParseUint(port, 10, 16); err != nil {
		errs = append(errs, fmt.Errorf("PORT %q: want a port number", port))
	} else {
		c.addr = ":" + strconv.FormatUint(n, 10)
	}
	c.deadLetterTopic = os.Getenv("READ_DEAD_LETTER_TOPIC")
	if n, err := strconv.Atoi(serve.EnvOr("READ_RETRIES", "3")); err != nil || n < 0 {
		errs = append(errs, fmt.Errorf("READ_RETRIES %q: want a number of retries", os.Getenv("READ_RETRIES")))
	} else {
		c.retries = n
	}
	switch v := serve.EnvOr("READ_SNAPSHOTS", "on"); v {
	case "on", "off":
		c.snapshots = v == "on"
	default:
		errs = append(errs, fmt.Errorf("READ_SNAPSHOTS %q: want on or off", v))
	}
	switch m := serve.EnvOr("READ_MODE", "follow"); m {
	case "follow":
		c.mode = consume.ReplayThenFollow
	case "replay":
		c.mode = consume.Replay
	case "live":
		c.mode = consume.Live
	default:
		errs = append(errs, fmt.Errorf("READ_MODE %q: want follow, replay or live", m))
	}
	for _, d := range []struct {
		name string
		to   *time.Duration
	}{{"LAG_INTERVAL", &c.lagInterval}, {"STARTUP_TIMEOUT", &c.startupTimeout}} {
		if s := os.Getenv(d.name); s != "" {
			v, err := time.ParseDuration(s)
			if err != nil || v <= 0 {
				errs = append(errs, fmt.Errorf("%s %q: want a positive Go duration such as 2s", d.name, s))
			}
			*d.to = v
		}
	}
	return c, errors.Join(errs...)
}

func run(ctx context.Context, log *slog.Logger) (err error) {
	cfg, err := loadConfig()
	if err != nil {
		return err
	}
	cfg.kafka.Logger = log.With("component", "kafka")
	p, err := kafka.New(cfg.kafka)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := p.Close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}()

	log.Info("connecting to Kafka", "brokers", cfg.kafka.Brokers, "topic", cfg.kafka.Topic, "mode", cfg.mode)
	start, err := serve.EnsureTopic(ctx, p, kafka.TopicSpec{Partitions: 6}, cfg.kafka.Brokers, cfg.startupTimeout) // the reader may start before the writer
	if err != nil {
		return err
	}
	db, useDB, err := loadDBConfig()
	if err != nil {
		return err
	}
	rd, err := newReader(p, cfg.mode, start, log)
	if err != nil {
		return err
	}
	failures := consume.Failures{
		Retries: cfg.retries,
		OnRetry: func(rec event.Record, err error) {
			rd.retries.Add(1)
			log.Warn("record failed, retrying", "partition", rec.Partition, "offset", rec.Offset, "err", err)
		},
		OnDeadLetter: func(rec event.Record, err error) {
			rd.deadLettered.Add(1)
			msg := fmt.Sprintf("partition %d offset %d: %v", rec.Partition, rec.Offset, err)
			rd.lastFailure.Store(&msg)
			log.Error("record dead-lettered", "partition", rec.Partition, "offset", rec.Offset, "topic", cfg.deadLetterTopic, "err", err)
		},
	}
	if cfg.deadLetterTopic != "" {
		dc := cfg.kafka
		dc.Topic = cfg.deadLetterTopic
		dlq, err := kafka.New(dc)
		if err != nil {
			return err
		}
		defer dlq.Close()
		ectx, cancel := context.WithTimeout(ctx, cfg.startupTimeout)
		err = dlq.EnsureTopic(ectx, kafka.TopicSpec{Partitions: 1})
		cancel()
		if err != nil {
			return fmt.Errorf("dead-letter topic %s: %w", cfg.deadLetterTopic, err)
		}
		failures.DeadLetter = dlq
	}
	if useDB {
		return runDatabase(ctx, db, p, failures, cfg.addr, log)
	}
	rd.each = consume.EachRecord(ctx, failures, rd.handle)
	if cfg.snapshots && cfg.mode != consume.Live {
		store, closeStore, err := openSnapshots(ctx, cfg, len(start))
		if err != nil {
			return err
		}
		defer closeStore()
		if rd.from, err = rd.seedFromSnapshots(ctx, store, start); err != nil {
			return fmt.Errorf("writer snapshots: %w", err)
		}
		for id, off := range rd.from {
			rd.next[id] = off
		}
	}
	httpServer := &http.Server{
		Handler:           rd.routes(),
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return err
	}
	served := make(chan error, 1)
	go func() { served <- httpServer.Serve(ln) }()
	log.Info("listening", "addr", ln.Addr().String())

	streamCtx, cancelStream := context.WithCancel(ctx)
	defer cancelStream()
	var wg sync.WaitGroup
	streamed := make(chan error, 1)
	wg.Go(func() { streamed <- rd.stream(streamCtx) })
	wg.Go(func() { rd.measureLag(streamCtx, cfg.lagInterval) })

	var fatal error
	select {
	case <-ctx.Done():
		log.Info("signal received: shutting down")
	case err := <-served:
		fatal = fmt.Errorf("http server: %w", err)
	case err := <-streamed:
		fatal = err
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := httpServer.Shutdown(shutdownCtx); err != nil {
		fatal = errors.Join(fatal, fmt.Errorf("http shutdown: %w", err))
	}
	cancelStream()
	wg.Wait()
	if fatal == nil {
		log.Info("stopped")
	}
	return fatal
}

// reader feeds the read model from the topic and tracks how far it is.
type reader struct {
	p        provider.Provider
	mode     consume.StreamMode
	model    *readModel
	handlers *event.Handlers
	log      *slog.Logger

	// from is where the stream starts in the partitions seeded from
	// snapshots.
	from map[int32]int64

	mu sync.Mutex
	// next is, per partition, the offset of the next record to apply: the
	// Batch.Next of the last batch applied.
	next map[int32]int64

	// each hands a batch's records to the handlers under the failure
	// policy; retries and deadLettered count what it did.
	each         func(provider.Batch) error
	retries      atomic.Int64
	deadLettered atomic.Int64
	lastFailure  atomic.Pointer[string]

	caughtUp  atomic.Bool
	lag       atomic.Int64 // records between next and the partitions' ends, -1 until measured
	following atomic.Bool  // the stream is running
	lastErr   atomic.Pointer[string]
}

func newReader(p provider.Provider, mode consume.StreamMode, start []provider.Partition, log *slog.Logger) (*reader, error) {
	rd := &reader{p: p, mode: mode, model: newReadModel(), log: log, next: make(map[int32]int64)}
	var err error
	if rd.handlers, err = rd.model.handlers(); err != nil {
		return nil, err
	}
	for _, part := range start {
		if mode == consume.Live {
			rd.next[part.ID] = part.High
		} else {
			rd.next[part.ID] = part.Low
		}
	}
	rd.lag.Store(-1)
	rd.each = consume.EachRecord(context.Background(), consume.Failures{}, rd.handle) // stop at a failure
	return rd, nil
}

// handle applies one record to the read model.
func (rd *reader) handle(rec event.Record) error {
	_, err := rd.handlers.Handle(rec)
	return err
}

// apply is the stream's callback: it hands each record to its handler
// (retried, then dead-lettered or stopping, as READ_RETRIES and
// READ_DEAD_LETTER_TOPIC say) and then moves the partition's position, in
// this order, so a position never covers an event not applied.
func (rd *reader) apply(b provider.Batch) error {
	if err := rd.each(b); err != nil {
		return err
	}
	rd.mu.Lock()
	rd.next[b.Partition] = b.Next
	rd.mu.Unlock()
	return nil
}

func (rd *reader) markCaughtUp() {
	if !rd.caughtUp.Swap(true) {
		st := rd.model.stats()
		rd.log.Info("caught up: ready", "users", st.Users, "events", st.Events, "duplicates", st.Duplicates)
	}
}

// stream runs the stream until ctx ends. A record it cannot apply (an
// *event.RecordError naming partition and offset) stops the reader. Other
// errors are the broker's and are retried: a replay that did not finish
// starts over (the model skips what it already has), a stream that caught
// up resumes from its positions.
func (rd *reader) stream(ctx context.Context) error {
	backoff := 500 * time.Millisecond
	for {
		rd.following.Store(true)
		var err error
		if rd.caughtUp.Load() && rd.mode != consume.Replay {
			err = rd.resume(ctx)
		} else {
			err = consume.Stream(ctx, rd.p, rd.mode, consume.StreamOptions{CaughtUp: rd.markCaughtUp, From: rd.from}, rd.apply)
		}
		rd.following.Store(false)
		switch {
		case ctx.Err() != nil:
			return nil
		case err == nil: // a Replay ended: serve that snapshot
			rd.log.Info("replay finished: serving the snapshot; READ_MODE=follow keeps following")
			return waitDone(ctx)
		case errors.As(err, new(*event.RecordError)):
			return fmt.Errorf("stream: %w", err)
		}
		msg := err.Error()
		rd.lastErr.Store(&msg)
		rd.log.Warn("stream interrupted, retrying", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, 30*time.Second)
	}
}

func waitDone(ctx context.Context) error {
	<-ctx.Done()
	return nil
}

// resume follows every partition from the positions reached, with the
// provider's Read: what Stream does, but from where this reader stopped.
func (rd *reader) resume(ctx context.Context) error {
	ps, err := rd.p.Partitions(ctx)
	if err != nil {
		return err
	}
	rd.mu.Lock()
	ranges := make([]provider.Range, len(ps))
	for i, part := range ps {
		start, ok := rd.next[part.ID]
		if !ok || start < part.Low {
			start = part.Low // a new partition, or records expired meanwhile
		}
		ranges[i] = provider.Range{Partition: part.ID, Start: start, End: provider.Follow}
	}
	rd.mu.Unlock()
	rd.lastErr.Store(nil)
	return rd.p.Read(ctx, ranges, 0, rd.apply)
}

// measureLag compares, every interval, the partitions' end offsets with the
// positions reached.
func (rd *reader) measureLag(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		ps, err := rd.p.Partitions(ctx)
		if err == nil {
			var lag int64
			rd.mu.Lock()
			for _, part := range ps {
				next, ok := rd.next[part.ID]
				if !ok {
					next = part.Low
				}
				lag += max(0, part.High-next)
			}
			rd.mu.Unlock()
			rd.lag.Store(lag)
		} else if ctx.Err() == nil {
			rd.log.Warn("lag: cannot read the end offsets", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
