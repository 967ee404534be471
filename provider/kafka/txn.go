//go:build cgo

package kafka

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	ckafka "github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/rehydrate/rehydrate/provider"
	"github.com/rehydrate/rehydrate/provider/kafkagroup"
)

// A member appends through the transactional producers of its
// kafkagroup.Lanes, which hold the transaction steps and what each failure
// means for the appends (written once for both Kafka providers). Why a
// transaction of a stale owner cannot commit is argued in the package
// documentation; this file is confluent-kafka-go's side of the lanes: what
// each step sends (txnProducer), and what librdkafka's errors mean
// (txnClass in errors.go).

// maxStuck bounds the producers a member has given up that are still
// inside SendOffsetsToTransaction (see lanesClient.tooManyStuck).
const maxStuck = 3

// sendOffsetsGrace is how long past its own timeout SendOffsetsToTransaction
// may take before the lane gives its producer up (see
// txnProducer.SendOffsets).
const sendOffsetsGrace = 5 * time.Second

// lanesClient is the member's kafkagroup.Client.
type lanesClient struct {
	m     *member
	stuck atomic.Int32   // producers given up by SendOffsets, not yet returned and closed
	given sync.WaitGroup // the goroutines that close them
}

var (
	_ kafkagroup.Client           = (*lanesClient)(nil)
	_ kafkagroup.ConcurrentFencer = (*txnProducer)(nil)
)

// newTxnProducer returns a transactional producer, not yet initialised.
func (p *Provider) newTxnProducer(txid string) (*ckafka.Producer, error) {
	cfg := p.cfg
	pc := common(cfg)
	for k, v := range map[string]any{
		"linger.ms": strconv.FormatFloat(float64(cfg.Linger.Microseconds())/1000, 'f', -1, 64),
		// What AddOffsetsToTxn waits after CONCURRENT_TRANSACTIONS (the
		// previous commit's markers still being written): librdkafka's
		// 100 ms default caps back-to-back transactions near 10/s.
		"retry.backoff.ms":       5,
		"transaction.timeout.ms": int(cfg.TransactionTimeout.Milliseconds()),
		// librdkafka wants it no longer than the transaction timeout.
		"message.timeout.ms":        int(min(cfg.Timeout, cfg.TransactionTimeout).Milliseconds()),
		"socket.timeout.ms":         int(min(max(cfg.Timeout, 10*time.Second), cfg.TransactionTimeout).Milliseconds()),
		"go.delivery.report.fields": "none",
	} {
		if _, set := cfg.Properties[k]; !set {
			pc[k] = v
		}
	}
	pc["transactional.id"] = txid
	pc["enable.idempotence"] = true
	pc["acks"] = "all"
	return ckafka.NewProducer(&pc)
}

// NewProducer implements kafkagroup.Client: a new producer with txid,
// initialised. InitTransactions bumps the producer epoch, which fences the
// old producer, and completes or aborts the transaction it may have left
// open: when it returns, that transaction's outcome is final.
func (c *lanesClient) NewProducer(ctx context.Context, txid string) (kafkagroup.Producer, error) {
	m := c.m
	cp, err := m.p.newTxnProducer(txid)
	if err != nil {
		return nil, fmt.Errorf("transactional producer: %w", err)
	}
	log := m.log.With("transactional_id", txid)
	p := &txnProducer{c: c, txid: txid, cp: cp}
	p.drained.Add(2)
	go func() {
		defer p.drained.Done()
		forwardLogs(cp.Logs(), log)
	}()
	go func() {
		defer p.drained.Done()
		for ev := range cp.Events() {
			if e, ok := ev.(ckafka.Error); ok && m.errLog.allow(e.Code()) {
				log.Warn("kafka transactional producer error", "err", e)
			}
		}
	}()
	connected(ctx, cp)
	if err := cp.InitTransactions(ctx); err != nil {
		p.Close()
		return nil, fmt.Errorf("%w: %w", provider.ErrUnavailable, err)
	}
	if seamNewProducer != nil {
		seamNewProducer(m)
	}
	return p, nil
}

// Metadata implements kafkagroup.Client.
func (c *lanesClient) Metadata() (kafkagroup.Metadata, error) { return c.m.metadata() }

// Class implements kafkagroup.Client.
func (c *lanesClient) Class(err error) kafkagroup.Class { return txnClass(err) }

// Annotate implements kafkagroup.Client: a failed TLS handshake or SASL
// login is the cause of the timeouts that follow it.
func (c *lanesClient) Annotate(err error) error { return c.m.p.withHandshake(err) }

// tooManyStuck reports whether maxStuck producers the member gave up are
// still inside SendOffsetsToTransaction. A stuck call can outlast the
// coordinator's move to another broker (librdkafka #5511), so a lane goes
// on with a new producer, which usually commits; but while the coordinator
// stays away each transaction would give up one more producer, and its
// librdkafka threads, every Timeout: past maxStuck, appends fail at once.
func (c *lanesClient) tooManyStuck() bool { return c.stuck.Load() >= maxStuck }

// waitGivenUp waits, within Config.Timeout, for the producers given up
// while stuck in SendOffsetsToTransaction to return and close.
func (c *lanesClient) waitGivenUp() {
	if c.stuck.Load() == 0 {
		return
	}
	closed := make(chan struct{})
	go func() {
		c.given.Wait()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(c.m.p.cfg.Timeout):
		c.m.log.Warn("kafka: close: a producer given up is still inside SendOffsetsToTransaction; it is closed when librdkafka returns")
	}
}

// txnProducer is a lane's transactional producer (kafkagroup.Producer) and
// the goroutines that drain its channels.
type txnProducer struct {
	c       *lanesClient
	txid    string // also each committed offset's metadata, for kafkagroup.Leavers
	cp      *ckafka.Producer
	drained sync.WaitGroup
}

// Close implements kafkagroup.Producer.
func (p *txnProducer) Close() {
	p.cp.Close()
	p.drained.Wait()
}

// Begin implements kafkagroup.Producer. While too many producers given up
// are stuck, it refuses the transaction (provider.ErrUnavailable) and keeps
// the producer.
func (p *txnProducer) Begin() error {
	if p.c.tooManyStuck() {
		return fmt.Errorf("%d producers given up are still waiting for the group coordinator (SendOffsetsToTransaction): %w", maxStuck, provider.ErrUnavailable)
	}
	return p.cp.BeginTransaction()
}

// Produce implements kafkagroup.Producer: every record to its explicit
// partition, then every delivery report. librdkafka reports every record
// within message.timeout.ms; should it not within bound, the producer is
// given up (no commit was asked for: nothing of the transaction can become
// visible).
func (p *txnProducer) Produce(batch []*kafkagroup.Append, bound time.Duration) (offsets [][]int64, errs [][]error, answered bool) {
	topic := p.c.m.topic
	type ref struct{ append, record int }
	var sent []ref
	offsets, errs = make([][]int64, len(batch)), make([][]error, len(batch))
	refused := false
	for bi, a := range batch {
		offsets[bi], errs[bi] = make([]int64, len(a.Records)), make([]error, len(a.Records))
		sent = slices.Grow(sent, len(a.Records))
	}
	reports := make(chan ckafka.Event, cap(sent))
	for bi, a := range batch {
		for i, rec := range a.Records {
			if refused {
				errs[bi][i] = kafkagroup.ErrNotSent
				continue
			}
			err := p.cp.Produce(&ckafka.Message{
				TopicPartition: ckafka.TopicPartition{Topic: &topic, Partition: a.Parts[i]},
				Key:            rec.Key,
				Value:          rec.Value,
				Headers:        toKafkaHeaders(rec.Headers),
				Opaque:         len(sent),
			}, reports)
			if err != nil {
				errs[bi][i], refused = err, true
				continue
			}
			sent = append(sent, ref{bi, i})
		}
	}
	timer := time.NewTimer(bound)
	defer timer.Stop()
	for range sent {
		select {
		case ev := <-reports:
			msg := ev.(*ckafka.Message)
			r := sent[msg.Opaque.(int)]
			if err := msg.TopicPartition.Error; err != nil {
				errs[r.append][r.record] = fmt.Errorf("partition %d: %w", msg.TopicPartition.Partition, err)
				continue
			}
			offsets[r.append][r.record] = int64(msg.TopicPartition.Offset)
		case <-timer.C:
			return nil, nil, false
		}
	}
	for bi, a := range batch {
		p.c.m.p.refineTooLarge(a.Records, errs[bi])
	}
	return offsets, errs, true
}

// SendOffsets implements kafkagroup.Producer with SendOffsetsToTransaction
// within Config.Timeout. librdkafka does not always keep that bound: with
// the group coordinator down, the call can block until the coordinator is
// back (librdkafka #5456, #5511; here a member acknowledged nothing for
// minutes after its coordinator was killed). Past the bound and a grace the
// lane stops waiting: answered is false, and the producer is given up, to
// be closed once the call returns. Its transaction is never committed (only
// the lane commits, and never on that producer), and the replacement's
// InitTransactions under the same transactional.id fences it and aborts the
// transaction.
func (p *txnProducer) SendOffsets(md kafkagroup.Metadata, next map[int32]int64) (answered bool, err error) {
	m, timeout := p.c.m, p.c.m.p.cfg.Timeout
	tps := make([]ckafka.TopicPartition, 0, len(next))
	for _, part := range slices.Sorted(maps.Keys(next)) {
		tps = append(tps, ckafka.TopicPartition{Topic: &m.topic, Partition: part, Offset: ckafka.Offset(next[part]), Metadata: &p.txid})
	}
	raw, _ := md.Raw.(*ckafka.ConsumerGroupMetadata)
	done := make(chan error, 1)
	go func() {
		if seamSendOffsets != nil {
			seamSendOffsets(m)
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		done <- p.cp.SendOffsetsToTransaction(ctx, tps, raw)
	}()
	bound := time.NewTimer(timeout + sendOffsetsGrace)
	defer bound.Stop()
	select {
	case err := <-done:
		return true, err
	case <-bound.C:
	}
	p.c.stuck.Add(1)
	p.c.given.Go(func() {
		<-done
		p.Close()
		p.c.stuck.Add(-1)
	})
	return false, fmt.Errorf("no answer within %v: producer given up", timeout+sendOffsetsGrace)
}

// FencesWhileProducing implements kafkagroup.ConcurrentFencer: librdkafka
// takes SendOffsetsToTransaction while the transaction's records are in
// flight (its own transaction manager orders AddPartitionsToTxn and
// AddOffsetsToTxn at the coordinator), as the Java client's
// consume-transform-produce loop does, and CommitTransaction waits for
// every record. Measured, it took the offsets' 1.1 ms out of a
// transaction's ~5.7 ms (README, "The fence while the records are
// produced").
func (p *txnProducer) FencesWhileProducing() bool { return true }

// Commit implements kafkagroup.Producer: CommitTransaction, called again
// while the commit times out or the coordinator moves, within
// Config.Timeout.
func (p *txnProducer) Commit() error {
	deadline := time.Now().Add(p.c.m.p.cfg.Timeout)
	for backoff := 10 * time.Millisecond; ; backoff = min(2*backoff, time.Second) {
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		err := p.cp.CommitTransaction(ctx)
		cancel()
		if seamCommit != nil && err == nil {
			err = seamCommit(p.c.m)
		}
		if err == nil || txnClass(err) != kafkagroup.ClassRetriable || time.Until(deadline) < backoff {
			return err
		}
		time.Sleep(backoff) // librdkafka's own retries failed fast; bounded by the deadline
	}
}

// Abort implements kafkagroup.Producer: AbortTransaction, called again
// while it fails retriably, within Config.Timeout.
func (p *txnProducer) Abort() error {
	ctx, cancel := context.WithTimeout(context.Background(), p.c.m.p.cfg.Timeout)
	defer cancel()
	for {
		err := p.cp.AbortTransaction(ctx)
		if err == nil || txnClass(err) != kafkagroup.ClassRetriable || ctx.Err() != nil {
			return err
		}
	}
}

// serializedMetadata returns the bytes confluent-kafka-go keeps of a
// ConsumerGroupMetadata (librdkafka's serialized form), which it does not
// export. ok is false if the type no longer has that shape.
func serializedMetadata(md *ckafka.ConsumerGroupMetadata) (b []byte, ok bool) {
	if md == nil {
		return nil, false
	}
	v := reflect.ValueOf(md).Elem()
	if v.Kind() != reflect.Struct || v.NumField() != 1 || v.Field(0).Type() != reflect.TypeFor[[]byte]() {
		return nil, false
	}
	return v.Field(0).Bytes(), true
}

// metadataMagic opens librdkafka's serialized consumer group metadata
// (rd_kafka_consumer_group_metadata_write): then the generation (int32,
// host order), the group id, the member id (NUL-terminated each), an int8
// that is 1 when there is no group instance id, and else the instance id.
const metadataMagic = "CGMDv2:"

// decodeGroupMetadata decodes librdkafka's serialized consumer group
// metadata. Anything it does not recognise is an error: the caller refuses
// to send metadata it cannot check.
func decodeGroupMetadata(b []byte) (generation int32, group, member string, err error) {
	rest, ok := bytes.CutPrefix(b, []byte(metadataMagic))
	if !ok || len(rest) < 4 {
		return 0, "", "", errors.New("not librdkafka's CGMDv2 consumer group metadata")
	}
	generation = int32(binary.NativeEndian.Uint32(rest))
	rest = rest[4:]
	str := func() (string, bool) {
		s, after, found := bytes.Cut(rest, []byte{0})
		rest = after
		return string(s), found
	}
	var okG, okM bool
	group, okG = str()
	member, okM = str()
	if !okG || !okM || len(rest) < 1 {
		return 0, "", "", errors.New("truncated consumer group metadata")
	}
	return generation, group, member, nil
}
