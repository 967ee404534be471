package projection

import (
	"context"
	"errors"
	"slices"
	"time"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/provider"
)

// What a store failure does, and what a retry must settle first.
//
// A store failure (the database unreachable, a connection cut, the server
// ending a transaction, a deadlock, a failed COMMIT) is not the record's
// fault: it is never counted against the record nor dead-lettered. The
// runner tries the batch again, waiting Failures.Backoff, doubled each time
// up to Failures.MaxBackoff, at most Failures.Retries times, and then stops
// the projection with a *StoreError naming the partition and its checkpoint.
// It stops the whole Run rather than dropping the one partition on purpose:
// in a group the reader then leaves, and the group moves its partitions to
// readers that can reach the database; a reader that stayed a member
// without serving a partition would leave it unserved, since the group
// keeps it assigned to a member that answers.
//
// A COMMIT that failed may have landed. So before a retry the runner reads
// the stored checkpoint: when it has moved into the batch, the records below
// it are committed (by the try that seemed to fail, or by a reader that
// claimed the partition since, whose claim fences this one's next try) and
// the retry takes only the rest. Every retry carries the reader's owner
// token and the checkpoint it holds, so the store refuses it like any
// commit of a reader that lost the partition.

// retrying runs op until it succeeds or fails for another reason than the
// store, retrying store failures as r.cfg.Failures says; giveUp makes the
// error that stops the projection after the last attempt.
func (r *Runner[Tx]) retrying(ctx context.Context, p int32, op func(attempt int) error, giveUp func(attempts int, err error) error) error {
	f := r.cfg.Failures
	backoff, most := f.Backoff, f.MaxBackoff
	if backoff <= 0 {
		backoff = 100 * time.Millisecond
	}
	if most <= 0 {
		most = 10 * time.Second
	}
	for attempt := 1; ; attempt++ {
		err := op(attempt)
		if err == nil || !storeFailure(ctx, err) {
			return err
		}
		r.mu.Lock()
		r.storeFailures++
		r.mu.Unlock()
		if attempt > f.Retries {
			return giveUp(attempt, err)
		}
		r.log.Warn("projection: store failed, retrying", "partition", p, "offset", r.progress(p).Next,
			"attempt", attempt, "in", backoff, "err", err)
		select {
		case <-ctx.Done():
			return errors.Join(ctx.Err(), err)
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, most)
	}
}

// storeFailure tells the store's own failures (ErrStoreFailed even inside
// the handler's *event.RecordError) from the handler's (a RecordError once
// the Failures gave up on a record), a refused commit and the end of ctx.
func storeFailure(ctx context.Context, err error) bool {
	if ctx.Err() != nil || errors.Is(err, ErrFenced) {
		return false
	}
	var re *event.RecordError
	return errors.Is(err, ErrStoreFailed) ||
		!errors.As(err, &re) && !errors.Is(err, context.Canceled) && !errors.Is(err, context.DeadlineExceeded)
}

// applyRetrying applies a batch, retrying store failures.
func (r *Runner[Tx]) applyRetrying(ctx context.Context, b provider.Batch) error {
	return r.retrying(ctx, b.Partition, func(attempt int) error {
		if attempt > 1 {
			var err error
			if b, err = r.settle(ctx, b); err != nil {
				return err
			}
		}
		return r.apply(ctx, b)
	}, func(attempts int, err error) error {
		return &StoreError{Projection: r.cfg.Name, Partition: b.Partition, Offset: r.progress(b.Partition).Next, Attempts: attempts, Err: err}
	})
}

// settle reads the stored checkpoint of b's partition after a failed try,
// adopts it when a commit of the try landed after all, and returns what of
// b is left to apply: the records at or after the checkpoint the reader
// holds (the try may also have committed part of the batch and known it).
func (r *Runner[Tx]) settle(ctx context.Context, b provider.Batch) (provider.Batch, error) {
	cps, err := r.cfg.Store.Checkpoints(ctx, r.cfg.Name)
	if err != nil {
		return b, err
	}
	if stored, ok := cps[b.Partition]; ok {
		if held := r.progress(b.Partition).Next; stored > held && stored <= b.Next {
			r.log.Warn("projection: the checkpoint moved during a failed try", "partition", b.Partition, "from", held, "to", stored)
			r.moved([]Move{{Partition: b.Partition, From: held, To: stored}})
		}
	}
	next := r.progress(b.Partition).Next
	i := slices.IndexFunc(b.Records, func(rec event.Record) bool { return rec.Offset >= next })
	if i < 0 {
		i = len(b.Records)
	}
	b.Records = b.Records[i:]
	return b, nil
}
