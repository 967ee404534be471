package repository

import (
	"slices"
	"time"
)

// Stats describes a finished restore.
type Stats struct {
	// Events is the number of events applied.
	Events int64
	// Duplicates counts events skipped because their version was not newer
	// than their aggregate's.
	Duplicates int64
	// Skipped counts events of unregistered types skipped under
	// WithSkipUnknownTypes, and events of other aggregate types
	// (WithAggregateType).
	Skipped int64
	// Aggregates is the number of aggregates in memory, deleted included.
	Aggregates int
	// Bytes is the size of the records read: keys, values and headers.
	Bytes    int64
	Duration time.Duration
	// Partitions says how each partition was last restored: from which
	// snapshot, or why from its first event (WithSnapshots).
	Partitions []PartitionStats
}

// EventsPerSecond is the restore's rate.
func (s Stats) EventsPerSecond() float64 {
	if s.Duration <= 0 {
		return 0
	}
	return float64(s.Events+s.Duplicates+s.Skipped) / s.Duration.Seconds()
}

// Stats returns the statistics of the restores so far (with WithGroup, of
// every partition taken over, summed); zero before the first one finished.
func (r *Repository[A]) Stats() Stats {
	r.statsMu.Lock()
	defer r.statsMu.Unlock()
	s := r.stats
	s.Partitions = sortedPartitionStats(r.partStats)
	for i, ps := range s.Partitions {
		s.Partitions[i].Applied = -1
		if pt := r.parts[ps.Partition]; pt.status.Load() == partServing {
			s.Partitions[i].Aggregates, s.Partitions[i].Bytes = pt.sampledBytes()
			s.Partitions[i].Applied = pt.upTo()
			s.Aggregates += s.Partitions[i].Aggregates
		}
	}
	return s
}

// PartitionStats says how a partition was last restored.
type PartitionStats struct {
	Partition int32
	// Snapshot is the offset of the snapshot the partition was restored
	// from, -1 when it was read from its first event.
	Snapshot int64
	// Fallback says why no snapshot was used, when snapshots are on.
	Fallback string
	// Start and End are the offsets the restore read between.
	Start, End int64
	// Aggregates and Bytes describe what the partition holds in memory
	// now, deleted aggregates included; Bytes is an estimate (the entries,
	// their ids, and what their states refer to, sampled). Zero for a
	// partition this instance does not serve.
	Aggregates int
	Bytes      int64
	// Applied is the offset up to which this instance has every record of
	// the partition in memory: read by the restore or Follow, or
	// acknowledged to its appends. The log's end offset minus Applied is
	// how far it lags, in offsets (transaction markers included). -1 for a
	// partition it does not serve (or not yet).
	Applied int64
}

// sortedPartitionStats returns the stats of every partition restored so far.
func sortedPartitionStats(m map[int32]PartitionStats) []PartitionStats {
	out := make([]PartitionStats, 0, len(m))
	for _, s := range m {
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b PartitionStats) int { return int(a.Partition - b.Partition) })
	return out
}
