package repository

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/rehydrate/rehydrate/provider"
)

// Group configures a repository that shares its topic with the other
// instances of a service (WithGroup).
type Group struct {
	// Name is the group's name, the same for every instance of the service.
	// Required.
	Name string
	// Instance names this instance, stable across its restarts (a pod
	// name); empty means a random one. It is the instance's static
	// membership: see provider.GroupConfig.
	Instance string
	// StayOnClose keeps this instance's partitions assigned to it when
	// Close leaves, for an instance that comes back under the same
	// Instance at once; by default Close hands them over to the others.
	// See provider.GroupConfig.
	StayOnClose bool
	// Address is how the other instances reach this one, e.g.
	// "http://10.0.0.7:4000"; Owners reports it. Optional.
	Address string
}

// WithGroup makes the repository one member of a group of instances sharing
// the topic: Restore joins the group, and the instance restores and serves
// only the partitions the group assigns to it, taking more over and giving
// some up as instances come and go. The provider must implement
// provider.Grouper; appends then go through the member, in transactions the
// log fences (see the package documentation, "Several instances").
func WithGroup(g Group) Option {
	return optionFunc(func(s *settings) { s.group = &g })
}

// membership is a repository's life in its group.
type membership struct {
	member provider.Member // set before joined is closed
	joined chan struct{}

	mu     sync.Mutex
	runs   map[int32]*takeover // partitions being restored, by id
	first  chan error          // the first assignment's restore: nil once it served, or why not
	signal sync.Once
}

// takeover restores a set of newly assigned partitions.
type takeover struct {
	parts  []int32
	cancel context.CancelFunc
	done   chan struct{}
}

// join joins the group and returns once the partitions first assigned to
// this instance are restored.
func (r *Repository[A]) join(ctx context.Context) error {
	g, ok := r.p.(provider.Grouper)
	if !ok {
		return fmt.Errorf("repository: WithGroup: provider %T cannot share a topic (it does not implement provider.Grouper)", r.p)
	}
	ps, err := r.p.Partitions(ctx)
	if err != nil {
		return fmt.Errorf("repository: restore: %w", err)
	}
	if err := r.makePartitions(len(ps)); err != nil {
		return err
	}
	// Refuse before joining: a member that can restore nothing would only
	// take partitions away from the others.
	if err := r.checkRetention(ctx); err != nil {
		return fmt.Errorf("repository: restore: %w", err)
	}
	m := &membership{runs: make(map[int32]*takeover), first: make(chan error, 1), joined: make(chan struct{})}
	cfg := r.settings.group
	// The callbacks may run before JoinGroup returns: takeovers wait for
	// joined before they use the member.
	m.member, err = g.JoinGroup(ctx, provider.GroupConfig{
		Group:       cfg.Name,
		Instance:    cfg.Instance,
		StayOnClose: cfg.StayOnClose,
		Address:     cfg.Address,
		OnAssigned:  func(ids []int32) { r.assigned(m, ids) },
		OnRevoked:   func(ids []int32, lost bool) { r.revoked(m, ids, lost) },
	})
	close(m.joined)
	if err != nil {
		return fmt.Errorf("repository: join group %s: %w", cfg.Name, err)
	}
	r.group = m
	if n := m.member.Partitions(); n != len(r.parts) {
		_ = m.member.Close()
		return fmt.Errorf("repository: join group %s: the topic has %d partitions, it had %d", cfg.Name, n, len(r.parts))
	}
	r.log.Info("joined group", "group", cfg.Name, "instance", cfg.Instance)
	select {
	case err = <-m.first:
	case <-ctx.Done():
		err = ctx.Err()
	}
	if err != nil {
		_ = m.member.Close()
		return fmt.Errorf("repository: restore: %w", err)
	}
	return nil
}

// assigned starts restoring partitions the group gave this instance.
func (r *Repository[A]) assigned(m *membership, ids []int32) {
	r.log.Info("partitions assigned", "partitions", ids)
	if len(ids) == 0 {
		m.mu.Lock()
		idle := len(m.runs) == 0
		m.mu.Unlock()
		if idle {
			m.served(nil)
		}
		return
	}
	for _, id := range ids {
		r.parts[id].status.Store(partRestoring)
	}
	r.startTakeover(m, slices.Clone(ids))
}

// served reports the outcome of the first restore to join, once.
func (m *membership) served(err error) {
	m.signal.Do(func() { m.first <- err })
}

// startTakeover restores ids in the background: it waits until no earlier
// owner can still change them, reads them to their end, and serves them.
// Failures are retried with backoff while the partitions stay assigned,
// except before the first restore succeeded: join then fails.
func (r *Repository[A]) startTakeover(m *membership, ids []int32) {
	ctx, cancel := context.WithCancel(context.Background())
	run := &takeover{parts: ids, cancel: cancel, done: make(chan struct{})}
	m.mu.Lock()
	for _, id := range ids {
		m.runs[id] = run
	}
	m.mu.Unlock()
	go func() {
		defer close(run.done)
		defer cancel()
		select {
		case <-m.joined:
		case <-ctx.Done():
			return
		}
		if m.member == nil {
			return // the join failed
		}
		for backoff := 100 * time.Millisecond; ; backoff = min(2*backoff, 10*time.Second) {
			start := time.Now()
			err := r.takeOver(ctx, m.member, ids)
			if err != nil && ctx.Err() != nil {
				return // revoked: revoked restarts what stays assigned
			}
			if err == nil {
				r.log.Info("partitions served", "partitions", ids, "took", time.Since(start))
				m.mu.Lock()
				for _, id := range ids {
					if m.runs[id] == run {
						delete(m.runs, id)
					}
				}
				idle := len(m.runs) == 0
				m.mu.Unlock()
				if idle {
					m.served(nil)
				}
				return
			}
			if r.state.Load() != stateReady {
				m.served(err)
				return
			}
			r.log.Error("takeover failed; retrying", "partitions", ids, "err", err, "in", backoff)
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
		}
	}()
}

func (r *Repository[A]) takeOver(ctx context.Context, member provider.Member, ids []int32) error {
	// The previous owner's last transaction may still be open: only once
	// it is committed or aborted is the partitions' end final.
	if err := member.AwaitStable(ctx, ids); err != nil {
		return fmt.Errorf("await stable offsets of partitions %v: %w", ids, err)
	}
	all, err := r.p.Partitions(ctx)
	if err != nil {
		return err
	}
	ps := make([]provider.Partition, 0, len(ids))
	for _, p := range all {
		if slices.Contains(ids, p.ID) {
			ps = append(ps, p)
		}
	}
	if len(ps) != len(ids) {
		return fmt.Errorf("partitions %v: the topic has only %d partitions", ids, len(all))
	}
	return r.load(ctx, ps)
}

// revoked stops serving partitions the group took away: commands for them
// fail from now on, those in flight end first (the member already refuses
// their appends), then the state is dropped. A restore of them is cancelled;
// partitions restored with them that stay assigned are restored again.
func (r *Repository[A]) revoked(m *membership, ids []int32, lost bool) {
	r.log.Info("partitions revoked", "partitions", ids, "lost", lost)
	m.mu.Lock()
	runs := make(map[*takeover]bool)
	for _, id := range ids {
		if run := m.runs[id]; run != nil {
			runs[run] = true
			delete(m.runs, id)
		}
	}
	m.mu.Unlock()
	// A cancelled run either finished first (its partitions serve) or
	// left them empty; restart those that stay assigned and do not serve.
	var restart []int32
	for run := range runs {
		run.cancel()
		<-run.done
		for _, id := range run.parts {
			if !slices.Contains(ids, id) && r.parts[id].status.Load() != partServing {
				restart = append(restart, id)
			}
		}
	}
	r.stopServing(ids, !lost)
	if len(restart) > 0 {
		r.startTakeover(m, restart)
	}
}

// revokeSnapshotWait bounds the snapshots a revocation hands over, all
// partitions together: the group waits for them (the next owner is assigned
// a partition only after OnRevoked returns), and a missing one only makes
// the next owner read more.
const revokeSnapshotWait = 2 * time.Second

// handOver snapshots a partition given up in a rebalance (WithSnapshots),
// when it changed since its last snapshot, so that its next owner reads
// the state rather than the events since: nothing changes it any more (the
// member refuses its appends from the start of the revocation, and its
// commands in flight have ended), so the snapshot is its final state.
func (r *Repository[A]) handOver(ctx context.Context, pt *partition[A]) {
	if r.snaps == nil || pt.status.Load() != partServing || pt.changes.Load() == 0 || ctx.Err() != nil {
		return
	}
	if err := r.snapshotPartition(ctx, pt); err != nil {
		r.log.Warn("snapshot at revocation failed: the next owner reads more events", "partition", pt.id, "err", err)
	}
}

// Owners returns, for each partition with a known owner in the group, the
// Address that owner gave; ErrNotReady without WithGroup or before Restore.
// After Close it answers what the member answers (while the provider is
// open): where the partitions went, for an instance that has left and
// forwards the commands still reaching it.
func (r *Repository[A]) Owners(ctx context.Context) (map[int32]string, error) {
	if r.group == nil || !r.restored() {
		return nil, ErrNotReady
	}
	return r.group.member.Owners(ctx)
}

// Owned returns the partitions this instance serves now, ascending: every
// partition without WithGroup.
func (r *Repository[A]) Owned() []int32 {
	r.statsMu.Lock()
	parts := r.parts // set by Restore, maybe now
	r.statsMu.Unlock()
	var ids []int32
	for _, pt := range parts {
		if pt.status.Load() == partServing {
			ids = append(ids, pt.id)
		}
	}
	return ids
}

// Close ends the repository for good, with or without a group: from the
// moment it is called every command, Get, Snapshot, Follow and Restore fails
// with ErrClosed (Owners goes on answering what the member knows); a
// Restore or Follow running is cancelled (it returns ErrClosed) and
// commands in flight end first. It stops the background
// snapshots (WithSnapshots: call Snapshot first for a last one) and, with
// WithGroup, leaves the group: every partition is given up so that the other
// instances take them over at once. Then the state is dropped: Len is 0,
// Range and Owned are empty; Stats still tells what was restored. Calling
// Close again does nothing and returns nil. The provider is the caller's to
// close.
func (r *Repository[A]) Close() error {
	r.state.Store(stateClosed) // commands refuse from now on
	if !r.closer.close() {     // cancels Restore and Follow, waits for them
		return nil
	}
	r.snaps.close()
	var err error
	if r.group != nil {
		err = r.group.member.Close()
		if errors.Is(err, provider.ErrClosed) {
			err = nil
		}
	}
	r.stopServing(r.Owned(), false)
	return err
}
