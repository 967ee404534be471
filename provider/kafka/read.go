//go:build cgo

package kafka

import (
	"context"
	"fmt"
	"strconv"
	"time"
	"unsafe"

	ckafka "github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/provider"
)

// pollInterval bounds how long one Poll blocks, and so how late a cancelled
// context is noticed.
const pollInterval = 100 * time.Millisecond

// Read implements provider.Provider by assigning the partitions directly: no
// consumer group is joined and no offset is committed (librdkafka still wants
// a group.id, so a throwaway one is set). Isolation is read-committed: records
// of aborted transactions are skipped. A partition is done when the consumer's
// position reaches the range's End, so compaction gaps and transaction
// markers end it cleanly.
func (p *Provider) Read(ctx context.Context, ranges []provider.Range, batchSize int, fn func(provider.Batch) error) error {
	if p.isClosed() {
		return provider.ErrClosed
	}
	if batchSize <= 0 {
		batchSize = p.cfg.BatchSize
	}
	parts := make(map[int32]*readState, len(ranges))
	var assign []ckafka.TopicPartition
	for _, r := range ranges {
		if r.Start < 0 {
			return fmt.Errorf("kafka: read %s partition %d: start offset %d out of range", p.cfg.Topic, r.Partition, r.Start)
		}
		if r.Start >= r.End {
			continue
		}
		parts[r.Partition] = &readState{end: r.End, next: r.Start}
		assign = append(assign, ckafka.TopicPartition{Topic: &p.cfg.Topic, Partition: r.Partition, Offset: ckafka.Offset(r.Start)})
	}
	if len(assign) == 0 {
		return nil
	}
	c, err := p.newConsumer()
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.IncrementalAssign(assign); err != nil {
		return fmt.Errorf("kafka: read %s: assign: %w", p.cfg.Topic, err)
	}
	r := reader{p: p, c: c, parts: parts, left: len(parts), batchSize: batchSize, fn: fn, lastProgress: time.Now()}
	return r.run(ctx)
}

func (p *Provider) newConsumer() (*ckafka.Consumer, error) {
	cc := common(p.cfg)
	for k, v := range map[string]any{
		"group.id":                 "rehydrate-read-" + event.NewID(),
		"enable.auto.commit":       false,
		"enable.auto.offset.store": false,
		"enable.partition.eof":     true,
		"isolation.level":          "read_committed",
		// An offset below the log start (expired by retention) is an error,
		// never a silent jump to another offset.
		"auto.offset.reset": "error",
		// Restores read whole partitions: fetch big.
		"fetch.max.bytes":           64 << 20,
		"max.partition.fetch.bytes": 8 << 20,
		"fetch.wait.max.ms":         100,
		// librdkafka pauses fetching for this long whenever its prefetch
		// queue is full (default 1 s): a restore drains the queue much
		// sooner, and the pause halved the rate we measured.
		"fetch.queue.backoff.ms": 10,
	} {
		if _, set := p.cfg.Properties[k]; !set {
			cc[k] = v
		}
	}
	c, err := ckafka.NewConsumer(&cc)
	if err != nil {
		return nil, fmt.Errorf("kafka: consumer: %w", err)
	}
	go forwardLogs(c.Logs(), p.log)
	return c, nil
}

type readState struct {
	end     int64
	next    int64 // the read position: offset of the next record
	records []event.Record
	done    bool
}

type reader struct {
	p            *Provider
	c            *ckafka.Consumer
	parts        map[int32]*readState
	left         int // partitions not done
	batchSize    int
	fn           func(provider.Batch) error
	lastProgress time.Time
	lastCheck    time.Time
}

func (r *reader) run(ctx context.Context) error {
	for r.left > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		if r.p.isClosed() {
			return provider.ErrClosed
		}
		switch e := r.c.Poll(int(pollInterval.Milliseconds())).(type) {
		case *ckafka.Message:
			if err := r.message(e); err != nil {
				return err
			}
		case ckafka.PartitionEOF:
			if err := r.moveTo(e.Partition, int64(e.Offset)); err != nil {
				return err
			}
		case ckafka.Error:
			if err := r.clientError(e); err != nil {
				return err
			}
		case nil:
			if err := r.idle(); err != nil {
				return err
			}
		}
		if time.Since(r.lastCheck) >= pollInterval {
			r.lastCheck = time.Now()
			if err := r.check(ctx); err != nil {
				return err
			}
		}
	}
	return nil
}

func (r *reader) message(m *ckafka.Message) error {
	tp := m.TopicPartition
	if tp.Error != nil {
		return r.partitionError(tp.Partition, int64(tp.Offset), tp.Error)
	}
	s, ok := r.parts[tp.Partition]
	if !ok || s.done {
		return nil
	}
	off := int64(tp.Offset)
	if off >= s.end {
		return r.moveTo(tp.Partition, off)
	}
	r.lastProgress = time.Now()
	s.records = append(s.records, event.Record{
		Key:       m.Key,
		Value:     m.Value,
		Headers:   fromKafkaHeaders(m.Headers),
		Partition: tp.Partition,
		Offset:    off,
	})
	s.next = off + 1
	if s.next >= s.end {
		return r.finish(tp.Partition, s)
	}
	if len(s.records) >= r.batchSize {
		return r.flush(tp.Partition, s)
	}
	return nil
}

// fromKafkaHeaders reuses the client's header slice: event.Header has the
// layout of ckafka.Header (TestHeaderLayout checks it), and a restore reads
// millions of records.
func fromKafkaHeaders(hs []ckafka.Header) []event.Header {
	return unsafe.Slice((*event.Header)(unsafe.Pointer(unsafe.SliceData(hs))), len(hs))
}

// moveTo records that the partition's position reached pos without a record
// (end of partition, transaction markers, compaction gaps).
func (r *reader) moveTo(partition int32, pos int64) error {
	s, ok := r.parts[partition]
	if !ok || s.done || pos <= s.next {
		return nil
	}
	r.lastProgress = time.Now()
	s.next = min(pos, s.end)
	if s.next >= s.end {
		return r.finish(partition, s)
	}
	// Tell the caller, with the records pending if any: a follower waits
	// for positions too (a partition may end in a transaction marker).
	return r.flush(partition, s)
}

func (r *reader) flush(partition int32, s *readState) error {
	b := provider.Batch{Partition: partition, Records: s.records, Next: s.next}
	s.records = make([]event.Record, 0, r.batchSize)
	return r.fn(b)
}

func (r *reader) finish(partition int32, s *readState) error {
	s.done = true
	r.left--
	// Stop fetching what we will not use.
	_ = r.c.IncrementalUnassign([]ckafka.TopicPartition{{Topic: &r.p.cfg.Topic, Partition: partition}})
	return r.flush(partition, s)
}

// idle runs when a poll returned nothing: partial batches go out.
func (r *reader) idle() error {
	for id, s := range r.parts {
		if !s.done && len(s.records) > 0 {
			if err := r.flush(id, s); err != nil {
				return err
			}
		}
	}
	return nil
}

// check runs every poll interval whatever the polls return. Positions are
// checked, since a partition may end in offsets that hold no record, and a
// read that made no progress for the timeout checks that a broker answers.
func (r *reader) check(ctx context.Context) error {
	var tps []ckafka.TopicPartition
	for id, s := range r.parts {
		if s.done {
			continue
		}
		// Partial batches wait at most a poll interval, even while records
		// keep coming: a follower must not lag behind a slow trickle.
		if len(s.records) > 0 {
			if err := r.flush(id, s); err != nil {
				return err
			}
		}
		tps = append(tps, ckafka.TopicPartition{Topic: &r.p.cfg.Topic, Partition: id})
	}
	if len(tps) > 0 {
		if pos, err := r.c.Position(tps); err == nil {
			for _, tp := range pos {
				if tp.Offset >= 0 {
					if err := r.moveTo(tp.Partition, int64(tp.Offset)); err != nil {
						return err
					}
				}
			}
		}
	}
	if time.Since(r.lastProgress) < r.p.cfg.Timeout {
		return nil
	}
	// Nothing moved for a while: fine for a follower of a quiet topic, not
	// when no broker answers.
	topic := r.p.cfg.Topic
	if _, err := r.c.GetMetadata(&topic, false, int(r.p.cfg.Timeout.Milliseconds())); err != nil {
		return fmt.Errorf("kafka: read %s: no progress for %v and no broker answers: %w: %w",
			topic, r.p.cfg.Timeout, provider.ErrUnavailable, err)
	}
	if ctx.Err() == nil {
		r.lastProgress = time.Now()
	}
	return nil
}

func (r *reader) clientError(e ckafka.Error) error {
	switch readError(e) {
	case readIgnored:
		// The throwaway group's coordinator refused it, racing the read.
		if r.p.errLog.allow(e.Code()) {
			r.p.log.Debug("kafka read: no access to the read's throwaway consumer group (not needed)", "err", e)
		}
		return nil
	case readUnavailable:
		return fmt.Errorf("kafka: read %s: %w: %w", r.p.cfg.Topic, provider.ErrUnavailable, e)
	case readTransient:
		// librdkafka retries; check() gives up after the timeout.
		if r.p.errLog.allow(e.Code()) {
			r.p.log.Warn("kafka read: transient error", "err", e)
		}
		return nil
	}
	return fmt.Errorf("kafka: read %s: %w", r.p.cfg.Topic, e)
}

func (r *reader) partitionError(partition int32, offset int64, err error) error {
	switch partitionReadError(err) {
	case readEnd:
		return r.moveTo(partition, offset)
	case readTransient:
		r.p.log.Warn("kafka read: retriable partition error", "partition", partition, "err", err)
		return nil
	}
	at := "offset " + strconv.FormatInt(offset, 10)
	if s, ok := r.parts[partition]; ok && offset < 0 {
		at = "position " + strconv.FormatInt(s.next, 10)
	}
	return fmt.Errorf("kafka: read %s partition %d at %s: %w", r.p.cfg.Topic, partition, at, err)
}
