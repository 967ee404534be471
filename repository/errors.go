package repository

import (
	"errors"
	"fmt"
)

var (
	// ErrNotFound means the aggregate does not exist or was deleted.
	ErrNotFound = errors.New("repository: aggregate not found")
	// ErrExists means Create was called for an id that exists or existed.
	ErrExists = errors.New("repository: aggregate already exists")
	// ErrConcurrency means the aggregate was not at the expected version;
	// the error is a *ConcurrencyError.
	ErrConcurrency = errors.New("repository: version conflict")
	// ErrNotReady means the repository has not finished restoring.
	ErrNotReady = errors.New("repository: not ready")
	// ErrUnresolved means an earlier append of this aggregate has an
	// unknown outcome that could not be resolved yet (the log is
	// unreachable); the aggregate takes no command until it is.
	ErrUnresolved = errors.New("repository: earlier append outcome unresolved")
	// ErrConflictingWriter means follow saw an event for an aggregate at a
	// version this instance also wrote: another writer appends to the same
	// partitions, which this repository does not support.
	ErrConflictingWriter = errors.New("repository: another writer appended to an aggregate this instance writes")
)

// ConcurrencyError reports an expected-version mismatch.
type ConcurrencyError struct {
	AggregateID string
	Expected    uint64
	Actual      uint64
}

func (e *ConcurrencyError) Error() string {
	return fmt.Sprintf("repository: aggregate %s is at version %d, expected %d", e.AggregateID, e.Actual, e.Expected)
}

// Is makes errors.Is(err, ErrConcurrency) true.
func (e *ConcurrencyError) Is(target error) bool { return target == ErrConcurrency }

// PartitionError says why this instance does not serve an aggregate now: its
// partition is owned by another member of the group (Err is
// provider.ErrNotOwner), or is being restored here after a takeover (Err is
// ErrNotReady). Nothing was appended. errors.Is sees Err.
type PartitionError struct {
	AggregateID string
	Partition   int32
	Err         error
}

func (e *PartitionError) Error() string {
	return fmt.Sprintf("repository: aggregate %s: partition %d: %v", e.AggregateID, e.Partition, e.Err)
}

func (e *PartitionError) Unwrap() error { return e.Err }
