package repository

import (
	"fmt"
	"strings"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/provider"
)

type readCounts struct {
	events, duplicates, skipped, bytes int64
}

// applyBatch applies a batch read from the log. follow is set when the
// repository is live: it then checks for another writer's events.
func (r *Repository[A]) applyBatch(pt *partition[A], b provider.Batch, c *readCounts, follow bool) error {
	// One envelope for the batch: handlers do not keep theirs (OnEnvelope),
	// and one escaping to the heap per event (handlers are func values)
	// was a restore's most frequent allocation after the payloads.
	env := new(event.Envelope)
	for i := range b.Records {
		if err := r.applyRecord(pt, &b.Records[i], env, c, follow); err != nil {
			return err
		}
	}
	pt.changes.Add(int64(len(b.Records)))
	pt.applied.Store(b.Next)
	return nil
}

// applyRecord applies one record, decoded into env.
func (r *Repository[A]) applyRecord(pt *partition[A], rec *event.Record, env *event.Envelope, c *readCounts, follow bool) error {
	c.bytes += int64(len(rec.Key) + len(rec.Value))
	for _, h := range rec.Headers {
		c.bytes += int64(len(h.Key) + len(h.Value))
	}
	if rec.Partition != pt.id {
		return &event.RecordError{Partition: rec.Partition, Offset: rec.Offset,
			Err: fmt.Errorf("record delivered for partition %d", pt.id)}
	}
	if event.IsControl(*rec) {
		return nil
	}
	parsed, payload, skip, err := r.decode(rec)
	*env = parsed
	if err != nil || skip {
		if skip {
			c.skipped++
			if r.otherType(env) {
				return r.noteOtherType(pt, env)
			}
		}
		return err
	}
	if want := provider.PartitionFor(rec.Key, len(r.parts)); want != pt.id {
		return &event.RecordError{Partition: rec.Partition, Offset: rec.Offset, Err: fmt.Errorf(
			"aggregate %s belongs in partition %d (murmur2 of the key), not %d: the writer used another partitioner, or partitions were added to the topic",
			env.AggregateID, want, pt.id)}
	}
	e, err := pt.lock(env.AggregateID, true)
	if err != nil {
		return &event.RecordError{Partition: rec.Partition, Offset: rec.Offset, Err: err}
	}
	defer e.mu.Unlock()
	applied, err := r.applyEnvelope(e, env, payload, follow)
	if err != nil {
		return err
	}
	if applied {
		c.events++
	} else {
		c.duplicates++
	}
	return nil
}

// otherType reports an event of another aggregate type (WithAggregateType):
// its aggregate-type header names another type, or it has none (written
// before types) and its event type has no handler here, though registered.
func (r *Repository[A]) otherType(env *event.Envelope) bool {
	t := r.settings.aggregateType
	if t == "" {
		return false
	}
	if env.AggregateType != "" {
		return env.AggregateType != t
	}
	_, handled := r.kinds[env.Type]
	return !handled && r.reg.Known(env.Type)
}

// noteOtherType remembers that the topic holds an aggregate of another type
// under env's id, so that this repository does not create one.
func (r *Repository[A]) noteOtherType(pt *partition[A], env *event.Envelope) error {
	e, err := pt.lock(env.AggregateID, true)
	if err != nil {
		return &event.RecordError{Partition: env.Partition, Offset: env.Offset, Err: err}
	}
	defer e.mu.Unlock()
	if e.version == 0 && e.offset < env.Offset {
		e.offset = env.Offset // a snapshot may anchor to it
	}
	if e.version > 0 {
		// The log already has both: restore what is ours, and say so.
		r.log.Warn("an id with events of two aggregate types", "aggregate", env.AggregateID,
			"types", []string{r.settings.aggregateType, env.AggregateType}, "partition", env.Partition, "offset", env.Offset)
		return nil
	}
	e.otherType = strings.Clone(env.AggregateType) // it shares the record's strings' allocation
	if e.otherType == "" {
		e.otherType = "unnamed (its events are " + env.Type + ")"
	}
	return nil
}

// decode parses a record and decodes its payload. skip reports an event
// of another aggregate type (WithAggregateType), or of an unregistered type
// skipped under WithSkipUnknownTypes.
func (r *Repository[A]) decode(rec *event.Record) (env event.Envelope, payload any, skip bool, err error) {
	env, err = event.ParseRecord(*rec)
	if err != nil {
		return env, nil, false, err
	}
	env.Type, _ = r.reg.CurrentName(env.Type) // a former name is handled as the type's
	if r.otherType(&env) {
		return env, nil, true, nil
	}
	if _, handled := r.kinds[env.Type]; !handled {
		// Every handled type is registered (New checks it): only an
		// unhandled one may be unknown.
		if !r.reg.Known(env.Type) {
			if r.settings.skipUnknown {
				return env, nil, true, nil
			}
			return env, nil, false, &event.RecordError{Partition: rec.Partition, Offset: rec.Offset,
				Err: fmt.Errorf("aggregate %s: %w: %q", env.AggregateID, event.ErrUnknownType, env.Type)}
		}
		return env, nil, false, &event.RecordError{Partition: rec.Partition, Offset: rec.Offset,
			Err: fmt.Errorf("aggregate %s: event type %s has no handler", env.AggregateID, env.Type)}
	}
	payload, err = r.reg.Decode(&env)
	if err != nil {
		return env, nil, false, &event.RecordError{Partition: rec.Partition, Offset: rec.Offset,
			Err: fmt.Errorf("aggregate %s: %w", env.AggregateID, err)}
	}
	return env, payload, false, nil
}

// applyEnvelope applies one event read from the log to its locked entry. It
// returns false for a duplicate (a version not newer than the entry's).
func (r *Repository[A]) applyEnvelope(e *entry[A], env *event.Envelope, payload any, follow bool) (bool, error) {
	fail := func(format string, args ...any) (bool, error) {
		return false, &event.RecordError{Partition: env.Partition, Offset: env.Offset,
			Err: fmt.Errorf("aggregate %s: "+format, append([]any{env.AggregateID}, args...)...)}
	}
	switch {
	case env.Version <= e.version:
		if follow && e.written && (env.Offset > e.offset || env.Version == e.version && env.Offset != e.offset) {
			return fail("%w: version %d, which this instance wrote at offset %d", ErrConflictingWriter, env.Version, e.offset)
		}
		return false, nil
	case env.Version != e.version+1:
		return fail("version gap: event version %d after version %d", env.Version, e.version)
	case e.deleted:
		return fail("event %s (version %d) after the aggregate was deleted", env.Type, env.Version)
	}
	r.apply(e, env, payload)
	e.version = env.Version
	e.offset = env.Offset
	return true, nil
}

// kind is what an event type does to an aggregate: its handler (On), or
// deleting it (Deletes), or both.
type kind[A any] struct {
	apply   func(*A, any, *event.Envelope) // nil without On
	deletes bool
}

// apply runs the handler of an event type on a locked entry.
func (r *Repository[A]) apply(e *entry[A], env *event.Envelope, payload any) {
	k := r.kinds[env.Type]
	if k.apply != nil {
		k.apply(&e.state, payload, env)
	}
	if k.deletes {
		var zero A
		e.state, e.deleted = zero, true
	}
}
