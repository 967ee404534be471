// Package projection runs read models (projections) whose rows and
// checkpoints commit together: each batch of a partition is applied inside
// one store transaction that also moves the partition's checkpoint to the
// offset after the batch, so across crashes and restarts each event's
// effect lands exactly once, and the checkpoint is never ahead of the data
// nor behind it.
//
// A [Runner] reads its partitions through consume.Stream from their
// checkpoints (stream modes replay, replay-then-follow and live), applies
// each record with a [Handler] — typically an *event.HandlersWith[Tx], typed
// functions per event type that get the transaction — and reports
// [Runner.Progress], [Runner.Lag] and [Runner.CaughtUp]. A record the
// handler fails on goes through consume.Failures (retries, then a
// dead-letter topic or a stop naming partition and offset, the checkpoint
// left before it). A failure of the store itself (a lost connection, a
// failed COMMIT, a deadlock: [ErrStoreFailed]) is no record's fault: the
// batch is tried again with the same retries and back-off, after reading
// whether the failed try landed, and then the projection stops with a
// [StoreError] naming partition and checkpoint (retry.go says why the whole
// reader stops). [Runner.WaitFor] waits, bounded, until given positions
// are applied: read-your-writes for a client that wrote through a writer.
//
// Several readers share a projection through a consumer group
// (Config.Group); the [Store] fences a reader that lost a partition (see
// group.go for the argument). A rebuild is a projection of another name and
// other tables, run beside the live one and switched to once caught up.
//
// Stores: [MemoryStore] (tests, demos), and PostgreSQL in the module
// github.com/rehydrate/rehydrate/projection/postgres, which keeps this
// module free of database drivers.
//
// Why each event lands once. A partition's checkpoint C is the offset of its
// next record to apply. A commit moves C from the value the reader read
// (its claim, or its last commit) to the end of a batch that starts at C,
// in the transaction that writes the batch's effects, and only if C and the
// owner token are unchanged. So the committed effects are exactly those of
// the records below C, each once; a crash before COMMIT leaves C and the
// rows as they were, and a restart reads from C again.
package projection
