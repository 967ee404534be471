package snapshot

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"time"

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
