package faults

import (
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rehydrate/rehydrate/provider"
	"github.com/rehydrate/rehydrate/repository"
	rt "github.com/rehydrate/rehydrate/repository/repositorytest"
)

// Unknown outcomes made deterministic: a writer reaches the brokers only
// through the proxies (proxy_test.go), which lose one direction of its
// traffic while it appends. Whether the record was written is then known
// to the test, not left to chance as with paused brokers
// (TestUnknownOutcomeIsResolvedFromTheLog):
//
//   - the acknowledgement is lost (the request reached the leader, which
//     wrote it): the caller gets provider.ErrOutcomeUnknown, memory stays
//     as it was, and once the link is back the repository finds the record
//     in the log: the next command lands at the version after it;
//   - the request is lost (written to the client's connection, never
//     forwarded): the client cannot know nothing was sent, so the outcome
//     is unknown too (provider.ErrOutcomeUnknown: "the request left for the
//     log but no acknowledgement came back"); the repository finds nothing
//     and the next command lands at the version after the last
//     acknowledged one.
//
// Both end with the ledger's checks (verify): every acknowledged deposit
// in the log once at its version, restore == live, the ledger's fold; and
// the deposit of unknown outcome is in the log exactly once, or not at all.

func TestLostAcknowledgementIsResolvedAsWritten(t *testing.T) {
	unknownOutcome(t, linkDropReplies, false)
}

func TestLostRequestIsResolvedAsNotWritten(t *testing.T) {
	unknownOutcome(t, linkDropRequests, false)
}

// A group member's append is a transaction, and only its commit's outcome
// can be unknown (provider/kafkagroup, Lanes): a lost produce request or
// produce acknowledgement leaves the commit unasked, the transaction is
// aborted (by the lane, or by its producer's replacement), and the append
// fails with provider.ErrUnavailable, a known outcome: nothing of it ever
// becomes visible, and the next command lands right after the last
// acknowledged one.

func TestGroupLostAcknowledgementIsNotWritten(t *testing.T) {
	unknownOutcome(t, linkDropReplies, true)
}

func TestGroupLostRequestIsNotWritten(t *testing.T) {
	unknownOutcome(t, linkDropRequests, true)
}

func unknownOutcome(t *testing.T, mode linkState, group bool) {
	written := mode == linkDropReplies && !group
	c := newCluster(t)
	ps, through := newProxies(t, c)
	cfg := c.topic(1, 3*time.Second)
	wcfg := cfg
	wcfg.Brokers = through
	var r *repository.Repository[rt.Account]
	if group {
		r = c.writer(t, wcfg, true, 1)
	} else {
		r = rt.Restored(t, open(t, wcfg))
	}
	var l rt.Ledger
	ids := createAccounts(t, r, 1, &l)
	id := ids[0]
	// A deposit acknowledged through the proxies: the producer's
	// connection to the leader is up before the link loses anything.
	res, err := deposit(t.Context(), r, id, &l)
	require.NoError(t, err)
	require.Equal(t, uint64(2), res.Version)

	ps.set(mode)
	amount := l.Amounts(1)[0]
	_, err = r.Execute(t.Context(), id, rt.Deposit(amount))
	l.Record(id, []any{rt.Deposited{Amount: amount}}, res, err)
	t.Logf("append while the link loses %s: %v", map[linkState]string{linkDropReplies: "the replies", linkDropRequests: "the requests"}[mode], err)
	if group {
		require.ErrorIs(t, err, provider.ErrUnavailable)
		require.NotErrorIs(t, err, provider.ErrOutcomeUnknown, "no commit was asked for")
		require.Equal(t, 1, l.Failed())
	} else {
		require.ErrorIs(t, err, provider.ErrOutcomeUnknown)
		require.Equal(t, 1, l.Unknown())
	}
	a, v, err := r.Get(id)
	require.NoError(t, err)
	assert.Equal(t, uint64(2), v, "memory unchanged: the version")
	assert.NotContains(t, a.History, amount, "memory unchanged: the deposit of unknown outcome is not applied")

	// Cut, so that nothing held or half-forwarded survives on the
	// connections, then heal.
	ps.set(linkCut)
	ps.set(linkUp)
	want := uint64(3) // the lost request: right after the last acknowledged
	if written {
		want = 4 // the lost acknowledgement: after the written deposit
	}
	waitFor(t, "the next command to go through", 2*time.Minute, func() bool {
		res, err := deposit(t.Context(), r, id, &l)
		if err != nil {
			t.Logf("next command: %v (again)", err)
			return false
		}
		assert.Equal(t, want, res.Version, "the next command's version (the append of unknown outcome written: %v)", written)
		return true
	})
	verify(t, cfg, r, ids, &l)

	restored := rt.Restored(t, open(t, cfg))
	got, _, err := restored.Get(id)
	require.NoError(t, err)
	times := map[bool]int{true: 1, false: 0}[written]
	assert.Equal(t, times, count(got.History, amount), "the deposit of unknown outcome in the log: %v", got.History)
	live, _, err := r.Get(id)
	require.NoError(t, err)
	assert.Equal(t, times, count(live.History, amount), "the deposit of unknown outcome in memory once resolved: %v", live.History)
	t.Logf("RESULT %s: the lost append resolved as %s; next command at version %d", t.Name(),
		map[bool]string{true: "written", false: "not written"}[written], want)
}

func count(history []int64, amount int64) int {
	n := 0
	for i := slices.Index(history, amount); i >= 0; i = slices.Index(history, amount) {
		n++
		history = history[i+1:]
	}
	return n
}
