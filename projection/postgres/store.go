package postgres

import (
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rehydrate/rehydrate/projection"
)

// DefaultTable is the checkpoint table's name unless WithTable.
const DefaultTable = "rehydrate_checkpoints"

// Store is a projection.Store in PostgreSQL. It is safe for concurrent use.
type Store struct {
	pool  *pgxpool.Pool
	table string // quoted identifier

	claim, update, read string
}

var _ projection.Store[pgx.Tx] = (*Store)(nil)

// Option configures a Store.
type Option interface{ apply(*options) }

type options struct{ table string }

type optionFunc func(*options)

func (f optionFunc) apply(o *options) { f(o) }

// WithTable names the checkpoint table (it may be schema-qualified,
// "schema.table").
func WithTable(name string) Option { return optionFunc(func(o *options) { o.table = name }) }

// New returns a store on pool and creates its checkpoint table when it does
// not exist.
func New(ctx context.Context, pool *pgxpool.Pool, opts ...Option) (*Store, error) {
	o := options{table: DefaultTable}
	for _, opt := range opts {
		opt.apply(&o)
	}
	if pool == nil {
		return nil, errors.New("postgres: no pool")
	}
	if o.table == "" {
		return nil, errors.New("postgres: empty table name")
	}
	t := quote(o.table)
	s := &Store{
		pool:  pool,
		table: t,
		claim: `INSERT INTO ` + t + ` (projection, partition, next_offset, owner, instance) VALUES ($1, $2, -1, 1, $3)
			ON CONFLICT (projection, partition) DO UPDATE SET owner = ` + t + `.owner + 1, instance = excluded.instance, updated_at = now()
			RETURNING next_offset, owner`,
		update: `UPDATE ` + t + ` SET next_offset = $5, updated_at = now()
			WHERE projection = $1 AND partition = $2 AND owner = $3 AND next_offset = $4`,
		read: `SELECT partition, next_offset FROM ` + t + ` WHERE projection = $1`,
	}
	// Two readers starting at once both find the table missing, and
	// CREATE TABLE IF NOT EXISTS then fails for one (a duplicate pg_type
	// row): an advisory lock on the name makes them take turns.
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext($1))`, t); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+t+` (
			projection  text        NOT NULL,
			partition   integer     NOT NULL,
			next_offset bigint      NOT NULL,
			owner       bigint      NOT NULL,
			instance    text        NOT NULL,
			updated_at  timestamptz NOT NULL DEFAULT now(),
			PRIMARY KEY (projection, partition))`)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: create checkpoint table %s: %w", t, err)
	}
	return s, nil
}

func quote(name string) string {
	var parts pgx.Identifier
	for i, start := 0, 0; i <= len(name); i++ {
		if i == len(name) || name[i] == '.' {
			parts = append(parts, name[start:i])
			start = i + 1
		}
	}
	return parts.Sanitize()
}

// Claim implements projection.Store.
func (s *Store) Claim(ctx context.Context, name string, partitions []int32, instance string) ([]projection.Claim, error) {
	out := make([]projection.Claim, 0, len(partitions))
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		// Ascending, so that two claims never wait for each other in a cycle.
		for _, p := range slices.Sorted(slices.Values(partitions)) {
			c := projection.Claim{Partition: p}
			if err := tx.QueryRow(ctx, s.claim, name, p, instance).Scan(&c.Next, &c.Owner); err != nil {
				return err
			}
			out = append(out, c)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: claim %s %v: %w: %w", name, partitions, projection.ErrStoreFailed, err)
	}
	return out, nil
}

// Commit implements projection.Store: apply, then the moves' checks and
// updates, in one transaction. The checkpoint rows are locked last, for the
// one round trip before COMMIT: a reader stopped inside apply holds no lock
// a claim waits for (only its rows, which the next owner's writes wait for).
func (s *Store) Commit(ctx context.Context, name string, moves []projection.Move, apply func(context.Context, pgx.Tx) error) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return fmt.Errorf("postgres: begin: %w: %w", projection.ErrStoreFailed, err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx)) //nolint:errcheck // after Commit it does nothing; a failed rollback ends the connection
	if err := apply(ctx, tx); err != nil {
		if broken(tx, err) {
			return fmt.Errorf("postgres: transaction of %s broke in the handler: %w: %w", name, projection.ErrStoreFailed, err)
		}
		return err
	}
	for _, m := range moves {
		tag, err := tx.Exec(ctx, s.update, name, m.Partition, m.Owner, m.From, m.To)
		if err != nil {
			return fmt.Errorf("postgres: move checkpoint of %s partition %d: %w: %w", name, m.Partition, projection.ErrStoreFailed, err)
		}
		if tag.RowsAffected() != 1 {
			return &projection.FencedError{Projection: name, Move: m}
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return fmt.Errorf("postgres: commit %s: %w: %w", name, projection.ErrStoreFailed, err)
	}
	return nil
}

// broken tells whether the handler's error is the transaction's, not the
// record's: the connection is gone, or the server ended or rolled back the
// transaction for a reason that passes (SQLSTATE classes 08 connection
// exception, 40 transaction rollback: deadlocks, serialization failures,
// 53 insufficient resources, 57 operator intervention: shutdowns, and
// 25P03, the idle-in-transaction timeout that ends a stopped reader's
// session).
func broken(tx pgx.Tx, err error) bool {
	if tx.Conn().IsClosed() {
		return true
	}
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || len(pe.Code) != 5 {
		return false
	}
	switch pe.Code[:2] {
	case "08", "40", "53", "57":
		return true
	}
	return pe.Code == "25P03"
}

// Checkpoints implements projection.Store.
func (s *Store) Checkpoints(ctx context.Context, name string) (map[int32]int64, error) {
	rows, err := s.pool.Query(ctx, s.read, name)
	if err != nil {
		return nil, fmt.Errorf("postgres: checkpoints of %s: %w: %w", name, projection.ErrStoreFailed, err)
	}
	out := make(map[int32]int64)
	var p int32
	var next int64
	_, err = pgx.ForEachRow(rows, []any{&p, &next}, func() error {
		out[p] = next
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("postgres: checkpoints of %s: %w: %w", name, projection.ErrStoreFailed, err)
	}
	return out, nil
}

// SwitchView makes view read table (CREATE VIEW view AS SELECT * FROM
// table, replacing what view was) in one transaction: the blue-green switch
// of a rebuild, once its runner has caught up. Queries see the old table or
// the new one, never neither.
func (s *Store) SwitchView(ctx context.Context, view, table string) error {
	return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DROP VIEW IF EXISTS `+quote(view)); err != nil {
			return fmt.Errorf("postgres: switch view %s: %w", view, err)
		}
		if _, err := tx.Exec(ctx, `CREATE VIEW `+quote(view)+` AS SELECT * FROM `+quote(table)); err != nil {
			return fmt.Errorf("postgres: switch view %s to %s: %w", view, table, err)
		}
		return nil
	})
}

// Forget deletes a projection's checkpoints (an old projection once a
// rebuild has replaced it, or to replay one from the start: with its
// tables emptied in the same step).
func (s *Store) Forget(ctx context.Context, name string) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM `+s.table+` WHERE projection = $1`, name); err != nil {
		return fmt.Errorf("postgres: forget %s: %w", name, err)
	}
	return nil
}
