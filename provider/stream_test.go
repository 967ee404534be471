package provider_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/provider"
	"github.com/rehydrate/rehydrate/provider/memory"
)

func appendN(t *testing.T, p provider.Provider, prefix string, n int) {
	t.Helper()
	recs := make([]event.Record, n)
	for i := range recs {
		recs[i] = event.Record{Key: fmt.Appendf(nil, "%s-%d", prefix, i), Value: []byte("v")}
	}
	_, err := p.Append(context.Background(), recs)
	require.NoError(t, err)
}

func TestStreamModes(t *testing.T) {
	for _, tc := range []struct {
		mode       provider.StreamMode
		wantBefore int // records appended before the stream starts that it delivers
		follows    bool
	}{
		{provider.Replay, 10, false},
		{provider.ReplayThenFollow, 10, true},
		{provider.Live, 0, true},
	} {
		t.Run(tc.mode.String(), func(t *testing.T) {
			p, err := memory.New(3)
			require.NoError(t, err)
			appendN(t, p, "before", 10)
			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			seen := map[string]bool{}
			caughtUp := false
			var afterAppended bool
			err = provider.Stream(ctx, p, tc.mode, provider.StreamOptions{
				BatchSize: 2,
				CaughtUp: func() {
					caughtUp = true
					if tc.follows {
						appendN(t, p, "after", 5)
						afterAppended = true
					}
				},
			}, func(b provider.Batch) error {
				for _, r := range b.Records {
					seen[string(r.Key)] = true
				}
				if afterAppended && len(seen) == tc.wantBefore+5 {
					cancel()
				}
				return nil
			})
			assert.True(t, caughtUp)
			if tc.follows {
				require.ErrorIs(t, err, context.Canceled)
				assert.Len(t, seen, tc.wantBefore+5)
			} else {
				require.NoError(t, err)
				assert.Len(t, seen, tc.wantBefore)
			}
			assert.Equal(t, tc.wantBefore > 0, seen["before-0"])
		})
	}
}
