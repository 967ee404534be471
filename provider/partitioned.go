package provider

import (
	"context"

	"github.com/rehydrate/rehydrate/event"
)

// PartitionAppender is an optional capability of a [Provider]: appending to
// a partition named by the caller instead of the one the keys hash to. The
// snapshot store needs it (package snapshot keeps the snapshots of event
// partition p in partition p of its own topic, whatever their keys); event
// appends never use it, because an aggregate's partition is the hash of its
// id.
type PartitionAppender interface {
	// AppendPartition is [Provider.Append] with every record written to
	// partition. A record with a nil Value is a tombstone: on a compacted
	// topic it deletes its key. Records need a key. A partition the topic
	// does not have is refused, with nothing written.
	AppendPartition(ctx context.Context, partition int32, records []event.Record) ([]Position, error)
}
