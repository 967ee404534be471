package snapshot

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/provider"
)

// Snapshot is the state of one event partition's aggregates as of an offset.
type Snapshot struct {
	// Partition is the event partition the snapshot is of; it is stored in
	// the snapshot topic's partition of the same number.
	Partition int32
	// Offset is the event partition's offset the snapshot reflects: every
	// event below it is in the state; events at and after it may be too
	// (an aggregate's Version tells), and a restore reads them from here.
	Offset int64
	// StateVersion is the user's version of the aggregate's state: a
	// snapshot of another version is not used.
	StateVersion uint32
	// Codec is the content type the states are encoded with.
	Codec string
	// Aggregates counts the aggregates in Data.
	Aggregates int
	// Data is the state in the writer's encoding (the repository's: see
	// repository.ReadSnapshots); the store does not read it.
	Data []byte
	// Anchor ties the snapshot to the history it was taken of; zero when
	// the snapshot holds no entry.
	Anchor Anchor

	// ID and Created are set by Save, and by Load from the manifest.
	ID      string
	Created time.Time
}

// Anchor is the snapshot's entry of highest Offset: the event partition
// holds, at Offset, an event of AggregateID (at Version, when it is not 0).
// A restore reads that record and refuses a snapshot whose anchor is not
// there: the snapshot is of another history (a topic deleted and created
// again under the same name), whatever its offsets.
type Anchor struct {
	Offset      int64  `json:"offset"`
	AggregateID string `json:"aggregate_id"`
	Version     uint64 `json:"version,omitempty"`
}

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

// DefaultChunkSize keeps a chunk record well below Kafka's default limit of
// about 1 MB per message (message.max.bytes), headers and batch overhead
// included.
const DefaultChunkSize = 512 << 10

// TopicName is the name of the snapshot topic of an event topic.
func TopicName(eventTopic string) string { return eventTopic + "-snapshots" }

// TopicConfig returns the configuration of a snapshot topic, for a Kafka
// provider's EnsureTopic: compacted, so that the tombstones Save writes for
// older snapshots free their space, with segments rolled and cleaned often
// enough that Load reads little more than the current snapshot. Create it
// with as many partitions as the event topic.
func TopicConfig() map[string]string {
	return map[string]string{
		"cleanup.policy":            "compact",
		"retention.ms":              "-1",
		"retention.bytes":           "-1",
		"segment.ms":                "600000", // 10 min
		"segment.bytes":             "67108864",
		"min.cleanable.dirty.ratio": "0.1",
		"delete.retention.ms":       "86400000", // a day: tombstones outlive any Load in progress
	}
}

// Store keeps snapshots on a provider: the snapshots of event partition p go
// to partition p of the store's topic, which should be compacted (see
// TopicConfig and the package documentation). It is safe for concurrent use.
type Store struct {
	p         provider.Provider
	w         provider.PartitionAppender
	chunkSize int
	log       *slog.Logger

	mu sync.Mutex
	// stored lists, per partition, the snapshots this store has seen in the
	// topic (loaded or saved) and not yet deleted: Save deletes the older
	// ones, and never one it has not seen (another writer's newer one).
	stored map[int32]map[string]*storedSnapshot
}

type storedSnapshot struct {
	offset int64
	keys   []string
	// kind is the state version and codec, "" for a snapshot without a
	// readable manifest: Save deletes those of its own kind (and manifest-
	// less leftovers) below it, and keeps the newest of every other kind,
	// so that during a rolling upgrade of the state version the old and
	// the new instances do not delete each other's newest snapshots.
	kind string
}

func kindOf(stateVersion uint32, codec string) string {
	return strconv.FormatUint(uint64(stateVersion), 10) + "/" + codec
}

// Option configures a Store.
type Option interface{ apply(*Store) }

type optionFunc func(*Store)

func (f optionFunc) apply(s *Store) { f(s) }

// WithChunkSize sets the largest chunk record, in bytes (default
// DefaultChunkSize). Keep it under the topic's max.message.bytes.
func WithChunkSize(n int) Option { return optionFunc(func(s *Store) { s.chunkSize = n }) }

// WithLogger sets the logger for problems that do not fail a call (an older
// snapshot that could not be deleted yet). The default discards.
func WithLogger(l *slog.Logger) Option { return optionFunc(func(s *Store) { s.log = l }) }

// NewStore returns a store on p, a provider on the snapshot topic (not the
// event topic). p must implement provider.PartitionAppender.
func NewStore(p provider.Provider, opts ...Option) (*Store, error) {
	if p == nil {
		return nil, errors.New("snapshot: nil provider")
	}
	w, ok := p.(provider.PartitionAppender)
	if !ok {
		return nil, fmt.Errorf("snapshot: provider %T cannot append to a chosen partition (provider.PartitionAppender)", p)
	}
	s := &Store{p: p, w: w, chunkSize: DefaultChunkSize, stored: make(map[int32]map[string]*storedSnapshot)}
	for _, o := range opts {
		o.apply(s)
	}
	if s.chunkSize < 1 {
		return nil, fmt.Errorf("snapshot: chunk size %d", s.chunkSize)
	}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	return s, nil
}

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
