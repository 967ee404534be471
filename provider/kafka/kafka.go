//go:build cgo

package kafka

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	ckafka "github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/provider"
	"github.com/rehydrate/rehydrate/provider/kafkaconfig"
	"github.com/rehydrate/rehydrate/provider/kafkagroup"
)

var _ provider.Provider = (*Provider)(nil)

// Provider is a provider.Provider on one Kafka topic. It is safe for
// concurrent use.
type Provider struct {
	cfg      Config
	producer *ckafka.Producer
	admin    *ckafka.AdminClient
	log      *slog.Logger

	errLog  logLimiter
	mu      sync.RWMutex // held for reading by Append while it produces, so Close waits
	closed  bool
	pending sync.WaitGroup     // appends waiting for delivery reports
	events  sync.WaitGroup     // the delivery report goroutine
	members kafkagroup.Members // group members not closed yet

	retention    *kafkaconfig.RetentionCheck // CheckRetention's answer
	messageLimit kafkaconfig.MessageLimit    // the topic's max.message.bytes, once a record was refused as too large

	// handshake is the last failed TLS handshake or SASL login the
	// producer reported, until a broker answers again: errors of calls
	// that time out name it, where librdkafka's say only "timed out".
	handshake atomic.Pointer[ckafka.Error]
}

// New validates cfg and returns a Provider. It does not contact the brokers;
// the first call that needs them does.
func New(cfg Config) (*Provider, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	pc := common(cfg)
	for k, v := range map[string]any{
		"enable.idempotence": true,
		"acks":               "all",
		// Kafka's Java client partitions by murmur2: so do we, so that an
		// aggregate stays in one partition whoever writes it.
		"partitioner":               "murmur2_random",
		"linger.ms":                 strconv.FormatFloat(float64(cfg.Linger.Microseconds())/1000, 'f', -1, 64),
		"message.timeout.ms":        int(cfg.Timeout.Milliseconds()),
		"go.delivery.report.fields": "none",
	} {
		if _, set := cfg.Properties[k]; !set {
			pc[k] = v
		}
	}
	producer, err := ckafka.NewProducer(&pc)
	if err != nil {
		return nil, fmt.Errorf("kafka: producer: %w", err)
	}
	admin, err := ckafka.NewAdminClientFromProducer(producer)
	if err != nil {
		producer.Close()
		return nil, fmt.Errorf("kafka: admin client: %w", err)
	}
	p := &Provider{cfg: cfg, producer: producer, admin: admin, log: cfg.Logger.With("topic", cfg.Topic),
		retention: kafkaconfig.NewRetentionCheck()}
	go forwardLogs(producer.Logs(), p.log)
	p.events.Add(1)
	go p.deliveries()
	return p, nil
}

// Topic returns the provider's topic.
func (p *Provider) Topic() string { return p.cfg.Topic }

// forwardLogs passes librdkafka's logs to slog until the client closes.
func forwardLogs(logs chan ckafka.LogEvent, log *slog.Logger) {
	for l := range logs {
		level := slog.LevelDebug
		switch {
		case l.Level <= 3:
			level = slog.LevelError
		case l.Level == 4:
			level = slog.LevelWarn
		case l.Level <= 6:
			level = slog.LevelInfo
		}
		log.Log(context.Background(), level, l.Message, "client", l.Name, "tag", l.Tag)
	}
}

// appendCall collects the delivery reports of one Append.
type appendCall struct {
	positions []provider.Position
	errs      []error
	left      int
	mu        sync.Mutex
	done      chan struct{}
}

type delivery struct {
	call  *appendCall
	index int
}

// deliveries routes every delivery report to the Append that waits for it.
func (p *Provider) deliveries() {
	defer p.events.Done()
	for ev := range p.producer.Events() {
		switch e := ev.(type) {
		case *ckafka.Message:
			d, ok := e.Opaque.(*delivery)
			if !ok {
				continue
			}
			c := d.call
			c.mu.Lock()
			if err := e.TopicPartition.Error; err != nil {
				c.errs[d.index] = err
			} else {
				p.handshake.Store(nil)
				c.positions[d.index] = provider.Position{Partition: e.TopicPartition.Partition, Offset: int64(e.TopicPartition.Offset)}
			}
			c.left--
			if c.left == 0 {
				close(c.done)
				p.pending.Done()
			}
			c.mu.Unlock()
		case ckafka.Error:
			if handshakeFailed(e) {
				p.handshake.Store(&e)
			}
			if e.IsFatal() {
				p.log.Error("kafka producer fatal error: appends fail until the provider is recreated", "err", e)
			} else if p.errLog.allow(e.Code()) {
				p.log.Warn("kafka producer error", "err", e)
			}
		}
	}
}

// Append implements provider.Provider with the idempotent producer and
// acks=all. Concurrent appends share the producer's batches.
func (p *Provider) Append(ctx context.Context, records []event.Record) ([]provider.Position, error) {
	return p.appendTo(ctx, ckafka.PartitionAny, records)
}

var _ provider.PartitionAppender = (*Provider)(nil)

// AppendPartition implements provider.PartitionAppender: Append, with every
// record written to partition.
func (p *Provider) AppendPartition(ctx context.Context, partition int32, records []event.Record) ([]provider.Position, error) {
	if partition < 0 {
		return nil, fmt.Errorf("kafka: append to %s: partition %d", p.cfg.Topic, partition)
	}
	return p.appendTo(ctx, partition, records)
}

// appendTo appends records to partition, or to the partitions their keys
// hash to when it is ckafka.PartitionAny.
func (p *Provider) appendTo(ctx context.Context, partition int32, records []event.Record) ([]provider.Position, error) {
	if len(records) == 0 {
		return nil, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for i, r := range records {
		// Without a key librdkafka would pick a random partition: no
		// aggregate could be found again.
		if len(r.Key) == 0 {
			return nil, fmt.Errorf("kafka: append record %d: empty key", i)
		}
	}
	call := &appendCall{
		positions: make([]provider.Position, len(records)),
		errs:      make([]error, len(records)),
		left:      len(records),
		done:      make(chan struct{}),
	}
	p.mu.RLock()
	if p.closed {
		p.mu.RUnlock()
		return nil, provider.ErrClosed
	}
	p.pending.Add(1)
	queued := 0
	var produceErr error
	for i, r := range records {
		msg := &ckafka.Message{
			TopicPartition: ckafka.TopicPartition{Topic: &p.cfg.Topic, Partition: partition},
			Key:            r.Key,
			Value:          r.Value,
			Headers:        toKafkaHeaders(r.Headers),
			Opaque:         &delivery{call: call, index: i},
		}
		if err := p.producer.Produce(msg, nil); err != nil {
			produceErr = err
			break
		}
		queued++
	}
	if queued < len(records) {
		// The unqueued records will have no report: count them as done.
		call.mu.Lock()
		call.left -= len(records) - queued
		if call.left == 0 {
			close(call.done)
			p.pending.Done()
		}
		call.mu.Unlock()
	}
	p.mu.RUnlock()

	if produceErr != nil && queued == 0 {
		// librdkafka refused the first record: nothing was queued, so
		// nothing can be written, whatever the code (ErrFatal included).
		return nil, p.appendError(produceErr, false)
	}
	// Once a record is queued, the context no longer counts: returning
	// before its delivery report would leave a record in flight behind a
	// caller that believes the outcome settled. message.timeout.ms (the
	// configured Timeout) bounds the wait.
	<-call.done
	if produceErr != nil {
		// Some records were queued before the producer refused one: what
		// they became does not make the whole append known.
		return nil, p.appendError(produceErr, true)
	}
	p.refineTooLarge(records, call.errs)
	if i := kafkaconfig.FirstError(call.errs); i >= 0 {
		return nil, p.appendError(fmt.Errorf("record %d of %d: %w", i+1, len(records), call.errs[i]), !allNotPersisted(call.errs) || anyWritten(call.errs))
	}
	return call.positions, nil
}

// refineTooLarge tells the records of errs refused only for the batch
// they shared (kafkaconfig.MessageLimit).
func (p *Provider) refineTooLarge(records []event.Record, errs []error) {
	p.messageLimit.Refine(records, errs, tooLarge,
		librdkafkaMessageMax, p.topicSettings)
}

func tooLarge(err error) bool {
	ke, _, ok := lookup(err)
	return ok && ke.Code() == ckafka.ErrMsgSizeTooLarge
}

// librdkafkaMessageMax is librdkafka's default message.max.bytes, its limit
// of a batch, which the provider does not change.
const librdkafkaMessageMax = 1_000_000

func toKafkaHeaders(hs []event.Header) []ckafka.Header {
	out := make([]ckafka.Header, len(hs))
	for i, h := range hs {
		out[i] = ckafka.Header{Key: h.Key, Value: h.Value}
	}
	return out
}

func allNotPersisted(errs []error) bool {
	for _, err := range errs {
		if err != nil && !notPersisted(err) {
			return false
		}
	}
	return true
}

func anyWritten(errs []error) bool {
	for _, err := range errs {
		if err == nil {
			return true
		}
	}
	return false
}

// appendError classifies an append failure for the caller. maybeWritten
// false means the caller knows that no record was written.
func (p *Provider) appendError(err error, maybeWritten bool) error {
	unavailable := appendUnavailable(err)
	if fatal := p.producer.GetFatalError(); fatal != nil {
		// The idempotent producer is dead (e.g. the broker refused it a
		// producer id: no Write ACL) and purges or refuses every record:
		// its reason says more than "Purged in queue" or "Fatal error".
		err = fmt.Errorf("producer failed for good, recreate the provider: %w: %w", fatal, err)
	} else if unavailable {
		err = p.withHandshake(err)
	}
	switch {
	case unavailable && maybeWritten:
		return fmt.Errorf("kafka: append to %s: %w: %w: %w", p.cfg.Topic, provider.ErrUnavailable, provider.ErrOutcomeUnknown, err)
	case unavailable:
		return fmt.Errorf("kafka: append to %s: %w: %w", p.cfg.Topic, provider.ErrUnavailable, err)
	case maybeWritten:
		return fmt.Errorf("kafka: append to %s: %w: %w", p.cfg.Topic, provider.ErrOutcomeUnknown, err)
	default:
		return fmt.Errorf("kafka: append to %s: %w", p.cfg.Topic, err)
	}
}

// Partitions implements provider.Provider. High is the last stable offset
// (read-committed), so records of open transactions are not counted.
func (p *Provider) Partitions(ctx context.Context) ([]provider.Partition, error) {
	if p.isClosed() {
		return nil, provider.ErrClosed
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	// Leadership moves (a new topic, a broker restart) answer with
	// retriable errors for a moment: retry them within the timeout.
	for backoff := 50 * time.Millisecond; ; backoff = min(2*backoff, time.Second) {
		ps, err := p.partitions(ctx)
		if err == nil || !retriable(err) {
			return ps, err
		}
		p.log.Debug("kafka: partitions: retrying", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			if errors.Is(err, provider.ErrUnavailable) {
				return nil, err
			}
			return nil, fmt.Errorf("%w: still failing after %v: %w", provider.ErrUnavailable, p.cfg.Timeout, err)
		case <-time.After(backoff):
		}
	}
}

func (p *Provider) partitions(ctx context.Context) ([]provider.Partition, error) {
	ids, err := p.partitionIDs(ctx)
	if err != nil {
		return nil, err
	}
	low, err := p.listOffsets(ctx, ids, ckafka.EarliestOffsetSpec)
	if err != nil {
		return nil, err
	}
	high, err := p.listOffsets(ctx, ids, ckafka.LatestOffsetSpec)
	if err != nil {
		return nil, err
	}
	ps := make([]provider.Partition, len(ids))
	for i, id := range ids {
		ps[i] = provider.Partition{ID: id, Low: low[id], High: high[id]}
	}
	return ps, nil
}

func (p *Provider) partitionIDs(ctx context.Context) ([]int32, error) {
	md, err := p.admin.GetMetadata(&p.cfg.Topic, false, remainingMs(ctx))
	if err != nil {
		return nil, p.brokerError("metadata", err)
	}
	p.handshake.Store(nil)
	t, ok := md.Topics[p.cfg.Topic]
	if !ok || topicGone(t.Error) {
		return nil, fmt.Errorf("kafka: topic %q does not exist", p.cfg.Topic)
	}
	if t.Error.Code() != ckafka.ErrNoError {
		return nil, p.brokerError("metadata", t.Error)
	}
	ids := make([]int32, len(t.Partitions))
	for i, part := range t.Partitions {
		ids[i] = part.ID
	}
	slices.Sort(ids)
	return ids, nil
}

func (p *Provider) listOffsets(ctx context.Context, ids []int32, spec ckafka.OffsetSpec) (map[int32]int64, error) {
	return p.listOffsetsAt(ctx, ids, spec, ckafka.IsolationLevelReadCommitted)
}

// listOffsetsUncommitted returns the high watermarks of partitions: their
// ends, records of open transactions included.
func (p *Provider) listOffsetsUncommitted(ctx context.Context, ids []int32) (map[int32]int64, error) {
	return p.listOffsetsAt(ctx, ids, ckafka.LatestOffsetSpec, ckafka.IsolationLevelReadUncommitted)
}

func (p *Provider) listOffsetsAt(ctx context.Context, ids []int32, spec ckafka.OffsetSpec, iso ckafka.IsolationLevel) (map[int32]int64, error) {
	req := make(map[ckafka.TopicPartition]ckafka.OffsetSpec, len(ids))
	for _, id := range ids {
		req[ckafka.TopicPartition{Topic: &p.cfg.Topic, Partition: id}] = spec
	}
	res, err := p.admin.ListOffsets(ctx, req, ckafka.SetAdminIsolationLevel(iso))
	if err != nil {
		return nil, p.brokerError("list offsets", err)
	}
	out := make(map[int32]int64, len(ids))
	for tp, info := range res.ResultInfos {
		if info.Error.Code() != ckafka.ErrNoError {
			return nil, p.brokerError(fmt.Sprintf("list offsets of partition %d", tp.Partition), info.Error)
		}
		out[tp.Partition] = int64(info.Offset)
	}
	for _, id := range ids {
		if _, ok := out[id]; !ok {
			return nil, fmt.Errorf("kafka: list offsets: no answer for partition %d of %s", id, p.cfg.Topic)
		}
	}
	return out, nil
}

// brokerError wraps err, marking timeouts and transport failures as
// provider.ErrUnavailable.
func (p *Provider) brokerError(what string, err error) error {
	if brokerUnavailable(err) {
		return fmt.Errorf("kafka: %s of %s: %w after %v: %w", what, p.cfg.Topic, provider.ErrUnavailable, p.cfg.Timeout, p.withHandshake(err))
	}
	return fmt.Errorf("kafka: %s of %s: %w", what, p.cfg.Topic, err)
}

// withHandshake puts the last failed TLS handshake or SASL login, if any
// since a broker last answered, in front of err, so that errors.As finds
// its code (ErrAuthentication, ErrSsl) first.
func (p *Provider) withHandshake(err error) error {
	if h := p.handshake.Load(); h != nil {
		return fmt.Errorf("%w (%w)", *h, err)
	}
	return err
}

func remainingMs(ctx context.Context) int {
	d, ok := ctx.Deadline()
	if !ok {
		return int(defaultTimeout.Milliseconds())
	}
	return max(int(time.Until(d).Milliseconds()), 1)
}

func (p *Provider) isClosed() bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.closed
}

// Close implements provider.Provider: it closes the group members still
// open (JoinGroup), waits up to the configured Timeout for appends in
// flight, then reports how many records were not delivered.
func (p *Provider) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()

	errs := []error{p.members.CloseAll()}

	left := p.producer.Flush(int(p.cfg.Timeout.Milliseconds()))
	if left > 0 {
		// Purging ends the waiting appends with an error report.
		_ = p.producer.Purge(ckafka.PurgeQueue | ckafka.PurgeInFlight)
		p.producer.Flush(int(time.Second.Milliseconds()))
	}
	p.pending.Wait()
	p.admin.Close()
	p.producer.Close()
	p.events.Wait()
	if left > 0 {
		errs = append(errs, fmt.Errorf("kafka: close: %d records not acknowledged within %v: %w", left, p.cfg.Timeout, provider.ErrOutcomeUnknown))
	}
	return errors.Join(errs...)
}
