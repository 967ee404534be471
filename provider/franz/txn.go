package franz

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/rehydrate/rehydrate/provider"
	"github.com/rehydrate/rehydrate/provider/internal/ownership"
)

// A member appends through GroupProducers transactional clients, its lanes.
// Partition p goes through lane p mod lanes (an append of several partitions
// through the lane of its first record's), one transaction at a time:
// everything queued when a transaction starts rides in it (group commit),
// and every append of it is acknowledged after its commit. Why a
// transaction of a stale owner cannot commit is argued in the package
// documentation; this file is the mechanism.
//
// A transaction is, in order:
//
//  1. BeginTransaction, then Produce of every record to its explicit
//     partition, and a wait for every promise: the records are in the log,
//     invisible to read-committed readers, and their offsets known.
//  2. The fence, in raw requests because kgo's high-level API sends the
//     group metadata of its own consumer, which a member without a consuming
//     client has not: AddOffsetsToTxn, then TxnOffsetCommit with, for every
//     partition written, its last offset + 1 and the member's generation and
//     member id read just now from the group client (refused locally when
//     they name no membership). The group coordinator checks generation and
//     member id here.
//  3. EndTransaction(TryCommit).
//
// Failures mean what they mean in provider/kafka: before the commit was
// asked for, nothing can become visible (ErrNotOwner when the coordinator
// refused the member, ErrUnavailable otherwise); after, only a successful
// abort proves nothing was committed; otherwise the appends fail with
// ErrOutcomeUnknown, their partitions are unsettled, and the lane replaces
// its client first: InitProducerID under the same transactional id completes
// or aborts what the old one left.

// lane is one transactional client of a member and the appends queued for
// it.
type lane struct {
	m    *member
	txid string
	log  *slog.Logger

	queue *ownership.Queue
	stop  chan struct{}
	done  chan struct{}

	// Owned by the lane's goroutine once it runs:
	cl        *kgo.Client
	broken    bool    // the client must be replaced before the next transaction
	unsettled []int32 // partitions of a commit of unknown outcome, until the replacement settles it
}

func newLane(m *member, id int) *lane {
	txid := m.cfg.Group + "-" + m.cfg.Instance + "-" + strconv.Itoa(id)
	return &lane{
		m:     m,
		txid:  txid,
		log:   m.log.With("transactional_id", txid),
		queue: ownership.NewQueue(),
		stop:  make(chan struct{}),
		done:  make(chan struct{}),
	}
}

// reset replaces the lane's client by a new one with the same transactional
// id and initialises it: InitProducerID bumps the epoch, which fences the
// old client, and completes or aborts the transaction it may have left
// open. At join it also ends whatever a previous incarnation of the
// instance left open.
func (l *lane) reset(ctx context.Context) error {
	l.closeClient()
	cfg := l.m.p.cfg
	opts, err := clientOpts(cfg, l.log)
	if err != nil {
		return err
	}
	opts = append(opts,
		kgo.TransactionalID(l.txid),
		kgo.TransactionTimeout(cfg.TransactionTimeout),
		kgo.DefaultProduceTopic(l.m.topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		kgo.ProducerLinger(cfg.Linger),
		kgo.RecordDeliveryTimeout(min(cfg.Timeout, cfg.TransactionTimeout)),
		kgo.ProduceRequestTimeout(min(cfg.Timeout, cfg.TransactionTimeout)),
		// AddOffsetsToTxn after CONCURRENT_TRANSACTIONS (the previous
		// commit's markers still being written) waits this: the default
		// 100 ms caps back-to-back transactions near 10/s.
		kgo.RetryBackoffFn(func(int) time.Duration { return 5 * time.Millisecond }),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return fmt.Errorf("franz: transactional client %s: %w", l.txid, err)
	}
	ctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	if _, _, err := cl.ProducerID(ctx); err != nil {
		cl.Close()
		return l.m.unavailable("init producer id of "+l.txid, err)
	}
	l.cl = cl
	return nil
}

// deliveryBound is how long a transaction waits for its records' promises
// at most: kgo's delivery timeout, and a margin for its last request.
func (l *lane) deliveryBound() time.Duration {
	cfg := l.m.p.cfg
	return min(cfg.Timeout, cfg.TransactionTimeout) + 5*time.Second
}

func (l *lane) closeClient() {
	if l.cl != nil {
		l.cl.Close()
		l.cl = nil
	}
}

// run is the lane's goroutine: one transaction after the other with
// whatever is queued, replacing a broken client first.
func (l *lane) run() {
	defer close(l.done)
	l.m.own.RunLane(l.queue, l.stop, nil, l.steps())
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
	l.closeClient()
}

// commit runs batch in a transaction and ends its appends. It returns the
// appends to run again in a transaction of their own: those whose
// transaction another append's refused record spoiled.
func (l *lane) commit(batch []*ownership.Append) []*ownership.Append {
	m := l.m
	for attempt := 1; ; attempt++ {
		// A revocation that started since the append was queued does not
		// wait for it: the append is refused before anything is sent.
		batch = slices.DeleteFunc(batch, func(r *ownership.Append) bool {
			if m.own.OwnsAll(r.Touched) {
				return false
			}
			m.own.Finish(r, nil, fmt.Errorf("franz: group %s: partitions %v: revoked before the append was sent: %w", m.cfg.Group, r.Touched, provider.ErrNotOwner))
			return true
		})
		if len(batch) == 0 {
			return nil
		}
		res := l.transact(batch)
		if res.staleGeneration != nil && attempt < ownership.MaxTxnAttempts && l.awaitNewGeneration(*res.staleGeneration, batch) {
			continue // nothing was written: run it under the new generation
		}
		return m.own.FinishAll(batch, res.Outcome, !l.broken)
	}
}

// awaitNewGeneration waits, briefly, for the member's metadata to move past
// the generation the coordinator refused, as long as the member still owns
// batch's partitions.
func (l *lane) awaitNewGeneration(old groupMetadata, batch []*ownership.Append) bool {
	deadline := time.Now().Add(ownership.StaleGenerationWait)
	owns := func() bool {
		return !slices.ContainsFunc(batch, func(r *ownership.Append) bool { return !l.m.own.OwnsAll(r.Touched) })
	}
	for time.Now().Before(deadline) && owns() {
		if md, err := l.m.metadata(); err == nil && md != old {
			return true
		}
		select {
		case <-l.stop:
			return false
		case <-time.After(10 * time.Millisecond): // the rejoin answer is processed by kgo's group goroutine
		}
	}
	return false
}

type txnResult struct {
	ownership.Outcome
	// staleGeneration is the metadata the coordinator refused as an old
	// generation of a member it still knows.
	staleGeneration *groupMetadata
}

// allFailed is the result of a transaction that failed for every append.
func allFailed(err error) txnResult { return txnResult{Outcome: ownership.Outcome{Err: err}} }

// transact runs one transaction of batch.
func (l *lane) transact(batch []*ownership.Append) txnResult {
	m := l.m
	if err := l.cl.BeginTransaction(); err != nil {
		l.broken = true
		return allFailed(m.appendError(provider.ErrUnavailable, "begin transaction", err))
	}

	// 1. Produce, and wait for every promise.
	var wg sync.WaitGroup
	// Not the named result: a promise that comes after the delivery bound
	// still writes here.
	positions := make([][]provider.Position, len(batch))
	errs := make([][]error, len(batch))
	for bi, r := range batch {
		positions[bi] = make([]provider.Position, len(r.Records))
		errs[bi] = make([]error, len(r.Records))
		for i, rec := range r.Records {
			wg.Add(1)
			l.cl.Produce(context.Background(), toRecord(rec, m.topic, r.Parts[i]), func(kr *kgo.Record, err error) {
				if err != nil {
					errs[bi][i] = err
				} else {
					positions[bi][i] = provider.Position{Partition: kr.Partition, Offset: kr.Offset}
				}
				wg.Done()
			})
		}
	}
	waited := make(chan struct{})
	go func() {
		wg.Wait()
		close(waited)
	}()
	// kgo fails a record of a transaction at the delivery timeout only when
	// it is sure of its fate; should no promise come, give the client up.
	// No commit was asked for: nothing of the transaction can become
	// visible, and the replacement's InitProducerID aborts it.
	bound := time.NewTimer(l.deliveryBound())
	defer bound.Stop()
	select {
	case <-waited:
	case <-bound.C:
		l.broken = true
		return allFailed(m.appendError(provider.ErrUnavailable, "produce", fmt.Errorf("no answer within %v", l.deliveryBound())))
	}
	next := make(map[int32]int64)
	var failed error
	culprits := make(map[int]error)
	for bi := range batch {
		for i, err := range errs[bi] {
			if err != nil {
				err = fmt.Errorf("record %d of %d: %w", i+1, len(batch[bi].Records), err)
				if recordRefused(err) {
					culprits[bi] = cmpErr(culprits[bi], m.appendError(nil, "produce", err))
				}
				failed = cmpErr(failed, err)
				continue
			}
			pos := positions[bi][i]
			next[pos.Partition] = max(next[pos.Partition], pos.Offset+1)
		}
	}
	if failed != nil {
		l.abort()
		if len(culprits) > 0 {
			failed = fmt.Errorf("transaction aborted for another append's record: %w", failed)
		}
		return txnResult{Outcome: ownership.Outcome{Err: m.appendError(provider.ErrUnavailable, "produce", failed), Culprits: culprits}}
	}

	// 2. The fence: offsets of every partition written, with fresh group
	// metadata.
	md, err := m.metadata()
	if err != nil {
		l.abort()
		return allFailed(err)
	}
	if err := l.sendOffsets(md, next); err != nil {
		var ke *kerr.Error
		switch {
		case errors.As(err, &ke) && (ke == kerr.IllegalGeneration || ke == kerr.UnknownMemberID || ke == kerr.FencedInstanceID):
			l.abort()
			refused := fmt.Errorf("franz: group %s refused member %s at generation %d: %w: %w", m.cfg.Group, md.member, md.generation, provider.ErrNotOwner, err)
			if ke == kerr.IllegalGeneration {
				return txnResult{Outcome: ownership.Outcome{Err: refused}, staleGeneration: &md}
			}
			return allFailed(refused)
		case errors.As(err, &ke) && (ke == kerr.ProducerFenced || ke == kerr.InvalidProducerEpoch):
			l.broken = true // replacing it aborts the transaction
		default:
			l.abort()
		}
		return allFailed(m.appendError(provider.ErrUnavailable, "send offsets to transaction", err))
	}

	// 3. Commit.
	ctx, cancel := context.WithTimeout(context.Background(), m.p.cfg.Timeout)
	err = l.cl.EndTransaction(ctx, kgo.TryCommit)
	cancel()
	if err != nil {
		// Only a successful abort proves the commit did not happen.
		if l.abort() {
			return allFailed(m.appendError(provider.ErrUnavailable, "commit", err))
		}
		l.unsettled = slices.Sorted(maps.Keys(next))
		m.own.Unsettle(l.unsettled)
		return allFailed(m.appendError(provider.ErrOutcomeUnknown, "commit", err))
	}
	return txnResult{Outcome: ownership.Outcome{Positions: positions}}
}

// cmpErr keeps the first error.
func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

// sendOffsets adds the member's group to the transaction and commits, in
// it, the offsets of next with md: the request the coordinator fences.
func (l *lane) sendOffsets(md groupMetadata, next map[int32]int64) error {
	ctx, cancel := context.WithTimeout(context.Background(), l.m.p.cfg.Timeout)
	defer cancel()
	id, epoch, err := l.cl.ProducerID(ctx)
	if err != nil {
		return err
	}
	add := kmsg.NewPtrAddOffsetsToTxnRequest()
	add.TransactionalID = l.txid
	add.ProducerID = id
	add.ProducerEpoch = epoch
	add.Group = l.m.cfg.Group
	// CONCURRENT_TRANSACTIONS: the previous transaction's markers are
	// still being written; retry it within the timeout.
	for {
		resp, err := add.RequestWith(ctx, l.cl)
		if err == nil {
			err = kerr.ErrorForCode(resp.ErrorCode)
		}
		if err == nil {
			break
		}
		var ke *kerr.Error
		if !errors.As(err, &ke) || !ke.Retriable || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(5 * time.Millisecond): // the coordinator's markers take a moment; bounded by ctx
		}
	}
	commit := kmsg.NewPtrTxnOffsetCommitRequest()
	commit.TransactionalID = l.txid
	commit.Group = l.m.cfg.Group
	commit.ProducerID = id
	commit.ProducerEpoch = epoch
	commit.Generation = md.generation
	commit.MemberID = md.member
	t := kmsg.NewTxnOffsetCommitRequestTopic()
	t.Topic = l.m.topic
	t.TopicID = l.m.topicID
	for _, part := range slices.Sorted(maps.Keys(next)) {
		p := kmsg.NewTxnOffsetCommitRequestTopicPartition()
		p.Partition = part
		p.Offset = next[part]
		p.LeaderEpoch = -1
		t.Partitions = append(t.Partitions, p)
	}
	commit.Topics = append(commit.Topics, t)
	resp, err := commit.RequestWith(ctx, l.cl)
	if err != nil {
		return err
	}
	for _, rt := range resp.Topics {
		for _, rp := range rt.Partitions {
			if err := kerr.ErrorForCode(rp.ErrorCode); err != nil {
				return fmt.Errorf("partition %d: %w", rp.Partition, err)
			}
		}
	}
	return nil
}

// abort aborts the open transaction within Config.Timeout and reports
// whether it did. On failure the client is marked broken: its replacement
// aborts the transaction.
func (l *lane) abort() bool {
	ctx, cancel := context.WithTimeout(context.Background(), l.m.p.cfg.Timeout)
	defer cancel()
	if err := l.cl.AbortBufferedRecords(ctx); err == nil {
		if err = l.cl.EndTransaction(ctx, kgo.TryAbort); err == nil {
			return true
		}
		l.log.Debug("franz: abort failed; replacing the client", "err", err)
	}
	l.broken = true
	return false
}

// appendError wraps err, marked with sentinel.
func (m *member) appendError(sentinel error, step string, err error) error {
	if sentinel == nil {
		return fmt.Errorf("franz: group %s: append to %s: %s: %w", m.cfg.Group, m.topic, step, err)
	}
	return fmt.Errorf("franz: group %s: append to %s: %s: %w: %w", m.cfg.Group, m.topic, step, sentinel, err)
}

func (m *member) unavailable(step string, err error) error {
	return fmt.Errorf("franz: group %s: %s: %w: %w", m.cfg.Group, step, provider.ErrUnavailable, err)
}
