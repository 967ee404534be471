package memory_test

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/provider"
	"github.com/rehydrate/rehydrate/provider/memory"
	"github.com/rehydrate/rehydrate/provider/providertest"
)

// Callbacks run on the members' goroutines: tests poll for their effects.
const providerTimeout, pollEvery = 10 * time.Second, 5 * time.Millisecond

func TestGroupConformance(t *testing.T) {
	providertest.RunGroup(t, providertest.GroupHarness{
		New: func(t *testing.T, partitions int) (provider.Provider, func() provider.Provider) {
			p, err := memory.New(partitions)
			require.NoError(t, err)
			// One process: every member joins through the same provider.
			return p, func() provider.Provider { return p }
		},
		Expel: func(t *testing.T, p provider.Provider, m provider.Member) {
			require.NoError(t, p.(*memory.Provider).Expel(m))
		},
	})
}

// recorder keeps what a member's callbacks told it.
type recorder struct {
	mu      sync.Mutex
	owned   map[int32]bool
	revoked [][]int32
	lost    []bool
}

func (r *recorder) config(group, instance string) provider.GroupConfig {
	r.owned = make(map[int32]bool)
	return provider.GroupConfig{
		Group:    group,
		Instance: instance,
		OnAssigned: func(ps []int32) {
			r.mu.Lock()
			defer r.mu.Unlock()
			for _, x := range ps {
				r.owned[x] = true
			}
		},
		OnRevoked: func(ps []int32, lost bool) {
			r.mu.Lock()
			defer r.mu.Unlock()
			for _, x := range ps {
				delete(r.owned, x)
			}
			r.revoked = append(r.revoked, ps)
			r.lost = append(r.lost, lost)
		},
	}
}

func join(t *testing.T, p *memory.Provider, r *recorder, group, instance string) provider.Member {
	t.Helper()
	m, err := p.JoinGroup(t.Context(), r.config(group, instance))
	require.NoError(t, err)
	t.Cleanup(func() { _ = m.Close() })
	return m
}

func newMemory(t *testing.T, partitions int) *memory.Provider {
	t.Helper()
	p, err := memory.New(partitions)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func TestJoinGroupRefusesNoName(t *testing.T) {
	p := newMemory(t, 2)
	_, err := p.JoinGroup(t.Context(), provider.GroupConfig{})
	require.EqualError(t, err, "memory: join group: no group name")
}

func TestJoinGroupRefusesDoneContext(t *testing.T) {
	p := newMemory(t, 2)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	_, err := p.JoinGroup(ctx, provider.GroupConfig{Group: "g"})
	require.ErrorIs(t, err, context.Canceled)
}

// The assignment is balanced and sticky: a third member takes only what it
// must, and when it leaves its partitions go back without others moving.
func TestGroupAssignmentBalancedAndSticky(t *testing.T) {
	p := newMemory(t, 7)
	var ra, rb, rc recorder
	a := join(t, p, &ra, "g", "a")
	b := join(t, p, &rb, "g", "b")
	owned := func(ms ...provider.Member) [][]int32 {
		var out [][]int32
		for _, m := range ms {
			out = append(out, m.Owned())
		}
		return out
	}
	// Revocations run on the members' goroutines: poll until settled.
	settled := func(ms ...provider.Member) bool {
		n := 0
		for _, m := range ms {
			n += len(m.Owned())
		}
		return n == 7
	}
	require.Eventually(t, func() bool { return settled(a, b) }, providerTimeout, pollEvery)
	before := owned(a, b)
	assert.InDelta(t, len(before[0]), len(before[1]), 1)

	c := join(t, p, &rc, "g", "c")
	require.Eventually(t, func() bool { return settled(a, b, c) }, providerTimeout, pollEvery)
	after := owned(a, b, c)
	for i, ps := range after {
		assert.Contains(t, []int{2, 3}, len(ps), "member %d owns %v", i, ps)
	}
	for i := range 2 {
		for _, x := range after[i] {
			assert.Contains(t, before[i], x, "member %d kept what it owned", i)
		}
	}

	require.NoError(t, c.Close())
	require.Eventually(t, func() bool { return settled(a, b) }, providerTimeout, pollEvery)
	last := owned(a, b)
	for i := range 2 {
		for _, x := range after[i] {
			assert.Contains(t, last[i], x, "member %d kept what it owned when c left", i)
		}
	}
}

// A member joining with the Instance of a live one replaces it, as Kafka
// fences a static member when its successor arrives.
func TestGroupSameInstanceReplaces(t *testing.T) {
	p := newMemory(t, 3)
	var r1, r2 recorder
	old := join(t, p, &r1, "g", "pod-0")
	require.Eventually(t, func() bool { return len(old.Owned()) == 3 }, providerTimeout, pollEvery)
	successor := join(t, p, &r2, "g", "pod-0")
	require.Eventually(t, func() bool { return len(successor.Owned()) == 3 }, providerTimeout, pollEvery)
	require.Eventually(t, func() bool {
		r1.mu.Lock()
		defer r1.mu.Unlock()
		return slices.Equal(r1.lost, []bool{true})
	}, providerTimeout, pollEvery)
	_, err := old.Append(t.Context(), []event.Record{{Key: []byte("k")}})
	require.ErrorIs(t, err, provider.ErrNotOwner)
}

// Provider.Close ends members: their partitions are revoked, not lost, and
// every later call refuses.
func TestProviderCloseEndsMembers(t *testing.T) {
	p := newMemory(t, 2)
	var r recorder
	m := join(t, p, &r, "g", "")
	require.Eventually(t, func() bool { return len(m.Owned()) == 2 }, providerTimeout, pollEvery)
	require.NoError(t, p.Close())
	r.mu.Lock()
	assert.Empty(t, r.owned)
	assert.Equal(t, []bool{false}, r.lost)
	r.mu.Unlock()
	_, err := m.Append(t.Context(), []event.Record{{Key: []byte("k")}})
	require.ErrorIs(t, err, provider.ErrClosed)
	require.ErrorIs(t, m.AwaitStable(t.Context(), []int32{0}), provider.ErrClosed)
	require.NoError(t, m.Close())
	_, err = p.JoinGroup(t.Context(), provider.GroupConfig{Group: "g"})
	require.ErrorIs(t, err, provider.ErrClosed)
}

func TestAwaitStableRespectsContext(t *testing.T) {
	p := newMemory(t, 2)
	var r recorder
	m := join(t, p, &r, "g", "")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	require.ErrorIs(t, m.AwaitStable(ctx, []int32{0}), context.Canceled)
	require.NoError(t, m.AwaitStable(t.Context(), []int32{0, 1}))
}

func TestExpelRefusesStrangers(t *testing.T) {
	p, q := newMemory(t, 2), newMemory(t, 2)
	var r recorder
	m := join(t, q, &r, "g", "")
	require.Error(t, p.Expel(m), "a member of another provider")
	require.NoError(t, q.Expel(m))
	require.NoError(t, q.Expel(m), "expelling again does nothing")
	require.NoError(t, m.Close())
	require.ErrorIs(t, q.Expel(m), provider.ErrClosed)
}

// Plain appends go on beside a group: the group fences its members only.
func TestPlainAppendBesideGroup(t *testing.T) {
	p := newMemory(t, 2)
	var r recorder
	m := join(t, p, &r, "g", "")
	require.Eventually(t, func() bool { return len(m.Owned()) == 2 }, providerTimeout, pollEvery)
	_, err := p.Append(t.Context(), []event.Record{{Key: []byte("k"), Value: []byte("v")}})
	require.NoError(t, err)
	_, err = m.Append(t.Context(), []event.Record{{Key: []byte("k"), Value: []byte("v")}})
	require.NoError(t, err)
	_, err = m.Append(t.Context(), []event.Record{{Value: []byte("no key")}})
	require.ErrorContains(t, err, "memory: append record 0: empty key")
	require.NotErrorIs(t, err, provider.ErrNotOwner)
}
