package snapshot

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"

	"github.com/rehydrate/rehydrate/event"
)

// chunksPerAppend bounds the bytes one Append carries.
const chunksPerAppend = 16

// Save writes snap to the store: its chunks, then the manifest that makes it
// whole. Once the manifest is acknowledged, it deletes (with tombstones) the
// snapshots of the partition this store has seen at lower or equal offsets;
// a failure to do that is logged and retried by the next Save. It sets
// snap's ID and Created. A crash or error before the manifest is written
// leaves chunks that Load ignores and a later Save deletes.
func (s *Store) Save(ctx context.Context, snap *Snapshot) error {
	if snap.Partition < 0 || snap.Offset < 0 {
		return fmt.Errorf("snapshot: save partition %d at offset %d: negative", snap.Partition, snap.Offset)
	}
	snap.ID = newID(snap.Offset, rand.Uint32())
	snap.Created = time.Now().UTC()
	fail := func(what string, err error) error {
		return fmt.Errorf("snapshot: save partition %d at offset %d: %s: %w", snap.Partition, snap.Offset, what, err)
	}
	var keys []string
	var recs []event.Record
	chunks := 0
	for data := snap.Data; len(data) > 0; chunks++ {
		n := min(len(data), s.chunkSize)
		key := chunkKey(snap.ID, chunks)
		recs = append(recs, event.Record{Key: []byte(key), Value: data[:n]})
		keys = append(keys, key)
		data = data[n:]
	}
	m := manifest{
		Format: Format, ID: snap.ID, Partition: snap.Partition, Offset: snap.Offset,
		StateVersion: snap.StateVersion, Codec: snap.Codec, Aggregates: snap.Aggregates,
		Chunks: chunks, Size: len(snap.Data), CRC32C: checksum(snap.Data), Created: snap.Created,
	}
	if snap.Anchor != (Anchor{}) {
		m.Anchor = &snap.Anchor
	}
	value, err := m.encode()
	if err != nil {
		return fail("manifest", err)
	}
	keys = append(keys, manifestKey(snap.ID))
	// Remember the keys before writing: whatever lands is deleted later.
	kind := kindOf(snap.StateVersion, snap.Codec)
	s.remember(snap.Partition, snap.ID, snap.Offset, keys, kind)
	for len(recs) > 0 {
		n := min(len(recs), chunksPerAppend)
		if _, err := s.w.AppendPartition(ctx, snap.Partition, recs[:n]); err != nil {
			return fail("chunks", err)
		}
		recs = recs[n:]
	}
	if _, err := s.w.AppendPartition(ctx, snap.Partition, []event.Record{{Key: []byte(manifestKey(snap.ID)), Value: value}}); err != nil {
		return fail("manifest", err)
	}
	s.deleteOlder(ctx, snap.Partition, snap.ID, snap.Offset, kind)
	return nil
}

func (s *Store) remember(partition int32, id string, offset int64, keys []string, kind string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.stored[partition]
	if m == nil {
		m = make(map[string]*storedSnapshot)
		s.stored[partition] = m
	}
	if old := m[id]; old != nil {
		keys = append(keys, old.keys...)
		slices.Sort(keys)
		keys = slices.Compact(keys)
	}
	m[id] = &storedSnapshot{offset: offset, keys: keys, kind: kind}
}

// deleteOlder writes tombstones for the snapshots of partition seen at or
// below offset, other than keep: those of keep's kind and the leftovers
// without a manifest; of every other kind, all but the newest.
func (s *Store) deleteOlder(ctx context.Context, partition int32, keep string, offset int64, kind string) {
	s.mu.Lock()
	newest := make(map[string]string) // kind → id of its newest snapshot
	for id, st := range s.stored[partition] {
		if n, ok := newest[st.kind]; !ok || st.offset > s.stored[partition][n].offset {
			newest[st.kind] = id
		}
	}
	var ids []string
	var manifests, chunks []event.Record
	for id, st := range s.stored[partition] {
		if id == keep || st.offset > offset || st.kind != kind && st.kind != "" && newest[st.kind] == id {
			continue
		}
		ids = append(ids, id)
		for _, k := range st.keys {
			if strings.HasPrefix(k, manifestPrefix) {
				manifests = append(manifests, event.Record{Key: []byte(k)})
			} else {
				chunks = append(chunks, event.Record{Key: []byte(k)})
			}
		}
	}
	// Manifests first: a deletion cut short leaves chunks without a
	// manifest, which Load ignores as such, rather than a manifest whose
	// chunks are gone.
	recs := append(manifests, chunks...)
	s.mu.Unlock()
	if len(recs) == 0 {
		return
	}
	if _, err := s.w.AppendPartition(ctx, partition, recs); err != nil {
		s.log.Warn("older snapshots not deleted yet; the next snapshot retries",
			"partition", partition, "snapshots", ids, "err", err)
		return
	}
	s.mu.Lock()
	for _, id := range ids {
		delete(s.stored[partition], id)
	}
	s.mu.Unlock()
}
