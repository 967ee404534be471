package providertest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/provider"
)

// GroupHarness adapts an implementation of [provider.Grouper] to [RunGroup].
type GroupHarness struct {
	// New returns a provider, which implements provider.Grouper, on a new,
	// empty topic of the given number of partitions, and reopen, which
	// returns another provider on the same topic: the provider of another
	// process of the service. A provider that can hold several members of
	// one group (an in-process log) may have reopen return p itself. The
	// suite closes every provider it gets when the test ends.
	New func(t *testing.T, partitions int) (p provider.Provider, reopen func() provider.Provider)
	// Expel, if set, drops m, which joined through p, from its group as a
	// session timeout would, and returns once the group has moved on
	// without it. m must not rejoin on its own. Tests that need it skip
	// when it is nil.
	Expel func(t *testing.T, p provider.Provider, m provider.Member)
	// Fence, if set, has another client join group, on p's topic, under
	// the static member's Instance instance (kafkatest.FenceStatic): the
	// coordinator then refuses the member's group client
	// (FENCED_INSTANCE_ID). leave has that client leave the group: the
	// member is then fenced while nobody holds its name, as after a
	// JoinGroup answer its client lost, or librdkafka forgetting its member
	// id at its own session timeout. Tests that need it skip when it is
	// nil.
	Fence func(t *testing.T, p provider.Provider, group, instance string) (leave func())
	// Static says the provider's members are static (GroupConfig.Instance
	// is a group.instance.id, KIP-345): a member closed with StayOnClose
	// keeps its partitions until the same Instance joins again. Tests that
	// need it skip when it is false.
	Static bool
	// Generation, if set, returns the group generation m is in now, for a
	// coordinator that lets a static member rejoin without a rebalance
	// (Kafka's does, kfake's rebalances): the test then checks that the
	// generation stayed.
	Generation func(m provider.Member) int32
	// Topic, if set, returns the topic p is on, for a provider whose
	// groups span topics (Kafka's: a group id names one group of the
	// cluster, whatever its members' topics), so that a member of another
	// topic can be pointed at a group by mistake. Tests that need it skip
	// when it is nil.
	Topic func(p provider.Provider) string
	// Timeout bounds each wait for a rebalance; 0 means 60 s.
	Timeout time.Duration
	// TooLarge, if set, is a payload size the provider refuses a record
	// for (a Kafka client's or broker's message size limit). Tests that
	// need it skip when it is 0.
	TooLarge int
}

// RunGroup runs the suite of the group capability. Every test uses a group
// of its own and joins at most two members, so that it passes in seconds on
// a real broker too.
func RunGroup(t *testing.T, h GroupHarness) {
	if h.Timeout == 0 {
		h.Timeout = 60 * time.Second
	}
	tests := []struct {
		name string
		fn   func(*testing.T, GroupHarness)
	}{
		{"SoleMemberOwnsEveryPartition", testSoleMember},
		{"AppendsToOwnedPartitions", testMemberAppends},
		{"AppendToUnownedPartitionRefused", testNotOwnerRefused},
		{"MemberWithoutPartitionsLearnsItJoined", testMemberWithoutPartitions},
		{"MembersSplitAndTakeOver", testSplitAndTakeOver},
		{"AppendsDuringRebalance", testAppendsDuringRebalance},
		{"AwaitStableAfterHandOver", testAwaitStable},
		{"RefusedRecordFailsOnlyItsAppend", testRefusedRecordFailsAlone},
		{"ClosedMemberRefuses", testClosedMember},
		{"ExpelledMemberIsFenced", testExpelled},
		{"StaticMemberLeavesOnClose", testStaticLeaves},
		{"StaticMemberStaysOnClose", testStaticStays},
		{"FencedStaticMemberServesAgain", testFencedStaticServesAgain},
		{"GroupOfAnotherTopicRefused", testGroupOfAnotherTopic},
		{"GroupOfAnotherTopicAtOnceRefused", testGroupOfAnotherTopicAtOnce},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, h) })
	}
}

// groupTest is one test's topic, group and log of callbacks.
type groupTest struct {
	t          *testing.T
	h          GroupHarness
	ctx        context.Context
	group      string
	partitions int
	p          provider.Provider // the first process's provider
	reopen     func() provider.Provider
	log        *callLog

	mu      sync.Mutex
	members []*testMember // joined, for the callbacks' checks
}

func newGroupTest(t *testing.T, h GroupHarness, partitions int) *groupTest {
	t.Helper()
	// Every wait is bounded by h.Timeout; the test as a whole by a few.
	ctx, cancel := context.WithTimeout(t.Context(), 5*h.Timeout)
	t.Cleanup(cancel)
	gt := &groupTest{
		t:          t,
		h:          h,
		ctx:        ctx,
		group:      "providertest-" + strings.ReplaceAll(t.Name(), "/", ".") + "-" + event.NewID(),
		partitions: partitions,
		log:        &callLog{},
	}
	// Cleanups run last first: the log is checked after every member and
	// provider has closed, the revocations of Close included.
	t.Cleanup(func() {
		for _, problem := range gt.log.check() {
			t.Error(problem)
		}
	})
	gt.p, gt.reopen = h.New(t, partitions)
	t.Cleanup(func() { _ = gt.p.Close() })
	return gt
}

// second returns the provider of a second process on the topic.
func (gt *groupTest) second() provider.Provider {
	p := gt.reopen()
	gt.t.Cleanup(func() { _ = p.Close() })
	return p
}

// testMember is a member whose callbacks write to the test's log.
type testMember struct {
	provider.Member
	name    string
	address string
	p       provider.Provider // the provider it joined through
	gt      *groupTest
	log     *callLog
	busy    atomic.Int32 // callbacks running now
	// expelled is set before the harness expels the member: from then on
	// it may believe it owns partitions the group gave to another.
	expelled atomic.Bool

	// onRevoked, if set, is called from OnRevoked with the member.
	onRevoked func(m provider.Member, ps []int32, lost bool)
	mu        sync.Mutex
	self      provider.Member // Member, for callbacks, once JoinGroup has returned
}

func (gt *groupTest) join(p provider.Provider, name string) *testMember {
	gt.t.Helper()
	return gt.joinWith(p, name, nil)
}

func (gt *groupTest) joinWith(p provider.Provider, name string, onRevoked func(m provider.Member, ps []int32, lost bool)) *testMember {
	gt.t.Helper()
	return gt.joinAs(p, name, provider.GroupConfig{}, onRevoked)
}

// joinAs joins with cfg's Instance and StayOnClose.
func (gt *groupTest) joinAs(p provider.Provider, name string, cfg provider.GroupConfig, onRevoked func(m provider.Member, ps []int32, lost bool)) *testMember {
	gt.t.Helper()
	g, ok := p.(provider.Grouper)
	require.True(gt.t, ok, "%T does not implement provider.Grouper", p)
	tm := &testMember{name: name, address: "http://" + name + ".test", p: p, gt: gt, log: gt.log, onRevoked: onRevoked}
	m, err := g.JoinGroup(gt.ctx, provider.GroupConfig{
		Group:       gt.group,
		Instance:    cfg.Instance,
		StayOnClose: cfg.StayOnClose,
		Address:     tm.address,
		OnAssigned:  func(ps []int32) { tm.called(true, ps, false) },
		OnRevoked:   func(ps []int32, lost bool) { tm.called(false, ps, lost) },
	})
	require.NoError(gt.t, err, "join %s", name)
	tm.Member = m
	tm.mu.Lock()
	tm.self = m
	tm.mu.Unlock()
	gt.mu.Lock()
	gt.members = append(gt.members, tm)
	gt.mu.Unlock()
	gt.t.Cleanup(func() { _ = m.Close() })
	return tm
}

func (tm *testMember) called(assigned bool, ps []int32, lost bool) {
	if tm.busy.Add(1) != 1 {
		tm.log.problem("%s: a callback was called while another ran", tm.name)
	}
	defer tm.busy.Add(-1)
	e := callEvent{member: tm.name, assigned: assigned, partitions: slices.Sorted(slices.Values(ps)), lost: lost}
	tm.log.record(e)
	// Another member may own none of them now: not before this one's
	// OnRevoked returns, nor after its OnAssigned is called. This catches
	// at once what the log's replay sees only when goroutines race the
	// wrong way.
	if !lost && !tm.expelled.Load() {
		tm.gt.mu.Lock()
		others := slices.Clone(tm.gt.members)
		tm.gt.mu.Unlock()
		for _, o := range others {
			if o == tm || o.expelled.Load() {
				continue
			}
			for _, x := range o.Owned() {
				if slices.Contains(ps, x) {
					tm.log.problem("during %s: %s owns %d", e, o.name, x)
				}
			}
		}
	}
	if !assigned && tm.onRevoked != nil {
		tm.mu.Lock()
		self := tm.self
		tm.mu.Unlock()
		if self == nil {
			tm.log.problem("%s: OnRevoked(%v) before JoinGroup returned", tm.name, ps)
			return
		}
		tm.onRevoked(self, ps, lost)
	}
}

// owns reports whether the member's callbacks and Owned agree on what it
// owns, and returns that.
func (tm *testMember) owns() ([]int32, bool) {
	view := tm.log.view(tm.name)
	return view, tm.log.joined(tm.name) && slices.Equal(view, tm.Owned())
}

// waitFor polls cond until it holds, failing the test after h.Timeout.
func (gt *groupTest) waitFor(what string, cond func() bool) {
	gt.t.Helper()
	deadline := time.Now().Add(gt.h.Timeout)
	for !cond() {
		if time.Now().After(deadline) {
			gt.t.Fatalf("after %v still waiting for %s; callbacks so far:\n%s", gt.h.Timeout, what, gt.log)
		}
		time.Sleep(10 * time.Millisecond) // polling, with a deadline
	}
}

// waitCovered waits until the members own disjoint, non-empty sets of
// partitions that together are all of them, as both their callbacks and
// Owned tell, and returns those sets.
func (gt *groupTest) waitCovered(ms ...*testMember) [][]int32 {
	gt.t.Helper()
	var sets [][]int32
	names := make([]string, len(ms))
	for i, m := range ms {
		names[i] = m.name
	}
	gt.waitFor(fmt.Sprintf("%v to own all %d partitions between them", names, gt.partitions), func() bool {
		sets = sets[:0]
		seen := make(map[int32]bool)
		for _, m := range ms {
			owned, ok := m.owns()
			if !ok || len(owned) == 0 {
				return false
			}
			for _, x := range owned {
				if seen[x] {
					return false
				}
				seen[x] = true
			}
			sets = append(sets, owned)
		}
		return len(seen) == gt.partitions
	})
	return sets
}

func (gt *groupTest) all() []int32 {
	all := make([]int32, gt.partitions)
	for i := range all {
		all[i] = int32(i)
	}
	return all
}

// keyIn returns the n'th key that lands in partition x.
func (gt *groupTest) keyIn(x int32, n int) string {
	return keysFor(x, gt.partitions, n+1)[n]
}

// visible reads p's topic to its end, once the end covers every position
// in acked, and returns where each event id is.
func (gt *groupTest) visible(p provider.Provider, acked ...provider.Position) map[string][]provider.Position {
	gt.t.Helper()
	ranges := gt.covering(p, acked)
	at := make(map[string][]provider.Position)
	for pos, env := range readAll(gt.t, gt.ctx, p, ranges, 0) {
		at[env.ID] = append(at[env.ID], pos)
	}
	return at
}

// visibleWith is visible once it holds id: a read-committed reader sees an
// acknowledged append a moment after its acknowledgement (Kafka writes the
// commit markers after it answers EndTxn).
func (gt *groupTest) visibleWith(p provider.Provider, id string) map[string][]provider.Position {
	gt.t.Helper()
	var at map[string][]provider.Position
	gt.waitFor("the acknowledged append "+id+" visible", func() bool {
		at = gt.visible(p)
		return len(at[id]) > 0
	})
	return at
}

// covering returns the ranges of p's topic once they hold every position
// given: the last stable offset passes an acknowledged transaction a moment
// after EndTxn is answered, when the coordinator has written its markers.
func (gt *groupTest) covering(p provider.Provider, at []provider.Position) []provider.Range {
	gt.t.Helper()
	var ranges []provider.Range
	gt.waitFor("the acknowledged appends below the last stable offset", func() bool {
		var ps []provider.Partition
		ps, ranges = partitionsAndRanges(gt.t, gt.ctx, p)
		return covers(ps, at)
	})
	return ranges
}

// covers reports whether every position lies below its partition's High.
func covers(ps []provider.Partition, at []provider.Position) bool {
	for _, pos := range at {
		i := slices.IndexFunc(ps, func(p provider.Partition) bool { return p.ID == pos.Partition })
		if i < 0 || ps[i].High <= pos.Offset {
			return false
		}
	}
	return true
}

func testSoleMember(t *testing.T, h GroupHarness) {
	gt := newGroupTest(t, h, 3)
	a := gt.join(gt.p, "a")
	gt.waitCovered(a)
	assert.Equal(t, 3, a.Partitions())
	assert.Equal(t, gt.all(), a.Owned())
	want := map[int32]string{0: a.address, 1: a.address, 2: a.address}
	var got map[int32]string
	gt.waitFor("Owners to name a for every partition", func() bool {
		var err error
		got, err = a.Owners(gt.ctx)
		require.NoError(t, err)
		return maps.Equal(got, want)
	})
}

func testMemberAppends(t *testing.T, h GroupHarness) {
	gt := newGroupTest(t, h, 3)
	a := gt.join(gt.p, "a")
	gt.waitCovered(a)

	one := envelope(gt.keyIn(0, 0), 1)
	pos, err := a.Append(gt.ctx, []event.Record{one.Record()})
	require.NoError(t, err)
	require.Len(t, pos, 1)
	assert.Equal(t, int32(0), pos[0].Partition)

	// Two partitions in one append, two records of one key among them.
	k1, k2 := gt.keyIn(1, 0), gt.keyIn(2, 0)
	envs := []event.Envelope{envelope(k1, 1), envelope(k2, 1), envelope(k1, 2)}
	recs := make([]event.Record, len(envs))
	for i := range envs {
		recs[i] = envs[i].Record()
	}
	many, err := a.Append(gt.ctx, recs)
	require.NoError(t, err)
	require.Len(t, many, 3)
	assert.Equal(t, []int32{1, 2, 1}, []int32{many[0].Partition, many[1].Partition, many[2].Partition})
	assert.Greater(t, many[2].Offset, many[0].Offset, "records of one key land in the order given")

	ranges := gt.covering(gt.p, append(pos, many...))
	got := readAll(t, gt.ctx, gt.p, ranges, 0)
	for i, w := range append([]appended{{one, pos[0]}}, appended{envs[0], many[0]}, appended{envs[1], many[1]}, appended{envs[2], many[2]}) {
		env, ok := got[w.pos]
		if assert.True(t, ok, "record %d at %+v reads back", i, w.pos) {
			sameEnvelope(t, w.env, env)
		}
	}
}

// testRefusedRecordFailsAlone appends, at once, a record too large for the
// log and others to the same partition, so that they share transactions: the
// large one's append fails with an error that says nothing was written (not
// ErrOutcomeUnknown); the others are written all the same.
func testRefusedRecordFailsAlone(t *testing.T, h GroupHarness) {
	if h.TooLarge == 0 {
		t.Skip("GroupHarness.TooLarge is not set")
	}
	gt := newGroupTest(t, h, 1)
	a := gt.join(gt.p, "a")
	gt.waitCovered(a)

	big := envelope(gt.keyIn(0, 0), 1)
	big.Payload = fmt.Appendf(nil, `{"pad":%q}`, strings.Repeat("x", h.TooLarge))
	const others = 8
	envs := make([]event.Envelope, others)
	positions := make([][]provider.Position, others)
	errs := make([]error, others)
	var bigErr error
	start := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		<-start
		_, bigErr = a.Append(gt.ctx, []event.Record{big.Record()})
	})
	for i := range others {
		envs[i] = envelope(gt.keyIn(0, i+1), 1)
		wg.Go(func() {
			<-start
			positions[i], errs[i] = a.Append(gt.ctx, []event.Record{envs[i].Record()})
		})
	}
	close(start)
	wg.Wait()

	require.Error(t, bigErr, "a record of %d bytes", h.TooLarge)
	assert.NotErrorIs(t, bigErr, provider.ErrOutcomeUnknown, "the log refused the record: nothing was written")
	var acked []provider.Position
	for i := range others {
		if errs[i] == nil {
			acked = append(acked, positions[i]...)
		}
	}
	visible := gt.visible(gt.p, acked...)
	assert.NotContains(t, visible, big.ID)
	for i := range others {
		if assert.NoError(t, errs[i], "append %d, beside the refused one", i) {
			assert.Equal(t, positions[i], visible[envs[i].ID], "append %d", i)
		}
	}
}

func testNotOwnerRefused(t *testing.T, h GroupHarness) {
	gt := newGroupTest(t, h, 4)
	a := gt.join(gt.p, "a")
	gt.waitCovered(a)
	b := gt.join(gt.second(), "b")
	sets := gt.waitCovered(a, b)
	mine, theirs := sets[0][0], sets[1][0]

	alone := envelope(gt.keyIn(theirs, 0), 1)
	_, err := a.Append(gt.ctx, []event.Record{alone.Record()})
	require.ErrorIs(t, err, provider.ErrNotOwner, "a key of b's partition %d", theirs)

	ok, notOK := envelope(gt.keyIn(mine, 0), 1), envelope(gt.keyIn(theirs, 1), 1)
	_, err = a.Append(gt.ctx, []event.Record{ok.Record(), notOK.Record()})
	require.ErrorIs(t, err, provider.ErrNotOwner, "one record of b's partition %d among a's", theirs)

	// b's own append lands, so a read that finds it has seen past a's.
	last := envelope(gt.keyIn(theirs, 2), 1)
	_, err = b.Append(gt.ctx, []event.Record{last.Record()})
	require.NoError(t, err)
	at := gt.visibleWith(gt.p, last.ID)
	assert.Len(t, at[last.ID], 1)
	for _, env := range []event.Envelope{alone, ok, notOK} {
		assert.Empty(t, at[env.ID], "%s of a refused append is not in the log", env.AggregateID)
	}
}

func testMemberWithoutPartitions(t *testing.T, h GroupHarness) {
	gt := newGroupTest(t, h, 1)
	a := gt.join(gt.p, "a")
	gt.waitCovered(a)
	b := gt.join(gt.second(), "b")
	gt.waitFor("b's first OnAssigned", func() bool { return gt.log.joined("b") })
	assert.Empty(t, gt.log.view("b"), "one partition, and a keeps it")
	assert.Empty(t, b.Owned())
	gt.waitCovered(a) // a still owns it
	e := envelope(gt.keyIn(0, 0), 1)
	_, err := b.Append(gt.ctx, []event.Record{e.Record()})
	require.ErrorIs(t, err, provider.ErrNotOwner)
}

func testSplitAndTakeOver(t *testing.T, h GroupHarness) {
	gt := newGroupTest(t, h, 4)
	a := gt.join(gt.p, "a")
	gt.waitCovered(a)
	b := gt.join(gt.second(), "b")
	sets := gt.waitCovered(a, b)
	assert.InDelta(t, len(sets[0]), len(sets[1]), 1, "balanced: a owns %v, b owns %v", sets[0], sets[1])
	want := make(map[int32]string)
	for i, m := range []*testMember{a, b} {
		for _, x := range sets[i] {
			want[x] = m.address
		}
	}
	gt.waitFor(fmt.Sprintf("b's Owners to be %v", want), func() bool {
		got, err := b.Owners(gt.ctx)
		require.NoError(t, err)
		return maps.Equal(got, want)
	})

	require.NoError(t, a.Close())
	view := gt.log.view("a")
	assert.Empty(t, view, "Close revoked every partition before it returned")
	gt.waitCovered(b)
	moved := slices.Concat(sets[1], sets[0]) // at b's join, then at a's Close

	events := gt.log.snapshot()
	for _, x := range moved {
		revoked := slices.IndexFunc(events, func(e callEvent) bool {
			return e.member == "a" && !e.assigned && !e.lost && slices.Contains(e.partitions, x)
		})
		assigned := slices.IndexFunc(events, func(e callEvent) bool {
			return e.member == "b" && e.assigned && slices.Contains(e.partitions, x)
		})
		require.NotEqual(t, -1, revoked, "a's OnRevoked of %d", x)
		require.NotEqual(t, -1, assigned, "b's OnAssigned of %d", x)
		assert.Less(t, revoked, assigned, "partition %d: a's OnRevoked before b's OnAssigned", x)
	}
}

func testAppendsDuringRebalance(t *testing.T, h GroupHarness) {
	const partitions, perPartition, maxAppends = 4, 2, 10000
	type attempt struct {
		env event.Envelope
		pos provider.Position
		err error
	}
	var (
		mu        sync.Mutex
		attempts  []attempt
		inRevoked []attempt // made from a's OnRevoked: refused, every one
		wg        sync.WaitGroup
		stop      = make(chan struct{})
		keys      []string
	)
	gt := newGroupTest(t, h, partitions)
	a := gt.joinWith(gt.p, "a", func(m provider.Member, ps []int32, lost bool) {
		for _, x := range ps {
			e := envelope(gt.keyIn(x, perPartition), 1)
			_, err := m.Append(gt.ctx, []event.Record{e.Record()})
			mu.Lock()
			inRevoked = append(inRevoked, attempt{env: e, err: err})
			mu.Unlock()
		}
	})
	gt.waitCovered(a)

	for x := range int32(partitions) {
		keys = append(keys, keysFor(x, partitions, perPartition)...)
	}
	versions := make([]uint64, len(keys)) // last version each writer tried, read after wg.Wait
	try := func(m provider.Member, key string, version uint64) error {
		env := envelope(key, version)
		pos, err := m.Append(gt.ctx, []event.Record{env.Record()})
		at := attempt{env: env, err: err}
		if err == nil {
			at.pos = pos[0]
		}
		mu.Lock()
		attempts = append(attempts, at)
		mu.Unlock()
		return err
	}
	started := make([]atomic.Bool, len(keys))
	for w, key := range keys {
		wg.Go(func() {
			for v := uint64(1); v <= maxAppends; v++ {
				select {
				case <-stop:
					return
				default:
				}
				versions[w] = v
				err := try(a, key, v)
				started[w].Store(true)
				if err != nil {
					return // its partition moved on, or worse: checked below
				}
			}
		})
	}
	gt.waitFor("every writer's first append", func() bool {
		for i := range started {
			if !started[i].Load() {
				return false
			}
		}
		return true
	})
	b := gt.join(gt.second(), "b")
	sets := gt.waitCovered(a, b)
	close(stop)
	wg.Wait()

	// Once the group has settled, a's appends to b's partitions are refused
	// and b's accepted.
	for w, key := range keys {
		m := provider.Member(a)
		if slices.Contains(sets[1], provider.PartitionFor([]byte(key), partitions)) {
			require.ErrorIs(t, try(a, key, versions[w]+1), provider.ErrNotOwner, "a appends %s", key)
			m = b
		}
		require.NoError(t, try(m, key, versions[w]+2), "%s appends %s", m.(*testMember).name, key)
	}

	var acked []provider.Position
	for _, try := range attempts {
		if try.err == nil {
			acked = append(acked, try.pos)
		}
	}
	at := gt.visible(gt.p, acked...)
	var ok, refused, unknown int
	for _, try := range attempts {
		switch {
		case try.err == nil:
			ok++
			if assert.Len(t, at[try.env.ID], 1, "%s v%d succeeded: once in the log", try.env.AggregateID, try.env.Version) {
				assert.Equal(t, try.pos, at[try.env.ID][0], "%s v%d where Append said", try.env.AggregateID, try.env.Version)
			}
		case errors.Is(try.err, provider.ErrOutcomeUnknown):
			unknown++
			assert.LessOrEqual(t, len(at[try.env.ID]), 1, "%s v%d outcome unknown: at most once in the log", try.env.AggregateID, try.env.Version)
		default:
			refused++
			assert.True(t, errors.Is(try.err, provider.ErrNotOwner) || errors.Is(try.err, provider.ErrUnavailable),
				"%s v%d: %v, want ErrNotOwner, ErrOutcomeUnknown or ErrUnavailable", try.env.AggregateID, try.env.Version, try.err)
			assert.Empty(t, at[try.env.ID], "%s v%d failed (%v): not in the log", try.env.AggregateID, try.env.Version, try.err)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	require.NotEmpty(t, inRevoked, "a's OnRevoked was called")
	for _, try := range inRevoked {
		assert.ErrorIs(t, try.err, provider.ErrNotOwner, "a's append to %s from its OnRevoked", try.env.AggregateID)
		assert.Empty(t, at[try.env.ID], "a's append to %s from its OnRevoked is not in the log", try.env.AggregateID)
	}
	t.Logf("%d appends succeeded, %d were refused, %d had an unknown outcome", ok, refused, unknown)
}

func testAwaitStable(t *testing.T, h GroupHarness) {
	gt := newGroupTest(t, h, 3)
	a := gt.join(gt.p, "a")
	gt.waitCovered(a)
	var written []appended
	for x := range int32(3) {
		e := envelope(gt.keyIn(x, 0), 1)
		pos, err := a.Append(gt.ctx, []event.Record{e.Record()})
		require.NoError(t, err)
		written = append(written, appended{e, pos[0]})
	}
	require.NoError(t, a.Close())

	p2 := gt.second()
	b := gt.join(p2, "b")
	owned := gt.waitCovered(b)[0]
	ctx, cancel := context.WithTimeout(gt.ctx, h.Timeout)
	defer cancel()
	require.NoError(t, b.AwaitStable(ctx, owned))
	ps, err := p2.Partitions(gt.ctx)
	require.NoError(t, err)
	for _, w := range written {
		assert.Greater(t, ps[w.pos.Partition].High, w.pos.Offset, "High of partition %d covers a's append", w.pos.Partition)
	}
	at := gt.visible(p2)
	for _, w := range written {
		assert.Equal(t, []provider.Position{w.pos}, at[w.env.ID], "a's %s in the log", w.env.AggregateID)
	}
}

func testClosedMember(t *testing.T, h GroupHarness) {
	gt := newGroupTest(t, h, 2)
	a := gt.join(gt.p, "a")
	gt.waitCovered(a)
	require.NoError(t, a.Close())
	assert.Empty(t, gt.log.view("a"), "Close revoked every partition before it returned")
	assert.Empty(t, a.Owned())

	e := envelope(gt.keyIn(0, 0), 1)
	_, err := a.Append(gt.ctx, []event.Record{e.Record()})
	assert.ErrorIs(t, err, provider.ErrClosed, "Append")
	// Owners still answers, while the provider is open, and names a no
	// more: a member that left can forward what still reaches it.
	owners, err := a.Owners(gt.ctx)
	require.NoError(t, err, "Owners after Close")
	for x, addr := range owners {
		assert.NotEqual(t, a.address, addr, "partition %d: a closed, and its Owners still names it", x)
	}
	assert.ErrorIs(t, a.AwaitStable(gt.ctx, []int32{0}), provider.ErrClosed, "AwaitStable")
	if err := a.Close(); err != nil {
		assert.ErrorIs(t, err, provider.ErrClosed, "Close again")
	}
	for _, ev := range gt.log.snapshot() {
		assert.False(t, ev.lost, "Close revokes, it does not lose: %+v", ev)
	}
}

func testExpelled(t *testing.T, h GroupHarness) {
	if h.Expel == nil {
		t.Skip("the harness cannot expel a member")
	}
	gt := newGroupTest(t, h, 4)
	a := gt.join(gt.p, "a")
	gt.waitCovered(a)
	p2 := gt.second()
	b := gt.join(p2, "b")
	sets := gt.waitCovered(a, b)

	a.expelled.Store(true)
	h.Expel(t, a.p, a.Member)
	var refused []event.Envelope
	appendA := func() {
		t.Helper()
		e := envelope(gt.keyIn(sets[0][0], 0), uint64(len(refused)+1))
		_, err := a.Append(gt.ctx, []event.Record{e.Record()})
		require.ErrorIs(t, err, provider.ErrNotOwner, "append of an expelled member")
		refused = append(refused, e)
	}
	appendA()
	gt.waitFor("a's OnRevoked with lost set", func() bool { return gt.log.lost("a") })
	gt.waitCovered(b)
	appendA()

	last := envelope(gt.keyIn(sets[0][0], 1), 1)
	_, err := b.Append(gt.ctx, []event.Record{last.Record()})
	require.NoError(t, err)
	at := gt.visibleWith(p2, last.ID)
	assert.Len(t, at[last.ID], 1)
	for _, e := range refused {
		assert.Empty(t, at[e.ID], "a's refused append v%d is not in the log", e.Version)
	}
}

// callLog records the callbacks of a test's members in the order they were
// called, and what each member owns as they tell it.
type callLog struct {
	mu       sync.Mutex
	events   []callEvent
	owned    map[string]map[int32]bool
	assigns  map[string]int
	lostSeen map[string]bool
	problems []string
}

type callEvent struct {
	member     string
	assigned   bool // OnAssigned, else OnRevoked
	partitions []int32
	lost       bool
}

func (l *callLog) record(e callEvent) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.owned == nil {
		l.owned = make(map[string]map[int32]bool)
		l.assigns = make(map[string]int)
		l.lostSeen = make(map[string]bool)
	}
	l.events = append(l.events, e)
	owned := l.owned[e.member]
	if owned == nil {
		owned = make(map[int32]bool)
		l.owned[e.member] = owned
	}
	for _, x := range e.partitions {
		owned[x] = e.assigned
	}
	if e.assigned {
		l.assigns[e.member]++
	}
	if e.lost {
		l.lostSeen[e.member] = true
	}
}

func (l *callLog) problem(format string, args ...any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.problems = append(l.problems, fmt.Sprintf(format, args...))
}

// view returns the partitions member owns as its callbacks told, ascending.
func (l *callLog) view(member string) []int32 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var ps []int32
	for x, owned := range l.owned[member] {
		if owned {
			ps = append(ps, x)
		}
	}
	slices.Sort(ps)
	return ps
}

// joined reports whether member's OnAssigned was called.
func (l *callLog) joined(member string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.assigns[member] > 0
}

// lost reports whether member's OnRevoked was called with lost set.
func (l *callLog) lost(member string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lostSeen[member]
}

func (l *callLog) snapshot() []callEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.events)
}

func (l *callLog) String() string {
	var b strings.Builder
	for _, e := range l.snapshot() {
		fmt.Fprintf(&b, "\t%s\n", e)
	}
	return b.String()
}

func (e callEvent) String() string {
	if e.assigned {
		return fmt.Sprintf("%s OnAssigned(%v)", e.member, e.partitions)
	}
	return fmt.Sprintf("%s OnRevoked(%v, lost=%v)", e.member, e.partitions, e.lost)
}

// check replays the log: a partition is assigned only while no other member
// owns it, except one that later learns it lost it, and revoked only from
// its owner.
func (l *callLog) check() []string {
	type claim struct {
		partition int32
		member    string
	}
	problems := slices.Clone(l.problems)
	owner := make(map[int32]string)
	overridden := make(map[claim]int) // a member's ownership another took over, by event index
	for i, e := range l.snapshot() {
		for _, x := range e.partitions {
			o, owned := owner[x]
			switch {
			case e.assigned && owned && o == e.member:
				problems = append(problems, fmt.Sprintf("event %d, %s: %s already owned %d", i, e, o, x))
			case e.assigned && owned:
				overridden[claim{x, o}] = i
				owner[x] = e.member
			case e.assigned:
				owner[x] = e.member
			case owned && o == e.member:
				delete(owner, x)
			case e.lost && hasKey(overridden, claim{x, e.member}):
				delete(overridden, claim{x, e.member})
			default:
				problems = append(problems, fmt.Sprintf("event %d, %s: %s did not own %d", i, e, e.member, x))
			}
		}
	}
	for c, i := range overridden {
		problems = append(problems, fmt.Sprintf("event %d: partition %d assigned while %s owned it, and %s was never told it lost it",
			i, c.partition, c.member, c.member))
	}
	if len(problems) > 0 {
		problems = append(problems, "callbacks:\n"+l.String())
	}
	return problems
}

func hasKey[K comparable, V any](m map[K]V, k K) bool {
	_, ok := m[k]
	return ok
}

// A static member that closes leaves the group at once: right after its
// Close, the group no longer names it as an owner (it would, with its
// partitions, until its session timed out, had it not left).
func testStaticLeaves(t *testing.T, h GroupHarness) {
	if !h.Static {
		t.Skip("the provider's members are not static")
	}
	gt := newGroupTest(t, h, 4)
	a := gt.joinAs(gt.p, "a", provider.GroupConfig{Instance: "a"}, nil)
	gt.waitCovered(a)
	b := gt.join(gt.second(), "b")
	gt.waitCovered(a, b)
	require.NoError(t, a.Close())
	owners, err := b.Owners(gt.ctx)
	require.NoError(t, err)
	for x, addr := range owners {
		assert.NotEqual(t, a.address, addr, "partition %d: a closed, and the group still names it", x)
	}
	gt.waitCovered(b)
}

// A static member closed with StayOnClose keeps its partitions: the group
// still names it as their owner, and the same Instance joining again (a
// restarted process) gets them back, while the other member never owned
// any of them.
func testStaticStays(t *testing.T, h GroupHarness) {
	if !h.Static {
		t.Skip("the provider's members are not static")
	}
	gt := newGroupTest(t, h, 4)
	stay := provider.GroupConfig{Instance: "a", StayOnClose: true}
	a := gt.joinAs(gt.p, "a", stay, nil)
	gt.waitCovered(a)
	b := gt.join(gt.second(), "b")
	sets := gt.waitCovered(a, b)
	require.NoError(t, a.Close())
	owners, err := b.Owners(gt.ctx)
	require.NoError(t, err)
	for _, x := range sets[0] {
		assert.Equal(t, a.address, owners[x], "partition %d: a stayed, and the group names another owner", x)
	}
	var gen int32
	if h.Generation != nil {
		gen = h.Generation(b.Member)
	}
	again := gt.joinAs(gt.second(), "a-again", stay, nil)
	got := gt.waitCovered(again, b)
	assert.Equal(t, sets[0], got[0], "the same Instance got its partitions back")
	if h.Generation != nil {
		// Without a rebalance: a new member would have had to wait until
		// the group dropped a, in a new generation.
		assert.Equal(t, gen, h.Generation(again.Member), "a-again's generation")
		assert.Equal(t, gen, h.Generation(b.Member), "b's generation")
	}
	for _, e := range gt.log.snapshot() {
		if e.member == "b" && e.assigned {
			for _, x := range sets[0] {
				assert.NotContains(t, e.partitions, x, "b was assigned a partition of the instance that stayed")
			}
		}
	}
}

// A static member whose group client the coordinator fences while nobody
// else holds its name (Fence) loses its partitions, and then serves them
// again under the same Instance: it owns every partition once more, and an
// append succeeds and is in the log. librdkafka makes such a fence fatal to
// its consumer: a member that kept that consumer never served again.
func testFencedStaticServesAgain(t *testing.T, h GroupHarness) {
	if h.Fence == nil {
		t.Skip("the harness cannot fence a static member")
	}
	gt := newGroupTest(t, h, 3)
	a := gt.joinAs(gt.p, "a", provider.GroupConfig{Instance: "a"}, nil)
	gt.waitCovered(a)
	leave := h.Fence(t, gt.p, gt.group, "a")
	gt.waitFor("a's OnRevoked with lost set", func() bool { return gt.log.lost("a") })
	refused := envelope(gt.keyIn(0, 1), 1)
	_, err := a.Append(gt.ctx, []event.Record{refused.Record()})
	require.ErrorIs(t, err, provider.ErrNotOwner, "append while fenced")
	leave()
	gt.waitCovered(a)
	e := envelope(gt.keyIn(0, 0), 1)
	_, err = a.Append(gt.ctx, []event.Record{e.Record()})
	require.NoError(t, err, "append once a serves again")
	at := gt.visibleWith(gt.p, e.ID)
	assert.Len(t, at[e.ID], 1)
	assert.Empty(t, at[refused.ID], "the append refused while fenced")
}
