package kafkagroup

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rehydrate/rehydrate/provider"
)

func TestShared(t *testing.T) {
	ours := Assignment{MemberID: "a-1", Topics: []string{"orders"}, Partitions: []int32{0, 1}}
	for _, tc := range []struct {
		name    string
		members []Assignment
		others  []string // nil: not refused
	}{
		{"an empty group", nil, nil},
		{"members of our topic only", []Assignment{ours, {MemberID: "a-2", Topics: []string{"orders"}}}, nil},
		{"a member on no topic yet", []Assignment{ours, {MemberID: "x-1"}}, nil},
		{"a member of another topic", []Assignment{ours, {MemberID: "b-1", Topics: []string{"payments"}}}, []string{"payments"}},
		{"only members of another topic", []Assignment{{MemberID: "b-1", Topics: []string{"payments"}}}, []string{"payments"}},
		{"a member of ours and another topic", []Assignment{{MemberID: "b-1", Topics: []string{"orders", "payments"}}}, []string{"payments"}},
		{"several others, sorted, once each", []Assignment{
			{MemberID: "c-1", Topics: []string{"stock", "payments"}},
			ours,
			{MemberID: "b-1", Topics: []string{"payments"}},
		}, []string{"payments", "stock"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Shared("g", "orders", tc.members)
			if tc.others == nil {
				require.NoError(t, err)
				return
			}
			require.ErrorIs(t, err, provider.ErrGroupShared)
			var se *provider.GroupSharedError
			require.True(t, errors.As(err, &se))
			assert.Equal(t, &provider.GroupSharedError{Group: "g", Topic: "orders", Others: tc.others}, se)
			assert.Contains(t, err.Error(), "group g")
		})
	}
}

// TestCheckSharedWaitsForTheCoordinator: the first member of a group on a
// fresh cluster is told COORDINATOR_NOT_AVAILABLE (provider.ErrUnavailable)
// while the offsets topic loads; it tries again within its timeout, and a
// refusal of any other kind, or one that lasts, ends the join.
func TestCheckSharedWaitsForTheCoordinator(t *testing.T) {
	unavailable := fmt.Errorf("describe group g: %w", provider.ErrUnavailable)
	describe := func(fails int, err error) (func(context.Context) ([]Assignment, error), *int) {
		calls := 0
		return func(context.Context) ([]Assignment, error) {
			calls++
			if calls <= fails {
				return nil, err
			}
			return []Assignment{{MemberID: "b-1", Topics: []string{"payments"}}}, nil
		}, &calls
	}

	d, calls := describe(2, unavailable)
	require.ErrorIs(t, CheckShared(t.Context(), "g", "orders", 10*time.Second, d), provider.ErrGroupShared, "the description that came at last is judged")
	assert.Equal(t, 3, *calls)

	d, calls = describe(1, errors.New("group authorization failed"))
	err := CheckShared(t.Context(), "g", "orders", 10*time.Second, d)
	require.ErrorContains(t, err, "group authorization failed")
	assert.Equal(t, 1, *calls, "not a transient refusal: not tried again")

	d, calls = describe(1<<30, unavailable)
	start := time.Now()
	require.ErrorIs(t, CheckShared(t.Context(), "g", "orders", 300*time.Millisecond, d), provider.ErrUnavailable)
	assert.Less(t, time.Since(start), 2*time.Second, "bounded by its timeout")
	assert.Greater(t, *calls, 1)

	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	d, _ = describe(1<<30, unavailable)
	require.ErrorIs(t, CheckShared(ctx, "g", "orders", 10*time.Second, d), context.Canceled)
}
