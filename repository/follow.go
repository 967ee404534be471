package repository

import (
	"context"
	"errors"

	"github.com/rehydrate/rehydrate/provider"
)

// Follow applies, until ctx ends, the events appended after the restore by
// other writers (a standby instance stays current this way); events this
// instance wrote are skipped as duplicates. It returns ctx's error, or the
// first error that stops it (an undecodable record, a version gap,
// ErrConflictingWriter), naming partition and offset; ErrClosed once Close
// is called.
func (r *Repository[A]) Follow(ctx context.Context) error {
	if err := r.readiness(); err != nil {
		return err
	}
	if r.group != nil {
		return errors.New("repository: Follow: a group member is the only writer of the partitions it serves: there is nothing to follow")
	}
	ranges := make([]provider.Range, len(r.parts))
	for i, pt := range r.parts {
		ranges[i] = provider.Range{Partition: pt.id, Start: pt.applied.Load(), End: provider.Follow}
	}
	ctx, end, err := r.closer.begin(ctx) // Close cancels it, and waits
	if err != nil {
		return err
	}
	defer end()
	var c readCounts
	err = r.p.Read(ctx, ranges, r.settings.batchSize, func(b provider.Batch) error {
		return r.applyBatch(r.parts[b.Partition], b, &c, true)
	})
	if errors.Is(context.Cause(ctx), ErrClosed) {
		return ErrClosed
	}
	if err != nil && ctx.Err() == nil {
		r.log.Error("follow stopped", "err", err)
	}
	return err
}
