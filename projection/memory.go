package projection

import (
	"context"
	"maps"
	"slices"
	"sync"
)

// MemoryStore is a Store in process memory: a read model of keys to values
// of type V and its checkpoints, changed together by transactions that run
// one at a time. It is what tests and demos run projections on without a
// database; its commits fence stale owners as a database's do.
type MemoryStore[V any] struct {
	mu   sync.Mutex
	rows map[string]V
	cps  map[string]map[int32]*Claim // projection → partition → checkpoint
}

var _ Store[*MemoryTx[int]] = (*MemoryStore[int])(nil)

// NewMemoryStore returns an empty store.
func NewMemoryStore[V any]() *MemoryStore[V] {
	return &MemoryStore[V]{rows: make(map[string]V), cps: make(map[string]map[int32]*Claim)}
}

// MemoryTx is a transaction of a MemoryStore: its writes are seen by its
// own reads and applied at commit, or dropped. It is valid only during the
// apply function it is given to.
type MemoryTx[V any] struct {
	s      *MemoryStore[V]
	writes map[string]*V // nil: deleted
}

// Get returns key's value as the transaction sees it.
func (tx *MemoryTx[V]) Get(key string) (V, bool) {
	if v, ok := tx.writes[key]; ok {
		if v == nil {
			var zero V
			return zero, false
		}
		return *v, true
	}
	tx.s.mu.Lock()
	defer tx.s.mu.Unlock()
	v, ok := tx.s.rows[key]
	return v, ok
}

// Put sets key to v.
func (tx *MemoryTx[V]) Put(key string, v V) { tx.writes[key] = &v }

// Delete removes key.
func (tx *MemoryTx[V]) Delete(key string) { tx.writes[key] = nil }

// Rows returns a copy of the committed read model.
func (s *MemoryStore[V]) Rows() map[string]V {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.rows)
}

// Claim implements Store.
func (s *MemoryStore[V]) Claim(ctx context.Context, projection string, partitions []int32, _ string) ([]Claim, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	cps := s.cps[projection]
	if cps == nil {
		cps = make(map[int32]*Claim)
		s.cps[projection] = cps
	}
	out := make([]Claim, 0, len(partitions))
	for _, p := range partitions {
		c := cps[p]
		if c == nil {
			c = &Claim{Partition: p, Next: NoCheckpoint}
			cps[p] = c
		}
		c.Owner++
		out = append(out, *c)
	}
	return out, nil
}

// Commit implements Store. apply runs without the store's lock; the moves
// are checked again, with the writes applied, under it: a claim made while
// apply ran fences the commit, as a database's row lock and check do.
// Concurrent transactions see each other's committed writes (read
// committed); a projection's partitions hold different aggregates.
func (s *MemoryStore[V]) Commit(ctx context.Context, projection string, moves []Move, apply func(context.Context, *MemoryTx[V]) error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := s.check(projection, moves); err != nil {
		return err
	}
	tx := &MemoryTx[V]{s: s, writes: make(map[string]*V)}
	if err := apply(ctx, tx); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.checkLocked(projection, moves); err != nil {
		return err
	}
	for k, v := range tx.writes {
		if v == nil {
			delete(s.rows, k)
		} else {
			s.rows[k] = *v
		}
	}
	for _, m := range moves {
		s.cps[projection][m.Partition].Next = m.To
	}
	return nil
}

func (s *MemoryStore[V]) check(projection string, moves []Move) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.checkLocked(projection, moves)
}

func (s *MemoryStore[V]) checkLocked(projection string, moves []Move) error {
	for _, m := range moves {
		c := s.cps[projection][m.Partition]
		if c == nil || c.Owner != m.Owner || c.Next != m.From {
			return &FencedError{Projection: projection, Move: m}
		}
	}
	return nil
}

// Checkpoints implements Store.
func (s *MemoryStore[V]) Checkpoints(ctx context.Context, projection string) (map[int32]int64, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make(map[int32]int64, len(s.cps[projection]))
	for _, p := range slices.Sorted(maps.Keys(s.cps[projection])) {
		out[p] = s.cps[projection][p].Next
	}
	return out, nil
}
