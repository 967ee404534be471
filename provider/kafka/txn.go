//go:build cgo

package kafka

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"reflect"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	ckafka "github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/rehydrate/rehydrate/provider"
	"github.com/rehydrate/rehydrate/provider/internal/ownership"
)

// A member appends through GroupProducers transactional producers, its
// lanes. Partition p goes through lane p mod lanes (an append of several
// partitions through the lane of its first record's), one transaction at a
// time: everything queued when a transaction starts rides in it (group
// commit), and every append of it is acknowledged after its commit. Why a
// transaction of a stale owner cannot commit is argued in the package
// documentation; this file is the mechanism: what each step sends, and what
// each failure means for the appends in the transaction.
//
// A transaction is, in order:
//
//  1. BeginTransaction, then Produce of every record to its explicit
//     partition, and a wait for every delivery report: the records are in
//     the log, invisible to read-committed readers, and their offsets known.
//  2. SendOffsetsToTransaction with, for every partition written, its last
//     offset + 1 (a real offset: logical ones make librdkafka send nothing,
//     so nothing is checked) and the member's consumer group metadata read
//     just now (fresh) and refused locally when it names no membership
//     (generation < 0 or no member id: the coordinator accepts those as
//     "not a group member" instead of fencing them). The group coordinator
//     checks generation and member id here: this is the fence. librdkafka
//     does not always keep this call's timeout (see lane.sendOffsets): past
//     it, the lane gives the producer up, and the transaction stays
//     uncommitted as below.
//  3. CommitTransaction, retried within Config.Timeout while it times out.
//
// What a failure means for the appends of the transaction (classify, which
// reads the table of client errors in errors.go):
//
//   - Before CommitTransaction was called, nothing can become visible: no
//     commit is ever asked for, and the transaction ends aborted (by
//     AbortTransaction, or by the next InitTransactions of the same
//     transactional.id, or by the broker's transaction timeout). The appends
//     fail with provider.ErrNotOwner when the coordinator refused the
//     member, provider.ErrUnavailable otherwise.
//   - After CommitTransaction was called, the transaction is known not to be
//     committed only if AbortTransaction succeeds; otherwise its appends
//     fail with provider.ErrOutcomeUnknown, their partitions are marked
//     unsettled, and the lane replaces its producer before anything else:
//     InitTransactions under the same transactional.id completes or aborts
//     whatever the old producer left, so once it returns the outcome is
//     final and visible. An append to an unsettled partition waits for that
//     (through any lane), which keeps a partition's appends ordered across an
//     unknown outcome: an append that starts after another returned lands
//     after it, if at all.

// maxStuck bounds the producers a lane has given up that are still inside
// SendOffsetsToTransaction (see lane.tooManyStuck).
const maxStuck = 3

// sendOffsetsGrace is how long past its own timeout SendOffsetsToTransaction
// may take before the lane gives its producer up (see lane.sendOffsets).
const sendOffsetsGrace = 5 * time.Second

// lane is one transactional producer of a member and the appends queued for
// it.
type lane struct {
	m    *member
	id   int
	txid string
	log  *slog.Logger

	queue *ownership.Queue
	ops   chan func() // run on the lane's goroutine between transactions
	stop  chan struct{}
	done  chan struct{}

	resets atomic.Int64 // producers replaced, for tests

	// Owned by the lane's goroutine once it runs:
	producer  *txnProducer
	stuck     atomic.Int32   // producers given up by sendOffsets, not yet returned and closed
	given     sync.WaitGroup // the goroutines that close them
	broken    bool           // the producer must be replaced before the next transaction
	unsettled []int32        // partitions of a commit of unknown outcome, until the replacement settles it
}

func newLane(m *member, id int) *lane {
	txid := m.cfg.Group + "-" + m.cfg.Instance + "-" + strconv.Itoa(id)
	return &lane{
		m:     m,
		id:    id,
		txid:  txid,
		log:   m.log.With("transactional_id", txid),
		queue: ownership.NewQueue(),
		ops:   make(chan func()),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
}

// txnProducer is a lane's transactional producer and the goroutines that
// drain its channels.
type txnProducer struct {
	*ckafka.Producer
	drained sync.WaitGroup
}

func (p *txnProducer) close() {
	p.Close()
	p.drained.Wait()
}

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

// deliveryBound is how long a transaction waits for its delivery reports
// at most: librdkafka reports every record within message.timeout.ms.
func (l *lane) deliveryBound() time.Duration {
	cfg := l.m.p.cfg
	return min(cfg.Timeout, cfg.TransactionTimeout) + 5*time.Second
}

// reset replaces the lane's producer by a new one with the same
// transactional.id and initialises it. InitTransactions bumps the
// producer epoch, which fences the old producer, and completes or aborts the
// transaction it may have left open: when it returns, that transaction's
// outcome is final. At join it also ends whatever a previous incarnation of
// the instance left open.
func (l *lane) reset(ctx context.Context) error {
	l.closeProducer()
	cp, err := l.m.p.newTxnProducer(l.txid)
	if err != nil {
		return fmt.Errorf("kafka: transactional producer %s: %w", l.txid, err)
	}
	p := &txnProducer{Producer: cp}
	p.drained.Add(2)
	go func() {
		defer p.drained.Done()
		forwardLogs(p.Logs(), l.log)
	}()
	go func() {
		defer p.drained.Done()
		for ev := range p.Events() {
			if e, ok := ev.(ckafka.Error); ok && l.m.errLog.allow(e.Code()) {
				l.log.Warn("kafka transactional producer error", "err", e)
			}
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, l.m.p.cfg.Timeout)
	defer cancel()
	connected(ctx, cp)
	if err := p.InitTransactions(ctx); err != nil {
		p.close()
		return l.m.unavailable(fmt.Sprintf("init transactions of %s", l.txid), err)
	}
	l.producer = p
	l.resets.Add(1)
	return nil
}

func (l *lane) closeProducer() {
	if l.producer != nil {
		l.producer.close()
		l.producer = nil
	}
}

// run is the lane's goroutine, which owns the producer: it initialises one
// and reports how that went on ready, then runs one transaction after the
// other with whatever is queued, replacing a broken producer first.
func (l *lane) run(ctx context.Context, ready chan<- error) {
	defer close(l.done)
	err := l.reset(ctx)
	ready <- err
	if err != nil {
		<-l.stop
		return
	}
	l.m.own.RunLane(l.queue, l.stop, l.ops, l.steps())
	l.shutdown()
}

// steps are the lane's side of ownership.Table.RunLane.
func (l *lane) steps() ownership.LaneSteps {
	return ownership.LaneSteps{Broken: func() bool { return l.broken }, Settle: l.settle, Commit: l.commit}
}

// settle replaces the broken producer (ownership.Table.Replace).
func (l *lane) settle() bool {
	if !l.m.own.Replace(l.queue, l.stop, l.unsettled, l.reset, l.log) {
		return false
	}
	l.broken, l.unsettled = false, nil
	return true
}

// shutdown ends the lane at Close (ownership.Table.Shutdown) and releases
// the producer.
func (l *lane) shutdown() {
	l.m.own.Shutdown(l.queue, l.broken, l.unsettled, l.reset, l.log)
	l.closeProducer()
	if l.stuck.Load() > 0 {
		closed := make(chan struct{})
		go func() {
			l.given.Wait()
			close(closed)
		}()
		select {
		case <-closed:
		case <-time.After(l.m.p.cfg.Timeout):
			l.log.Warn("kafka: close: a producer given up is still inside SendOffsetsToTransaction; it is closed when librdkafka returns")
		}
	}
}

// commit runs batch in a transaction and ends its appends. It returns the
// appends to run again in a transaction of their own.
func (l *lane) commit(batch []*ownership.Append) []*ownership.Append {
	m := l.m
	for attempt := 1; ; attempt++ {
		// A revocation that started since the append was queued does not
		// wait for it: the append is refused before anything is sent.
		batch = m.stillOwned(batch)
		if len(batch) == 0 {
			return nil
		}
		res := l.transact(batch)
		if res.staleGeneration != nil && attempt < ownership.MaxTxnAttempts && m.awaitNewGeneration(*res.staleGeneration, batch) {
			continue // nothing was written: run it under the new generation
		}
		return m.own.FinishAll(batch, res.Outcome, !l.broken)
	}
}

type txnResult struct {
	ownership.Outcome
	// staleGeneration is the metadata the coordinator refused as an old
	// generation of a member it still knows.
	staleGeneration *groupMetadata
}

// allFailed is the result of a transaction that failed for every append.
func allFailed(err error) txnResult { return txnResult{Outcome: ownership.Outcome{Err: err}} }

// transact runs one transaction of batch. See the comment at the top of
// the file for what each step and failure means.
func (l *lane) transact(batch []*ownership.Append) txnResult {
	m := l.m
	if l.tooManyStuck() {
		return allFailed(m.appendError(provider.ErrUnavailable, "begin transaction",
			fmt.Errorf("%d producers given up are still waiting for the group coordinator (SendOffsetsToTransaction)", maxStuck)))
	}
	p := l.producer
	if err := p.BeginTransaction(); err != nil {
		l.broken = true
		return allFailed(m.appendError(provider.ErrUnavailable, "begin transaction", err))
	}

	// 1. Produce, and wait for every delivery report.
	n := 0
	for _, r := range batch {
		n += len(r.Records)
	}
	reports := make(chan ckafka.Event, n)
	owner := make([]int, 0, n) // the batch index of each record produced
	culprits := make(map[int]error)
	var failed error
produce:
	for bi, r := range batch {
		for i, rec := range r.Records {
			err := p.Produce(&ckafka.Message{
				TopicPartition: ckafka.TopicPartition{Topic: &m.topic, Partition: r.Parts[i]},
				Key:            rec.Key,
				Value:          rec.Value,
				Headers:        toKafkaHeaders(rec.Headers),
				Opaque:         len(owner),
			}, reports)
			if err != nil {
				failed = fmt.Errorf("record %d of %d: %w", i+1, len(r.Records), err)
				if recordRefused(err) {
					culprits[bi] = m.appendError(nil, "produce", failed)
				}
				break produce
			}
			owner = append(owner, bi)
		}
	}
	offsets := make([]int64, len(owner))
	bound := time.NewTimer(l.deliveryBound())
	defer bound.Stop()
	for range owner {
		select {
		case ev := <-reports:
			msg := ev.(*ckafka.Message)
			i := msg.Opaque.(int)
			if err := msg.TopicPartition.Error; err != nil {
				if recordRefused(err) {
					culprits[owner[i]] = m.appendError(nil, "produce", fmt.Errorf("partition %d: %w", msg.TopicPartition.Partition, err))
				}
				if failed == nil || purged(failed) {
					failed = err
				}
				continue
			}
			offsets[i] = int64(msg.TopicPartition.Offset)
		case <-bound.C:
			// librdkafka reports every record within message.timeout.ms;
			// should it not, give the producer up. No commit was asked
			// for: nothing of the transaction can become visible.
			l.broken = true
			return allFailed(m.appendError(provider.ErrUnavailable, "produce", fmt.Errorf("no delivery report within %v", l.deliveryBound())))
		}
	}
	if failed != nil {
		_ = l.abort()
		err := m.appendError(provider.ErrUnavailable, "produce", failed)
		if len(culprits) > 0 {
			err = m.appendError(provider.ErrUnavailable, "produce", fmt.Errorf("transaction aborted for another append's record: %w", failed))
		}
		return txnResult{Outcome: ownership.Outcome{Err: err, Culprits: culprits}}
	}
	positions := make([][]provider.Position, len(batch))
	next := make(map[int32]int64)
	for i, bi := range owner {
		part := batch[bi].Parts[len(positions[bi])]
		positions[bi] = append(positions[bi], provider.Position{Partition: part, Offset: offsets[i]})
		next[part] = max(next[part], offsets[i]+1)
	}

	// 2. The fence: offsets of every partition written, with fresh group
	// metadata.
	md, err := m.metadata()
	if err != nil {
		_ = l.abort()
		return allFailed(err)
	}
	tps := make([]ckafka.TopicPartition, 0, len(next))
	for _, part := range slices.Sorted(maps.Keys(next)) {
		tps = append(tps, ckafka.TopicPartition{Topic: &m.topic, Partition: part, Offset: ckafka.Offset(next[part])})
	}
	answered, err := l.sendOffsets(tps, md.raw)
	if !answered {
		l.broken = true
		return allFailed(m.appendError(provider.ErrUnavailable, "send offsets to transaction", err))
	}
	if err != nil {
		switch classify(err) {
		case classRefused:
			_ = l.abort()
			res := allFailed(m.refused(md, err))
			if staleGeneration(err) {
				res.staleGeneration = &md
			}
			return res
		case classFatal:
			l.broken = true // replacing it aborts the transaction
		default:
			_ = l.abort()
		}
		return allFailed(m.appendError(provider.ErrUnavailable, "send offsets to transaction", err))
	}

	// 3. Commit.
	if err := l.commitTransaction(); err != nil {
		if l.abortAfterCommit(err) == nil {
			return allFailed(m.appendError(provider.ErrUnavailable, "commit", err))
		}
		l.broken = true
		l.unsettled = slices.Sorted(maps.Keys(next))
		m.own.Unsettle(l.unsettled)
		return allFailed(m.appendError(provider.ErrOutcomeUnknown, "commit", err))
	}
	return txnResult{Outcome: ownership.Outcome{Positions: positions}}
}

// sendOffsets runs step 2's SendOffsetsToTransaction within Config.Timeout.
// librdkafka does not always keep that bound: with the group coordinator
// down, the call can block until the coordinator is back (librdkafka #5456,
// #5511; here a member acknowledged nothing for minutes after its
// coordinator was killed). Past the bound and a grace the lane stops
// waiting: answered is false, and the producer is given up, to be closed
// once the call returns. Its transaction is never committed (only the lane
// commits, and never on that producer), and the replacement's
// InitTransactions under the same transactional.id fences it and aborts the
// transaction.
func (l *lane) sendOffsets(tps []ckafka.TopicPartition, md *ckafka.ConsumerGroupMetadata) (answered bool, err error) {
	p, timeout := l.producer, l.m.p.cfg.Timeout
	done := make(chan error, 1)
	go func() {
		if stall := l.m.stallSendOffsets.Load(); stall != nil {
			<-*stall
		}
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		done <- p.SendOffsetsToTransaction(ctx, tps, md)
	}()
	bound := time.NewTimer(timeout + sendOffsetsGrace)
	defer bound.Stop()
	select {
	case err := <-done:
		return true, err
	case <-bound.C:
	}
	l.producer = nil
	l.stuck.Add(1)
	l.given.Go(func() {
		<-done
		p.close()
		l.stuck.Add(-1)
	})
	return false, fmt.Errorf("no answer within %v: producer given up", timeout+sendOffsetsGrace)
}

// tooManyStuck reports whether maxStuck producers the lane gave up are
// still inside SendOffsetsToTransaction. A stuck call can outlast the
// coordinator's move to another broker (librdkafka #5511), so the lane goes
// on with a new producer, which usually commits; but while the coordinator
// stays away each transaction would give up one more producer, and its
// librdkafka threads, every Timeout: past maxStuck, appends fail at once.
func (l *lane) tooManyStuck() bool { return l.stuck.Load() >= maxStuck }

// commitTransaction commits, calling again while the commit times out or
// the coordinator moves, within Config.Timeout.
func (l *lane) commitTransaction() error {
	deadline := time.Now().Add(l.m.p.cfg.Timeout)
	for backoff := 10 * time.Millisecond; ; backoff = min(2*backoff, time.Second) {
		ctx, cancel := context.WithDeadline(context.Background(), deadline)
		err := l.producer.CommitTransaction(ctx)
		cancel()
		if hook := l.m.commitHook.Swap(nil); hook != nil && err == nil {
			err = *hook // a test's commit of unknown outcome
		}
		if err == nil || classify(err) != classRetriable || time.Until(deadline) < backoff {
			return err
		}
		time.Sleep(backoff) // librdkafka's own retries failed fast; bounded by the deadline
	}
}

// abortAfterCommit tries to abort a transaction whose commit failed. Only
// an abortable failure leaves that possible; a successful abort proves the
// transaction was not committed.
func (l *lane) abortAfterCommit(commitErr error) error {
	switch classify(commitErr) {
	case classAbortable, classRefused:
		return l.abort()
	}
	return commitErr
}

// abort aborts the open transaction within Config.Timeout. On failure the
// producer is marked broken: its replacement aborts the transaction.
func (l *lane) abort() error {
	ctx, cancel := context.WithTimeout(context.Background(), l.m.p.cfg.Timeout)
	defer cancel()
	for {
		err := l.producer.AbortTransaction(ctx)
		if err == nil {
			return nil
		}
		if classify(err) != classRetriable || ctx.Err() != nil {
			l.broken = true
			return err
		}
	}
}

// groupMetadata is a member's consumer group metadata as
// SendOffsetsToTransaction sends it, decoded.
type groupMetadata struct {
	raw        *ckafka.ConsumerGroupMetadata
	generation int32
	member     string
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
