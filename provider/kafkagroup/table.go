package kafkagroup

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/rehydrate/rehydrate/provider"
)

// Table is a member's view of its partitions. It is safe for concurrent use.
type Table struct {
	name    string        // for errors: "<client>: group <group>"
	timeout time.Duration // bounds the wait for an unknown outcome to settle

	mu      sync.Mutex
	cond    *sync.Cond // broadcast when an append ends
	parts   []part
	closing bool
}

type part struct {
	owned    bool // assigned and not being revoked: appends are accepted
	told     bool // OnAssigned reported it and OnRevoked has not yet
	inflight int  // appends accepted for it whose outcome is not decided yet
	// unsettled counts the producers with a commit of unknown outcome that
	// wrote it, until they are replaced; settled is closed then.
	unsettled int
	settled   chan struct{}
}

// New returns the table of a member of a topic of n partitions. name
// prefixes errors; timeout bounds Admit's wait for an unknown outcome.
func New(name string, n int, timeout time.Duration) *Table {
	t := &Table{name: name, timeout: timeout, parts: make([]part, n)}
	t.cond = sync.NewCond(&t.mu)
	return t
}

// Len returns the number of partitions.
func (t *Table) Len() int { return len(t.parts) }

// Close marks the member closing: appends are refused from now on. It
// reports whether it was closing already.
func (t *Table) Close() (already bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	already, t.closing = t.closing, true
	return already
}

// Closing reports whether Close was called.
func (t *Table) Closing() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.closing
}

// Owned returns the partitions owned now, ascending.
func (t *Table) Owned() []int32 {
	t.mu.Lock()
	defer t.mu.Unlock()
	owned := []int32{}
	for id, st := range t.parts {
		if st.owned {
			owned = append(owned, int32(id))
		}
	}
	return owned
}

// Held returns the partitions owned or reported by OnAssigned and not yet
// by OnRevoked: what a closing member revokes.
func (t *Table) Held() []int32 {
	t.mu.Lock()
	defer t.mu.Unlock()
	var held []int32
	for id, st := range t.parts {
		if st.owned || st.told {
			held = append(held, int32(id))
		}
	}
	return held
}

// Mine returns the ids of the table's partitions among ids, ascending:
// partitions added to the topic since the member joined are not (keys are
// partitioned by the count at join).
func (t *Table) Mine(ids []int32) []int32 {
	out := slices.DeleteFunc(slices.Clone(ids), func(id int32) bool { return id < 0 || int(id) >= len(t.parts) })
	slices.Sort(out)
	return out
}

// Assign makes ids owned, and reported.
func (t *Table) Assign(ids []int32) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, id := range ids {
		t.parts[id].owned = true
		t.parts[id].told = true
	}
}

// Revoke makes ids not owned (new appends to them fail at once), waits for
// the appends in flight on them, and returns those of ids that were
// reported as assigned: the ones OnRevoked is to be told of.
func (t *Table) Revoke(ids []int32) (told []int32) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, id := range ids {
		t.parts[id].owned = false
	}
	for slices.ContainsFunc(ids, func(id int32) bool { return t.parts[id].inflight > 0 }) {
		t.cond.Wait()
	}
	told = slices.DeleteFunc(slices.Clone(ids), func(id int32) bool { return !t.parts[id].told })
	for _, id := range told {
		t.parts[id].told = false
	}
	return told
}

// Admit checks that the member owns parts (the partition of each record)
// and counts an append in flight on touched (their distinct values), in one
// critical section: a revocation that starts later waits for it. An append
// to a partition with a commit of unknown outcome waits until it is settled
// (bounded by ctx and the table's timeout). Release ends the count.
func (t *Table) Admit(ctx context.Context, parts, touched []int32) error {
	var bound <-chan time.Time
	t.mu.Lock()
	for {
		if t.closing {
			t.mu.Unlock()
			return provider.ErrClosed
		}
		for i, id := range parts {
			if !t.parts[id].owned {
				t.mu.Unlock()
				return fmt.Errorf("%s: append record %d: partition %d: %w", t.name, i, id, provider.ErrNotOwner)
			}
		}
		var settled chan struct{}
		var unsettled int32
		for _, id := range touched {
			if st := &t.parts[id]; st.unsettled > 0 {
				settled, unsettled = st.settled, id
				break
			}
		}
		if settled == nil {
			for _, id := range touched {
				t.parts[id].inflight++
			}
			t.mu.Unlock()
			return nil
		}
		t.mu.Unlock()
		if bound == nil {
			timer := time.NewTimer(t.timeout)
			defer timer.Stop()
			bound = timer.C
		}
		select {
		case <-settled:
		case <-ctx.Done():
			return ctx.Err()
		case <-bound:
			return fmt.Errorf("%s: partition %d: a commit of unknown outcome is not settled after %v: %w", t.name, unsettled, t.timeout, provider.ErrUnavailable)
		}
		t.mu.Lock()
	}
}

// Release ends an admitted append's count in flight.
func (t *Table) Release(touched []int32) {
	t.mu.Lock()
	for _, id := range touched {
		t.parts[id].inflight--
	}
	t.mu.Unlock()
	t.cond.Broadcast()
}

// OwnsAll reports whether every partition of touched is owned.
func (t *Table) OwnsAll(touched []int32) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return !slices.ContainsFunc(touched, func(id int32) bool { return !t.parts[id].owned })
}

// Unsettle marks partitions written by a commit of unknown outcome: appends
// to them wait (Admit) until Settle.
func (t *Table) Unsettle(ids []int32) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, id := range ids {
		st := &t.parts[id]
		if st.unsettled == 0 {
			st.settled = make(chan struct{})
		}
		st.unsettled++
	}
}

// Settle ends Unsettle once the producer's replacement has settled the
// commit.
func (t *Table) Settle(ids []int32) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, id := range ids {
		st := &t.parts[id]
		if st.unsettled--; st.unsettled == 0 {
			close(st.settled)
		}
	}
}

// AwaitStable is a member's AwaitStable: it checks partitions, then calls
// stable until it reports them stable, backing off from 10 ms to 500 ms
// between calls, until ctx ends (the error then names the last failure).
// stable returning provider.ErrClosed ends it at once. Once the partitions
// have stayed unstable for FenceAfter, and every fenceEvery after that, it
// fences the instances that left them with a transaction open (leavers;
// nil: none), rather than waiting for the broker to abort it.
func (t *Table) AwaitStable(ctx context.Context, partitions []int32, stable func(context.Context) (bool, error), leavers *Leavers) error {
	if t.Closing() {
		return provider.ErrClosed
	}
	for _, id := range partitions {
		if id < 0 || int(id) >= len(t.parts) {
			return fmt.Errorf("%s: await stable: no partition %d (the topic has %d)", t.name, id, len(t.parts))
		}
	}
	if len(partitions) == 0 {
		return nil
	}
	var last error
	fenceAt := time.Now().Add(FenceAfter)
	for backoff := 10 * time.Millisecond; ; backoff = min(2*backoff, 500*time.Millisecond) {
		if err := ctx.Err(); err != nil {
			if last != nil {
				return fmt.Errorf("%s: await stable offsets of partitions %v: %w (last: %v)", t.name, partitions, err, last)
			}
			return err
		}
		if t.Closing() {
			return provider.ErrClosed
		}
		done, err := stable(ctx)
		if errors.Is(err, provider.ErrClosed) {
			return err
		}
		if done {
			return nil
		}
		if err != nil {
			last = err
		}
		if leavers != nil && !time.Now().Before(fenceAt) {
			fenceAt = time.Now().Add(fenceEvery)
			// Every partition, not only those awaited: an instance that
			// took one over and died before its first commit there is
			// named by the others it committed.
			all := make([]int32, len(t.parts))
			for i := range all {
				all[i] = int32(i)
			}
			if _, err := leavers.Fence(ctx, all); err != nil {
				last = err
			}
			continue // stable again at once: what was fenced was aborted
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff): // polling the coordinator, bounded by ctx
		}
	}
}
