// Package provider defines the event log the repository talks to: a topic of
// partitions holding records, read in batches and appended with
// acknowledgement. Providers move bytes ([event.Record]); decoding belongs to
// package event and the repository.
//
// Implementations: [github.com/rehydrate/rehydrate/provider/memory] (in
// process, for tests and demos), [github.com/rehydrate/rehydrate/provider/kafka]
// (confluent-kafka-go, cgo) and [github.com/rehydrate/rehydrate/provider/franz]
// (franz-go, pure Go). Every implementation passes
// the conformance suite in
// [github.com/rehydrate/rehydrate/provider/providertest].
package provider

import (
	"context"
	"errors"
	"math"

	"github.com/rehydrate/rehydrate/event"
)

var (
	// ErrUnavailable means the log could not be reached in time (brokers
	// down, unreachable or too slow). Retrying later may succeed.
	ErrUnavailable = errors.New("provider: unavailable")
	// ErrClosed means the provider was closed.
	ErrClosed = errors.New("provider: closed")
	// ErrOutcomeUnknown means an append may or may not have been written:
	// the request left for the log but no acknowledgement came back.
	// Reading the partition up to its current end does not tell which (the
	// request may still land later); appending a record through the same
	// provider and reading up to it does, because a partition's appends
	// are ordered. The repository does that (repository/outcome.go).
	ErrOutcomeUnknown = errors.New("provider: append outcome unknown")
	// ErrNotRetained means the log may drop records on its own, or has
	// dropped some (expired by retention, compacted away, deleted): a
	// restore would miss events. See [RetentionChecker].
	ErrNotRetained = errors.New("provider: the log does not keep every record")
)

// Follow, as a Range's End, reads on past the end offsets for live records
// until the context ends.
const Follow int64 = math.MaxInt64

// Partition describes one partition of the topic at the moment it was
// queried: records are at offsets [Low, High).
type Partition struct {
	ID   int32
	Low  int64
	High int64
}

// Range asks for the records of one partition at offsets [Start, End).
// End may be [Follow].
type Range struct {
	Partition int32
	Start     int64
	End       int64
}

// Batch is a run of records of one partition, in offset order.
type Batch struct {
	Partition int32
	Records   []event.Record
	// Next is the partition's read position after this batch: the offset of
	// the next record to read. It may be past the last record's offset + 1
	// where offsets hold no record (compaction, transaction markers), and a
	// batch may carry no records when only the position moved.
	Next int64
}

// Position is where an appended record was written.
type Position struct {
	Partition int32
	Offset    int64
}

// Provider is an event log of partitions. Implementations are safe for
// concurrent use by multiple goroutines.
type Provider interface {
	// Partitions returns every partition of the topic with its offsets now.
	// Under read-committed isolation High is the last stable offset: records
	// of open transactions lie beyond it.
	Partitions(ctx context.Context) ([]Partition, error)

	// Read reads each range's records and calls fn with them in batches of
	// at most batchSize records (0 means the provider's default). Read
	// returns nil when every range has reached its End, and the context's
	// error when ctx ends first (ranges ending at [Follow] read until then).
	//
	// fn is called from one goroutine at a time, with the batches of each
	// partition in offset order; it may keep the batch and its records
	// after the call, but must not modify their bytes. A non-nil error from
	// fn stops the read and is returned as is.
	// Any other failure (an unreadable partition, an offset out of range,
	// brokers gone for longer than the provider's timeout) stops the read
	// with an error naming the partition; records already delivered stand.
	Read(ctx context.Context, ranges []Range, batchSize int, fn func(Batch) error) error

	// Append writes records and returns once every one is acknowledged by
	// the log, with their positions in the order given. Records with the
	// same key go to the same partition, in the order given, also across
	// concurrent calls made one after the other. On error nothing is
	// applied by the caller: errors.Is(err, ErrOutcomeUnknown) says some
	// records may have been written; any other error means none was.
	// ctx may stop an append before its records leave; once they have,
	// Append waits for the outcome (bounded by the provider's timeout)
	// rather than return while records are still in flight.
	Append(ctx context.Context, records []event.Record) ([]Position, error)

	// Close releases the provider. It waits, bounded, for appends in flight
	// and reports those it could not deliver. Other calls after Close
	// return ErrClosed; Close itself may be called again.
	Close() error
}

// Ranges returns the ranges that read every partition from its first to its
// last record as of ps.
func Ranges(ps []Partition) []Range {
	rs := make([]Range, len(ps))
	for i, p := range ps {
		rs[i] = Range{Partition: p.ID, Start: p.Low, End: p.High}
	}
	return rs
}
