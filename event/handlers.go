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

// NewHandlers returns handlers decoding with reg. With skipUnknown, records of
// types that have no handler are skipped by Handle; otherwise they are an
// ErrUnknownType error.
func NewHandlers(reg *Registry, skipUnknown bool) *Handlers {
	return &Handlers{reg: reg, byName: make(map[string]func(*Envelope, any) error), skipUnknown: skipUnknown}
}

// On adds fn as the handler of events of type T, which must be registered.
func On[T any](h *Handlers, fn func(env *Envelope, e T) error) error {
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
