package projection

import (
	"context"
	"errors"
	"fmt"

	"github.com/rehydrate/rehydrate/event"
)

// ErrFenced means a commit was refused because its partition's checkpoint is
// no longer what the reader last stored, or its owner token is no longer the
// reader's: another reader has claimed the partition since. Nothing of the
// commit was applied.
var ErrFenced = errors.New("projection: checkpoint fenced: another reader owns the partition")

// ErrStoreFailed marks an error of the store itself, not of the handler: its
// connection broke, the server ended the transaction or refused it for a
// passing reason (a deadlock, a serialization failure, a shutdown), or
// COMMIT failed. A Store wraps the handler's error in it when the
// transaction broke under the handler, so that the runner retries the batch
// instead of counting the record as failed (and perhaps dead-lettering it).
// The runner retries every store error but ErrFenced and ctx's; the
// sentinel only tells it which handler errors are the store's.
var ErrStoreFailed = errors.New("projection: store failed")

// StoreError is what stops a projection whose store kept failing: its
// partition, the offset of the partition's next record to apply (the
// checkpoint, which stays there), and how many times the batch was tried.
// It unwraps to the store's last error.
type StoreError struct {
	Projection string
	Partition  int32
	Offset     int64
	Attempts   int
	Err        error
}

func (e *StoreError) Error() string {
	return fmt.Sprintf("projection %s: partition %d offset %d: store failed (%d attempts): %v",
		e.Projection, e.Partition, e.Offset, e.Attempts, e.Err)
}

func (e *StoreError) Unwrap() error { return e.Err }

// NoCheckpoint is a Claim's Next when nothing was ever committed for the
// partition.
const NoCheckpoint int64 = -1

// FencedError is the error a Store returns for a refused Move. It unwraps to
// ErrFenced.
type FencedError struct {
	Projection string
	Move       Move
}

func (e *FencedError) Error() string {
	return fmt.Sprintf("projection %s: partition %d: checkpoint %d of owner %d: %v",
		e.Projection, e.Move.Partition, e.Move.From, e.Move.Owner, ErrFenced)
}

func (e *FencedError) Unwrap() error { return ErrFenced }

// Claim is a partition's checkpoint as a reader takes it over.
type Claim struct {
	Partition int32
	// Next is the offset of the partition's next record to apply, or
	// NoCheckpoint.
	Next int64
	// Owner is the partition's new owner token: larger than every token
	// the partition had before. Only commits that carry it are accepted.
	Owner int64
}

// Move advances one partition's checkpoint in a Commit: from From (what the
// reader last stored, or NoCheckpoint) to To, the offset of the next record
// to apply, if the partition's owner token is still Owner.
type Move struct {
	Partition int32
	Owner     int64
	From, To  int64
}

// Store keeps a projection's checkpoints beside its read model, and runs the
// transactions that change both. Implementations are safe for concurrent
// use; the PostgreSQL one is in the module
// github.com/rehydrate/rehydrate/projection/postgres, an in-memory one is
// [MemoryStore].
type Store[Tx any] interface {
	// Claim takes the partitions over for a reader (instance names it, for
	// diagnostics only): each gets a new owner token, which fences every
	// earlier owner's commits from now on, and its checkpoint. A Claim and
	// a Commit of one partition are ordered: a Commit that checked the
	// partition's checkpoint before the Claim ends before it, one that
	// checks after is refused.
	Claim(ctx context.Context, projection string, partitions []int32, instance string) ([]Claim, error)

	// Commit runs apply in one transaction and moves the checkpoints in it:
	// all of it is committed, or nothing. A Move whose partition's stored
	// checkpoint is not From or whose owner token is not Owner fails the
	// commit with a *FencedError. An error from apply rolls back and is
	// returned as is, wrapped in ErrStoreFailed when the transaction broke
	// under it. When Commit returns another error the outcome may be
	// unknown (the connection broke during COMMIT); Checkpoints then reads
	// what holds.
	Commit(ctx context.Context, projection string, moves []Move, apply func(ctx context.Context, tx Tx) error) error

	// Checkpoints returns the stored checkpoints of the projection's
	// partitions (the offset of the next record to apply), whichever
	// reader owns them.
	Checkpoints(ctx context.Context, projection string) (map[int32]int64, error)
}

// Handler applies one record to the read model inside the batch's
// transaction and reports whether it did anything. *event.HandlersWith[Tx]
// is one: typed functions per event type that get the transaction.
type Handler[Tx any] interface {
	Handle(ctx context.Context, tx Tx, rec event.Record) (bool, error)
}

// HandlerFunc makes a function a Handler.
type HandlerFunc[Tx any] func(ctx context.Context, tx Tx, rec event.Record) (bool, error)

// Handle calls f.
func (f HandlerFunc[Tx]) Handle(ctx context.Context, tx Tx, rec event.Record) (bool, error) {
	return f(ctx, tx, rec)
}

var _ Handler[*MemoryTx[int]] = (*event.HandlersWith[*MemoryTx[int]])(nil)
