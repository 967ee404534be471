package event

import (
	"context"
	"fmt"
	"reflect"
)

// Handlers dispatches records to typed functions, one per event type: what a
// projection (a read model) needs. Add every handler before use; after that
// Handlers is read-only and safe for concurrent use.
type Handlers struct{ with HandlersWith[struct{}] }

// HandlersWith is Handlers whose functions also take a context and an
// argument given with each record: a projection's database transaction
// (package projection), which exists only while a batch is applied.
type HandlersWith[A any] struct {
	reg         *Registry
	byName      map[string]func(context.Context, A, *Envelope, any) error
	skipUnknown bool
}

// HandlersOption configures Handlers and HandlersWith.
type HandlersOption interface{ applyHandlers(*handlersConfig) }

type handlersConfig struct{ skipUnknown bool }

type handlersOptionFunc func(*handlersConfig)

func (f handlersOptionFunc) applyHandlers(c *handlersConfig) { f(c) }

// SkipUnhandled makes Handle skip records of event types that have no
// handler (a projection reads what it needs from a shared topic) instead of
// failing with ErrUnknownType.
func SkipUnhandled() HandlersOption {
	return handlersOptionFunc(func(c *handlersConfig) { c.skipUnknown = true })
}

// NewHandlers returns handlers decoding with reg. A record of an event type
// without a handler is an ErrUnknownType error, unless SkipUnhandled.
func NewHandlers(reg *Registry, opts ...HandlersOption) *Handlers {
	return &Handlers{with: *NewHandlersWith[struct{}](reg, opts...)}
}

// NewHandlersWith returns handlers decoding with reg whose functions take an
// argument of type A; see NewHandlers.
func NewHandlersWith[A any](reg *Registry, opts ...HandlersOption) *HandlersWith[A] {
	var c handlersConfig
	for _, o := range opts {
		o.applyHandlers(&c)
	}
	return &HandlersWith[A]{reg: reg, byName: make(map[string]func(context.Context, A, *Envelope, any) error), skipUnknown: c.skipUnknown}
}

// AddHandler adds fn as the projection handler of events of type T, which
// must be registered. (An aggregate's fold is repository.On.)
func AddHandler[T any](h *Handlers, fn func(env *Envelope, e T) error) error {
	return AddHandlerWith(&h.with, func(_ context.Context, _ struct{}, env *Envelope, e T) error { return fn(env, e) })
}

// AddHandlerWith adds fn as the handler of events of type T, which must be
// registered.
func AddHandlerWith[T, A any](h *HandlersWith[A], fn func(ctx context.Context, a A, env *Envelope, e T) error) error {
	if reflect.TypeFor[T]().Kind() == reflect.Pointer {
		return fmt.Errorf("event: handler for %v: take the event by value, not by pointer", reflect.TypeFor[T]())
	}
	name, err := h.reg.TypeName(reflect.Zero(reflect.TypeFor[T]()).Interface())
	if err != nil {
		return err
	}
	if _, dup := h.byName[name]; dup {
		return fmt.Errorf("event: two handlers for %s", name)
	}
	h.byName[name] = func(ctx context.Context, a A, env *Envelope, payload any) error {
		return fn(ctx, a, env, *payload.(*T))
	}
	return nil
}

// Handle parses rec, decodes its payload and calls its type's handler. It
// reports whether a handler ran; control records are skipped. Errors are *RecordError naming the record's
// partition and offset.
func (h *Handlers) Handle(rec Record) (bool, error) {
	return h.with.Handle(context.Background(), struct{}{}, rec)
}

// Handle is Handlers.Handle, passing ctx and a to the handler.
func (h *HandlersWith[A]) Handle(ctx context.Context, a A, rec Record) (bool, error) {
	if IsControl(rec) {
		return false, nil
	}
	env, err := ParseRecord(rec)
	if err != nil {
		return false, err
	}
	env.Type, _ = h.reg.CurrentName(env.Type) // an alias dispatches as its type
	fn, ok := h.byName[env.Type]
	if !ok {
		if h.skipUnknown {
			return false, nil
		}
		return false, &RecordError{rec.Partition, rec.Offset, fmt.Errorf("%w: %q has no handler", ErrUnknownType, env.Type)}
	}
	payload, err := h.reg.Decode(&env)
	if err != nil {
		return false, &RecordError{rec.Partition, rec.Offset, err}
	}
	if err := fn(ctx, a, &env, payload); err != nil {
		return false, &RecordError{rec.Partition, rec.Offset, fmt.Errorf("aggregate %s: %s: %w", env.AggregateID, env.Type, err)}
	}
	return true, nil
}
