package kafkagroup

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"

	"github.com/rehydrate/rehydrate/provider"
)

// Join is the course of a member's JoinGroup that does not depend on the
// client: the checks and the lanes before the member touches the group,
// the wait for its first assignment, and the hand-over to the rebalance
// callbacks, which run only once JoinGroup has returned. A provider's
// JoinGroup calls Prepare, starts its group client, then Await; its
// assignment callback calls Assigned first; its Close calls Stop.
type Join struct {
	registered   chan struct{} // closed at the first assignment
	registerOnce sync.Once
	started      chan struct{} // closed when JoinGroup returns: callbacks may run
	stop         chan struct{} // closed by Stop
}

// NewJoin returns a Join under way.
func NewJoin() *Join {
	return &Join{registered: make(chan struct{}), started: make(chan struct{}), stop: make(chan struct{})}
}

// Prepare runs what comes before anything of the member touches the group:
// shared, the check that no member of another topic uses the group (its
// producers' transactional ids are the group's too), then the lanes'
// producers, attached to the member with set under mu. The producers come
// first so that a restarted instance ends its predecessor's open
// transactions before it is assigned anything, and its own takeover
// (AwaitStable) does not wait for them.
func (j *Join) Prepare(ctx context.Context, shared func(context.Context) error, lanes *Lanes, mu *sync.Mutex, set func(*Lanes)) error {
	if err := shared(ctx); err != nil {
		return err
	}
	return lanes.Attach(ctx, mu, set)
}

// Await waits for the member's first assignment, runs shared again (a
// member of another topic that joined at the same moment passed the first
// check too: Shared says what this covers), and lets the callbacks run. It
// fails with provider.ErrClosed once Stop was called, and where ctx ends
// first with the client's last error, if lastErr (which may be nil) has one.
func (j *Join) Await(ctx context.Context, shared func(context.Context) error, lastErr func() error) error {
	select {
	case <-j.registered:
		if err := shared(ctx); err != nil {
			return err
		}
		close(j.started)
		return nil
	case <-j.stop:
		return provider.ErrClosed
	case <-ctx.Done():
		err := ctx.Err()
		if lastErr != nil {
			if last := lastErr(); last != nil {
				err = fmt.Errorf("%w (last client error: %v)", err, last)
			}
		}
		return fmt.Errorf("no assignment yet: %w", err)
	}
}

// Assigned is called by the provider's assignment callback before it
// serves an assignment: the first registers the member (Await returns),
// and each waits until JoinGroup has returned. It reports false where the
// member is stopping: the assignment is not its to serve.
func (j *Join) Assigned() bool {
	j.registerOnce.Do(func() { close(j.registered) })
	select {
	case <-j.started:
	case <-j.stop:
		return false
	}
	return !j.Stopping()
}

// Stop ends the join: Await fails, Assigned reports false. Call it once.
func (j *Join) Stop() { close(j.stop) }

// Stopping reports whether Stop was called.
func (j *Join) Stopping() bool {
	select {
	case <-j.stop:
		return true
	default:
		return false
	}
}

// Members is a provider's group members not closed yet, which its Close
// closes. The zero value is ready.
type Members struct {
	mu     sync.Mutex
	closed bool
	set    map[provider.Member]struct{}
}

// Add counts m among the members; it fails with provider.ErrClosed once
// CloseAll was called.
func (ms *Members) Add(m provider.Member) error {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if ms.closed {
		return provider.ErrClosed
	}
	if ms.set == nil {
		ms.set = make(map[provider.Member]struct{})
	}
	ms.set[m] = struct{}{}
	return nil
}

// Remove forgets m: a member's Close calls it.
func (ms *Members) Remove(m provider.Member) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	delete(ms.set, m)
}

// CloseAll closes the members, and refuses any Add from now on.
func (ms *Members) CloseAll() error {
	ms.mu.Lock()
	ms.closed = true
	members := slices.Collect(maps.Keys(ms.set))
	ms.mu.Unlock()
	var errs []error
	for _, m := range members {
		if err := m.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}
