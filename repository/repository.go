package repository

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"reflect"
	"sync"
	"sync/atomic"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/provider"
)

// Command decides, from an aggregate's current state, which events happen.
// It returns their payloads (values of registered types) in order; none means
// nothing changes. A command runs under the aggregate's lock and must not
// call the repository for the same aggregate. Its error is returned as is
// and nothing is appended.
type Command[A any] func(state A) ([]any, error)

// Cloner is implemented by aggregate types holding maps or slices: Get and
// commands then see a deep copy instead of a shallow one.
type Cloner[A any] interface {
	Clone() A
}

// Result is what an Execute or Create did.
type Result struct {
	// Version is the aggregate's version after the command.
	Version uint64
	// Positions are where the events were appended, in order.
	Positions []provider.Position
	// Events are the events appended, in order, as a restore reads them:
	// Partition and Offset set, Payload encoded (Registry.Decode gives the
	// value). Empty when the command returned no events.
	Events []event.Envelope
}

// Repository keeps aggregates of type A in memory, restored from a provider
// and changed by commands whose events are appended before they are applied.
// It is safe for concurrent use; commands for one aggregate run one at a time,
// commands for different aggregates run in parallel.
//
// Without WithGroup a Repository owns its whole topic: run one per topic that
// executes commands (others may Follow read-only). With WithGroup, any number
// of instances share the topic's partitions, and the log refuses a stale
// owner.
type Repository[A any] struct {
	p        provider.Provider
	reg      *event.Registry
	kinds    map[string]kind[A] // by event type name: the types it handles
	settings settings
	log      *slog.Logger

	parts []*partition[A] // by partition id; set by Restore
	// partitions is len(parts) once set, for PartitionOf at any time.
	partitions atomic.Int32
	ready      chan struct{}
	state      atomic.Int32 // restore state: idle, restoring, ready, failed; closed
	closer     *closer

	// group is the membership under WithGroup, nil otherwise.
	group *membership
	// held counts the aggregates in memory, against WithLimits.
	held heldCount
	// snaps is set under WithSnapshots.
	snaps *snapshots

	progress progressTracker
	statsMu  sync.Mutex
	stats    Stats // of the restores done; Aggregates is counted on demand
	// partStats is how each partition was last restored, under statsMu.
	partStats map[int32]PartitionStats
}

const (
	stateIdle int32 = iota
	stateRestoring
	stateReady
	stateFailed
	stateClosed // for good: Close
)

// New returns a repository of aggregates of type A on provider p, decoding
// events with reg. Give every event type a handler with On (or mark it with
// Deletes). Call Restore before serving.
func New[A any](p provider.Provider, reg *event.Registry, opts ...Option) (*Repository[A], error) {
	if p == nil || reg == nil {
		return nil, errors.New("repository: nil provider or registry")
	}
	r := &Repository[A]{
		p:      p,
		reg:    reg,
		kinds:  make(map[string]kind[A]),
		ready:  make(chan struct{}),
		closer: newCloser(),
	}
	for _, o := range opts {
		o.apply(&r.settings)
	}
	var errs []error
	for _, h := range r.settings.handlers {
		spec, ok := h.(handlerSpec[A])
		if ok && spec.eventType.Kind() == reflect.Pointer {
			errs = append(errs, fmt.Errorf("repository: handler for %v: take the event by value, not by pointer", spec.eventType))
			continue
		}
		if !ok {
			errs = append(errs, fmt.Errorf("repository: a handler is for aggregate type %s, not %s",
				reflect.TypeOf(h).String(), reflect.TypeFor[A]()))
			continue
		}
		name, err := reg.TypeName(reflect.Zero(spec.eventType).Interface())
		if err != nil {
			errs = append(errs, fmt.Errorf("repository: handler for %v: %w", spec.eventType, err))
			continue
		}
		k := r.kinds[name]
		if k.apply != nil {
			errs = append(errs, fmt.Errorf("repository: two handlers for %s", name))
		}
		k.apply = spec.apply
		r.kinds[name] = k
	}
	for _, typ := range r.settings.deletes {
		name, err := reg.TypeName(reflect.Zero(typ).Interface())
		if err != nil {
			errs = append(errs, fmt.Errorf("repository: deleting event %v: %w", typ, err))
			continue
		}
		k := r.kinds[name]
		k.deletes = true
		r.kinds[name] = k
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if s := r.settings.snapshots; s != nil {
		var err error
		if r.snaps, err = newSnapshots[A](s, reg.Codec()); err != nil {
			return nil, err
		}
	}
	if r.settings.limits.Aggregates < 0 {
		return nil, fmt.Errorf("repository: WithLimits: %d aggregates", r.settings.limits.Aggregates)
	}
	r.held.max = r.settings.limits.Aggregates
	if r.settings.observer == nil {
		r.settings.observer = noObserver{}
	}
	r.log = r.settings.logger
	if r.log == nil {
		r.log = slog.New(slog.DiscardHandler)
	}
	return r, nil
}

// Ready is closed once Restore has succeeded.
func (r *Repository[A]) Ready() <-chan struct{} { return r.ready }

func (r *Repository[A]) isReady() bool { return r.state.Load() == stateReady }

// partitionOf returns the partition an aggregate's events go to.
func (r *Repository[A]) partitionOf(id string) *partition[A] {
	return r.parts[provider.PartitionFor([]byte(id), len(r.parts))]
}

// PartitionOf returns the partition of the topic that holds aggregate id's
// events (the murmur2 hash of id modulo the partitions), or -1, no
// partition, while the repository does not know how many partitions the
// topic has: until Restore has read them, which it does first. From then on
// it answers whatever the state: during Restore, after a failed one, after
// Close.
func (r *Repository[A]) PartitionOf(id string) int32 {
	n := r.partitions.Load()
	if n == 0 {
		return -1
	}
	return provider.PartitionFor([]byte(id), int(n))
}

// enter returns id's partition with its gate held for reading, or a
// *PartitionError when this instance does not serve it.
func (r *Repository[A]) enter(id string) (*partition[A], error) {
	pt := r.partitionOf(id)
	pt.gate.RLock()
	switch pt.status.Load() {
	case partServing:
		return pt, nil
	case partRestoring:
		pt.gate.RUnlock()
		return nil, &PartitionError{AggregateID: id, Partition: pt.id, Err: ErrNotReady}
	}
	pt.gate.RUnlock()
	return nil, &PartitionError{AggregateID: id, Partition: pt.id, Err: provider.ErrNotOwner}
}

func (r *Repository[A]) copyOf(s *A) A {
	if c, ok := any(s).(Cloner[A]); ok {
		return c.Clone()
	}
	if c, ok := any(*s).(Cloner[A]); ok {
		return c.Clone()
	}
	return *s
}

// Get returns a copy of the aggregate's state and its version, or an error
// wrapping ErrNotFound (also for a deleted aggregate), ErrNotReady or
// ErrClosed.
func (r *Repository[A]) Get(id string) (A, uint64, error) {
	var zero A
	if err := r.readiness(); err != nil {
		return zero, 0, err
	}
	pt, err := r.enter(id)
	if err != nil {
		return zero, 0, err
	}
	defer pt.gate.RUnlock()
	e, _ := pt.lock(id, false)
	if e == nil {
		return zero, 0, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	defer e.mu.Unlock()
	if err := e.mustExist(id); err != nil {
		return zero, 0, err
	}
	return r.copyOf(&e.state), e.version, nil
}

// Len returns the number of aggregates, deleted ones excluded; 0 before the
// restore.
func (r *Repository[A]) Len() int {
	n := 0
	r.Range(func(string, A, uint64) bool { n++; return true })
	return n
}

// Range calls fn with a copy of each aggregate (deleted ones excluded) until
// fn returns false. Aggregates are visited one at a time under their lock; the
// set may change while Range runs. Before the restore it visits nothing.
func (r *Repository[A]) Range(fn func(id string, state A, version uint64) bool) {
	if !r.isReady() {
		return
	}
	for _, pt := range r.parts {
		if pt.status.Load() != partServing {
			continue
		}
		for id, e := range pt.entries() {
			e.mu.Lock()
			ok := e.version > 0 && !e.deleted && !e.removed
			var s A
			v := e.version
			if ok {
				s = r.copyOf(&e.state)
			}
			e.mu.Unlock()
			if ok && !fn(id, s, v) {
				return
			}
		}
	}
}

// Create runs cmd for a new aggregate id (cmd sees the zero A) and appends
// its events as versions 1, 2, …. It fails with ErrExists if id exists or was
// deleted. See Execute for how events are appended.
func (r *Repository[A]) Create(ctx context.Context, id string, cmd Command[A], opts ...ExecOption) (Result, error) {
	return r.execute(ctx, id, true, cmd, opts)
}

// Execute runs cmd on the current state of aggregate id and appends the
// events it returns, versioned from the aggregate's version + 1. Memory
// changes only once the log has acknowledged every event; on any error it is
// exactly as before. Errors:
//
//   - ErrNotFound (missing or deleted id), ErrNotReady, ErrClosed, a *ConcurrencyError
//     (with ExpectVersion), event.ErrInvalid (a payload's Validate failed),
//     event.ErrUnknownType, or cmd's own error: nothing was appended;
//   - provider.ErrOutcomeUnknown (checked first: it may come with
//     provider.ErrUnavailable): the events may have been written. The
//     aggregate takes no command until the repository has read its
//     partition to find out, which the next command for it does first;
//   - other provider errors (provider.ErrUnavailable without
//     ErrOutcomeUnknown, …): nothing was written.
func (r *Repository[A]) Execute(ctx context.Context, id string, cmd Command[A], opts ...ExecOption) (Result, error) {
	return r.execute(ctx, id, false, cmd, opts)
}

func (r *Repository[A]) execute(ctx context.Context, id string, create bool, cmd Command[A], opts []ExecOption) (res Result, err error) {
	ctx, done := r.settings.observer.Command(ctx, id, create)
	defer func() { done(len(res.Events), err) }()
	if err := r.readiness(); err != nil {
		return Result{}, err
	}
	if id == "" {
		return Result{}, errors.New("repository: empty aggregate id")
	}
	var es execSettings
	for _, o := range opts {
		o.applyExec(&es)
	}
	pt, err := r.enter(id)
	if err != nil {
		return Result{}, err
	}
	defer pt.gate.RUnlock()
	e, err := pt.lock(id, create)
	if err != nil {
		return Result{}, err
	}
	if e == nil {
		return Result{}, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	defer e.mu.Unlock()
	if create {
		defer pt.removeIfUnborn(id, e) // runs before the unlock
	}
	if e.unresolved != nil {
		if err := r.resolve(ctx, pt, id, e); err != nil {
			return Result{}, err
		}
	}
	if create {
		if e.version > 0 {
			return Result{}, fmt.Errorf("%w: %s (version %d, deleted %t)", ErrExists, id, e.version, e.deleted)
		}
		if e.otherType != "" {
			return Result{}, fmt.Errorf("%w: %s is an aggregate of type %s on this topic", ErrExists, id, e.otherType)
		}
	} else if err := e.mustExist(id); err != nil {
		return Result{}, err
	}
	if es.hasExpected && es.expected != e.version {
		return Result{}, &ConcurrencyError{AggregateID: id, Expected: es.expected, Actual: e.version}
	}
	payloads, err := cmd(r.copyOf(&e.state))
	if err != nil {
		return Result{}, err
	}
	if len(payloads) == 0 {
		return Result{Version: e.version}, nil
	}
	metadata := es.metadata
	if inj, ok := r.settings.observer.(MetadataInjector); ok {
		metadata = maps.Clone(metadata)
		if metadata == nil {
			metadata = make(map[string]string, 2)
		}
		inj.InjectMetadata(ctx, metadata)
	}
	records, envs, decoded, err := r.encode(id, e.version, payloads, metadata)
	if err != nil {
		return Result{}, err
	}
	pos, err := r.appendTracked(ctx, pt, e, records)
	if err != nil {
		return Result{}, fmt.Errorf("repository: %s: append %d events at version %d: %w", id, len(records), e.version+1, err)
	}
	for i, payload := range decoded {
		envs[i].Partition, envs[i].Offset = pos[i].Partition, pos[i].Offset
		r.apply(e, &envs[i], payload)
	}
	e.version += uint64(len(records))
	e.written = true
	pt.changes.Add(int64(len(records)))
	e.offset = pos[len(pos)-1].Offset
	return Result{Version: e.version, Positions: pos, Events: envs}, nil
}

// encode validates and encodes payloads as the events after version, and
// decodes them back: memory is changed with exactly what a restore would
// read, never with a value the codec cannot carry.
func (r *Repository[A]) encode(id string, version uint64, payloads []any, metadata map[string]string) (records []event.Record, envs []event.Envelope, decoded []any, err error) {
	records = make([]event.Record, len(payloads))
	envs = make([]event.Envelope, len(payloads))
	decoded = make([]any, len(payloads))
	for i, payload := range payloads {
		env, err := r.reg.NewEnvelope(id, version+uint64(i)+1, payload)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("repository: %s: event %d: %w", id, i+1, err)
		}
		k, ok := r.kinds[env.Type]
		if !ok {
			return nil, nil, nil, fmt.Errorf("repository: %s: event %s has no handler (repository.On)", id, env.Type)
		}
		if k.deletes && i != len(payloads)-1 {
			return nil, nil, nil, fmt.Errorf("repository: %s: deleting event %s must be the command's last", id, env.Type)
		}
		env.AggregateType = r.settings.aggregateType
		env.Metadata = metadata
		if decoded[i], err = r.reg.Decode(&env); err != nil {
			return nil, nil, nil, fmt.Errorf("repository: %s: %s does not survive its codec: %w", id, env.Type, err)
		}
		records[i] = env.Record()
		envs[i] = env
	}
	return records, envs, decoded, nil
}
