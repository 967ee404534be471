package snapshot

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/provider"
)

// Loaded is what Load found for one partition.
type Loaded struct {
	// Snapshot is the newest usable snapshot; nil when there is none.
	Snapshot *Snapshot
	// Rejected are the snapshots newer than Snapshot that could not be
	// used, newest first.
	Rejected []Rejection
}

// Rejection is a snapshot Load did not use, and why.
type Rejection struct {
	ID     string
	Offset int64
	Err    error
}

func (r Rejection) String() string {
	return fmt.Sprintf("snapshot %s at offset %d: %v", r.ID, r.Offset, r.Err)
}

// Load reads the store's partitions (each numbered as its event partition)
// and returns, for each, the newest snapshot that is whole, intact and
// accepted by accept (which checks what only the caller knows: the state
// version, the codec, the event partition's offsets), with the newer ones it
// rejected and why. A partition the snapshot topic does not have gets no
// snapshot. Errors are those of reading the topic.
func (s *Store) Load(ctx context.Context, partitions []int32, accept func(*Snapshot) error) (map[int32]Loaded, error) {
	ps, err := s.p.Partitions(ctx)
	if err != nil {
		return nil, fmt.Errorf("snapshot: load: %w", err)
	}
	out := make(map[int32]Loaded, len(partitions))
	values := make(map[int32]map[string][]byte, len(partitions))
	ends := make(map[int32]int64, len(partitions))
	var ranges []provider.Range
	for _, id := range partitions {
		i := slices.IndexFunc(ps, func(p provider.Partition) bool { return p.ID == id })
		if i < 0 {
			out[id] = Loaded{Rejected: []Rejection{{Offset: -1, Err: fmt.Errorf("the snapshot topic has no partition %d (it has %d)", id, len(ps))}}}
			continue
		}
		values[id] = make(map[string][]byte)
		if ps[i].High > ps[i].Low {
			ranges = append(ranges, provider.Range{Partition: id, Start: ps[i].Low, End: ps[i].High})
			ends[id] = ps[i].High
		}
	}
	// Read as the log cleaner would compact: the last value of each key
	// wins, and a tombstone (no value) deletes it. A partition read to its
	// end is picked at once and its records let go, so that memory holds
	// one partition's records at a time, not the topic's.
	err = s.p.Read(ctx, ranges, 0, func(b provider.Batch) error {
		vals := values[b.Partition]
		for _, r := range b.Records {
			if event.IsControl(r) {
				continue
			}
			if len(r.Value) == 0 {
				delete(vals, string(r.Key))
			} else {
				vals[string(r.Key)] = r.Value
			}
		}
		if b.Next >= ends[b.Partition] {
			out[b.Partition] = s.pick(b.Partition, vals, accept)
			delete(values, b.Partition)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("snapshot: load: %w", err)
	}
	for id, vals := range values { // empty partitions
		out[id] = s.pick(id, vals, accept)
	}
	return out, nil
}

// pick chooses partition's snapshot among the keys found in the topic, and
// remembers them all for Save to delete.
func (s *Store) pick(partition int32, vals map[string][]byte, accept func(*Snapshot) error) Loaded {
	type found struct {
		offset   int64
		manifest []byte
		chunks   map[int][]byte
		keys     []string
	}
	byID := make(map[string]*found)
	for key, v := range vals {
		id, offset, chunk, ok := parseKey(key)
		if !ok {
			continue // not ours: left alone
		}
		f := byID[id]
		if f == nil {
			f = &found{offset: offset, chunks: make(map[int][]byte)}
			byID[id] = f
		}
		f.keys = append(f.keys, key)
		if chunk < 0 {
			f.manifest = v
		} else {
			f.chunks[chunk] = v
		}
	}
	ids := make([]string, 0, len(byID))
	for id, f := range byID {
		kind := ""
		if m, err := parseManifest(f.manifest); f.manifest != nil && err == nil {
			kind = kindOf(m.StateVersion, m.Codec)
		}
		s.remember(partition, id, f.offset, f.keys, kind)
		ids = append(ids, id)
	}
	// Newest first; the id breaks ties.
	slices.SortFunc(ids, func(a, b string) int {
		return cmp.Or(cmp.Compare(byID[b].offset, byID[a].offset), cmp.Compare(b, a))
	})
	var l Loaded
	for _, id := range ids {
		f := byID[id]
		snap, err := assemble(partition, id, f.offset, f.manifest, f.chunks)
		if err == nil {
			err = accept(snap)
		}
		if err != nil {
			l.Rejected = append(l.Rejected, Rejection{ID: id, Offset: f.offset, Err: err})
			continue
		}
		l.Snapshot = snap
		break
	}
	return l
}

// assemble checks a snapshot's manifest and chunks and joins them.
func assemble(partition int32, id string, offset int64, manifestValue []byte, chunks map[int][]byte) (*Snapshot, error) {
	if manifestValue == nil {
		return nil, errors.New("no manifest: it was being written when its writer stopped, or was deleted")
	}
	m, err := parseManifest(manifestValue)
	if err != nil {
		return nil, err
	}
	switch {
	case m.Format != Format:
		return nil, fmt.Errorf("format %d; this version reads format %d", m.Format, Format)
	case m.ID != id:
		return nil, fmt.Errorf("%w: manifest of %s under the key of %s", ErrCorrupt, m.ID, id)
	case m.Offset != offset:
		return nil, fmt.Errorf("%w: manifest of offset %d under a key of offset %d", ErrCorrupt, m.Offset, offset)
	case m.Partition != partition:
		return nil, fmt.Errorf("%w: snapshot of partition %d stored in partition %d", ErrCorrupt, m.Partition, partition)
	}
	data := make([]byte, 0, m.Size)
	for i := range m.Chunks {
		c, ok := chunks[i]
		if !ok {
			return nil, fmt.Errorf("%w: chunk %d of %d missing", ErrCorrupt, i, m.Chunks)
		}
		if len(data)+len(c) > m.Size {
			return nil, fmt.Errorf("%w: chunks longer than the manifest's %d bytes", ErrCorrupt, m.Size)
		}
		data = append(data, c...)
	}
	if len(data) != m.Size {
		return nil, fmt.Errorf("%w: %d bytes, the manifest says %d", ErrCorrupt, len(data), m.Size)
	}
	if sum := checksum(data); sum != m.CRC32C {
		return nil, fmt.Errorf("%w: checksum %08x, the manifest says %08x", ErrCorrupt, sum, m.CRC32C)
	}
	sn := &Snapshot{
		Partition: partition, Offset: m.Offset, StateVersion: m.StateVersion, Codec: m.Codec,
		Aggregates: m.Aggregates, Data: data, ID: m.ID, Created: m.Created,
	}
	if m.Anchor != nil {
		sn.Anchor = *m.Anchor
	}
	return sn, nil
}
