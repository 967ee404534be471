package projections_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
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

// TestGroupReaderKilled runs three readers in one group under a writer's
// load and kills one with SIGKILL: each of its partitions is claimed by
// another reader at the checkpoint it left (the claim's logged next is the
// stored checkpoint once its sessions are gone), and the table equals a
// replay.
func TestGroupReaderKilled(t *testing.T) {
	w := newWorld(t, 6)
	group := "readers-" + w.table
	stop := w.load()
	prs := map[string]*proc{}
	for _, name := range []string{"r1", "r2", "r3"} {
		prs[name] = startReader(t, w.readerEnv("READER_GROUP="+group, "READER_INSTANCE="+name)...)
	}
	w.await("every reader owns partitions and has committed in each that has records", func() bool {
		n := 0
		busy := w.busy()
		for _, name := range []string{"r1", "r2", "r3"} {
			mine := w.owned(name)
			for p, next := range mine {
				if next < 0 && busy[p] {
					return false
				}
			}
			if len(mine) == 0 {
				return false
			}
			n += len(mine)
		}
		return n == 6
	})
	// The claims after the kill are those logged after it: a reader may
	// have claimed a partition before (at the start, before a rebalance
	// gave it to r2), and the database shows a new claim a moment before
	// its log line.
	marks := make(map[string]int)
	for name, pr := range prs {
		marks[name] = len(pr.output())
	}
	prs["r2"].kill(t)
	// Once the server has ended the dead reader's sessions (an open
	// transaction rolled back, a COMMIT sent before the kill settled), its
	// checkpoints are final: nobody else may move them before a claim.
	w.await("the killed reader's sessions end", func() bool { return len(w.sessionStates("r2")) == 0 })
	left := w.owned("r2")
	require.NotEmpty(t, left)
	w.await("the others claim the killed reader's partitions", func() bool { return len(w.owned("r2")) == 0 })
	owners := w.ownerOf()
	for p, next := range left {
		// The new owner's claim of p after the kill (its log line follows
		// the claim's commit).
		var claimed []int64
		w.await(fmt.Sprintf("%s logs its claim of partition %d", owners[p], p), func() bool {
			claimed = nil
			for _, l := range parseLog(prs[owners[p]].output()[marks[owners[p]]:]) {
				if l.msg == "projection: partition claimed" && l.partition == p {
					claimed = append(claimed, l.next)
				}
			}
			return len(claimed) > 0
		})
		assert.Equal(t, next, claimed[len(claimed)-1], "partition %d resumes on %s at its checkpoint (its claims: %v)", p, owners[p], claimed)
		t.Logf("partition %d: checkpoint %d left by r2, claimed by %s at %d", p, next, owners[p], claimed[len(claimed)-1])
	}
	stop()
	w.awaitEnd(90 * time.Second)
	w.checkInvariants("end")
	assert.Equal(t, w.replay(), w.rows())
}

// TestPausedReaderIsRefused stops a reader of a group (SIGSTOP) inside one
// of its transactions, past its session timeout, until the other has
// claimed its partitions, then resumes it. Resumed, it finishes that
// transaction (a batch under way is finished, not abandoned, when its
// partition is revoked), so it does try to commit for a partition it lost:
// the database refuses every such try (ErrFenced: the claim changed the
// owner token), and none of its commits for those partitions lands until
// the group gives it one again and it claims it anew. The pause is
// repeated until a try met the fence (a round is void when a was stopped
// between its checkpoint's UPDATE and COMMIT). The table equals a replay.
func TestPausedReaderIsRefused(t *testing.T) {
	w := newWorld(t, 4)
	group := "readers-" + w.table
	stop := w.load()
	a := startReader(t, w.readerEnv("READER_GROUP="+group, "READER_INSTANCE=a")...)
	startReader(t, w.readerEnv("READER_GROUP="+group, "READER_INSTANCE=b")...)
	var tries, refused, fenced, landed []string
	for round := 1; round <= 5 && len(fenced) == 0; round++ {
		w.await("both readers own partitions", func() bool {
			na, nb := len(w.owned("a")), len(w.owned("b"))
			return na > 0 && nb > 0 && na+nb == 4
		})
		r, f, l := w.pauseInTransaction(t, a)
		refused, fenced, landed = append(refused, r...), append(fenced, f...), append(landed, l...)
		tries = append(append(append(tries, r...), f...), l...)
		t.Logf("round %d: the resumed reader tried %d commits for its lost partitions: %d ended by the server, %d fenced, %d landed",
			round, len(r)+len(f)+len(l), len(r), len(f), len(l))
		select {
		case <-a.done:
			t.Fatalf("the resumed reader exited; its log:\n%s", a.output())
		default:
		}
	}
	assert.NotEmpty(t, tries, "the resumed reader never tried to commit for its lost partitions")
	assert.NotEmpty(t, fenced, "no retry of the resumed reader met the fence in five rounds")
	assert.Empty(t, landed, "commits of the resumed reader landed for partitions it had lost")
	stop()
	w.awaitEnd(90 * time.Second)
	w.checkInvariants("end")
	assert.Equal(t, w.replay(), w.rows())
}

// pauseInTransaction stops a (SIGSTOP) inside one of its transactions, waits
// until the other reader has claimed a's partitions, resumes a, and
// returns what a then tried for those partitions before claiming them
// again: tries refused by the server (its session ended), tries fenced,
// and commits that landed.
func (w *world) pauseInTransaction(t *testing.T, a *proc) (refused, fenced, landed []string) {
	t.Helper()
	// One of a's sessions is idle in transaction while a is stopped (a
	// statement in flight at the stop ends active → idle in transaction,
	// never idle: COMMIT is not sent). The checkpoints of a are read once
	// none of its sessions is active: a COMMIT a sent just before the
	// stop still lands, and a checkpoint read before it would count a's
	// own commit, made while it owned the partition, as one after the loss.
	w.await("a stopped inside a transaction", func() bool {
		if !slices.Contains(w.sessionStates("a"), "idle in transaction") {
			return false
		}
		require.NoError(t, a.cmd.Process.Signal(syscall.SIGSTOP))
		for range 100 {
			states := w.sessionStates("a")
			if slices.Contains(states, "active") {
				continue
			}
			if slices.Contains(states, "idle in transaction") {
				return true
			}
			break
		}
		require.NoError(t, a.cmd.Process.Signal(syscall.SIGCONT))
		return false
	})
	lost := w.owned("a")
	t.Logf("a stopped inside a transaction; its partitions and checkpoints: %v", lost)
	// b claims them once a's session (6 s) times out: a holds no lock the
	// claim waits for (the checkpoint is moved last), unless a was stopped
	// between its checkpoint's UPDATE and COMMIT; then this round is void.
	// b's writes to the rows a's transaction wrote wait for it.
	deadline := time.Now().Add(20 * time.Second)
	var mine map[int32]int64 // b's partitions and checkpoints once it claimed a's
	for {
		mine = w.owned("b")
		claimed := true
		for p := range lost {
			if _, ok := mine[p]; !ok {
				claimed = false
			}
		}
		if claimed {
			break
		}
		if time.Now().After(deadline) {
			t.Log("b did not claim a's partitions while a was stopped: a holds a checkpoint row; another round")
			require.NoError(t, a.cmd.Process.Signal(syscall.SIGCONT))
			return nil, nil, nil
		}
		time.Sleep(20 * time.Millisecond) // polling the database, bounded by the deadline
	}
	mark := len(a.output())
	require.NoError(t, a.cmd.Process.Signal(syscall.SIGCONT))
	w.await("the resumed reader tries, is refused and hears it lost its partitions", func() bool {
		refused, fenced, landed = nil, nil, nil
		reclaimed := map[int32]bool{}
		heard := false
		for _, l := range parseLog(a.output()[mark:]) {
			_, was := lost[l.partition]
			switch {
			case strings.Contains(l.text, "lost=true"):
				heard = true
			case l.msg == "projection: partition claimed":
				reclaimed[l.partition] = true
			case !was || reclaimed[l.partition]:
			case l.msg == "projection: store failed, retrying":
				refused = append(refused, l.text)
			case strings.HasPrefix(l.msg, "projection: commit refused by the store"):
				fenced = append(fenced, l.text)
			case l.msg == "committed" && l.next > mine[l.partition]:
				// Past where b claimed the partition: a commit of a
				// after the claim.
				landed = append(landed, l.text)
			}
		}
		return len(refused)+len(fenced)+len(landed) > 0 && heard
	})
	return refused, fenced, landed
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
	time.Sleep(5 * time.Second) // b claims and commits (its writes to the rows a's open transaction wrote wait for it)
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
