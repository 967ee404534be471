package event

import (
	"fmt"
	"reflect"
)

// Handlers dispatches records to typed functions, one per event type: what a
// projection (a read model) needs. Add every handler before use; after that
// Handlers is read-only and safe for concurrent use.
type Handlers struct {
	reg         *Registry
	byName      map[string]func(*Envelope, any) error
	skipUnknown bool
}

// HandlersOption configures Handlers.
type HandlersOption interface{ applyHandlers(*Handlers) }

type handlersOptionFunc func(*Handlers)

func (f handlersOptionFunc) applyHandlers(h *Handlers) { f(h) }

// SkipUnhandled makes Handle skip records of event types that have no
// handler (a projection reads what it needs from a shared topic) instead of
// failing with ErrUnknownType.
func SkipUnhandled() HandlersOption {
	return handlersOptionFunc(func(h *Handlers) { h.skipUnknown = true })
}

// NewHandlers returns handlers decoding with reg. A record of an event type
// without a handler is an ErrUnknownType error, unless SkipUnhandled.
func NewHandlers(reg *Registry, opts ...HandlersOption) *Handlers {
	h := &Handlers{reg: reg, byName: make(map[string]func(*Envelope, any) error)}
	for _, o := range opts {
		o.applyHandlers(h)
	}
	return h
}

// AddHandler adds fn as the projection handler of events of type T, which
// must be registered. (An aggregate's fold is repository.On.)
func AddHandler[T any](h *Handlers, fn func(env *Envelope, e T) error) error {
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
	h.byName[name] = func(env *Envelope, payload any) error { return fn(env, *payload.(*T)) }
	return nil
}

// Handle parses rec, decodes its payload and calls its type's handler. It
// reports whether a handler ran; control records are skipped. Errors are *RecordError naming the record's
// partition and offset.
func (h *Handlers) Handle(rec Record) (bool, error) {
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
	if err := fn(&env, payload); err != nil {
		return false, &RecordError{rec.Partition, rec.Offset, fmt.Errorf("aggregate %s: %s: %w", env.AggregateID, env.Type, err)}
	}
	return true, nil
}
