package projection_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rehydrate/rehydrate/consume"
	"github.com/rehydrate/rehydrate/projection"
	"github.com/rehydrate/rehydrate/provider"
	"github.com/rehydrate/rehydrate/provider/memory"
)

// TestGroupSplitsAndMovesPartitions runs three readers of one projection in
// a group while events are appended, stops one, then waits for every
// position: the partitions it had resume at their checkpoints on the
// others, and each event is applied once.
func TestGroupSplitsAndMovesPartitions(t *testing.T) {
	p, err := memory.New(6)
	require.NoError(t, err)
	reg := newRegistry(t)
	model := map[string]int{}
	store := projection.NewMemoryStore[row]()
	type reader struct {
		r      *projection.Runner[*projection.MemoryTx[row]]
		cancel context.CancelFunc
		errc   chan error
	}
	start := func(name string) reader {
		r, err := projection.New(projection.Config[*projection.MemoryTx[row]]{
			Name: "users", Provider: p, Store: store, Handler: counting(t, reg, nil),
			Mode: consume.ReplayThenFollow, BatchSize: 5, Group: "users-readers", Instance: name,
		})
		require.NoError(t, err)
		ctx, cancel := context.WithCancel(t.Context())
		rd := reader{r: r, cancel: cancel, errc: make(chan error, 1)}
		go func() { rd.errc <- r.Run(ctx) }()
		return rd
	}
	readers := []reader{start("a"), start("b"), start("c")}
	var last []provider.Position
	for i := range 20 {
		last = appendEvents(t, p, reg, 30, 25, model)
		if i == 8 {
			readers[1].cancel()
			require.ErrorIs(t, <-readers[1].errc, context.Canceled)
		}
	}
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	ps, err := p.Partitions(ctx)
	require.NoError(t, err)
	all := make([]provider.Position, 0, len(ps))
	for _, part := range ps {
		if part.High > 0 {
			all = append(all, provider.Position{Partition: part.ID, Offset: part.High - 1})
		}
	}
	require.NoError(t, readers[0].r.WaitFor(ctx, append(all, last...)...))
	assert.Equal(t, wantRows(model), store.Rows())
	assert.Eventually(t, func() bool {
		return len(readers[0].r.Progress())+len(readers[2].r.Progress()) == 6
	}, 10*time.Second, 5*time.Millisecond, "the two left serve every partition")
	for _, rd := range []reader{readers[0], readers[2]} {
		rd.cancel()
		require.True(t, errors.Is(<-rd.errc, context.Canceled))
	}
}
