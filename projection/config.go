package projection

import (
	"errors"
	"log/slog"

	"github.com/rehydrate/rehydrate/consume"
	"github.com/rehydrate/rehydrate/provider"
)

// Config describes a projection and how it is run.
type Config[Tx any] struct {
	// Name identifies the projection: its checkpoints are stored under it.
	// A rebuild is a projection of another name (and other tables).
	// Required.
	Name string
	// Provider is the topic read. Required; with Group, it must be a
	// provider.Grouper.
	Provider provider.Provider
	// Store keeps the read model's checkpoints and runs its transactions.
	// Required.
	Store Store[Tx]
	// Handler applies each record inside its batch's transaction. Required.
	Handler Handler[Tx]
	// Mode is consume.Replay (the zero value: apply up to the end offsets
	// at start, then Run returns), consume.ReplayThenFollow (then keep
	// applying live records) or consume.Live (a partition without a
	// checkpoint starts at its end at start; one with a checkpoint resumes
	// there). Every mode resumes at the stored checkpoints.
	Mode consume.StreamMode
	// BatchSize bounds the records of one transaction (0: the provider's
	// default read batch).
	BatchSize int
	// Failures says what happens when Handler fails on a record: retries,
	// then a dead-letter topic or a stop naming partition and offset (see
	// consume.Failures). The record's batch is then applied in parts, so
	// that every record before it commits and the failed one runs alone.
	// Its Retries, Backoff and MaxBackoff also bound how often a batch is
	// tried again when the store fails (a lost connection, a failed
	// COMMIT): never dead-lettered, such a failure stops the projection
	// with a *StoreError once the retries are spent (see retry.go).
	Failures consume.Failures
	// Group, if set, makes the runner a member of this consumer group on
	// Provider: the group's readers split the partitions, each claims the
	// checkpoints of those it is given, and the store refuses the commits
	// of a reader that lost one. Not with consume.Replay.
	Group string
	// Instance names this reader in the group and in the checkpoint rows
	// (see provider.GroupConfig.Instance). Empty: a random name.
	Instance string
	// OnBatch, if set, is called after each committed batch, from the
	// goroutine that committed it (one per partition in a group).
	OnBatch func(Progress)
	// Logger receives the runner's warnings; nil discards them.
	Logger *slog.Logger
}

// Validate reports every problem of c at once.
func (c *Config[Tx]) Validate() error {
	var errs []error
	if c.Name == "" {
		errs = append(errs, errors.New("projection: no Name"))
	}
	if c.Provider == nil {
		errs = append(errs, errors.New("projection: no Provider"))
	}
	if c.Store == nil {
		errs = append(errs, errors.New("projection: no Store"))
	}
	if c.Handler == nil {
		errs = append(errs, errors.New("projection: no Handler"))
	}
	switch c.Mode {
	case consume.Replay, consume.ReplayThenFollow, consume.Live:
	default:
		errs = append(errs, errors.New("projection: unknown Mode "+c.Mode.String()))
	}
	if c.BatchSize < 0 {
		errs = append(errs, errors.New("projection: negative BatchSize"))
	}
	if c.Group != "" {
		if c.Mode == consume.Replay {
			errs = append(errs, errors.New("projection: a Group reads on: Mode Replay is for one reader"))
		}
		if _, ok := c.Provider.(provider.Grouper); c.Provider != nil && !ok {
			errs = append(errs, errors.New("projection: Group set but the Provider is no provider.Grouper"))
		}
	}
	return errors.Join(errs...)
}
