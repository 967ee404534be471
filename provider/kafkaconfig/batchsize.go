package kafkaconfig

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/rehydrate/rehydrate/event"
)

// A broker refuses a whole record batch larger than the topic's
// max.message.bytes, and both clients fail every record of that batch as
// too large: a small record that shared its batch with one too large is
// refused with it. Such a record was not written, and sent again it goes
// in another batch, so it must fail unavailable (worth a retry), not
// refused for what it is. A record keeps the refusal only where it cannot
// fit a batch alone: where it takes more than the topic's
// max.message.bytes, or more than the client's own batch limit. A record
// that would fit only compressed keeps the refusal too: whether it would
// is not known here.

// BatchRefusedError is a record's refusal as too large where the record
// fits a batch alone: it was refused for the batch it shared, and was not
// written. A provider reports it as unavailable, and in a transaction as
// not the culprit.
type BatchRefusedError struct {
	Err         error // the client's error for the record
	Size, Limit int   // the record's bytes alone (at most), and the limit
}

func (e *BatchRefusedError) Error() string {
	return fmt.Sprintf("refused with the record batch it shared (%v); alone, its at most %d bytes fit the limit of %d: sent again it goes in another batch",
		e.Err, e.Size, e.Limit)
}

// IsBatchRefused reports whether err is a BatchRefusedError.
func IsBatchRefused(err error) bool {
	var b *BatchRefusedError
	return errors.As(err, &b)
}

// AloneBytes bounds from above the bytes r takes as the only record of a
// batch: the batch header (61 bytes), the record's key, value and headers,
// and each of their lengths and the record's other fields as varints of at
// most 5 bytes.
func AloneBytes(r event.Record) int {
	n := 61 + 7*5 + len(r.Key) + len(r.Value)
	for _, h := range r.Headers {
		n += 2*5 + len(h.Key) + len(h.Value)
	}
	return n
}

// MessageLimit caches a topic's max.message.bytes, read on the first record
// refused as too large and again after a minute, so that a limit changed
// on the topic is seen. The zero value is ready.
type MessageLimit struct {
	mu    sync.Mutex
	bytes int
	at    time.Time
}

// Refine replaces each error of errs that tooLarge calls a refusal as too
// large, where its record of records fits a batch alone, with a
// BatchRefusedError. The limit is the lower of the topic's
// max.message.bytes (read with describe where some record failed so) and
// clientMax, the client's own batch limit. Where describe fails (no
// DescribeConfigs right, no broker) the errors stay as they are.
func (l *MessageLimit) Refine(records []event.Record, errs []error, tooLarge func(error) bool, clientMax int,
	describe func(context.Context) (map[string]Setting, error)) {
	if !slices.ContainsFunc(errs, func(err error) bool { return err != nil && tooLarge(err) }) {
		return
	}
	limit, ok := l.get(describe, clientMax)
	if !ok {
		return
	}
	for i, err := range errs {
		if err == nil || !tooLarge(err) {
			continue
		}
		if size := AloneBytes(records[i]); size <= limit {
			errs[i] = &BatchRefusedError{Err: err, Size: size, Limit: limit}
		}
	}
}

func (l *MessageLimit) get(describe func(context.Context) (map[string]Setting, error), clientMax int) (int, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.bytes > 0 && time.Since(l.at) < time.Minute {
		return l.bytes, true
	}
	settings, err := describe(context.Background())
	if err != nil {
		return 0, false
	}
	n, err := strconv.Atoi(settings["max.message.bytes"].Value)
	if err != nil || n <= 0 {
		return 0, false
	}
	l.bytes, l.at = min(n, clientMax), time.Now()
	return l.bytes, true
}

// FirstError returns the index of the first error of errs that is not a
// BatchRefusedError, else of the first error, else -1: a record refused
// for what it is says more about an append than one refused for its batch.
func FirstError(errs []error) int {
	if i := slices.IndexFunc(errs, func(err error) bool { return err != nil && !IsBatchRefused(err) }); i >= 0 {
		return i
	}
	return slices.IndexFunc(errs, func(err error) bool { return err != nil })
}
