package kafkagroup

import (
	"context"
	"errors"
	"time"
)

// Client is what a member's transactions need of a Kafka client: its
// transactional producers, the member's group metadata, and what the
// client's errors mean. A provider implements it once per member; Lanes
// call it from their goroutines.
type Client interface {
	// NewProducer returns a transactional producer with the
	// transactional id txid, initialised (InitTransactions,
	// InitProducerID): the initialisation bumps the producer epoch, which
	// fences any older producer with txid, and completes or aborts the
	// transaction that one left open, so that when it returns that
	// transaction's outcome is final. ctx bounds it.
	NewProducer(ctx context.Context, txid string) (Producer, error)
	// Metadata returns the member's group metadata now, as the member's
	// group client knows it: fresh for every transaction. An error (the
	// member left the group, the client cannot read it) refuses the
	// transaction and should wrap provider.ErrNotOwner. Lanes refuse
	// metadata that names no membership themselves (see Metadata).
	Metadata() (Metadata, error)
	// Class tells what err, returned by a Producer's call, means for the
	// transaction; see Class.
	Class(err error) Class
	// Annotate adds to an error that makes an append unavailable or of
	// unknown outcome what the client knows of its cause (a failed TLS
	// handshake, say); identity if nothing.
	Annotate(err error) error
}

// Producer is one lane's transactional producer. Lanes call it in the
// order Begin, Produce, SendOffsets, Commit (or Abort at any point after
// Begin), one call at a time, unless it is a ConcurrentFencer.
type Producer interface {
	// Begin starts a transaction. An error wrapping
	// provider.ErrUnavailable refuses this transaction and keeps the
	// producer; any other error has the producer replaced.
	Begin() error
	// Produce writes the records of batch in the open transaction, each
	// to its partition (Append.Parts), and waits for each one's outcome:
	// offsets[i][j] is the offset of record j of batch[i], or errs[i][j]
	// its error (ErrNotSent for a record never handed to the client
	// because an earlier one was refused). answered is false when no
	// outcome came within bound: the producer is replaced.
	Produce(batch []*Append, bound time.Duration) (offsets [][]int64, errs [][]error, answered bool)
	// SendOffsets commits, in the open transaction, the offsets next
	// (partition → offset) of the member's group with md: the request the
	// group coordinator checks md in, which is the fence. Each offset's
	// metadata is the producer's transactional id: Leavers reads it to
	// know which instance last wrote a partition. answered is
	// false when the call did not return within the client's bound: the
	// producer is given up and must close itself once the call returns;
	// its transaction is never committed.
	SendOffsets(md Metadata, next map[int32]int64) (answered bool, err error)
	// Commit commits the open transaction, within the client's timeout.
	Commit() error
	// Abort aborts the open transaction, within the client's timeout. An
	// error has the producer replaced.
	Abort() error
	// Close releases the producer.
	Close()
}

// ConcurrentFencer is a Producer whose SendOffsets may run on another
// goroutine while its Produce runs: where FencesWhileProducing is true,
// Lanes send a transaction's fence while its records are produced (see
// Lanes), and call Commit or Abort only once both returned. A client
// whose broker requests would then contend (franz-go on transactions v2:
// the produce and the offsets each add to the transaction at the
// coordinator, and one meets the other as CONCURRENT_TRANSACTIONS) leaves
// it out.
type ConcurrentFencer interface {
	Producer
	FencesWhileProducing() bool
}

// Metadata is a member's group metadata, as a transaction sends it to the
// group coordinator: the coordinator accepts it only from the member it
// knows at that generation.
type Metadata struct {
	Generation int32
	MemberID   string
	// InstanceID is the member's group.instance.id, empty for a dynamic
	// member.
	InstanceID string
	// Raw is the client's own form of it, for its Producer to send.
	Raw any
}

// named reports whether md names a membership: a coordinator accepts
// metadata of generation -1 and no member id without any check, as "not a
// group member".
func (md Metadata) named() bool { return md.Generation >= 0 && md.MemberID != "" }

// Class is what a client error means for a transaction, in Lanes' terms.
type Class int

const (
	// ClassAbortable: the transaction failed and must be aborted; the
	// producer stays usable.
	ClassAbortable Class = iota + 1
	// ClassRefused: the group coordinator refused the member's metadata
	// (unknown member, fenced instance): the group has moved on without
	// it. The transaction is aborted; its appends fail with
	// provider.ErrNotOwner.
	ClassRefused
	// ClassStaleGeneration: of ClassRefused, the coordinator still knows
	// the member, at a newer generation: the transaction runs again once
	// the member's metadata shows it.
	ClassStaleGeneration
	// ClassRetriable: the same call may be made again (a timeout, a
	// coordinator moving). A failed commit of this class has an unknown
	// outcome.
	ClassRetriable
	// ClassFatal: the producer is unusable (fenced by a newer producer
	// with its transactional id, in a state no call gets it out of): it
	// is replaced.
	ClassFatal
	// ClassRecordRefused: the log refused the record for what it is (too
	// large, malformed): the append that sent it is at fault, not the
	// others its transaction takes along.
	ClassRecordRefused
	// ClassPurged: the client dropped the record because another one
	// failed the transaction: the error says nothing of the record.
	ClassPurged
)

// ErrNotSent is a record's error in Producer.Produce when it was never
// handed to the client, an earlier record of its transaction having been
// refused.
var ErrNotSent = errors.New("not sent: an earlier record of the transaction was refused")
