package consume

import (
	"context"
	"fmt"
	"slices"
	"sync"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/provider"
)

// StreamMode chooses where a Stream starts and whether it ends.
type StreamMode int

const (
	// Replay reads every partition from its first record to the end offsets
	// it has when the stream starts, then returns nil (a "cold" stream).
	Replay StreamMode = iota
	// ReplayThenFollow replays, then keeps reading live records until the
	// context ends ("cold-hot"). StreamOptions.CaughtUp tells when the
	// replay part is done.
	ReplayThenFollow
	// Live reads only records appended after the stream starts, until the
	// context ends ("hot").
	Live
)

func (m StreamMode) String() string {
	switch m {
	case Replay:
		return "replay"
	case ReplayThenFollow:
		return "replay-then-follow"
	case Live:
		return "live"
	}
	return fmt.Sprintf("StreamMode(%d)", int(m))
}

// StreamOptions tune a Stream. The zero value is fine.
type StreamOptions struct {
	// BatchSize is passed to Read; 0 is the provider's default.
	BatchSize int
	// CaughtUp, if set, is called once, from the stream's goroutine, when
	// every partition has been read up to the end offsets captured at start
	// (at once for Live and for an empty topic).
	CaughtUp func()
	// KeepControlRecords hands fn the library's control records too
	// (event.IsControl: the fences the repository appends to settle an
	// append of unknown outcome). By default they are dropped: they are no
	// events, and event.ParseRecord refuses them.
	KeepControlRecords bool
	// From, for Replay and ReplayThenFollow, starts the partitions it
	// names at the offset given instead of their first record: a
	// projection resuming from its own checkpoint or from a snapshot. An
	// offset below the partition's first offset or beyond its end is an
	// error (records would be missed, or the offset is of another
	// history).
	From map[int32]int64
	// Partitions, if set, reads only these partitions (a consumer group's
	// share of the topic) instead of every one. A partition the topic does
	// not have is an error.
	Partitions []int32
}

// Stream reads p's records in the given mode and calls fn with each batch,
// from one goroutine at a time, in offset order per partition. It returns nil
// when a Replay ends, ctx's error when the context ends, or the first other
// error (fn's included).
//
// Projections use it: decode each record with event.ParseRecord and a
// registry (or event.Handlers), apply it to the read model, and mark the
// service ready in CaughtUp. A batch may be empty once control records are
// dropped: its Next still moves the partition's position.
func Stream(ctx context.Context, p provider.Provider, mode StreamMode, opts StreamOptions, fn func(provider.Batch) error) error {
	ps, err := p.Partitions(ctx)
	if err != nil {
		return err
	}
	if opts.Partitions != nil {
		if ps, err = onlyPartitions(ps, opts.Partitions); err != nil {
			return err
		}
	}
	ranges := make([]provider.Range, len(ps))
	behind := make(map[int32]int64) // partitions not yet at their start-time end
	for i, part := range ps {
		if from, ok := opts.From[part.ID]; ok && mode != Live {
			if from < part.Low || from > part.High {
				return fmt.Errorf("provider: stream: partition %d: start offset %d is outside [%d, %d]", part.ID, from, part.Low, part.High)
			}
			part.Low = from
		}
		switch mode {
		case Replay:
			ranges[i] = provider.Range{Partition: part.ID, Start: part.Low, End: part.High}
		case ReplayThenFollow:
			ranges[i] = provider.Range{Partition: part.ID, Start: part.Low, End: provider.Follow}
		case Live:
			ranges[i] = provider.Range{Partition: part.ID, Start: part.High, End: provider.Follow}
		default:
			return fmt.Errorf("provider: stream: unknown mode %v", mode)
		}
		if mode != Live && part.High > part.Low {
			behind[part.ID] = part.High
		}
	}
	var once sync.Once
	caughtUp := func() {
		if opts.CaughtUp != nil {
			once.Do(opts.CaughtUp)
		}
	}
	if len(behind) == 0 {
		caughtUp()
	}
	err = p.Read(ctx, ranges, opts.BatchSize, func(b provider.Batch) error {
		if !opts.KeepControlRecords {
			b.Records = withoutControl(b.Records)
		}
		if err := fn(b); err != nil {
			return err
		}
		if end, ok := behind[b.Partition]; ok && b.Next >= end {
			delete(behind, b.Partition)
			if len(behind) == 0 {
				caughtUp()
			}
		}
		return nil
	})
	if err == nil && len(behind) == 0 {
		caughtUp()
	}
	return err
}

// onlyPartitions returns the partitions of ps that ids names, in ids' order.
func onlyPartitions(ps []provider.Partition, ids []int32) ([]provider.Partition, error) {
	out := make([]provider.Partition, 0, len(ids))
	for _, id := range ids {
		i := slices.IndexFunc(ps, func(p provider.Partition) bool { return p.ID == id })
		if i < 0 {
			return nil, fmt.Errorf("provider: stream: no partition %d", id)
		}
		out = append(out, ps[i])
	}
	return out, nil
}

// withoutControl returns records without the control records, copying only
// when there is one to drop.
func withoutControl(records []event.Record) []event.Record {
	for i := range records {
		if !event.IsControl(records[i]) {
			continue
		}
		out := slices.Clone(records[:i])
		for _, r := range records[i+1:] {
			if !event.IsControl(r) {
				out = append(out, r)
			}
		}
		return out
	}
	return records
}
