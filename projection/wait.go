package projection

import (
	"context"
	"fmt"
	"time"

	"github.com/rehydrate/rehydrate/provider"
)

// waitPoll is how often WaitFor reads the store's checkpoints for
// partitions another reader serves.
const waitPoll = 20 * time.Millisecond

// WaitFor returns once the projection has applied the records at the given
// positions (a command's Result carries its events' positions): read-your-
// writes for a client that wrote through a writer and reads from this
// reader. It looks at the store's checkpoints, so it also waits for
// partitions another reader of the group serves. Bound it with ctx; it
// returns ctx's error, wrapped, when the positions are not applied by then.
func (r *Runner[Tx]) WaitFor(ctx context.Context, positions ...provider.Position) error {
	for {
		r.mu.Lock()
		changed := r.changed
		pending := make([]provider.Position, 0, len(positions))
		for _, pos := range positions {
			if st := r.parts[pos.Partition]; st == nil || st.Next <= pos.Offset {
				pending = append(pending, pos)
			}
		}
		r.mu.Unlock()
		if len(pending) == 0 {
			return nil
		}
		cps, err := r.cfg.Store.Checkpoints(ctx, r.cfg.Name)
		if err != nil {
			return fmt.Errorf("projection %s: wait for positions: %w", r.cfg.Name, err)
		}
		positions = pending[:0]
		for _, pos := range pending {
			if next, ok := cps[pos.Partition]; !ok || next <= pos.Offset {
				positions = append(positions, pos)
			}
		}
		if len(positions) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("projection %s: wait for %d positions (first: partition %d offset %d): %w",
				r.cfg.Name, len(positions), positions[0].Partition, positions[0].Offset, ctx.Err())
		case <-changed:
		case <-time.After(waitPoll):
		}
	}
}
