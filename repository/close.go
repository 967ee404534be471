package repository

import (
	"context"
	"sync"

	"github.com/rehydrate/rehydrate/provider"
)

// closer makes Close terminal: from Close on, calls fail with ErrClosed; the
// Restore and Follow calls running are cancelled, and Close waits for them
// before it drops the state. Commands are not registered here (a lock per
// command would cost the hot path): Close waits for them through the
// partitions' gates.
type closer struct {
	mu      sync.Mutex
	closed  bool
	ctx     context.Context // cancelled by Close
	cancel  context.CancelFunc
	running sync.WaitGroup
}

func newCloser() *closer {
	c := &closer{}
	c.ctx, c.cancel = context.WithCancel(context.Background())
	return c
}

// begin registers a Restore or Follow: the context it returns is cancelled
// with ErrClosed by Close, which waits for end. It fails once closed.
func (c *closer) begin(ctx context.Context) (context.Context, func(), error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, nil, ErrClosed
	}
	c.running.Add(1) // under mu: never concurrent with Wait at zero
	ctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(c.ctx, func() { cancel(ErrClosed) })
	return ctx, func() {
		stop()
		cancel(nil)
		c.running.Done()
	}, nil
}

// close cancels what runs and waits for it; false if it was closed before.
func (c *closer) close() bool {
	c.mu.Lock()
	first := !c.closed
	c.closed = true
	c.mu.Unlock()
	c.cancel()
	c.running.Wait()
	return first
}

// readiness is nil when the repository serves, else why not.
func (r *Repository[A]) readiness() error {
	switch r.state.Load() {
	case stateReady:
		return nil
	case stateClosed:
		return ErrClosed
	}
	return ErrNotReady
}

// restored reports whether a Restore has succeeded, closed since or not.
func (r *Repository[A]) restored() bool {
	select {
	case <-r.ready:
		return true
	default:
		return false
	}
}

// stopServing stops serving the partitions ids: commands for them fail
// from now on, those in flight end first, then the state is dropped.
func (r *Repository[A]) stopServing(ids []int32, handOver bool) {
	ps := make([]provider.Partition, len(ids))
	snapCtx, cancel := context.WithTimeout(context.Background(), revokeSnapshotWait)
	defer cancel()
	for i, id := range ids {
		pt := r.parts[id]
		if handOver {
			pt.gate.Lock() // waits for the commands in flight; new ones wait for the snapshot
			r.handOver(snapCtx, pt)
			pt.status.Store(partIdle)
		} else {
			pt.status.Store(partIdle)
			pt.gate.Lock() // waits for the partition's commands in flight
		}
		ps[i] = provider.Partition{ID: id}
	}
	r.forget(ps)
	for _, id := range ids {
		r.parts[id].gate.Unlock()
	}
}
