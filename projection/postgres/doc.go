// Package postgres keeps projections (package projection) in PostgreSQL: a
// [Store] whose transactions write a batch's rows and move its partitions'
// checkpoints together, fenced by owner tokens in the checkpoint rows.
//
// It is written on pgx v5 (github.com/jackc/pgx/v5) rather than
// database/sql: database/sql needs a driver anyway, and pgx is the driver
// most Go services on PostgreSQL already use; on its own interface a
// handler gets a [pgx.Tx] with pgx.Batch (many statements in one round
// trip, which a projection's batches want), CopyFrom and typed errors
// (pgconn.PgError), and no database/sql connection pool sits between the
// store and the server. A database/sql user can still share the server:
// the store needs only a *pgxpool.Pool of its own.
//
// # The checkpoint table
//
// [New] creates it when it does not exist (name: [DefaultTable], or
// WithTable):
//
//	CREATE TABLE IF NOT EXISTS rehydrate_checkpoints (
//	    projection  text        NOT NULL,  -- Config.Name of the projection
//	    partition   integer     NOT NULL,  -- the topic's partition
//	    next_offset bigint      NOT NULL,  -- offset of the next record to apply; -1: none applied yet
//	    owner       bigint      NOT NULL,  -- owner token: every claim adds 1
//	    instance    text        NOT NULL,  -- the reader that claimed it last (diagnostics only)
//	    updated_at  timestamptz NOT NULL DEFAULT now(),
//	    PRIMARY KEY (projection, partition)
//	)
//
// A commit runs the handler's statements, then, for each partition of the
// batch,
//
//	UPDATE rehydrate_checkpoints SET next_offset = $to, updated_at = now()
//	WHERE projection = $1 AND partition = $2 AND owner = $owner AND next_offset = $from
//
// and refuses the transaction (projection.ErrFenced) unless it changed one
// row, then COMMIT. The UPDATE holds the row's lock until the transaction
// ends, and a claim (INSERT … ON CONFLICT DO UPDATE SET owner = owner + 1)
// waits for it: a claim and a commit of one partition are ordered, and once
// a claim has returned, no transaction of an earlier owner can commit. The
// checkpoint comes last so that its lock is held for one round trip only.
//
// A reader stopped (SIGSTOP, a long GC) inside a transaction holds the locks
// of the rows its handler wrote: the next owner's claim goes through, but
// its writes to those rows wait. Resumed, the stopped reader finishes its
// batch and its UPDATE is refused. Set the server's
// idle_in_transaction_session_timeout (for the store's pool: the connection
// string's idle_in_transaction_session_timeout=10000, in ms) to bound that
// wait: the server then ends the stopped reader's session and its
// transaction rolls back.
//
// # Rebuilds
//
// A rebuild is a projection of its own name writing its own tables (say
// users_v2 beside users_v1), run by the same readers while the old one keeps
// serving; handlers that skip the events it does not need
// (event.SkipUnhandled) replay only chosen event types. Once its runner's
// CaughtUp is closed, [Store.SwitchView] points the view the API reads
// (users) at the new table in one transaction. Drop the old tables with
// DROP TABLE and their checkpoints with [Store.Forget] once nothing reads
// them.
package postgres
