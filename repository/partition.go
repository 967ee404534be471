package repository

import (
	"fmt"
	"maps"
	"strings"
	"sync"
	"sync/atomic"
)

// A partition's status: whether this instance serves its aggregates.
const (
	partIdle      int32 = iota // not owned here (or not restored yet)
	partRestoring              // owned, being restored: commands wait for it
	partServing
)

// partition holds the aggregates whose events live in one partition.
type partition[A any] struct {
	id     int32
	held   *heldCount   // the repository's, shared by its partitions
	status atomic.Int32 // partIdle, partRestoring, partServing
	// gate is held for reading by every command and Get of the partition;
	// a revocation takes it to wait for them before dropping the state.
	gate sync.RWMutex
	mu   sync.RWMutex
	aggs map[string]*entry[A]
	// applied is the read position up to which restore and follow have
	// applied the partition's records.
	applied atomic.Int64
	// acked is the highest offset an append of this instance was
	// acknowledged at; an append whose outcome is unknown landed after it,
	// if at all.
	acked atomic.Int64
	// epoch changes whenever the partition's state is replaced or
	// dropped: a snapshot copied across a change is discarded.
	epoch atomic.Uint64
	// changes counts the events applied since the last snapshot (or the
	// restore), lastSnapshot is when that was (Unix ns); snapMu makes one
	// snapshot of the partition at a time.
	changes      atomic.Int64
	lastSnapshot atomic.Int64
	snapMu       sync.Mutex
}

// upTo is the offset below which the partition has every record in
// memory: its read position, or past this instance's last acknowledged
// append (the partition's only writer has applied all it appended).
func (pt *partition[A]) upTo() int64 {
	return max(pt.applied.Load(), pt.acked.Load()+1)
}

type entry[A any] struct {
	mu      sync.Mutex
	state   A
	version uint64 // 0: not created yet
	offset  int64  // of the last event applied; -1 for none
	deleted bool
	written bool // this instance appended events of the aggregate
	removed bool // dropped from its partition's map: look it up again
	// otherType is set for an id the topic holds an aggregate of another
	// type under (WithAggregateType): no state, and the id cannot be
	// created here.
	otherType string
	// unresolved is set while an append's outcome is unknown: its records,
	// if written, are after this offset.
	unresolved *int64
}

func (pt *partition[A]) get(id string) *entry[A] {
	pt.mu.RLock()
	defer pt.mu.RUnlock()
	return pt.aggs[id]
}

// lock returns the entry of id, locked, creating it if create is set; nil if
// it does not exist and create is not set. An entry removed while we waited
// for its lock is not returned: the lookup starts again. Creating fails with
// a *LimitError when the repository holds as many aggregates as WithLimits
// allows.
func (pt *partition[A]) lock(id string, create bool) (*entry[A], error) {
	for {
		e := pt.get(id)
		if e == nil {
			if !create {
				return nil, nil
			}
			pt.mu.Lock()
			if e = pt.aggs[id]; e == nil {
				if err := pt.held.add(1); err != nil {
					pt.mu.Unlock()
					return nil, &LimitError{AggregateID: id, Partition: pt.id, Limit: pt.held.max}
				}
				e = &entry[A]{offset: -1}
				// id may share memory with a whole record's strings:
				// keep only its own bytes while the aggregate lives.
				pt.aggs[strings.Clone(id)] = e
			}
			pt.mu.Unlock()
		}
		e.mu.Lock()
		if !e.removed {
			return e, nil
		}
		e.mu.Unlock()
	}
}

// replace swaps the partition's aggregates for aggs, keeping the count of
// aggregates held right. It fails with a *LimitError, leaving the partition
// empty, when aggs would hold more than the limit allows.
func (pt *partition[A]) replace(aggs map[string]*entry[A]) error {
	pt.epoch.Add(1)
	pt.mu.Lock()
	defer pt.mu.Unlock()
	pt.held.add(-int64(len(pt.aggs)))
	pt.aggs = make(map[string]*entry[A])
	if err := pt.held.add(int64(len(aggs))); err != nil {
		return &LimitError{Partition: pt.id, Limit: pt.held.max}
	}
	pt.aggs = aggs
	return nil
}

// removeIfUnborn drops a locked entry that a failed Create left behind, so
// that refused requests do not grow memory. Lock order: entry, then partition.
func (pt *partition[A]) removeIfUnborn(id string, e *entry[A]) {
	if e.version != 0 || e.unresolved != nil || e.otherType != "" {
		return
	}
	e.removed = true
	pt.mu.Lock()
	if pt.aggs[id] == e {
		delete(pt.aggs, id)
		pt.held.add(-1)
	}
	pt.mu.Unlock()
}

// entries returns the partition's entries at this moment. Callers lock each
// one without holding the partition's lock, which an entry's lock may wait
// behind (an append in flight holds its entry's lock).
func (pt *partition[A]) entries() map[string]*entry[A] {
	pt.mu.RLock()
	defer pt.mu.RUnlock()
	return maps.Clone(pt.aggs)
}

func (e *entry[A]) mustExist(id string) error {
	switch {
	case e.deleted:
		return fmt.Errorf("%w: %s was deleted at version %d", ErrNotFound, id, e.version)
	case e.version == 0:
		return fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return nil
}
