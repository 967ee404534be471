package kafkagroup

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rehydrate/rehydrate/provider"
)

// untilAvailable calls try until it returns anything but an error wrapping
// provider.ErrUnavailable, for up to timeout, backing off from 50 ms to 1 s:
// what a member's start does with a coordinator still being created or
// loaded on a fresh cluster (COORDINATOR_NOT_AVAILABLE, NOT_COORDINATOR,
// COORDINATOR_LOAD_IN_PROGRESS), which it must wait for, not fail on. The
// last error is returned, with ctx's once ctx ends.
func untilAvailable(ctx context.Context, timeout time.Duration, try func() error) error {
	deadline := time.Now().Add(timeout)
	for backoff := 50 * time.Millisecond; ; backoff = min(2*backoff, time.Second) {
		err := try()
		if err == nil || !errors.Is(err, provider.ErrUnavailable) || time.Now().Add(backoff).After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (then %w)", err, ctx.Err())
		case <-time.After(backoff):
		}
	}
}
