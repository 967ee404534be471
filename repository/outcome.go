package repository

import (
	"context"
	"errors"
	"fmt"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/provider"
)

// Unknown append outcomes, in one place.
//
// An append may fail without telling whether its records were written
// (provider.ErrOutcomeUnknown: a timeout, a lost acknowledgement, a commit
// whose answer never came). Memory must then neither apply the events (they
// may not exist) nor let the aggregate take another command at the version
// it had (the events may exist, and the next version would collide).
//
// The invariant: an aggregate whose entry has unresolved set takes no
// command until resolve has read, up to a fence this instance appended
// after the failed append, every record of the aggregate from just past
// *unresolved; events found there are applied, and then unresolved is
// cleared. It holds because:
//
//   - *unresolved is taken before the append leaves: the partition's last
//     acknowledged offset or read position. The failed append, if it
//     landed, landed after every record acknowledged or read by then.
//   - The fence goes through the same producer (or group member) as the
//     append, and a partition's appends are ordered: once the fence is
//     acknowledged, the failed append, if it landed at all, lies before it.
//     Reading to the end offset alone is not enough: a request still on
//     its way to a slow broker can land after such a read.
//   - The aggregate's lock is held from the failed append to the end of
//     resolve, so no other command of it runs in between.
//
// A snapshot relies on the same mark: it lowers its offset below every
// unresolved aggregate's (see snapshotPartition), so that a restore reads
// wherever such an append may have landed.

// append appends through the group member when there is one: fenced, in a
// transaction.
func (r *Repository[A]) append(ctx context.Context, partition int32, records []event.Record) ([]provider.Position, error) {
	if r.group != nil {
		return r.group.member.Append(ctx, records)
	}
	// To the aggregate's partition as the restore counted the topic's
	// partitions (a group member keeps its count at join the same way),
	// not as the client hashes the key with the count it sees now:
	// partitions added while the writer runs would move an aggregate's
	// next events to another partition, which a restart then refuses.
	if pa, ok := r.p.(provider.PartitionAppender); ok {
		return pa.AppendPartition(ctx, partition, records)
	}
	return r.p.Append(ctx, records)
}

// appendTracked appends a command's records for the locked entry e. An
// unknown outcome marks e unresolved; a success moves the partition's
// acknowledged offset.
func (r *Repository[A]) appendTracked(ctx context.Context, pt *partition[A], e *entry[A], records []event.Record) ([]provider.Position, error) {
	after := max(pt.acked.Load(), pt.applied.Load()-1)
	ctx, done := r.settings.observer.Append(ctx, pt.id, len(records))
	pos, err := r.append(ctx, pt.id, records)
	done(err)
	if err != nil {
		if errors.Is(err, provider.ErrOutcomeUnknown) {
			e.unresolved = &after
		}
		return nil, err
	}
	last := pos[len(pos)-1].Offset
	for {
		if cur := pt.acked.Load(); last <= cur || pt.acked.CompareAndSwap(cur, last) {
			return pos, nil
		}
	}
}

// resolve finds out what became of the append that left e unresolved:
// it appends a fence to the aggregate's partition and reads the aggregate's
// records up to it (see the invariant above). e is locked.
func (r *Repository[A]) resolve(ctx context.Context, pt *partition[A], id string, e *entry[A]) error {
	pos, err := r.append(ctx, pt.id, []event.Record{event.FenceRecord(id)})
	if err != nil {
		// This command appended nothing, whatever became of the fence:
		// the fence's own unknown outcome must not reach the caller as
		// this command's (ErrOutcomeUnknown), only why it failed.
		if errors.Is(err, provider.ErrUnavailable) {
			return fmt.Errorf("%w: %s: fence: %w: %v", ErrUnresolved, id, provider.ErrUnavailable, err)
		}
		return fmt.Errorf("%w: %s: fence: %v", ErrUnresolved, id, err)
	}
	fence := pos[0]
	if fence.Partition != pt.id {
		return fmt.Errorf("%w: %s: fence landed in partition %d, not %d: the topic's partitions changed",
			ErrUnresolved, id, fence.Partition, pt.id)
	}
	start := max(*e.unresolved+1, e.offset+1)
	var c readCounts
	err = r.p.Read(ctx, []provider.Range{{Partition: pt.id, Start: start, End: fence.Offset}}, 0, func(b provider.Batch) error {
		for i := range b.Records {
			rec := &b.Records[i]
			if string(rec.Key) != id || event.IsControl(*rec) {
				continue // another aggregate (restore or follow has it), or a fence
			}
			env, payload, skip, err := r.decode(rec)
			if err != nil || skip {
				return err
			}
			if _, err := r.applyEnvelope(e, &env, payload, false); err != nil {
				return err
			}
			c.events++
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrUnresolved, id, err)
	}
	e.unresolved = nil
	e.written = e.written || c.events > 0
	r.log.Info("unknown append outcome resolved", "aggregate", id, "partition", pt.id,
		"from", start, "fence", fence.Offset, "events_found", c.events, "version", e.version)
	return nil
}
