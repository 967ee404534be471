// Package snapshot stores snapshots of a repository's partitions, so that a
// restart or a takeover loads the state and reads only the events after it,
// instead of replaying the partition's whole history. The repository takes
// and uses them (repository.WithSnapshots); this package is the store and
// the format.
//
// # Where snapshots live
//
// A [Store] writes on a provider of its own topic, next to the event topic
// ([TopicName]): the snapshots of event partition p go to partition p of the
// snapshot topic, so a takeover of p reads only p's snapshots. On Kafka the
// snapshot topic is compacted ([TopicConfig]): every key is unique to one
// snapshot, and Save deletes older snapshots with tombstones once a newer
// one is whole, so the topic holds about one snapshot per partition.
//
// # Format (version [Format])
//
// A snapshot is written as records of the snapshot partition:
//
//   - chunks, key "chunk/<id>/<i>" for i = 0, 1, …, each value at most the
//     store's chunk size (512 KiB by default, under Kafka's 1 MB message
//     limit) of the snapshot's data;
//   - then one manifest, key "manifest/<id>", a JSON object: format,
//     id, partition, offset, state_version, codec (the content type of the
//     states), aggregates, chunks, size (bytes of data) and crc32c
//     (Castagnoli, of the data), created (RFC 3339), and anchor (offset,
//     aggregate_id, version: the snapshot's latest event, which a restore
//     checks is in the event partition; absent for an empty snapshot).
//
// The id is "<offset as 16 hex digits>-<8 random hex digits>": unique per
// snapshot, and ordered chunks left without a manifest still tell their
// offset. The data is the writer's: this package stores and checks its
// bytes without reading them (the repository's encoding, one entry per
// aggregate, is in its package documentation, "Snapshots"; readers decode it
// with repository.ReadSnapshots).
//
// # What makes a snapshot unusable
//
// Load takes, per partition, the newest snapshot (highest offset) that is
// whole and intact, and that the caller accepts; it reports why it passed
// over newer ones:
//
//   - no manifest: the writer stopped (crashed) between its chunks and its
//     manifest; the chunks are garbage a later Save deletes;
//   - a chunk missing, sizes or checksum wrong (ErrCorrupt);
//   - another format;
//   - rejected by the caller: the repository refuses another state version
//     or codec, an offset below the event partition's first offset (the
//     events between would be missing) or beyond its end, and a snapshot
//     whose anchor event is not in the event partition (both: the snapshot
//     is of another topic's history).
//
// Because the manifest is written last and deletions come after it, a crash
// at any point leaves the previous snapshot or the new one usable.
//
// # Who writes
//
// A repository snapshots only partitions it serves. A stale owner (a group
// member the others have replaced, a process paused for longer than its
// session) may still write one, and its snapshot is still consistent: it
// reflects only events the stale owner read or had committed, and its
// offset lies below every event of the new owner (see the repository's
// argument, "Snapshots"). It can only be older than the new owner's: Load
// prefers the highest offset, whatever was written last, and Save deletes
// only snapshots it has seen at lower or equal offsets, so a stale writer neither
// hides nor deletes a newer snapshot. Snapshots therefore need no fencing of
// their own.
package snapshot
