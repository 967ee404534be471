package projections_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rehydrate/rehydrate/consume"
	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/internal/kafkatest"
	"github.com/rehydrate/rehydrate/projection"
	"github.com/rehydrate/rehydrate/projection/postgres"
	"github.com/rehydrate/rehydrate/provider"
	"github.com/rehydrate/rehydrate/provider/franz"
)

// TestKilledReaderAppliesOnce kills a reader with SIGKILL at random moments
// under a writer's load, many times: after each kill no event is applied
// twice or lost and the checkpoint is never ahead of the rows; in the end
// the table equals a fresh replay of the topic.
func TestKilledReaderAppliesOnce(t *testing.T) {
	w := newWorld(t, 4)
	stop := w.load()
	rng := rand.New(rand.NewPCG(5, 6))
	for i := range 15 {
		pr := startReader(t, w.readerEnv()...)
		time.Sleep(time.Duration(300+rng.IntN(1200)) * time.Millisecond) // where the kill lands, not a synchronisation
		pr.kill(t)
		w.checkInvariants("kill " + string(rune('0'+i%10)))
	}
	stop()
	pr := startReader(t, w.readerEnv()...)
	w.awaitEnd(60 * time.Second)
	pr.kill(t)
	w.checkInvariants("end")
	assert.Equal(t, w.replay(), w.rows())
}

// TestGroupReaderKilled runs three readers in one group under load and
// kills one: its partitions resume at their checkpoints on the others.
func TestGroupReaderKilled(t *testing.T) {
	w := newWorld(t, 6)
	group := "readers-" + w.table
	stop := w.load()
	var prs []*proc
	for _, name := range []string{"r1", "r2", "r3"} {
		prs = append(prs, startReader(t, w.readerEnv("READER_GROUP="+group, "READER_INSTANCE="+name)...))
	}
	time.Sleep(3 * time.Second) // let them share the load before the kill
	prs[1].kill(t)
	time.Sleep(2 * time.Second)
	stop()
	w.awaitEnd(90 * time.Second)
	w.checkInvariants("end")
	assert.Equal(t, w.replay(), w.rows())
}

// TestPausedReaderIsRefused stops a reader (SIGSTOP) past its session
// timeout while the other takes its partitions and commits, then resumes
// it: the database refuses what it commits for them.
func TestPausedReaderIsRefused(t *testing.T) {
	w := newWorld(t, 4)
	group := "readers-" + w.table
	stop := w.load()
	a := startReader(t, w.readerEnv("READER_GROUP="+group, "READER_INSTANCE=a")...)
	b := startReader(t, w.readerEnv("READER_GROUP="+group, "READER_INSTANCE=b")...)
	time.Sleep(3 * time.Second)
	require.NoError(t, a.cmd.Process.Signal(syscall.SIGSTOP))
	// b takes every partition once a's session (6 s) times out, and the
	// database ends a's open transaction (3 s).
	deadline := time.Now().Add(60 * time.Second)
	for {
		var owners int
		require.NoError(t, w.db.QueryRow(t.Context(), `SELECT count(*) FROM `+w.cps+` WHERE instance = 'b'`).Scan(&owners))
		if owners == 4 {
			break
		}
		require.True(t, time.Now().Before(deadline), "b never claimed every partition")
		time.Sleep(100 * time.Millisecond) // polling the database
	}
	time.Sleep(time.Second) // b commits for a's old partitions
	require.NoError(t, a.cmd.Process.Signal(syscall.SIGCONT))
	// Resumed, a either tries to commit for partitions b now owns, and the
	// database refuses it (ErrFenced, or its session ended by the server
	// while it was stopped in a transaction), or its client learns first
	// that its session is lost and it stops them without trying. Which one
	// comes first is a race in a's process; either way no row of a's lands
	// after b's claim, which the invariants below check.
	deadline = time.Now().Add(30 * time.Second)
	for {
		out := a.output()
		if refused := strings.Contains(out, "commit refused by the store") || strings.Contains(out, "terminating connection"); refused {
			t.Log("the resumed reader's commit was refused by the database")
			break
		}
		if strings.Contains(out, "lost=true") {
			t.Log("the resumed reader learnt of its lost session before it tried to commit")
			break
		}
		require.True(t, time.Now().Before(deadline), "the resumed reader neither was refused nor lost its partitions; its log:\n%s", out)
		time.Sleep(50 * time.Millisecond) // polling its log, bounded by the deadline
	}
	stop()
	w.awaitEnd(90 * time.Second)
	w.checkInvariants("end")
	assert.Equal(t, w.replay(), w.rows())
	_ = b
}

// TestPoisonEvent puts an undecodable event among good ones: with a
// dead-letter topic it lands there and the projection goes on; without one
// the reader stops naming its partition and offset, its checkpoint before
// it.
func TestPoisonEvent(t *testing.T) {
	for _, withDeadLetter := range []bool{true, false} {
		t.Run(map[bool]string{true: "dead letter", false: "stop"}[withDeadLetter], func(t *testing.T) {
			w := newWorld(t, 1)
			require.NoError(t, w.write(t.Context(), 5, 30))
			env, err := w.reg.NewEnvelope("poison", 1, counted{})
			require.NoError(t, err)
			bad := env.Record()
			bad.Value = []byte{0xc1} // never valid msgpack
			pos, err := w.p.Append(t.Context(), []event.Record{bad})
			require.NoError(t, err)
			require.NoError(t, w.write(t.Context(), 5, 30))

			env2 := w.readerEnv()
			var dead *franz.Provider
			if withDeadLetter {
				cfg := kafkatest.Config(t, 1, nil)
				dead, err = franz.New(cfg)
				require.NoError(t, err)
				t.Cleanup(func() { _ = dead.Close() })
				env2 = append(env2, "READER_DEAD_LETTER="+cfg.Topic)
			}
			pr := startReader(t, env2...)
			if withDeadLetter {
				w.awaitEnd(60 * time.Second)
				pr.kill(t)
				var dl []event.Record
				require.NoError(t, consume.Stream(t.Context(), dead, consume.Replay, consume.StreamOptions{}, func(b provider.Batch) error {
					dl = append(dl, b.Records...)
					return nil
				}))
				require.Len(t, dl, 1)
				assert.Equal(t, "poison", string(dl[0].Key))
				rows := w.rows()
				assert.Len(t, rows, 5)
				_, ok := rows["poison"]
				assert.False(t, ok)
				return
			}
			select {
			case <-pr.done:
				pr.done <- nil
			case <-time.After(60 * time.Second):
				t.Fatal("the reader did not stop at the poison event")
			}
			assert.Contains(t, pr.output(), fmt.Sprintf("partition 0 offset %d", pos[0].Offset))
			assert.Equal(t, pos[0].Offset, w.checkpoints()[0], "the checkpoint stays before the poison event")
			assert.Equal(t, int64(30), func() (n int64) {
				for _, r := range w.rows() {
					n += r[0]
				}
				return n
			}(), "the events before it are applied")
		})
	}
}

// TestRebuildUnderLoad runs a rebuild (a projection of its own name into a
// table of its own) while a live reader and a writer run: once both have
// caught up, they hold the same rows.
func TestRebuildUnderLoad(t *testing.T) {
	w := newWorld(t, 4)
	stop := w.load()
	live := startReader(t, w.readerEnv()...)
	time.Sleep(2 * time.Second) // the live projection is under way
	v2 := w.table + "_v2"
	_, err := w.db.Exec(t.Context(), `CREATE TABLE `+v2+` (id text PRIMARY KEY, applied int NOT NULL, version bigint NOT NULL)`)
	require.NoError(t, err)
	t.Cleanup(func() { _, _ = w.db.Exec(context.Background(), `DROP TABLE IF EXISTS `+v2) })
	store, err := postgres.New(t.Context(), w.db, postgres.WithTable(w.cps))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	rebuild, err := projection.New(projection.Config[pgx.Tx]{
		Name: "users-v2", Provider: w.p, Store: store, Handler: handlers(w.reg, v2), Mode: consume.ReplayThenFollow, BatchSize: 200,
	})
	require.NoError(t, err)
	errc := make(chan error, 1)
	go func() { errc <- rebuild.Run(ctx) }()
	select {
	case <-rebuild.CaughtUp():
	case err := <-errc:
		t.Fatal(err)
	case <-time.After(60 * time.Second):
		t.Fatal("the rebuild did not catch up")
	}
	stop()
	w.awaitEnd(60 * time.Second)
	ps, err := w.p.Partitions(t.Context())
	require.NoError(t, err)
	var ends []provider.Position
	for _, p := range ps {
		if p.High > p.Low {
			ends = append(ends, provider.Position{Partition: p.ID, Offset: p.High - 1})
		}
	}
	wctx, wcancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer wcancel()
	require.NoError(t, rebuild.WaitFor(wctx, ends...))
	live.kill(t)
	cancel()
	require.ErrorIs(t, <-errc, context.Canceled)
	rebuilt := w.rowsOf(v2)
	assert.Equal(t, w.rows(), rebuilt)
	assert.Equal(t, w.replay(), rebuilt)
}

// TestPausedSoleReaderIsRefused stops a reader that serves every partition
// alone (no group), starts a second one, which claims them all, and resumes
// the first: whatever it was doing, the database refuses its next commit
// (ErrFenced, or its transaction ended by the server while it was stopped)
// and it stops; the table equals a replay.
func TestPausedSoleReaderIsRefused(t *testing.T) {
	w := newWorld(t, 4)
	stop := w.load()
	a := startReader(t, w.readerEnv()...)
	w.awaitClaims("", 4)
	time.Sleep(time.Second) // a commits under load
	require.NoError(t, a.cmd.Process.Signal(syscall.SIGSTOP))
	startReader(t, w.readerEnv()...)
	time.Sleep(5 * time.Second) // the server ends a's open transaction (3 s); b claims and commits
	require.NoError(t, a.cmd.Process.Signal(syscall.SIGCONT))
	select {
	case <-a.done:
		a.done <- nil
	case <-time.After(30 * time.Second):
		t.Fatalf("the resumed reader was not refused; its log:\n%s", a.output())
	}
	out := a.output()
	switch {
	case strings.Contains(out, "checkpoint fenced"):
		t.Log("the resumed reader's commit was refused: checkpoint fenced")
	case strings.Contains(out, "terminating connection"):
		t.Log("the resumed reader's transaction was ended by the server while it was stopped")
	default:
		t.Errorf("the resumed reader stopped for another reason:\n%s", out)
	}
	stop()
	w.awaitEnd(60 * time.Second)
	w.checkInvariants("end")
	assert.Equal(t, w.replay(), w.rows())
}
