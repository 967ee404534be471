// Package serve holds the plumbing the example services share: their main
// (signals, the slog logger from LOG_FORMAT and LOG_LEVEL), environment
// defaults, the first contact with Kafka, the chi router with access log and
// JSON errors, and JSON responses. It is public, as package users is, so
// that an example copied into a module of its own builds as it is; a service
// of your own would keep its own.
//
// Each service keeps its listen/serve/shutdown sequence in its own run, on
// purpose: they share a dozen lines but not their order. The writer listens
// before it restores (/readyz reports progress), keeps serving when the
// restore ends, waits for commands in flight, then snapshots and leaves its
// group; the reader stops when its stream fails.
package serve

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"

	"github.com/rehydrate/rehydrate/provider"
	kafka "github.com/rehydrate/rehydrate/provider/kafkaclient"
)

// EnvOr returns the environment variable key, or def when it is unset or
// empty.
func EnvOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

// EnsureTopic creates p's topic if it is missing (keeping its events for
// good: EnsureTopic's retention.ms=-1, retention.bytes=-1,
// cleanup.policy=delete, which the restore requires) and waits until its
// partitions answer offset queries. It fails within timeout when no broker
// answers, saying how to start one, instead of hanging.
func EnsureTopic(ctx context.Context, p *kafka.Provider, spec kafka.TopicSpec, brokers string, timeout time.Duration) ([]provider.Partition, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	err := p.EnsureTopic(ctx, spec)
	if errors.Is(err, provider.ErrUnavailable) || errors.Is(err, context.DeadlineExceeded) {
		return nil, fmt.Errorf("no Kafka broker answered at %s within %v: start one with `make kafka-up` "+
			"(or `make run`, which starts one and the writer), or point KAFKA_BROKERS at yours: %w",
			brokers, timeout, err)
	}
	if err != nil {
		return nil, fmt.Errorf("topic %s: %w", p.Topic(), err)
	}
	// A topic just created may have partitions without a leader for a
	// moment: their offsets are asked again until the timeout.
	for {
		ps, err := p.Partitions(ctx)
		if err == nil {
			return ps, nil
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("end offsets of %s: %w", p.Topic(), err)
		case <-time.After(100 * time.Millisecond): // polling, bounded by ctx
		}
	}
}

// NewLogger returns a logger on stderr: format text (default) or json, level
// as slog parses it (default info).
func NewLogger(format, level string) (*slog.Logger, error) {
	var lv slog.Level
	if level != "" {
		if err := lv.UnmarshalText([]byte(level)); err != nil {
			return nil, fmt.Errorf("LOG_LEVEL %q: %w", level, err)
		}
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch strings.ToLower(format) {
	case "", "text":
		return slog.New(slog.NewTextHandler(os.Stderr, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(os.Stderr, opts)), nil
	}
	return nil, fmt.Errorf("LOG_FORMAT %q: want text or json", format)
}

// WriteTimeout bounds the writing of an answer, counted from when the
// answer is ready (Answering), not from when the request came: a command
// that took long, or a process paused (SIGSTOP, a frozen VM) while it
// served one, still gets its answer to the client. A server's own
// WriteTimeout, counted from the request, cut such answers off (the client
// read EOF).
const WriteTimeout = 10 * time.Second

// Answering gives the answer about to be written to w WriteTimeout from
// now. Every handler's answer goes through it: WriteJSON, and a writer's
// forwarding of another instance's answer.
func Answering(w http.ResponseWriter) {
	// Not every ResponseWriter has a connection (httptest's recorder has
	// none): then there is no deadline to move.
	_ = http.NewResponseController(w).SetWriteDeadline(time.Now().Add(WriteTimeout))
}

// WriteJSON answers with status and v as JSON, never cached, within
// WriteTimeout from now.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	Answering(w)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// Main runs a service: it sets up the logger from LOG_FORMAT and LOG_LEVEL,
// runs run until SIGINT or SIGTERM ends its context, and exits 1 if run
// fails (2 if the logger cannot be configured).
func Main(name string, run func(ctx context.Context, log *slog.Logger) error) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log, err := NewLogger(os.Getenv("LOG_FORMAT"), os.Getenv("LOG_LEVEL"))
	if err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(2)
	}
	if err := run(ctx, log); err != nil {
		log.Error(name+" stopped", "err", err)
		stop()
		os.Exit(1)
	}
}

// WriteError answers with status and {"error": msg}.
func WriteError(w http.ResponseWriter, status int, msg string) {
	WriteJSON(w, status, map[string]string{"error": msg})
}

// NewRouter returns a chi router that logs every request once answered
// (probes and scrapes at debug level), recovers panics, and answers unknown
// routes and methods with JSON errors.
func NewRouter(log *slog.Logger) chi.Router {
	r := chi.NewRouter()
	r.Use(accessLog(log), middleware.Recoverer)
	r.NotFound(func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, http.StatusNotFound, "no such route: "+r.Method+" "+r.URL.Path)
	})
	r.MethodNotAllowed(func(w http.ResponseWriter, r *http.Request) {
		WriteError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed on "+r.URL.Path)
	})
	return r
}

func accessLog(log *slog.Logger) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			start := time.Now()
			ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
			next.ServeHTTP(ww, r)
			level := slog.LevelInfo
			if r.URL.Path == "/healthz" || r.URL.Path == "/readyz" || r.URL.Path == "/metrics" {
				level = slog.LevelDebug
			}
			log.LogAttrs(r.Context(), level, "request",
				slog.String("method", r.Method),
				slog.String("path", r.URL.Path),
				slog.Int("status", ww.Status()),
				slog.Int("bytes", ww.BytesWritten()),
				slog.Duration("duration", time.Since(start)))
		})
	}
}
