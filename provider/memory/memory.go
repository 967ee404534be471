// Package memory is an in-process, partitioned event log implementing
// [provider.Provider] with Kafka's semantics: records with the same key go to
// the same partition (murmur2, as Kafka's clients choose), each partition
// numbers its records from offset 0, and reads see offsets, not positions in
// a slice, so [Provider.Compact] leaves gaps as Kafka's log cleaner does.
//
// It keeps everything in memory and forgets it when the process ends: use it
// for tests, examples and demos.
//
// It also implements [provider.Grouper] within the process: members of a
// group share the partitions in a balanced, sticky assignment, and a
// partition moves cooperatively, first revoked from its owner, then assigned
// to the next. [Provider.Expel] drops a member as a session timeout would, so
// that tests can exercise a lost member.
package memory

import (
	"bytes"
	"context"
	"fmt"
	"slices"
	"sort"
	"sync"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/provider"
)

var _ provider.Provider = (*Provider)(nil)

// DefaultBatchSize is the batch size Read uses when asked for 0.
const DefaultBatchSize = 1024

// Provider is an in-memory event log. The zero value is not usable; call New.
type Provider struct {
	mu      sync.RWMutex
	parts   []partition
	changed chan struct{} // closed and replaced by every append, to wake followers
	closed  bool
	groups  map[string]*group
	members map[*member]struct{} // members whose callback goroutine still runs
}

type partition struct {
	records []event.Record // ascending offsets, possibly with gaps
	next    int64          // offset of the next record appended
}

// New returns an empty log of the given number of partitions.
func New(partitions int) (*Provider, error) {
	if partitions < 1 {
		return nil, fmt.Errorf("memory: %d partitions: need at least 1", partitions)
	}
	return &Provider{parts: make([]partition, partitions), changed: make(chan struct{})}, nil
}

// Partitions implements provider.Provider. Low is always 0: nothing expires.
func (p *Provider) Partitions(ctx context.Context) ([]provider.Partition, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return nil, provider.ErrClosed
	}
	ps := make([]provider.Partition, len(p.parts))
	for i := range p.parts {
		ps[i] = provider.Partition{ID: int32(i), High: p.parts[i].next}
	}
	return ps, nil
}

// Append implements provider.Provider. Records are copied, so the caller may
// reuse their memory.
func (p *Provider) Append(ctx context.Context, records []event.Record) ([]provider.Position, error) {
	return p.appendTo(ctx, -1, records)
}

var _ provider.PartitionAppender = (*Provider)(nil)

// AppendPartition implements provider.PartitionAppender.
func (p *Provider) AppendPartition(ctx context.Context, partition int32, records []event.Record) ([]provider.Position, error) {
	if partition < 0 {
		return nil, fmt.Errorf("memory: append to partition %d", partition)
	}
	return p.appendTo(ctx, partition, records)
}

// appendTo appends records to partition, or where their keys hash to when
// it is -1.
func (p *Provider) appendTo(ctx context.Context, partition int32, records []event.Record) ([]provider.Position, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if err := checkKeys(records); err != nil {
		return nil, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil, provider.ErrClosed
	}
	if int(partition) >= len(p.parts) {
		return nil, fmt.Errorf("memory: append to partition %d: the topic has %d", partition, len(p.parts))
	}
	return p.appendLocked(records, partition), nil
}

func checkKeys(records []event.Record) error {
	for i, r := range records {
		if len(r.Key) == 0 {
			return fmt.Errorf("memory: append record %d: empty key", i)
		}
	}
	return nil
}

// appendLocked writes records, copied, to partition (to the partitions
// their keys hash to when it is -1) and wakes followers. The caller holds
// p.mu for writing.
func (p *Provider) appendLocked(records []event.Record, partition int32) []provider.Position {
	pos := make([]provider.Position, len(records))
	for i, r := range records {
		id := partition
		if id < 0 {
			id = provider.PartitionFor(r.Key, len(p.parts))
		}
		part := &p.parts[id]
		stored := event.Record{
			Key:       bytes.Clone(r.Key),
			Value:     bytes.Clone(r.Value),
			Headers:   cloneHeaders(r.Headers),
			Partition: id,
			Offset:    part.next,
		}
		part.records = append(part.records, stored)
		pos[i] = provider.Position{Partition: id, Offset: part.next}
		part.next++
	}
	close(p.changed)
	p.changed = make(chan struct{})
	return pos
}

func cloneHeaders(hs []event.Header) []event.Header {
	out := make([]event.Header, len(hs))
	for i, h := range hs {
		out[i] = event.Header{Key: h.Key, Value: bytes.Clone(h.Value)}
	}
	return out
}

// Read implements provider.Provider. Batches share the log's memory: fn must
// not modify their bytes.
func (p *Provider) Read(ctx context.Context, ranges []provider.Range, batchSize int, fn func(provider.Batch) error) error {
	if batchSize <= 0 {
		batchSize = DefaultBatchSize
	}
	type cursor struct {
		provider.Range
		pos int64
	}
	cursors := make([]cursor, 0, len(ranges))
	p.mu.RLock()
	closed, n := p.closed, len(p.parts)
	p.mu.RUnlock()
	if closed {
		return provider.ErrClosed
	}
	for _, r := range ranges {
		if r.Partition < 0 || int(r.Partition) >= n {
			return fmt.Errorf("memory: read partition %d: no such partition (topic has %d)", r.Partition, n)
		}
		if r.Start < 0 {
			return fmt.Errorf("memory: read partition %d: start offset %d out of range", r.Partition, r.Start)
		}
		if r.Start < r.End {
			cursors = append(cursors, cursor{r, r.Start})
		}
	}
	for len(cursors) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		p.mu.RLock()
		if p.closed {
			p.mu.RUnlock()
			return provider.ErrClosed
		}
		wake := p.changed
		var batches []provider.Batch
		for i := range cursors {
			c := &cursors[i]
			part := &p.parts[c.Partition]
			if c.pos > part.next {
				p.mu.RUnlock()
				return fmt.Errorf("memory: read partition %d: start offset %d out of range (end %d)", c.Partition, c.pos, part.next)
			}
			limit := min(c.End, part.next)
			if c.pos >= limit {
				continue
			}
			first := sort.Search(len(part.records), func(i int) bool { return part.records[i].Offset >= c.pos })
			last := first
			for last < len(part.records) && last-first < batchSize && part.records[last].Offset < limit {
				last++
			}
			next := limit
			if last < len(part.records) && part.records[last].Offset < limit {
				next = part.records[last].Offset
			}
			batches = append(batches, provider.Batch{
				Partition: c.Partition,
				Records:   slices.Clone(part.records[first:last]),
				Next:      next,
			})
			c.pos = next
		}
		p.mu.RUnlock()
		for _, b := range batches {
			if err := fn(b); err != nil {
				return err
			}
		}
		cursors = slices.DeleteFunc(cursors, func(c cursor) bool { return c.pos >= c.End })
		if len(batches) == 0 && len(cursors) > 0 {
			// Every remaining range follows and has caught up: wait for an append.
			select {
			case <-wake:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
	return nil
}

var _ provider.RetentionChecker = (*Provider)(nil)

// CheckRetention implements provider.RetentionChecker: nothing expires from
// the log, and records go only when a test calls Compact, so it returns nil
// (ErrClosed after Close, the context's error once it is done).
func (p *Provider) CheckRetention(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return provider.ErrClosed
	}
	return nil
}

// Compact keeps only the last record of each key in every partition, as
// Kafka's log cleaner does for a compacted topic. Offsets do not change, so
// reads see gaps where records were removed. The last record of a partition is
// always kept, like the cleaner never touching the active segment.
func (p *Provider) Compact() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := range p.parts {
		part := &p.parts[i]
		lastOf := make(map[string]int64, len(part.records))
		for _, r := range part.records {
			lastOf[string(r.Key)] = r.Offset
		}
		part.records = slices.DeleteFunc(part.records, func(r event.Record) bool {
			return lastOf[string(r.Key)] != r.Offset
		})
	}
}

// Close implements provider.Provider. Reads and appends in progress end with
// ErrClosed. Group members end too: each gets OnRevoked(owned, false) and
// refuses later calls with ErrClosed; Close returns once their callbacks have
// run, so it must not be called from one.
func (p *Provider) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	close(p.changed)
	p.changed = make(chan struct{})
	ending := p.endMembersLocked()
	p.mu.Unlock()
	for _, m := range ending {
		<-m.done
	}
	return nil
}
