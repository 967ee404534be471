package memory

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"slices"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/provider"
)

var _ provider.Grouper = (*Provider)(nil)

// How a partition moves, and why no append can slip past a revocation.
//
// Every group's state lives under the provider's lock, beside the log. For
// each partition a group keeps the member that owns it, the member the
// balanced assignment gives it to (its target) and whether it is being
// revoked. A membership change (join, Close, Expel) recomputes the targets
// and bumps the generation; converge then moves the state toward them:
//
//   - an owned partition whose target is another member is marked revoking,
//     and its owner's OnRevoked(ps, false) is queued;
//   - a free partition goes to its target at once, with OnAssigned queued.
//
// A revoking partition stays with its owner, refusing its appends, until the
// owner's OnRevoked has returned; only then is it freed and handed on by the
// next converge. So the next owner's OnAssigned comes after the last one's
// OnRevoked, and no partition ever has two owners.
//
// A member's Append checks ownership and writes its records in one critical
// section of the same lock. Once a revocation has marked a partition, no
// append to it is in flight, and none can start: there is nothing to wait
// for before OnRevoked.
//
// Expel is the exception, as a session timeout is on Kafka: it frees the
// member's partitions at once and tells it afterwards, with lost set.
//
// Callbacks run on one goroutine per member, from a queue filled under the
// lock and drained without it, so that they may call the provider.

// JoinGroup implements provider.Grouper. A member that joins with the
// Instance of a live member replaces it: the older one is expelled, as
// Kafka fences a static member when its successor arrives. A closed member
// hands its partitions on, StayOnClose or not: the memory log keeps no
// assignment for a member that is gone.
//
// The returned member's Close waits for its callbacks to run, so it must not
// be called from one of them.
func (p *Provider) JoinGroup(ctx context.Context, cfg provider.GroupConfig) (provider.Member, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("memory: join group: %w", err)
	}
	if cfg.Instance == "" {
		cfg.Instance = rand.Text()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, provider.ErrClosed
	}
	if p.groups == nil {
		p.groups = make(map[string]*group)
		p.members = make(map[*member]struct{})
	}
	g := p.groups[cfg.Group]
	if g == nil {
		g = &group{name: cfg.Group, slots: make([]slot, len(p.parts))}
		p.groups[cfg.Group] = g
	}
	for _, old := range g.members {
		if old.cfg.Instance == cfg.Instance {
			old.expelLocked()
			break
		}
	}
	m := &member{
		p:    p,
		g:    g,
		cfg:  cfg,
		wake: make(chan struct{}, 1),
		done: make(chan struct{}),
	}
	g.members = append(g.members, m)
	p.members[m] = struct{}{}
	g.rebalance()
	go m.run()
	return m, nil
}

// Expel drops m from its group as a session timeout would: its partitions go
// to the other members at once, without waiting for it; OnRevoked(ps, true)
// is called on its callback goroutine afterwards; and every append it makes
// from now on fails with provider.ErrNotOwner. The member stays out of the
// group until it is closed. Expelling it again does nothing.
func (p *Provider) Expel(m provider.Member) error {
	mm, ok := m.(*member)
	if !ok || mm.p != p {
		return errors.New("memory: expel: not a member of this provider")
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || mm.closed {
		return provider.ErrClosed
	}
	mm.expelLocked()
	return nil
}

// endMembersLocked ends every member, for Provider.Close: nobody is left to
// take a partition over, so each is dropped at once and told with lost
// unset. It returns the members whose callback goroutines to wait for.
func (p *Provider) endMembersLocked() []*member {
	ending := make([]*member, 0, len(p.members))
	for m := range p.members {
		if ps := m.g.drop(m); len(ps) > 0 {
			m.enqueue(callback{partitions: ps, revoke: true, settled: true})
		}
		m.closed = true
		m.stopLocked()
		ending = append(ending, m)
	}
	clear(p.members)
	for _, g := range p.groups {
		g.members = nil
		g.retarget()
	}
	return ending
}

type group struct {
	name       string
	generation int64
	members    []*member // in the group now, in join order
	slots      []slot    // by partition
}

type slot struct {
	owner  *member // nil when free
	target *member // the member the assignment gives it to; nil while the group is empty
	// revoking means owner's appends to it are refused and its OnRevoked
	// is queued or running; the partition is freed when that returns.
	revoking bool
	// told means OnRevoked(false) has started for it: an Expel or
	// Provider.Close that drops it must not report it a second time.
	told bool
}

// rebalance follows a membership change: new targets, a new generation, and
// every member hears, through OnAssigned, that the rebalance happened, even
// when nothing new comes to it.
func (g *group) rebalance() {
	g.generation++
	g.retarget()
	assigned := g.converge()
	for _, m := range g.members {
		if _, ok := assigned[m]; !ok {
			m.enqueue(callback{partitions: []int32{}})
		}
	}
}

// retarget computes a balanced assignment that moves as few partitions as
// it can: every member keeps what it had up to its share, and only the rest
// is dealt out again.
func (g *group) retarget() {
	in := make(map[*member][]int32, len(g.members))
	for _, m := range g.members {
		in[m] = nil
	}
	for x := range g.slots {
		s := &g.slots[x]
		if _, ok := in[s.target]; ok {
			in[s.target] = append(in[s.target], int32(x))
		} else {
			s.target = nil
		}
	}
	if len(g.members) == 0 {
		return
	}
	// The larger shares go to the members that hold most, so fewer move.
	order := slices.Clone(g.members)
	slices.SortStableFunc(order, func(a, b *member) int { return cmp.Compare(len(in[b]), len(in[a])) })
	base, extra := len(g.slots)/len(order), len(g.slots)%len(order)
	share := make(map[*member]int, len(order))
	for i, m := range order {
		share[m] = base
		if i < extra {
			share[m]++
		}
		if held := in[m]; len(held) > share[m] {
			for _, x := range held[share[m]:] {
				g.slots[x].target = nil
			}
			in[m] = held[:share[m]]
		}
	}
	x := 0
	for _, m := range order {
		for n := len(in[m]); n < share[m]; n++ {
			for g.slots[x].target != nil {
				x++
			}
			g.slots[x].target = m
		}
	}
}

// converge moves ownership toward the targets as far as it can without
// waiting (see the comment at the top of the file) and queues the
// callbacks. It returns the members it assigned partitions to.
func (g *group) converge() map[*member][]int32 {
	revoked := make(map[*member][]int32)
	assigned := make(map[*member][]int32)
	for x := range g.slots {
		s := &g.slots[x]
		switch {
		case s.owner != nil && s.owner != s.target && !s.revoking:
			s.revoking = true
			revoked[s.owner] = append(revoked[s.owner], int32(x))
		case s.owner == nil && s.target != nil:
			s.owner = s.target
			assigned[s.owner] = append(assigned[s.owner], int32(x))
		}
	}
	// Each member's queue is its own, so the order among members does not
	// matter; within one, revocations come first, as on Kafka.
	for m, ps := range revoked {
		m.enqueue(callback{partitions: ps, revoke: true})
	}
	for m, ps := range assigned {
		m.enqueue(callback{partitions: ps})
	}
	return assigned
}

// drop frees every partition of m at once and returns those it has not yet
// been told it lost.
func (g *group) drop(m *member) []int32 {
	var ps []int32
	for x := range g.slots {
		s := &g.slots[x]
		if s.owner != m {
			continue
		}
		if !s.told {
			ps = append(ps, int32(x))
		}
		s.owner, s.revoking, s.told = nil, false, false
	}
	return ps
}

type callback struct {
	partitions []int32
	revoke     bool
	lost       bool
	// settled means the partitions were freed already (Expel,
	// Provider.Close): OnRevoked reports them as they are. Otherwise a
	// revocation frees them once OnRevoked returns.
	settled bool
}

type member struct {
	p   *Provider
	g   *group
	cfg provider.GroupConfig // Instance filled in

	// Under p.mu:
	closed   bool // Close was called, or the provider closed
	expelled bool
	queue    []callback
	stopping bool // the goroutine ends once the queue is empty

	wake chan struct{} // a token when the queue grows or stopping is set
	done chan struct{} // closed when the callback goroutine has ended
}

var _ provider.Member = (*member)(nil)

func (m *member) enqueue(c callback) {
	m.queue = append(m.queue, c)
	m.signal()
}

func (m *member) stopLocked() {
	m.stopping = true
	m.signal()
}

func (m *member) signal() {
	select {
	case m.wake <- struct{}{}:
	default:
	}
}

// expelLocked drops m from its group; see Provider.Expel.
func (m *member) expelLocked() {
	if m.expelled {
		return
	}
	m.expelled = true
	g := m.g
	g.members = slices.DeleteFunc(g.members, func(o *member) bool { return o == m })
	if ps := g.drop(m); len(ps) > 0 {
		m.enqueue(callback{partitions: ps, revoke: true, lost: true, settled: true})
	}
	g.rebalance()
}

// run calls the member's callbacks, one at a time and in order, without the
// lock.
func (m *member) run() {
	defer close(m.done)
	p := m.p
	for {
		p.mu.Lock()
		if len(m.queue) == 0 {
			stop := m.stopping
			p.mu.Unlock()
			if stop {
				return
			}
			<-m.wake
			continue
		}
		c := m.queue[0]
		m.queue[0] = callback{}
		m.queue = m.queue[1:]
		if c.revoke && !c.settled {
			// An Expel or Provider.Close may have taken some of them
			// since; it reports them itself.
			c.partitions = slices.DeleteFunc(c.partitions, func(x int32) bool {
				s := &m.g.slots[x]
				return s.owner != m || !s.revoking
			})
			for _, x := range c.partitions {
				m.g.slots[x].told = true
			}
		}
		p.mu.Unlock()

		switch {
		case !c.revoke:
			if m.cfg.OnAssigned != nil {
				m.cfg.OnAssigned(c.partitions)
			}
		case len(c.partitions) == 0:
		default:
			if m.cfg.OnRevoked != nil {
				m.cfg.OnRevoked(c.partitions, c.lost)
			}
		}

		if c.revoke && !c.settled && len(c.partitions) > 0 {
			p.mu.Lock()
			for _, x := range c.partitions {
				if s := &m.g.slots[x]; s.owner == m && s.revoking {
					s.owner, s.revoking, s.told = nil, false, false
				}
			}
			if !p.closed {
				m.g.converge()
			}
			p.mu.Unlock()
		}
	}
}

// Partitions implements provider.Member.
func (m *member) Partitions() int { return len(m.p.parts) }

// Owned implements provider.Member. A partition being revoked is no longer
// owned.
func (m *member) Owned() []int32 {
	m.p.mu.RLock()
	defer m.p.mu.RUnlock()
	owned := []int32{}
	for x, s := range m.g.slots {
		if s.owner == m && !s.revoking {
			owned = append(owned, int32(x))
		}
	}
	return owned
}

// AwaitStable implements provider.Member. The log has no transactions to
// settle, so it returns at once.
func (m *member) AwaitStable(ctx context.Context, partitions []int32) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.p.mu.RLock()
	defer m.p.mu.RUnlock()
	if m.p.closed || m.closed {
		return provider.ErrClosed
	}
	for _, x := range partitions {
		if x < 0 || int(x) >= len(m.p.parts) {
			return fmt.Errorf("memory: await stable: no partition %d (topic has %d)", x, len(m.p.parts))
		}
	}
	return nil
}

// Append implements provider.Member: the ownership check and the write
// happen under one lock, so the append is atomic and fenced. Records are
// copied, as by Provider.Append.
func (m *member) Append(ctx context.Context, records []event.Record) ([]provider.Position, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := checkKeys(records); err != nil {
		return nil, err
	}
	p := m.p
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed || m.closed {
		return nil, provider.ErrClosed
	}
	g := m.g
	if m.expelled {
		return nil, fmt.Errorf("memory: group %q: member %q was expelled: %w", g.name, m.cfg.Instance, provider.ErrNotOwner)
	}
	for i, r := range records {
		x := provider.PartitionFor(r.Key, len(p.parts))
		if s := &g.slots[x]; s.owner != m || s.revoking {
			return nil, fmt.Errorf("memory: group %q generation %d: append record %d: partition %d: %w",
				g.name, g.generation, i, x, provider.ErrNotOwner)
		}
	}
	return p.appendLocked(records, -1), nil
}

// Owners implements provider.Member. A partition being revoked has no
// owner until its next one is assigned.
func (m *member) Owners(ctx context.Context) (map[int32]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.p.mu.RLock()
	defer m.p.mu.RUnlock()
	if m.p.closed { // a closed member still answers (provider.Member)
		return nil, provider.ErrClosed
	}
	owners := make(map[int32]string)
	for x, s := range m.g.slots {
		if s.owner != nil && !s.revoking {
			owners[int32(x)] = s.owner.cfg.Address
		}
	}
	return owners, nil
}

// Close implements provider.Member. It returns once the member's callbacks
// have run and its partitions are handed on (the others' OnAssigned may
// still be on their way), so it must not be called from a callback.
func (m *member) Close() error {
	p := m.p
	p.mu.Lock()
	if m.closed {
		p.mu.Unlock()
		<-m.done
		return nil
	}
	m.closed = true
	g := m.g
	if !m.expelled {
		// Leaving is a membership change like any other: the others'
		// targets take m's partitions, and converge revokes them from m.
		g.members = slices.DeleteFunc(g.members, func(o *member) bool { return o == m })
		g.rebalance()
	}
	delete(p.members, m)
	m.stopLocked()
	p.mu.Unlock()
	<-m.done
	return nil
}
