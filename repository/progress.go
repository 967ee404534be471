package repository

import (
	"sync"
	"sync/atomic"
	"time"
)

// Progress is how far a restore is.
type Progress struct {
	// Done and Total count records: Total is the sum over partitions of
	// the offsets between start and the end captured when the restore
	// began. Done reaches Total when the restore is complete. With
	// WithGroup, only the partitions this instance owns count, each from
	// its latest takeover.
	Done, Total int64
	Partitions  []PartitionProgress
	Elapsed     time.Duration
}

// PartitionProgress is one partition's share of Progress.
type PartitionProgress struct {
	Partition   int32
	Done, Total int64
}

// EventsPerSecond is the rate so far.
func (p Progress) EventsPerSecond() float64 {
	if p.Elapsed <= 0 {
		return 0
	}
	return float64(p.Done) / p.Elapsed.Seconds()
}

type progressTracker struct {
	mu      sync.Mutex // serialises the callback
	start   time.Time
	starts  []int64 // by partition id
	ends    []int64
	tracked []bool // restored or being restored by this instance
	applied []*atomic.Int64
	last    time.Time
}

// Progress returns how far the restore is; before Restore starts, it is all
// zero.
func (r *Repository[A]) Progress() Progress {
	t := &r.progress
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.snapshot()
}

func (t *progressTracker) snapshot() Progress {
	var p Progress
	if !t.start.IsZero() {
		p.Elapsed = time.Since(t.start)
	}
	for i := range t.ends {
		if !t.tracked[i] {
			continue
		}
		total := t.ends[i] - t.starts[i]
		done := min(t.applied[i].Load()-t.starts[i], total)
		p.Partitions = append(p.Partitions, PartitionProgress{Partition: int32(i), Done: done, Total: total})
		p.Done += done
		p.Total += total
	}
	return p
}

func (r *Repository[A]) reportProgress(final bool) {
	fn := r.settings.progress
	if fn == nil {
		return
	}
	interval := r.settings.progressInterval
	if interval <= 0 {
		interval = 250 * time.Millisecond
	}
	t := &r.progress
	if !final && !t.mu.TryLock() {
		return // another worker is reporting
	}
	if final {
		t.mu.Lock()
	}
	defer t.mu.Unlock()
	if !final && time.Since(t.last) < interval {
		return
	}
	t.last = time.Now()
	fn(t.snapshot())
}
