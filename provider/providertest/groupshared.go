package providertest

import (
	"errors"
	"maps"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/provider"
)

// newTwoServices returns a group test on a topic of two partitions, the
// first service's, and the provider of a second service, on a topic of its
// own.
func newTwoServices(t *testing.T, h GroupHarness) (*groupTest, provider.Provider) {
	t.Helper()
	if h.Topic == nil {
		t.Skip("the provider's groups do not span topics (GroupHarness.Topic is nil)")
	}
	gt := newGroupTest(t, h, 2)
	other, _ := h.New(t, 2)
	t.Cleanup(func() { _ = other.Close() })
	return gt, other
}

// testGroupOfAnotherTopic points a member of a second service (another
// topic) at the group a member of the first serves from: the second is
// refused with ErrGroupShared, naming both topics, and the first keeps its
// partitions and appends as before.
func testGroupOfAnotherTopic(t *testing.T, h GroupHarness) {
	gt, other := newTwoServices(t, h)
	a := gt.join(gt.p, "a")
	gt.waitCovered(a)

	var joined []int32
	m, err := other.(provider.Grouper).JoinGroup(gt.ctx, provider.GroupConfig{
		Group:      gt.group,
		OnAssigned: func(ps []int32) { joined = append(joined, ps...) },
	})
	if m != nil {
		_ = m.Close()
	}
	require.ErrorIs(t, err, provider.ErrGroupShared, "a member of another topic joined the group")
	var shared *provider.GroupSharedError
	require.True(t, errors.As(err, &shared), "%T is not a *provider.GroupSharedError", err)
	assert.Equal(t, &provider.GroupSharedError{Group: gt.group, Topic: h.Topic(other), Others: []string{h.Topic(gt.p)}}, shared)
	assert.Empty(t, joined, "the refused member was assigned partitions")

	// The first service never saw the refused member: it owns what it
	// owned, and appends through it are fenced as before.
	assert.Equal(t, gt.all(), a.Owned())
	e := envelope(gt.keyIn(1, 0), 1)
	pos, err := a.Append(gt.ctx, []event.Record{e.Record()})
	require.NoError(t, err, "append through the first service's member after the refusal")
	require.Len(t, pos, 1)
	got := readAll(t, gt.ctx, gt.p, gt.covering(gt.p, pos), 0)
	require.Contains(t, got, pos[0], "the acknowledged append reads back")
	sameEnvelope(t, e, got[pos[0]])
	owners, err := a.Owners(gt.ctx)
	require.NoError(t, err)
	assert.True(t, maps.Equal(owners, map[int32]string{0: a.address, 1: a.address}), "Owners: %v", owners)
}

// testGroupOfAnotherTopicAtOnce has members of two topics join one new group
// at the same moment: both find the group free before they join, and the
// check once in it refuses at least one (kafkagroup.Shared), so that the
// two never both serve.
func testGroupOfAnotherTopicAtOnce(t *testing.T, h GroupHarness) {
	gt, other := newTwoServices(t, h)
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, p := range []provider.Provider{gt.p, other} {
		wg.Go(func() {
			m, err := p.(provider.Grouper).JoinGroup(gt.ctx, provider.GroupConfig{Group: gt.group})
			if err == nil {
				t.Cleanup(func() { _ = m.Close() })
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			assert.ErrorIs(t, err, provider.ErrGroupShared, "member %d", i)
		}
	}
	assert.False(t, errs[0] == nil && errs[1] == nil, "members of two topics both joined one group")
}
