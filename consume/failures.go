package consume

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/provider"
)

// Headers a dead-lettered record carries besides its own.
const (
	HeaderDeadLetterError     = "dead-letter-error"     // the handler's last error
	HeaderDeadLetterPartition = "dead-letter-partition" // where the record was read
	HeaderDeadLetterOffset    = "dead-letter-offset"
	HeaderDeadLetterAttempts  = "dead-letter-attempts" // how often the handler failed on it
)

// Failures says what EachRecord does when a projection's handler fails on a
// record. The zero value stops at the first failure.
type Failures struct {
	// Retries is how many times a failing record is handled again before
	// it is given up, waiting Backoff (default 100 ms) before the first
	// retry and doubling up to MaxBackoff (default 10 s).
	Retries             int
	Backoff, MaxBackoff time.Duration
	// DeadLetter, if set, is where a record given up goes — a provider on
	// a dead-letter topic — with its key, value and headers and the
	// dead-letter-* headers; the stream then goes on with the next record.
	// Unset, a record given up stops the stream with an *event.RecordError
	// naming it.
	DeadLetter provider.Provider
	// OnRetry and OnDeadLetter, if set, are called for each retry and each
	// record dead-lettered (for metrics and readiness).
	OnRetry      func(rec event.Record, err error)
	OnDeadLetter func(rec event.Record, err error)
}

// EachRecord returns a Stream or Read callback that calls handle with each
// record of a batch in order, and applies f when it fails: retries with
// back-off, then a dead-letter topic or a stop. Waits between retries end
// with ctx. Writing a dead letter that fails stops the stream: a record is
// never skipped without being kept somewhere.
func EachRecord(ctx context.Context, f Failures, handle func(event.Record) error) func(provider.Batch) error {
	if f.Backoff <= 0 {
		f.Backoff = 100 * time.Millisecond
	}
	if f.MaxBackoff <= 0 {
		f.MaxBackoff = 10 * time.Second
	}
	return func(b provider.Batch) error {
		for _, rec := range b.Records {
			if err := f.handle(ctx, rec, handle); err != nil {
				return err
			}
		}
		return nil
	}
}

func (f *Failures) handle(ctx context.Context, rec event.Record, handle func(event.Record) error) error {
	err := handle(rec)
	attempts := 1
	for backoff := f.Backoff; err != nil && attempts <= f.Retries; backoff = min(2*backoff, f.MaxBackoff) {
		if f.OnRetry != nil {
			f.OnRetry(rec, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(backoff):
		}
		err = handle(rec)
		attempts++
	}
	if err == nil {
		return nil
	}
	if f.DeadLetter == nil {
		if re := (*event.RecordError)(nil); errors.As(err, &re) {
			return err
		}
		return &event.RecordError{Partition: rec.Partition, Offset: rec.Offset, Err: fmt.Errorf("after %d attempts: %w", attempts, err)}
	}
	dead := event.Record{
		Key: rec.Key, Value: rec.Value,
		Headers: append(append([]event.Header(nil), rec.Headers...),
			event.Header{Key: HeaderDeadLetterError, Value: []byte(err.Error())},
			event.Header{Key: HeaderDeadLetterPartition, Value: strconv.AppendInt(nil, int64(rec.Partition), 10)},
			event.Header{Key: HeaderDeadLetterOffset, Value: strconv.AppendInt(nil, rec.Offset, 10)},
			event.Header{Key: HeaderDeadLetterAttempts, Value: strconv.AppendInt(nil, int64(attempts), 10)}),
	}
	if len(dead.Key) == 0 {
		dead.Key = []byte(strconv.Itoa(int(rec.Partition)) + "/" + strconv.FormatInt(rec.Offset, 10))
	}
	if _, derr := f.DeadLetter.Append(ctx, []event.Record{dead}); derr != nil {
		return &event.RecordError{Partition: rec.Partition, Offset: rec.Offset,
			Err: fmt.Errorf("dead letter not written (%v) for: %w", derr, err)}
	}
	if f.OnDeadLetter != nil {
		f.OnDeadLetter(rec, err)
	}
	return nil
}
