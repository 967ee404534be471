package kafkagroup

import (
	"errors"
	"testing"

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
