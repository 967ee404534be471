package repository

import (
	"log/slog"

	"github.com/rehydrate/rehydrate/event"
	"reflect"
	"time"
)

// Option configures a Repository.
type Option interface{ apply(*settings) }

type optionFunc func(*settings)

func (f optionFunc) apply(s *settings) { f(s) }

type settings struct {
	handlers         []any // handlerSpec[A] for the repository's A
	deletes          []reflect.Type
	logger           *slog.Logger
	batchSize        int
	progress         func(Progress)
	progressInterval time.Duration
	skipUnknown      bool
	aggregateType    string
	group            *Group
	snapshots        *snapshotSettings
	limits           Limits
	observer         Observer
}

// handlerSpec is what On records; New checks that its A is the repository's.
type handlerSpec[A any] struct {
	eventType reflect.Type
	apply     func(state *A, payload any, env *event.Envelope)
}

// On registers how events of type E change an aggregate of type A. E must be
// registered in the repository's event registry. Handlers run under the
// aggregate's lock, during restore, follow and after an append is
// acknowledged; they cannot fail, because events are facts.
//
// State is updated in place: a handler that changes a map or slice held by A
// must copy it first (copy on write) if callers keep values from Get.
func On[A, E any](apply func(state *A, e E)) Option {
	return OnEnvelope(func(state *A, _ *event.Envelope, e E) { apply(state, e) })
}

// OnEnvelope is On for a handler that also reads the event's envelope: its
// time, metadata, version, and the partition and offset it was written at.
// The handler must not keep env or change it. The envelope comes before the
// event, as in a projection's handler (event.AddHandler): what the event is
// about first, the event last.
func OnEnvelope[A, E any](apply func(state *A, env *event.Envelope, e E)) Option {
	spec := handlerSpec[A]{
		eventType: reflect.TypeFor[E](),
		apply:     func(state *A, payload any, env *event.Envelope) { apply(state, env, *payload.(*E)) },
	}
	return optionFunc(func(s *settings) { s.handlers = append(s.handlers, spec) })
}

// Deletes marks events of type E as deleting their aggregate: after its
// handler (if any) runs, the aggregate is gone for Get and commands, restore
// and follow remove it, and its id cannot be created again.
func Deletes[E any]() Option {
	return optionFunc(func(s *settings) { s.deletes = append(s.deletes, reflect.TypeFor[E]()) })
}

// WithLogger sets the logger for restore progress and problems. The default
// discards.
func WithLogger(l *slog.Logger) Option {
	return optionFunc(func(s *settings) { s.logger = l })
}

// WithBatchSize sets how many records a restore or follow reads per batch; 0
// leaves the provider's default, chosen by measurement.
func WithBatchSize(n int) Option {
	return optionFunc(func(s *settings) { s.batchSize = n })
}

// WithProgress has fn called with the restore's progress at most every
// interval (0 means 250 ms), and once at the end. fn is never called
// concurrently.
func WithProgress(interval time.Duration, fn func(Progress)) Option {
	return optionFunc(func(s *settings) { s.progress, s.progressInterval = fn, interval })
}

// WithSkipUnknownTypes makes restore and follow skip events whose type is not
// registered, counting them in Stats.Skipped, instead of failing. Use it for
// a topic shared with event types this service does not care about.
func WithSkipUnknownTypes() Option {
	return optionFunc(func(s *settings) { s.skipUnknown = true })
}

// WithAggregateType writes name in the aggregate-type header of every event
// this repository appends, and lets one registry and one topic carry several
// aggregate types: restore and follow skip events whose aggregate-type
// header names another type, or that have none (written before types) and
// are of a registered event type this repository has no handler for
// (counted in Stats.Skipped; other events without the header are this
// repository's, as on topics written before types), and
// such an id cannot be created by this repository (ErrExists), so two types
// never share an id's version sequence. The refusal rests on what the
// repository has read: ids created concurrently by another type's writer
// are not seen until a restore. Give each type its own id space (UUIDs do)
// or its own topic where that matters.
func WithAggregateType(name string) Option {
	return optionFunc(func(s *settings) { s.aggregateType = name })
}

// ExecOption configures one Execute or Create call.
type ExecOption interface{ applyExec(*execSettings) }

type execOptionFunc func(*execSettings)

func (f execOptionFunc) applyExec(s *execSettings) { f(s) }

type execSettings struct {
	expected    uint64
	hasExpected bool
	metadata    map[string]string
}

// ExpectVersion makes the command fail with a *ConcurrencyError unless the
// aggregate is at version v when the command runs (optimistic concurrency).
func ExpectVersion(v uint64) ExecOption {
	return execOptionFunc(func(s *execSettings) { s.expected, s.hasExpected = v, true })
}

// WithMetadata attaches metadata (correlation and causation ids and the like)
// to every event the command raises. It travels in meta-* headers.
func WithMetadata(m map[string]string) ExecOption {
	return execOptionFunc(func(s *execSettings) { s.metadata = m })
}
