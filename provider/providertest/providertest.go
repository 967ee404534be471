// Package providertest is the conformance suite every [provider.Provider]
// passes before it is considered usable: run it from a short test in the
// implementation's package with [Run].
package providertest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/provider"
)

// Harness adapts an implementation to the suite.
type Harness struct {
	// New returns a provider on a new, empty topic of the given number of
	// partitions. The harness closes it when the test ends.
	New func(t *testing.T, partitions int) provider.Provider
	// Compact, if set, compacts p's topic (keeping the last record of each
	// key) and returns once a read sees the result.
	Compact func(t *testing.T, p provider.Provider)
	// Unreachable, if set, returns a provider whose log cannot be reached,
	// configured to give up after timeout.
	Unreachable func(t *testing.T, timeout time.Duration) provider.Provider
	// Timeout bounds each read of the suite; 0 means 60 s.
	Timeout time.Duration
}

// Run runs the suite.
func Run(t *testing.T, h Harness) {
	if h.Timeout == 0 {
		h.Timeout = 60 * time.Second
	}
	tests := []struct {
		name string
		fn   func(*testing.T, Harness)
	}{
		{"RestoresEveryEventInOrder", testRestoresEveryEventInOrder},
		{"EmptyTopic", testEmptyTopic},
		{"EmptyPartitionsAmongFull", testEmptyPartitionsAmongFull},
		{"ReadFromOffsets", testReadFromOffsets},
		{"AppendsDuringReadAreLeftToFollow", testAppendsDuringReadAreLeftToFollow},
		{"CompactedTopicReadsToTheEnd", testCompactedTopic},
		{"UndecodableRecordNamesItsPosition", testUndecodableRecord},
		{"UnreachableIsUnavailable", testUnreachable},
		{"CancelMidReadReturnsPromptly", testCancelMidRead},
		{"ConcurrentAppendsAllRestored", testConcurrentAppends},
		{"HandlerErrorStopsRead", testHandlerError},
		{"ClosedProviderRefuses", testClosed},
		{"EmptyKeyRefused", testEmptyKeyRefused},
		{"AppendPartition", testAppendPartition},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) { tc.fn(t, h) })
	}
}

func newProvider(t *testing.T, h Harness, partitions int) provider.Provider {
	t.Helper()
	p := h.New(t, partitions)
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func (h Harness) ctx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(t.Context(), h.Timeout)
	t.Cleanup(cancel)
	return ctx
}

// envelope makes the version'th event of aggregate id, with a payload that
// names both so that a mixed-up record shows.
func envelope(id string, version uint64) event.Envelope {
	return event.Envelope{
		ID:          event.NewID(),
		Type:        "Tested",
		AggregateID: id,
		Version:     version,
		Time:        time.Now().UTC(),
		Metadata:    map[string]string{"correlation-id": id + "-corr"},
		ContentType: event.ContentTypeJSON,
		Payload:     fmt.Appendf(nil, `{"id":%q,"version":%d}`, id, version),
	}
}

type appended struct {
	env event.Envelope
	pos provider.Position
}

// appendEvents appends versions 1..perAggregate of each aggregate, one
// Append per round of aggregates, and returns what it wrote.
func appendEvents(t *testing.T, ctx context.Context, p provider.Provider, ids []string, perAggregate int) []appended {
	t.Helper()
	var out []appended
	for v := 1; v <= perAggregate; v++ {
		envs := make([]event.Envelope, len(ids))
		recs := make([]event.Record, len(ids))
		for i, id := range ids {
			envs[i] = envelope(id, uint64(v))
			recs[i] = envs[i].Record()
		}
		pos, err := p.Append(ctx, recs)
		require.NoError(t, err)
		require.Len(t, pos, len(recs))
		for i := range envs {
			out = append(out, appended{envs[i], pos[i]})
		}
	}
	return out
}

func aggregateIDs(n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("agg-%04d", i)
	}
	return ids
}

// readAll reads ranges to their ends and returns the envelopes by position.
func readAll(t *testing.T, ctx context.Context, p provider.Provider, ranges []provider.Range, batchSize int) map[provider.Position]event.Envelope {
	t.Helper()
	got := make(map[provider.Position]event.Envelope)
	next := make(map[int32]int64)
	err := p.Read(ctx, ranges, batchSize, func(b provider.Batch) error {
		if batchSize > 0 && len(b.Records) > batchSize {
			return fmt.Errorf("batch of %d records, asked for at most %d", len(b.Records), batchSize)
		}
		for _, r := range b.Records {
			if r.Partition != b.Partition {
				return fmt.Errorf("record of partition %d in a batch of %d", r.Partition, b.Partition)
			}
			if r.Offset < next[b.Partition] {
				return fmt.Errorf("partition %d: offset %d after %d", b.Partition, r.Offset, next[b.Partition])
			}
			next[b.Partition] = r.Offset + 1
			env, err := event.ParseRecord(r)
			if err != nil {
				return err
			}
			got[provider.Position{Partition: r.Partition, Offset: r.Offset}] = env
		}
		if b.Next < next[b.Partition] {
			return fmt.Errorf("partition %d: batch Next %d before its last record", b.Partition, b.Next)
		}
		next[b.Partition] = b.Next
		return nil
	})
	require.NoError(t, err)
	return got
}

func partitionsAndRanges(t *testing.T, ctx context.Context, p provider.Provider) ([]provider.Partition, []provider.Range) {
	t.Helper()
	ps, err := p.Partitions(ctx)
	require.NoError(t, err)
	return ps, provider.Ranges(ps)
}

func sameEnvelope(t *testing.T, want, got event.Envelope) {
	t.Helper()
	got.Partition, got.Offset = 0, 0
	assert.Equal(t, want.ID, got.ID)
	assert.Equal(t, want.Type, got.Type)
	assert.Equal(t, want.AggregateID, got.AggregateID)
	assert.Equal(t, want.Version, got.Version)
	assert.True(t, want.Time.Equal(got.Time), "time %v, want %v", got.Time, want.Time)
	assert.Equal(t, want.Metadata, got.Metadata)
	assert.Equal(t, want.ContentType, got.ContentType)
	assert.Equal(t, string(want.Payload), string(got.Payload))
}

func testRestoresEveryEventInOrder(t *testing.T, h Harness) {
	const partitions, aggregates, versions = 4, 50, 20
	ctx := h.ctx(t)
	p := newProvider(t, h, partitions)
	written := appendEvents(t, ctx, p, aggregateIDs(aggregates), versions)

	ps, ranges := partitionsAndRanges(t, ctx, p)
	require.Len(t, ps, partitions)
	var total int64
	for _, part := range ps {
		total += part.High - part.Low
	}
	assert.EqualValues(t, aggregates*versions, total, "sum of High-Low")

	got := readAll(t, ctx, p, ranges, 64)
	require.Len(t, got, len(written))
	for _, w := range written {
		env, ok := got[w.pos]
		if !assert.True(t, ok, "no record at %+v", w.pos) {
			continue
		}
		sameEnvelope(t, w.env, env)
		assert.Equal(t, provider.PartitionFor([]byte(w.env.AggregateID), partitions), w.pos.Partition,
			"aggregate %s in the partition murmur2 chooses", w.env.AggregateID)
	}
	// Per key, offsets grow with versions.
	last := map[string]appended{}
	for _, w := range written {
		if prev, ok := last[w.env.AggregateID]; ok {
			assert.Equal(t, prev.pos.Partition, w.pos.Partition)
			assert.Greater(t, w.pos.Offset, prev.pos.Offset)
		}
		last[w.env.AggregateID] = w
	}
}

func testEmptyTopic(t *testing.T, h Harness) {
	ctx := h.ctx(t)
	p := newProvider(t, h, 3)
	ps, ranges := partitionsAndRanges(t, ctx, p)
	require.Len(t, ps, 3)
	for _, part := range ps {
		assert.Equal(t, part.Low, part.High, "partition %d", part.ID)
	}
	assert.Empty(t, readAll(t, ctx, p, ranges, 0))
}

// keysFor returns n keys that all land in partition id.
func keysFor(id int32, partitions, n int) []string {
	var keys []string
	for i := 0; len(keys) < n; i++ {
		k := fmt.Sprintf("key-%d", i)
		if provider.PartitionFor([]byte(k), partitions) == id {
			keys = append(keys, k)
		}
	}
	return keys
}

func testEmptyPartitionsAmongFull(t *testing.T, h Harness) {
	const partitions = 6
	ctx := h.ctx(t)
	p := newProvider(t, h, partitions)
	ids := append(keysFor(1, partitions, 5), keysFor(4, partitions, 5)...)
	written := appendEvents(t, ctx, p, ids, 3)
	_, ranges := partitionsAndRanges(t, ctx, p)
	got := readAll(t, ctx, p, ranges, 0)
	assert.Len(t, got, len(written))
}

func testReadFromOffsets(t *testing.T, h Harness) {
	const partitions = 2
	ctx := h.ctx(t)
	p := newProvider(t, h, partitions)
	keys := keysFor(0, partitions, 1)
	written := appendEvents(t, ctx, p, keys, 10)
	ps, _ := partitionsAndRanges(t, ctx, p)
	from := written[4].pos.Offset
	got := readAll(t, ctx, p, []provider.Range{{Partition: 0, Start: from, End: ps[0].High}}, 3)
	require.Len(t, got, 6)
	for _, w := range written[4:] {
		sameEnvelope(t, w.env, got[w.pos])
	}
}

func testAppendsDuringReadAreLeftToFollow(t *testing.T, h Harness) {
	const partitions = 3
	ctx := h.ctx(t)
	p := newProvider(t, h, partitions)
	before := appendEvents(t, ctx, p, aggregateIDs(10), 10)
	ps, ranges := partitionsAndRanges(t, ctx, p)

	var during []appended
	n := 0
	err := p.Read(ctx, ranges, 10, func(b provider.Batch) error {
		if during == nil {
			during = appendEvents(t, ctx, p, aggregateIDs(10), 1)
		}
		n += len(b.Records)
		return nil
	})
	require.NoError(t, err)
	assert.Equal(t, len(before), n, "the read ends at the end offsets captured before it")

	followCtx, stop := context.WithCancel(ctx)
	defer stop()
	follow := make([]provider.Range, len(ps))
	for i, part := range ps {
		follow[i] = provider.Range{Partition: part.ID, Start: part.High, End: provider.Follow}
	}
	seen := make(map[provider.Position]bool)
	var later []appended
	err = p.Read(followCtx, follow, 0, func(b provider.Batch) error {
		for _, r := range b.Records {
			seen[provider.Position{Partition: r.Partition, Offset: r.Offset}] = true
		}
		if len(seen) == len(during) && later == nil {
			later = appendEvents(t, ctx, p, aggregateIDs(3), 1)
		}
		if len(seen) == len(during)+len(later) {
			stop()
		}
		return nil
	})
	require.ErrorIs(t, err, context.Canceled)
	for _, w := range append(during, later...) {
		assert.True(t, seen[w.pos], "follow delivered the record at %+v", w.pos)
	}
}

func testCompactedTopic(t *testing.T, h Harness) {
	if h.Compact == nil {
		t.Skip("the harness cannot compact a topic")
	}
	const partitions = 2
	ctx := h.ctx(t)
	p := newProvider(t, h, partitions)
	appendEvents(t, ctx, p, aggregateIDs(20), 5)
	h.Compact(t, p)
	_, ranges := partitionsAndRanges(t, ctx, p)
	got := readAll(t, ctx, p, ranges, 7)
	ids := map[string]bool{}
	for _, env := range got {
		ids[env.AggregateID] = true
	}
	for _, id := range aggregateIDs(20) {
		assert.True(t, ids[id], "compaction keeps the last record of %s", id)
	}
	assert.Less(t, len(got), 100, "compaction removed records")
}

func testUndecodableRecord(t *testing.T, h Harness) {
	ctx := h.ctx(t)
	p := newProvider(t, h, 1)
	good := envelope("agg", 1)
	pos, err := p.Append(ctx, []event.Record{good.Record(), {Key: []byte("agg"), Value: []byte{0xc1}}})
	require.NoError(t, err)
	_, ranges := partitionsAndRanges(t, ctx, p)

	var parseErr error
	err = p.Read(ctx, ranges, 0, func(b provider.Batch) error {
		for _, r := range b.Records {
			if _, err := event.ParseRecord(r); err != nil {
				parseErr = err
				return err
			}
		}
		return nil
	})
	require.ErrorIs(t, err, event.ErrMalformed, "the handler's error comes back as is")
	var re *event.RecordError
	require.ErrorAs(t, parseErr, &re)
	assert.Equal(t, pos[1].Partition, re.Partition)
	assert.Equal(t, pos[1].Offset, re.Offset)
}

func testUnreachable(t *testing.T, h Harness) {
	if h.Unreachable == nil {
		t.Skip("an in-process log is never unreachable")
	}
	const timeout = 2 * time.Second
	p := h.Unreachable(t, timeout)
	t.Cleanup(func() { _ = p.Close() })
	ctx := h.ctx(t)
	for _, call := range []struct {
		name string
		fn   func() error
	}{
		{"Partitions", func() error { _, err := p.Partitions(ctx); return err }},
		{"Append", func() error {
			e := envelope("agg", 1)
			_, err := p.Append(ctx, []event.Record{e.Record()})
			return err
		}},
		{"Read", func() error {
			return p.Read(ctx, []provider.Range{{Partition: 0, Start: 0, End: 1}}, 0, func(provider.Batch) error { return nil })
		}},
	} {
		start := time.Now()
		err := call.fn()
		took := time.Since(start)
		assert.ErrorIs(t, err, provider.ErrUnavailable, call.name)
		assert.Less(t, took, 4*timeout, "%s gave up within a bound", call.name)
	}
}

func testCancelMidRead(t *testing.T, h Harness) {
	ctx := h.ctx(t)
	p := newProvider(t, h, 2)
	appendEvents(t, ctx, p, aggregateIDs(50), 10)
	_, ranges := partitionsAndRanges(t, ctx, p)
	goroutines := runtime.NumGoroutine()

	readCtx, cancel := context.WithCancel(ctx)
	var cancelled time.Time
	err := p.Read(readCtx, ranges, 5, func(provider.Batch) error {
		if cancelled.IsZero() {
			cancel()
			cancelled = time.Now()
		}
		return nil
	})
	require.ErrorIs(t, err, context.Canceled)
	assert.Less(t, time.Since(cancelled), 5*time.Second, "returned promptly after cancel")

	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > goroutines && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond) // polling for goroutines to end, with a deadline
	}
	assert.LessOrEqual(t, runtime.NumGoroutine(), goroutines, "no goroutine left behind")
}

func testConcurrentAppends(t *testing.T, h Harness) {
	const partitions, writers, appendsEach = 3, 16, 25
	ctx := h.ctx(t)
	p := newProvider(t, h, partitions)
	var (
		mu      sync.Mutex
		written []appended
		wg      sync.WaitGroup
		errs    = make(chan error, writers)
	)
	for w := range writers {
		wg.Go(func() {
			for i := range appendsEach {
				id := fmt.Sprintf("writer-%d", w)
				envs := []event.Envelope{envelope(id, uint64(2*i+1)), envelope(id, uint64(2*i+2))}
				pos, err := p.Append(ctx, []event.Record{envs[0].Record(), envs[1].Record()})
				if err != nil {
					errs <- err
					return
				}
				mu.Lock()
				written = append(written, appended{envs[0], pos[0]}, appended{envs[1], pos[1]})
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	_, ranges := partitionsAndRanges(t, ctx, p)
	got := readAll(t, ctx, p, ranges, 0)
	require.Len(t, got, writers*appendsEach*2)
	for _, w := range written {
		sameEnvelope(t, w.env, got[w.pos])
	}
	// Each writer's versions come back in order.
	byID := map[string]uint64{}
	for _, ps := range sortedPositions(got) {
		env := got[ps]
		assert.Equal(t, byID[env.AggregateID]+1, env.Version, "%s at %+v", env.AggregateID, ps)
		byID[env.AggregateID] = env.Version
	}
}

func sortedPositions(m map[provider.Position]event.Envelope) []provider.Position {
	out := slices.Collect(maps.Keys(m))
	slices.SortFunc(out, func(a, b provider.Position) int {
		return cmp.Or(cmp.Compare(a.Partition, b.Partition), cmp.Compare(a.Offset, b.Offset))
	})
	return out
}

func testHandlerError(t *testing.T, h Harness) {
	ctx := h.ctx(t)
	p := newProvider(t, h, 1)
	appendEvents(t, ctx, p, aggregateIDs(3), 3)
	_, ranges := partitionsAndRanges(t, ctx, p)
	stop := errors.New("stop here")
	calls := 0
	err := p.Read(ctx, ranges, 1, func(provider.Batch) error {
		calls++
		return stop
	})
	assert.Same(t, stop, err)
	assert.Equal(t, 1, calls)
}

func testClosed(t *testing.T, h Harness) {
	ctx := h.ctx(t)
	p := h.New(t, 1)
	require.NoError(t, p.Close())
	_, err := p.Partitions(ctx)
	assert.ErrorIs(t, err, provider.ErrClosed)
	e := envelope("agg", 1)
	_, err = p.Append(ctx, []event.Record{e.Record()})
	assert.ErrorIs(t, err, provider.ErrClosed)
	err = p.Read(ctx, []provider.Range{{Partition: 0, Start: 0, End: 1}}, 0, func(provider.Batch) error { return nil })
	assert.ErrorIs(t, err, provider.ErrClosed)
}

func testEmptyKeyRefused(t *testing.T, h Harness) {
	ctx := h.ctx(t)
	p := newProvider(t, h, 2)
	before, _ := partitionsAndRanges(t, ctx, p)
	_, err := p.Append(ctx, []event.Record{{Value: []byte("no key")}})
	require.Error(t, err, "a record without a key belongs to no aggregate")
	after, _ := partitionsAndRanges(t, ctx, p)
	assert.Equal(t, before, after, "nothing was appended")
}

// testAppendPartition: a provider.PartitionAppender writes every record to
// the partition named, whatever the keys hash to, tombstones included, and
// refuses a partition the topic does not have.
func testAppendPartition(t *testing.T, h Harness) {
	p := newProvider(t, h, 3)
	pa, ok := p.(provider.PartitionAppender)
	if !ok {
		t.Skipf("%T does not implement provider.PartitionAppender", p)
	}
	ctx := h.ctx(t)
	recs := []event.Record{
		{Key: []byte("a"), Value: []byte("1")},
		{Key: []byte("b"), Value: []byte("2")},
		{Key: []byte("a")}, // tombstone
	}
	pos, err := pa.AppendPartition(ctx, 2, recs)
	require.NoError(t, err)
	require.Len(t, pos, len(recs))
	for i, ps := range pos {
		assert.Equal(t, int32(2), ps.Partition, "record %d", i)
	}
	var got []event.Record
	require.NoError(t, p.Read(ctx, []provider.Range{{Partition: 2, Start: pos[0].Offset, End: pos[2].Offset + 1}}, 0,
		func(b provider.Batch) error {
			got = append(got, b.Records...)
			return nil
		}))
	require.Len(t, got, len(recs))
	for i, r := range got {
		assert.Equal(t, string(recs[i].Key), string(r.Key), "record %d", i)
		assert.Equal(t, string(recs[i].Value), string(r.Value), "record %d", i)
	}
	assert.Empty(t, got[2].Value, "a tombstone reads back without a value")

	_, err = pa.AppendPartition(ctx, 3, recs[:1])
	require.Error(t, err, "partition 3 of a 3-partition topic")
	assert.NotErrorIs(t, err, provider.ErrOutcomeUnknown)
}
