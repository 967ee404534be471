package projections_test

import (
	"math/rand/v2"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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
