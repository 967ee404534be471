package franz

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/sasl"
	"github.com/twmb/franz-go/pkg/sasl/plain"
	"github.com/twmb/franz-go/pkg/sasl/scram"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/provider"
	"github.com/rehydrate/rehydrate/provider/kafkaconfig"
	"github.com/rehydrate/rehydrate/provider/kafkagroup"
)

// Config configures a Provider: the one provider/kafka reads too.
type Config = kafkaconfig.Config

// TopicSpec describes a topic for EnsureTopic.
type TopicSpec = kafkaconfig.TopicSpec

// FromEnv reads a Config from the environment: see [kafkaconfig.FromEnv].
func FromEnv() (Config, error) { return kafkaconfig.FromEnv() }

var (
	_ provider.Provider          = (*Provider)(nil)
	_ provider.PartitionAppender = (*Provider)(nil)
)

// Provider is a provider.Provider on one Kafka topic, on franz-go. It is safe
// for concurrent use.
type Provider struct {
	cfg   Config
	cl    *kgo.Client // the idempotent producer, and admin requests
	admin *kadm.Client
	log   *slog.Logger

	mu      sync.RWMutex // held for reading by Append while it produces, so Close waits
	closed  bool
	pending sync.WaitGroup
	members kafkagroup.Members // group members not closed yet

	retention    *kafkaconfig.RetentionCheck
	messageLimit kafkaconfig.MessageLimit // the topic's max.message.bytes, once a record was refused as too large
	known        atomic.Int32             // partitions the topic was last seen with (AppendPartition)
}

// New validates cfg and returns a Provider. It does not contact the brokers;
// the first call that needs them does.
func New(cfg Config) (*Provider, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.WithDefaults()
	log := cfg.Logger.With("topic", cfg.Topic)
	opts, err := clientOpts(cfg, log)
	if err != nil {
		return nil, err
	}
	buffered, err := maxBuffered(cfg, log)
	if err != nil {
		return nil, err
	}
	opts = append(opts,
		kgo.DefaultProduceTopic(cfg.Topic),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(cfg.Linger),
		kgo.RecordPartitioner(partitioner{}),
		kgo.RecordDeliveryTimeout(cfg.Timeout),
		// By default kgo never fails a record whose request got no clear
		// answer (REQUEST_TIMED_OUT, NOT_ENOUGH_REPLICAS_AFTER_APPEND):
		// with two of three brokers down it retried one append for good.
		// Allowed, it fails such a record at the delivery timeout and bumps
		// the producer epoch before the next one, as librdkafka does at
		// message.timeout.ms: the append returns ErrOutcomeUnknown within
		// the bound, and the client never resends the failed records.
		kgo.AllowIdempotentProduceCancellation(),
		// The broker's wait for acks=all, within the same bound.
		kgo.ProduceRequestTimeout(cfg.Timeout),
		// Appends beyond it are refused at once (TryProduce), not queued
		// without bound.
		kgo.MaxBufferedRecords(buffered),
		// A topic that does not exist is refused at once (nothing written)
		// rather than retried until the delivery timeout.
		kgo.UnknownTopicRetries(0),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("franz: client: %w", err)
	}
	return &Provider{cfg: cfg, cl: cl, admin: kadm.NewClient(cl), log: log,
		retention: kafkaconfig.NewRetentionCheck()}, nil
}

// maxBuffered returns the most records the producer holds at once:
// librdkafka's queue.buffering.max.messages if Properties set it (the one
// librdkafka property this provider reads, so that one Config bounds both
// providers' producers), else kgo's default. The other properties are
// logged and ignored.
func maxBuffered(cfg Config, log *slog.Logger) (int, error) {
	const key = "queue.buffering.max.messages"
	if others := slices.DeleteFunc(slices.Sorted(maps.Keys(cfg.Properties)), func(k string) bool { return k == key }); len(others) > 0 {
		log.Warn("franz: Config.Properties are librdkafka properties: ignored", "properties", others)
	}
	v, ok := cfg.Properties[key]
	if !ok {
		return defaultMaxBuffered, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, fmt.Errorf("franz: property %s=%q: want a positive integer", key, v)
	}
	return n, nil
}

// defaultMaxBuffered is kgo's default MaxBufferedRecords.
const defaultMaxBuffered = 10_000

// clientOpts returns the options every client of the provider shares:
// brokers, security, timeouts, logs.
func clientOpts(cfg Config, log *slog.Logger) ([]kgo.Opt, error) {
	opts := []kgo.Opt{
		kgo.SeedBrokers(strings.Split(cfg.Brokers, ",")...),
		kgo.DialTimeout(max(cfg.Timeout, time.Second)),
		// Bounds the retries of a request (metadata, offsets, a
		// coordinator moving), as Config.Timeout bounds every broker wait.
		kgo.RetryTimeout(cfg.Timeout),
		kgo.WithLogger(slogger{log}),
	}
	if cfg.ClientID != "" {
		opts = append(opts, kgo.ClientID(cfg.ClientID))
	}
	proto := strings.ToLower(cfg.SecurityProtocol)
	if proto == "ssl" || proto == "sasl_ssl" {
		tc, err := tlsConfig(cfg)
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.DialTLSConfig(tc))
	}
	if strings.HasPrefix(proto, "sasl") {
		m, err := saslMechanism(cfg)
		if err != nil {
			return nil, err
		}
		opts = append(opts, kgo.SASL(m))
	}
	return opts, nil
}

func tlsConfig(cfg Config) (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if cfg.SSLCALocation != "" {
		pem, err := os.ReadFile(cfg.SSLCALocation)
		if err != nil {
			return nil, fmt.Errorf("franz: SSLCALocation: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("franz: SSLCALocation %s holds no PEM certificate", cfg.SSLCALocation)
		}
		tc.RootCAs = pool
	}
	if cfg.SSLCertLocation != "" {
		cert, err := tls.LoadX509KeyPair(cfg.SSLCertLocation, cfg.SSLKeyLocation)
		if err != nil {
			return nil, fmt.Errorf("franz: client certificate: %w", err)
		}
		tc.Certificates = []tls.Certificate{cert}
	}
	return tc, nil
}

func saslMechanism(cfg Config) (sasl.Mechanism, error) {
	switch strings.ToUpper(cfg.SASLMechanism) {
	case "PLAIN":
		return plain.Auth{User: cfg.SASLUsername, Pass: cfg.SASLPassword}.AsMechanism(), nil
	case "SCRAM-SHA-256":
		return scram.Auth{User: cfg.SASLUsername, Pass: cfg.SASLPassword}.AsSha256Mechanism(), nil
	case "SCRAM-SHA-512":
		return scram.Auth{User: cfg.SASLUsername, Pass: cfg.SASLPassword}.AsSha512Mechanism(), nil
	}
	return nil, fmt.Errorf("franz: SASLMechanism %q is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512", cfg.SASLMechanism)
}

// Topic returns the provider's topic.
func (p *Provider) Topic() string { return p.cfg.Topic }

// partitioner partitions by murmur2 of the key, as Kafka's Java client and
// provider/kafka do, so that an aggregate stays in one partition whoever
// writes it; a record whose Partition is set (not hashed) goes there.
type partitioner struct{}

func (partitioner) ForTopic(string) kgo.TopicPartitioner { return partitioner{} }

func (partitioner) RequiresConsistency(*kgo.Record) bool { return true }

func (partitioner) Partition(r *kgo.Record, n int) int {
	if r.Partition != hashed {
		return int(r.Partition) // kgo fails the record if there is no such partition
	}
	return int(provider.PartitionFor(r.Key, n))
}

// hashed marks a record to be partitioned by its key.
const hashed int32 = -1

// Append implements provider.Provider with the idempotent producer and
// acks=all. Concurrent appends share the producer's batches.
func (p *Provider) Append(ctx context.Context, records []event.Record) ([]provider.Position, error) {
	return p.appendTo(ctx, hashed, records)
}

// AppendPartition implements provider.PartitionAppender: Append, with every
// record written to partition.
func (p *Provider) AppendPartition(ctx context.Context, partition int32, records []event.Record) ([]provider.Position, error) {
	if partition < 0 {
		return nil, fmt.Errorf("franz: append to %s: partition %d", p.cfg.Topic, partition)
	}
	// kgo would fail the records of a partition the topic does not have
	// with an error it gives no sentinel for: ask first, unless the topic
	// was seen with the partition already (partitions are only added).
	if partition >= p.known.Load() {
		n, _, err := p.partitionCount(ctx)
		if err != nil {
			return nil, err
		}
		p.known.Store(int32(n))
		if int(partition) >= n {
			return nil, fmt.Errorf("franz: append to %s: partition %d: the topic has %d", p.cfg.Topic, partition, n)
		}
	}
	return p.appendTo(ctx, partition, records)
}

func (p *Provider) appendTo(ctx context.Context, partition int32, records []event.Record) ([]provider.Position, error) {
	if len(records) == 0 {
		return nil, nil
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	for i, r := range records {
		if len(r.Key) == 0 {
			return nil, fmt.Errorf("franz: append record %d: empty key", i)
		}
	}
	p.mu.RLock()
	if p.closed {
		p.mu.RUnlock()
		return nil, provider.ErrClosed
	}
	p.pending.Add(1)
	defer p.pending.Done()
	var wg sync.WaitGroup
	wg.Add(len(records))
	positions := make([]provider.Position, len(records))
	errs := make([]error, len(records))
	for i, r := range records {
		rec := toRecord(r, p.cfg.Topic, partition)
		// Once a record is handed to the client, the caller's context no
		// longer counts: returning before its outcome would leave a record
		// in flight behind a caller that believes the outcome settled.
		// RecordDeliveryTimeout (Config.Timeout) bounds the wait. A full
		// buffer fails the record at once with kgo.ErrMaxBuffered.
		p.cl.TryProduce(context.Background(), rec, func(r *kgo.Record, err error) {
			if err != nil {
				errs[i] = err
			} else {
				positions[i] = provider.Position{Partition: r.Partition, Offset: r.Offset}
			}
			wg.Done()
		})
	}
	p.mu.RUnlock()
	wg.Wait()
	p.refineTooLarge(records, errs)
	if first := kafkaconfig.FirstError(errs); first >= 0 {
		maybe := anyWritten(errs) || !allNotPersisted(errs)
		return nil, p.appendError(fmt.Errorf("record %d of %d: %w", first+1, len(records), errs[first]), maybe)
	}
	return positions, nil
}

// refineTooLarge tells the records of errs refused only for the batch
// they shared (kafkaconfig.MessageLimit).
func (p *Provider) refineTooLarge(records []event.Record, errs []error) {
	p.messageLimit.Refine(records, errs, func(err error) bool { return errors.Is(err, kerr.MessageTooLarge) },
		kgoBatchMax, p.describeTopic)
}

// kgoBatchMax is kgo's default ProducerBatchMaxBytes, which the provider
// does not change.
const kgoBatchMax = 1_000_012

func toRecord(r event.Record, topic string, partition int32) *kgo.Record {
	hs := make([]kgo.RecordHeader, len(r.Headers))
	for i, h := range r.Headers {
		hs[i] = kgo.RecordHeader{Key: h.Key, Value: h.Value}
	}
	return &kgo.Record{Topic: topic, Partition: partition, Key: r.Key, Value: r.Value, Headers: hs}
}

func anyWritten(errs []error) bool { return slices.Contains(errs, nil) }

func allNotPersisted(errs []error) bool {
	for _, err := range errs {
		if err != nil && classify(err) != classRefused && !errors.Is(err, kgo.ErrMaxBuffered) && !kafkaconfig.IsBatchRefused(err) {
			return false
		}
	}
	return true
}

// appendError classifies an append failure for the caller. maybeWritten
// false means the caller knows that no record was written.
func (p *Provider) appendError(err error, maybeWritten bool) error {
	unavailable := classify(err) == classUnavailable
	switch {
	case unavailable && maybeWritten:
		return fmt.Errorf("franz: append to %s: %w: %w: %w", p.cfg.Topic, provider.ErrUnavailable, provider.ErrOutcomeUnknown, err)
	case unavailable:
		return fmt.Errorf("franz: append to %s: %w: %w", p.cfg.Topic, provider.ErrUnavailable, err)
	case maybeWritten:
		return fmt.Errorf("franz: append to %s: %w: %w", p.cfg.Topic, provider.ErrOutcomeUnknown, err)
	default:
		return fmt.Errorf("franz: append to %s: %w", p.cfg.Topic, err)
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
		if err == nil || classify(err) != classUnavailable {
			return ps, err
		}
		p.log.Debug("franz: partitions: retrying", "err", err, "in", backoff)
		select {
		case <-ctx.Done():
			if errors.Is(err, provider.ErrUnavailable) {
				return nil, err
			}
			return nil, fmt.Errorf("franz: partitions of %s: %w: still failing after %v: %w", p.cfg.Topic, provider.ErrUnavailable, p.cfg.Timeout, err)
		case <-time.After(backoff):
		}
	}
}

func (p *Provider) partitions(ctx context.Context) ([]provider.Partition, error) {
	low, err := p.admin.ListStartOffsets(ctx, p.cfg.Topic)
	if err != nil {
		return nil, p.brokerError("list offsets", err)
	}
	high, err := p.admin.ListCommittedOffsets(ctx, p.cfg.Topic) // read_committed: last stable offsets
	if err != nil {
		return nil, p.brokerError("list offsets", err)
	}
	return p.merge(low, high)
}

// merge pairs the start and end offsets of the topic's partitions.
func (p *Provider) merge(low, high kadm.ListedOffsets) ([]provider.Partition, error) {
	if err := low.Error(); err != nil {
		return nil, p.topicError(err)
	}
	if err := high.Error(); err != nil {
		return nil, p.topicError(err)
	}
	var ps []provider.Partition
	for id, l := range low[p.cfg.Topic] {
		h, ok := high.Lookup(p.cfg.Topic, id)
		if !ok {
			return nil, fmt.Errorf("franz: list offsets: no answer for partition %d of %s", id, p.cfg.Topic)
		}
		ps = append(ps, provider.Partition{ID: id, Low: l.Offset, High: h.Offset})
	}
	if len(ps) == 0 {
		return nil, fmt.Errorf("franz: topic %q does not exist: %w", p.cfg.Topic, kerr.UnknownTopicOrPartition)
	}
	slices.SortFunc(ps, func(a, b provider.Partition) int { return int(a.ID - b.ID) })
	return ps, nil
}

func (p *Provider) topicError(err error) error {
	if errors.Is(err, kerr.UnknownTopicOrPartition) {
		return fmt.Errorf("franz: topic %q does not exist: %w", p.cfg.Topic, err)
	}
	return p.brokerError("list offsets", err)
}

// brokerError wraps err, marking what is worth a retry later as
// provider.ErrUnavailable.
func (p *Provider) brokerError(what string, err error) error {
	if classify(err) == classUnavailable {
		return fmt.Errorf("franz: %s of %s: %w: %w", what, p.cfg.Topic, provider.ErrUnavailable, err)
	}
	return fmt.Errorf("franz: %s of %s: %w", what, p.cfg.Topic, err)
}

// partitionCount returns the number of partitions of the topic, and its id.
func (p *Provider) partitionCount(ctx context.Context) (int, [16]byte, error) {
	if p.isClosed() {
		return 0, [16]byte{}, provider.ErrClosed
	}
	ctx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	defer cancel()
	md, err := p.admin.Metadata(ctx, p.cfg.Topic)
	if err != nil {
		return 0, [16]byte{}, p.brokerError("metadata", err)
	}
	t, ok := md.Topics[p.cfg.Topic]
	if !ok || errors.Is(t.Err, kerr.UnknownTopicOrPartition) {
		return 0, [16]byte{}, fmt.Errorf("franz: topic %q does not exist", p.cfg.Topic)
	}
	if t.Err != nil {
		return 0, [16]byte{}, p.brokerError("metadata", t.Err)
	}
	return len(t.Partitions), t.ID, nil
}

// isTLSErr reports a failed TLS handshake.
func isTLSErr(err error) bool {
	var (
		verify    *tls.CertificateVerificationError
		header    tls.RecordHeaderError
		alert     tls.AlertError
		unknownCA x509.UnknownAuthorityError
		hostname  x509.HostnameError
	)
	return errors.As(err, &verify) || errors.As(err, &header) || errors.As(err, &alert) ||
		errors.As(err, &unknownCA) || errors.As(err, &hostname)
}

// isNetErr reports a failure to reach a broker.
func isNetErr(err error) bool {
	var ne net.Error
	// io.ErrUnexpectedEOF: the connection closed in the middle of a
	// response (every broker killed while a read's fetch was answered).
	return errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNREFUSED)
}

func (p *Provider) isClosed() bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.closed
}

// Close implements provider.Provider: it closes the group members still
// open, waits up to the configured Timeout for appends in flight, then
// reports how many records were not delivered.
func (p *Provider) Close() error {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return nil
	}
	p.closed = true
	p.mu.Unlock()

	errs := []error{p.members.CloseAll()}
	ctx, cancel := context.WithTimeout(context.Background(), p.cfg.Timeout)
	defer cancel()
	flushErr := p.cl.Flush(ctx)
	left := p.cl.BufferedProduceRecords()
	// Closing fails what is still buffered, which ends the waiting appends.
	p.cl.Close()
	p.pending.Wait()
	if flushErr != nil && left > 0 {
		errs = append(errs, fmt.Errorf("franz: close: %d records not acknowledged within %v: %w", left, p.cfg.Timeout, provider.ErrOutcomeUnknown))
	}
	return errors.Join(errs...)
}
