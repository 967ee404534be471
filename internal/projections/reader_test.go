package projections_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rehydrate/rehydrate/consume"
	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/internal/kafkatest"
	"github.com/rehydrate/rehydrate/projection"
	"github.com/rehydrate/rehydrate/projection/postgres"
	"github.com/rehydrate/rehydrate/provider/franz"
	"github.com/rehydrate/rehydrate/provider/kafkaconfig"
)

// The test binary is also the reader process the tests start and kill:
// with READER_TOPIC set, TestMain runs one reader and never returns.
func TestMain(m *testing.M) {
	if os.Getenv("READER_TOPIC") != "" {
		if err := reader(); err != nil {
			fmt.Fprintln(os.Stderr, "reader:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

type counted struct {
	N int `msgpack:"n"`
}

func registry() *event.Registry {
	reg := event.NewRegistry()
	if err := event.Register[counted](reg, "Counted"); err != nil {
		panic(err)
	}
	return reg
}

// handlers count each aggregate's applied events and keep its last
// version: applied == version for every row says no event was applied twice
// or lost (versions are consecutive per aggregate).
func handlers(reg *event.Registry, table string) *event.HandlersWith[pgx.Tx] {
	h := event.NewHandlersWith[pgx.Tx](reg)
	err := event.AddHandlerWith(h, func(ctx context.Context, tx pgx.Tx, env *event.Envelope, _ counted) error {
		_, err := tx.Exec(ctx, `INSERT INTO `+table+` (id, applied, version) VALUES ($1, 1, $2)
			ON CONFLICT (id) DO UPDATE SET applied = `+table+`.applied + 1, version = excluded.version`, env.AggregateID, int64(env.Version))
		return err
	})
	if err != nil {
		panic(err)
	}
	return h
}

// reader is one reader process: READER_TOPIC, READER_TABLE,
// READER_CHECKPOINTS, READER_GROUP (optional), READER_INSTANCE,
// READER_DEAD_LETTER (optional topic), DATABASE_URL, KAFKA_BROKERS.
func reader() error {
	ctx := context.Background()
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	brokers := os.Getenv("KAFKA_BROKERS")
	p, err := franz.New(kafkaconfig.Config{Brokers: brokers, Topic: os.Getenv("READER_TOPIC"), Timeout: 20 * time.Second, SessionTimeout: 6 * time.Second})
	if err != nil {
		return err
	}
	// A reader stopped inside a transaction holds the locks of the rows it
	// wrote: the server ends such a session after 20 s (the paused
	// readers are resumed before). application_name lets a test find the
	// reader's sessions in pg_stat_activity.
	db, err := pgxpool.New(ctx, os.Getenv("DATABASE_URL")+"&idle_in_transaction_session_timeout=20000&application_name="+appName(os.Getenv("READER_INSTANCE"))+
		// Spare sessions: a retry after the server ended one does not wait
		// for a new connection.
		"&pool_min_conns=4")
	if err != nil {
		return err
	}
	store, err := postgres.New(ctx, db, postgres.WithTable(os.Getenv("READER_CHECKPOINTS")))
	if err != nil {
		return err
	}
	// A store failure (the reader's transaction ended by the server while
	// it was stopped) is retried: its retries meet the fence.
	failures := consume.Failures{Retries: 3, Backoff: time.Millisecond}
	if dl := os.Getenv("READER_DEAD_LETTER"); dl != "" {
		dead, err := franz.New(kafkaconfig.Config{Brokers: brokers, Topic: dl, Timeout: 20 * time.Second})
		if err != nil {
			return err
		}
		failures.DeadLetter = dead
	}
	r, err := projection.New(projection.Config[pgx.Tx]{
		Name: "users", Provider: p, Store: store, Handler: handlers(registry(), os.Getenv("READER_TABLE")),
		Mode: consume.ReplayThenFollow, BatchSize: 50, Failures: failures,
		Group: os.Getenv("READER_GROUP"), Instance: os.Getenv("READER_INSTANCE"), Logger: log,
		// Each commit, for the tests that check which ones landed.
		OnBatch: func(p projection.Progress) { log.Info("committed", "partition", p.Partition, "next", p.Next) },
	})
	if err != nil {
		return err
	}
	return r.Run(ctx)
}

// appName is the application_name of a reader's database sessions.
func appName(instance string) string { return "reader-" + instance }

// proc is a reader process started by a test.
type proc struct {
	cmd  *exec.Cmd
	done chan error
}

func startReader(t *testing.T, env ...string) *proc {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = new(kafkatest.SyncBuffer)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pr := &proc{cmd: cmd, done: make(chan error, 1)}
	go func() { pr.done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGCONT)
		_ = cmd.Process.Kill()
		<-pr.done
		if t.Failed() {
			// The end of it: a reader that failed says why last, after
			// a line per commit.
			lines := strings.Split(strings.TrimRight(pr.output(), "\n"), "\n")
			t.Logf("reader %d stderr, its last %d lines:\n%s", cmd.Process.Pid, min(len(lines), 30), strings.Join(lines[max(len(lines)-30, 0):], "\n"))
		}
	})
	return pr
}

func (pr *proc) kill(t *testing.T) {
	t.Helper()
	if err := pr.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-pr.done
	pr.done <- nil // for the cleanup
}

func (pr *proc) output() string { return pr.cmd.Stderr.(*kafkatest.SyncBuffer).String() }
