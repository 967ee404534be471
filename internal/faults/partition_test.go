package faults

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rehydrate/rehydrate/provider"
	"github.com/rehydrate/rehydrate/repository"
	rt "github.com/rehydrate/rehydrate/repository/repositorytest"
)

// A writer cut off from every broker while it keeps serving its callers
// (the case SIGSTOP does not cover: the process runs, its clients reach
// it, Kafka does not). Two writers of one group share the partitions;
// writer a reaches the brokers only through the proxies (proxy_test.go).
// The proxies cut a's connections (closed, new ones refused) or stall them
// (open, nothing forwarded) under load, then heal. While cut off, a
// refuses the commands it is given with a typed error and acknowledges
// none of those begun after the cut; b takes a's partitions over; once
// healed, a serves again. Then b leaves, a serves everything, and the log
// and both states are checked as in the group tests (verifyGroup): every
// acknowledged command whole at its positions and versions, nothing that
// failed with a known outcome, restore == live, the ledger's fold.

func TestNetworkPartitionCutsAWriterOff(t *testing.T) { networkPartition(t, linkCut) }

func TestNetworkPartitionStallsAWriter(t *testing.T) { networkPartition(t, linkStalled) }

func networkPartition(t *testing.T, mode linkState) {
	c := newCluster(t)
	ps, through := newProxies(t, c)
	c.ensureCoordinators()
	cfg := c.topic(groupPartitions, 10*time.Second)
	cfg.Timeout = 5 * time.Second // refusals while cut off come within it
	cfg.SessionTimeout = 6 * time.Second
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("test", t.Name())
	group := fmt.Sprintf("faults-%s-%d", t.Name(), time.Now().UnixNano())
	join := func(instance, brokers string) *repository.Repository[rt.Account] {
		wcfg := cfg
		wcfg.Brokers = brokers
		wcfg.Logger = cfg.Logger.With("writer", instance)
		r := rt.NewRepository(t, open(t, wcfg),
			repository.WithGroup(repository.Group{Name: group, Instance: instance}),
			repository.WithLogger(wcfg.Logger))
		ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
		defer cancel()
		_, err := r.Restore(ctx)
		require.NoError(t, err, "writer %s joins the group", instance)
		t.Cleanup(func() { _ = r.Close() })
		return r
	}
	a := join("a", through)
	b := join("b", c.brokers)
	waitFor(t, "the two writers to share the partitions", time.Minute, func() bool {
		na, nb := len(a.Owned()), len(b.Owned())
		return na > 0 && nb > 0 && na+nb == groupPartitions
	})
	owns := func(r *repository.Repository[rt.Account], id string) bool {
		return slices.Contains(r.Owned(), r.PartitionOf(id))
	}
	// A caller sends each command to the writer that says it owns the
	// account (a first: while a still believes it owns its partitions, it
	// is the one asked), as a balancer that follows Owners would.
	pick := func(id string) (string, *repository.Repository[rt.Account]) {
		if owns(a, id) || !owns(b, id) {
			return "a", a
		}
		return "b", b
	}
	var l rt.Ledger
	ids := make([]string, groupAccounts)
	var onA string
	waitFor(t, "every account opened", time.Minute, func() bool {
		for i := range ids {
			if ids[i] != "" {
				continue
			}
			id := fmt.Sprintf("acct-%03d", i)
			w, r := pick(id)
			res, err := r.Create(t.Context(), id, rt.Open("owner"))
			if err != nil {
				t.Logf("open %s on %s: %v (again)", id, w, err)
				return false
			}
			l.Record(id, []any{rt.Opened{Owner: "owner"}}, res, err)
			ids[i] = id
			if w == "a" {
				onA = id
			}
		}
		return true
	})
	require.NotEmpty(t, onA, "an account on the writer to cut off")

	var j journal
	defer j.logOnFailure(t)
	ctx, stopLoad := context.WithCancel(t.Context())
	defer stopLoad()
	wg := j.runOn(ctx, pick, ids)
	waitFor(t, "a first burst on both writers", time.Minute, func() bool {
		return j.ackedBy("a", time.Time{}) >= progress/3 && j.ackedBy("b", time.Time{}) >= progress/3
	})

	ps.set(mode)
	cutAt := time.Now()
	t.Logf("link of writer a: %s", map[linkState]string{linkCut: "cut", linkStalled: "stalled"}[mode])
	// Its callers still reach it: it answers from memory.
	_, _, err := a.Get(onA)
	require.NoError(t, err, "the cut-off writer serves a read")
	waitFor(t, "writer b to take every partition over", 2*time.Minute, func() bool {
		return len(b.Owned()) == groupPartitions
	})
	takeover := time.Since(cutAt)
	before := j.ackedBy("b", cutAt)
	waitFor(t, "writer b to serve commands while a is cut off", time.Minute, func() bool {
		return j.ackedBy("b", cutAt) >= before+progress/3
	})
	// a is asked until it gives its partitions up (or for good, when it
	// never notices): give it time to refuse some.
	waitFor(t, "writer a to refuse commands while cut off", time.Minute, func() bool {
		return j.refusedBy("a", cutAt) > 0
	})
	healAt := time.Now()
	ps.set(linkUp)
	t.Logf("link of writer a healed after %v", healAt.Sub(cutAt).Round(time.Millisecond))
	waitFor(t, "writer a to serve again once healed", 2*time.Minute, func() bool {
		return j.ackedBy("a", healAt) >= progress/3
	})
	back := time.Since(healAt)
	stopLoad()
	wg.Wait()

	j.mu.Lock()
	refused, lateAcks := 0, 0
	for _, cmd := range j.commands {
		if cmd.writer != "a" || cmd.start.Before(cutAt) || !cmd.done.Before(healAt) {
			continue
		}
		if cmd.err == nil {
			lateAcks++
			t.Errorf("%s, begun on writer a %v after its link was cut, was acknowledged before the link healed", cmd.id, cmd.start.Sub(cutAt))
			continue
		}
		refused++
		typed := errors.Is(cmd.err, provider.ErrUnavailable) || errors.Is(cmd.err, provider.ErrNotOwner) ||
			errors.Is(cmd.err, provider.ErrOutcomeUnknown) || errors.Is(cmd.err, repository.ErrUnresolved)
		assert.True(t, typed, "%s refused on the cut-off writer with an untyped error: %v", cmd.id, cmd.err)
	}
	j.mu.Unlock()
	t.Logf("RESULT %s: b took a's partitions over %v after the cut; a refused %d commands begun while cut off, acknowledged %d; served again %v after the heal; acknowledged=%d unknown=%d failed=%d unresolved=%d",
		t.Name(), takeover.Round(time.Millisecond), refused, lateAcks, back.Round(time.Millisecond),
		j.counts[acked].Load(), j.counts[unknown].Load(), j.counts[failed].Load(), j.counts[unresolved].Load())
	for _, o := range []outcome{unknown, failed, unresolved} {
		for k, n := range j.kinds[o] {
			t.Logf("RESULT   %s ×%d: %s", o, n, k)
		}
	}

	// b leaves; a, healed, takes everything and is checked as the live
	// state.
	require.NoError(t, b.Close())
	verifyGroup(t, cfg, a, ids, &j, &l)
}

// ackedBy counts the commands writer acknowledged that began after from.
func (j *journal) ackedBy(writer string, from time.Time) int {
	return j.countBy(writer, from, func(c *command) bool { return c.outcome == acked })
}

// refusedBy counts the commands writer failed that began after from.
func (j *journal) refusedBy(writer string, from time.Time) int {
	return j.countBy(writer, from, func(c *command) bool { return c.outcome != acked })
}

func (j *journal) countBy(writer string, from time.Time, ok func(*command) bool) int {
	j.mu.Lock()
	defer j.mu.Unlock()
	n := 0
	for _, c := range j.commands {
		if c.writer == writer && !c.start.Before(from) && ok(c) {
			n++
		}
	}
	return n
}
