// Package repository keeps a service's aggregates in memory, restored from an
// event log at start-up and changed by commands whose events are appended to
// the log, and acknowledged, before memory changes.
//
// An aggregate is a plain Go type; each event type's effect on it is a typed
// handler:
//
//	type User struct{ FirstName, LastName string }
//
//	reg := event.NewRegistry()
//	_ = event.Register[UserCreated](reg, "UserCreated")
//	_ = event.Register[UserDeleted](reg, "UserDeleted")
//
//	users, err := repository.New[User](p, reg,
//		repository.On(func(u *User, e UserCreated) { u.FirstName, u.LastName = e.FirstName, e.LastName }),
//		repository.Deletes[UserDeleted](),
//	)
//	stats, err := users.Restore(ctx) // every partition, up to the end offsets at start
//	res, err := users.Create(ctx, id, func(User) ([]any, error) {
//		return []any{UserCreated{FirstName: "Ada", LastName: "Lovelace"}}, nil
//	})
//
// # Guarantees
//
//   - Restore reads every partition up to the end offsets captured when it
//     starts, applying partitions in parallel and each in offset order. It
//     fails, naming partition and offset, on an undecodable record, an
//     unregistered type (unless WithSkipUnknownTypes), a version gap or a read
//     error; until it succeeds nothing is served (ErrNotReady).
//   - Restore starts only on a log that keeps every event: it refuses one
//     whose provider.RetentionChecker reports that records can expire or be
//     compacted away, and any partition whose first offset (Low) is above
//     0, since the events below it are gone. Both errors wrap
//     provider.ErrNotRetained; a takeover under WithGroup checks the same.
//   - Commands for one aggregate run one at a time; different aggregates run
//     in parallel. A command's events are validated, versioned (previous + 1),
//     encoded, appended, and applied only after the log acknowledged all of
//     them. On any error memory is unchanged; provider.ErrOutcomeUnknown says
//     the events may have been written, and the aggregate then takes no
//     command until the repository has read its partition to find out.
//   - Close is terminal, with or without a group, as database/sql's DB.Close:
//     from the call on everything fails with ErrClosed, a running Restore or
//     Follow is cancelled, commands in flight end first, then the state is
//     dropped. The provider is the caller's to close, after the repository.
//   - Restore and Follow skip an event whose version is not newer than its
//     aggregate's (a duplicate), and count it.
//
// # Several instances
//
// Without WithGroup a Repository is the only writer of its topic: a second
// instance may Restore and Follow as a standby, but must not execute commands
// while the first does (Follow reports the obvious misuse with
// ErrConflictingWriter). Nothing enforces that; WithGroup does.
//
// With WithGroup(Group{Name: "users-writer"}) every instance joins the group
// on a provider that implements provider.Grouper (memory, Kafka). The group
// assigns each partition to one instance; an instance restores and serves
// only its partitions, restores newly assigned ones in the background while
// it keeps serving the rest, and drops revoked ones. A command for a
// partition served elsewhere fails with a *PartitionError wrapping
// provider.ErrNotOwner (Owners tells where to send it), one for a partition
// being taken over with a *PartitionError wrapping ErrNotReady.
//
// A command's events are appended through the member, in a transaction with
// other commands' events (group commit), and acknowledged after the commit:
// a command's events are all visible or none is.
//
// Why a stale owner cannot write. Instances disagree about ownership in
// three ways, and each is closed by the log, not by a convention:
//
//  1. A live instance loses a partition in a rebalance. It stops taking
//     commands for it when the revocation starts (its appends fail with
//     ErrNotOwner), waits for the transactions in flight to end, drops the
//     state, and only then lets the group hand the partition on.
//     Cooperative rebalancing moves a partition only after its owner has
//     revoked it.
//  2. An instance stops answering (a long pause, SIGSTOP, a partition from
//     the brokers) and the group drops it. Every transaction carries the
//     member's current group generation to the log (Kafka: the group
//     metadata sent with the transaction's offsets); the group coordinator
//     refuses a generation or member it no longer knows, and the
//     transaction is aborted, invisible to read-committed readers: its
//     commit waits for that check, which may travel while the records are
//     still being written, but never ahead of the commit. A
//     provider refuses to send the "no generation" metadata that Kafka
//     would accept. When the instance resumes, it learns it lost its
//     partitions and drops them.
//  3. A stale instance's transaction passed the check just before the
//     group moved on and commits late. The new owner does not read the
//     partition before provider.Member.AwaitStable returns, which waits
//     for every transaction of a previous owner to be committed or
//     aborted; so the new owner's restore ends after the late commit and
//     includes it, and the new owner's versions follow it. A dead
//     owner's open transaction is not waited out: the new owner fences
//     its producers, which aborts it.
//
// Transactional producer ids belong to instances (and their lanes: a
// member may run several transactions at once, each checked on its own),
// not partitions, so an instance that initialises its producers late only
// fences its own previous incarnation, never the rightful owner of a
// partition. The argument in full, for both Kafka providers, is in package
// provider/kafkagroup.
//
// Group.Instance is the instance's static membership: restarted under the
// same name (a crash included), an instance takes its partitions back at
// once, without a rebalance and with the same generation; its previous
// incarnation is fenced by its transactional ids and by its member id,
// which the group no longer knows (provider/kafka's documentation, "Static
// membership"). The same holds when the member's own group client is
// fenced (the coordinator holds the name under another member id, as after
// librdkafka forgets its id while the coordinator moves): the partitions
// are revoked as lost, and the member serves them again only once a new
// join under the same name has replaced the member id and assigned them,
// unless another process holds the name. Close leaves the group, handing
// the partitions over at once, unless Group.StayOnClose keeps them for the
// instance's return.
//
// Unknown outcomes keep their rule: a commit whose outcome is unknown leaves
// the aggregate unresolved; the next command for it appends a fence through
// the same member (a partition's appends are ordered) and reads up to it.
//
// # Snapshots
//
// With WithSnapshots(store, Snapshots{StateVersion: 1}) a restore or a
// takeover loads each partition's newest usable snapshot (package snapshot)
// and reads only the events from its offset on; the repository writes new
// snapshots in the background, of the partitions it serves, every
// Snapshots.Events events or Snapshots.Interval, and when Snapshot is
// called (before a clean shutdown). Stats.Partitions tells, per partition,
// which snapshot a restore used or why it replayed the partition instead:
// none stored, one written only in part (a crash mid-write), a checksum
// that fails, another state version or codec, an offset below the
// partition's first offset (the events between are gone) or beyond its end
// (another history: a recreated topic). A partition whose first events are
// gone restores only from a snapshot that covers them, else fails with
// provider.ErrNotRetained. To force a full replay, bump StateVersion (or
// restore without WithSnapshots).
//
// Why a snapshot is consistent. A snapshot at offset X must hold, for every
// aggregate of the partition, at least all of its events below X; it may
// hold later ones, which the restore then skips as duplicates (an event is
// applied only if its version follows the aggregate's). X is taken before
// any aggregate is copied: the partition's read position (what restore and
// follow applied) or just past this instance's last acknowledged append,
// whichever is later. Below X every event was read or appended here and
// acknowledged, hence applied, because this instance is the partition's
// only writer (the group fences any other; without a group it is the rule
// the repository documents):
//
//   - an append in flight when X is taken holds its aggregate's lock until
//     its events are applied; the copy takes that lock, so it sees them;
//   - an append whose outcome is unknown may have landed anywhere after
//     its aggregate's unresolved mark: X is lowered to just past that mark,
//     so the restore reads wherever it landed;
//   - an append that starts after X is taken lands after every
//     acknowledged one, at X or beyond, and the restore reads it.
//
// Aggregates are copied one at a time under their own lock and encoded at
// once (no deep copy of the state is needed, and a command waits at most
// for one aggregate's encoding). A copy that a revocation or a new restore
// of the partition overtook is discarded.
//
// A stale owner's snapshot is consistent too: everything it holds below its
// X it read or had committed before the group moved on, and the new owner's
// events all lie after it. It is only older, and the store never lets an
// older snapshot hide or delete a newer one (see package snapshot), so
// snapshots need no fencing of their own: they are written with the
// provider's plain idempotent appends, outside the event transactions.
//
// A snapshot's data is the repository's: one entry per aggregate, each the
// uvarint length and bytes of the aggregate id, the uvarint version, the
// varint offset of its last event, a flags byte (1: deleted, 2: the id of
// another aggregate type on the topic), and the uvarint length and bytes
// of the state encoded with the registry's codec (for flag 2: the other
// type's name). The store carries it without reading it. A reader that
// starts from the writers' snapshots (a projection) calls ReadSnapshots,
// which chooses and checks them as a restore does, anchors included: the
// anchor event is looked up in the event log, which is the repository's
// to read, not the snapshot store's.
package repository
