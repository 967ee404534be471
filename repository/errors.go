package repository

import (
	"errors"
	"fmt"

	"github.com/rehydrate/rehydrate/provider"
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
	// ErrLimit means the repository holds as many aggregates as WithLimits
	// allows: a new one is refused (nothing was appended), a restore that
	// would exceed it fails. The error is a *LimitError.
	ErrLimit = errors.New("repository: aggregate limit reached")
)

// The provider's errors a caller of Execute must tell apart, here so that a
// service needs only this package to check them; they are the provider's
// values, so errors.Is matches either name.
var (
	// ErrOutcomeUnknown: the events may have been written (check it first:
	// it may come with ErrUnavailable).
	ErrOutcomeUnknown = provider.ErrOutcomeUnknown
	// ErrUnavailable: the log could not be reached in time; nothing was
	// written unless ErrOutcomeUnknown is there too.
	ErrUnavailable = provider.ErrUnavailable
	// ErrNotOwner: another instance of the group serves the aggregate (in
	// a *PartitionError).
	ErrNotOwner = provider.ErrNotOwner
	// ErrClosed: the repository was closed (Close) and serves nothing any
	// more, for good; nothing of the call was done. The provider's value,
	// as a closed group member's appends fail with it too: a service that
	// forwards commands an instance no longer serves checks one name.
	ErrClosed = provider.ErrClosed
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

// LimitError reports the limit of WithLimits reached: by a command creating
// AggregateID, or by the restore of Partition (AggregateID names the
// aggregate the restore would have added, when one did).
type LimitError struct {
	AggregateID string
	Partition   int32
	Limit       int64
}

func (e *LimitError) Error() string {
	if e.AggregateID == "" {
		return fmt.Sprintf("repository: partition %d: more than %d aggregates (WithLimits)", e.Partition, e.Limit)
	}
	return fmt.Sprintf("repository: aggregate %s (partition %d): %d aggregates held, the limit (WithLimits)", e.AggregateID, e.Partition, e.Limit)
}

// Is makes errors.Is(err, ErrLimit) true.
func (e *LimitError) Is(target error) bool { return target == ErrLimit }
