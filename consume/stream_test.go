package consume_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rehydrate/rehydrate/consume"
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
		mode       consume.StreamMode
		wantBefore int // records appended before the stream starts that it delivers
		follows    bool
	}{
		{consume.Replay, 10, false},
		{consume.ReplayThenFollow, 10, true},
		{consume.Live, 0, true},
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
			err = consume.Stream(ctx, p, tc.mode, consume.StreamOptions{
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

func TestStreamFrom(t *testing.T) {
	p, err := memory.New(2)
	require.NoError(t, err)
	defer p.Close()
	recs := make([]event.Record, 6)
	for i := range recs {
		recs[i] = event.Record{Key: fmt.Appendf(nil, "k-%d", i), Value: []byte("v")}
	}
	pa := provider.PartitionAppender(p)
	_, err = pa.AppendPartition(t.Context(), 0, recs)
	require.NoError(t, err)
	_, err = pa.AppendPartition(t.Context(), 1, recs[:2])
	require.NoError(t, err)

	var got []provider.Position
	caughtUp := false
	err = consume.Stream(t.Context(), p, consume.Replay, consume.StreamOptions{
		From:     map[int32]int64{0: 4},
		CaughtUp: func() { caughtUp = true },
	}, func(b provider.Batch) error {
		for _, r := range b.Records {
			got = append(got, provider.Position{Partition: r.Partition, Offset: r.Offset})
		}
		return nil
	})
	require.NoError(t, err)
	assert.True(t, caughtUp)
	assert.ElementsMatch(t, []provider.Position{{Partition: 0, Offset: 4}, {Partition: 0, Offset: 5}, {Partition: 1, Offset: 0}, {Partition: 1, Offset: 1}}, got)

	err = consume.Stream(t.Context(), p, consume.Replay, consume.StreamOptions{From: map[int32]int64{1: 3}}, func(provider.Batch) error { return nil })
	require.ErrorContains(t, err, "partition 1: start offset 3 is outside [0, 2]")
}

func TestStreamDropsControlRecords(t *testing.T) {
	p, err := memory.New(1)
	require.NoError(t, err)
	defer p.Close()
	e := event.Envelope{ID: event.NewID(), Type: "T", AggregateID: "a", Version: 1, ContentType: event.ContentTypeJSON, Payload: []byte(`{}`)}
	_, err = p.Append(t.Context(), []event.Record{event.FenceRecord("a"), e.Record(), event.FenceRecord("a")})
	require.NoError(t, err)
	for _, keep := range []bool{false, true} {
		var n, control int
		var next int64
		err = consume.Stream(t.Context(), p, consume.Replay, consume.StreamOptions{KeepControlRecords: keep}, func(b provider.Batch) error {
			for _, r := range b.Records {
				n++
				if event.IsControl(r) {
					control++
				} else {
					_, err := event.ParseRecord(r)
					require.NoError(t, err)
				}
			}
			next = b.Next
			return nil
		})
		require.NoError(t, err)
		assert.Equal(t, int64(3), next, "the position covers the dropped records")
		if keep {
			assert.Equal(t, 3, n)
			assert.Equal(t, 2, control)
		} else {
			assert.Equal(t, 1, n)
			assert.Zero(t, control)
		}
	}
}

func TestStreamPartitions(t *testing.T) {
	p, err := memory.New(4)
	require.NoError(t, err)
	appendN(t, p, "k", 40)
	seen := map[int32]int{}
	err = consume.Stream(t.Context(), p, consume.Replay, consume.StreamOptions{Partitions: []int32{1, 3}}, func(b provider.Batch) error {
		seen[b.Partition] += len(b.Records)
		return nil
	})
	require.NoError(t, err)
	ps, err := p.Partitions(t.Context())
	require.NoError(t, err)
	want := map[int32]int{}
	for _, part := range ps {
		if part.ID == 1 || part.ID == 3 {
			want[part.ID] = int(part.High - part.Low)
		}
	}
	assert.Equal(t, want, seen, "only the partitions asked for, each in full")

	err = consume.Stream(t.Context(), p, consume.Replay, consume.StreamOptions{Partitions: []int32{7}}, func(provider.Batch) error { return nil })
	assert.ErrorContains(t, err, "no partition 7")
}
