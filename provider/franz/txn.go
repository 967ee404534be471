package franz

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/rehydrate/rehydrate/provider"
	"github.com/rehydrate/rehydrate/provider/kafkagroup"
)

// A member appends through the transactional clients of its
// kafkagroup.Lanes, which hold the transaction steps and what each failure
// means for the appends (written once for both Kafka providers). Why a
// transaction of a stale owner cannot commit is argued in the package
// documentation; this file is franz-go's side of the lanes: what each step
// sends (txnClient), and what the errors mean (txnClass in errors.go).
//
// The fence is sent in raw requests because kgo's high-level API sends the
// group metadata of its own consuming client, which a member has not:
// TxnOffsetCommit with the member's generation and member id read just now
// from the group client, preceded by AddOffsetsToTxn only where the cluster
// does not run transactions v2 (KIP-890 part 2), where TxnOffsetCommit v5
// adds the group to the transaction itself.

// txnMetadataMinAge bounds how long a transactional client's retried
// produce waits for the metadata update kgo makes it wait for.
const txnMetadataMinAge = 50 * time.Millisecond

// lanesClient is the member's kafkagroup.Client.
type lanesClient struct{ m *member }

var _ kafkagroup.Client = lanesClient{}

// NewProducer implements kafkagroup.Client: a new client with txid,
// initialised. InitProducerID bumps the epoch, which fences the old client,
// and completes or aborts the transaction it may have left open.
func (c lanesClient) NewProducer(ctx context.Context, txid string) (kafkagroup.Producer, error) {
	m := c.m
	cfg := m.p.cfg
	log := m.log.With("transactional_id", txid)
	opts, err := clientOpts(cfg, log)
	if err != nil {
		return nil, err
	}
	opts = append(opts,
		kgo.TransactionalID(txid),
		kgo.TransactionTimeout(cfg.TransactionTimeout),
		kgo.DefaultProduceTopic(m.topic),
		kgo.RecordPartitioner(kgo.ManualPartitioner()),
		kgo.RequiredAcks(kgo.AllISRAcks()),
		// A transaction's records are produced in one go and then
		// flushed (Produce): lingering would only delay them. A manually
		// flushed client refuses records past its buffer instead of
		// waiting for room; the lane buffers one transaction's records,
		// which are in memory already, and one append may hold more than
		// kgo's default 50 000.
		kgo.ManualFlushing(),
		kgo.MaxBufferedRecords(math.MaxInt32),
		kgo.RecordDeliveryTimeout(min(cfg.Timeout, cfg.TransactionTimeout)),
		kgo.ProduceRequestTimeout(min(cfg.Timeout, cfg.TransactionTimeout)),
		// AddOffsetsToTxn after CONCURRENT_TRANSACTIONS (the previous
		// commit's markers still being written) waits this: the default
		// 100 ms caps back-to-back transactions near 10/s.
		kgo.RetryBackoffFn(func(int) time.Duration { return 5 * time.Millisecond }),
		// A produce the broker answers CONCURRENT_TRANSACTIONS (on
		// Kafka 4 with transactions v2: the previous transaction's
		// markers still being written) is retried only after a metadata
		// update, and kgo spaces those by this minimum age: at its
		// default 5 s such a transaction stalled 5 s. Updates are asked
		// for only on errors; the periodic refresh stays at MetadataMaxAge.
		kgo.MetadataMinAge(txnMetadataMinAge),
	)
	cl, err := kgo.NewClient(opts...)
	if err != nil {
		return nil, fmt.Errorf("transactional client: %w", err)
	}
	if _, _, err := cl.ProducerID(ctx); err != nil {
		cl.Close()
		return nil, fmt.Errorf("%w: %w", provider.ErrUnavailable, err)
	}
	v2, err := transactionsV2(ctx, cl)
	if err != nil {
		cl.Close()
		return nil, fmt.Errorf("api versions: %w: %w", provider.ErrUnavailable, err)
	}
	return &txnClient{m: m, txid: txid, cl: cl, v2: v2}, nil
}

// Metadata implements kafkagroup.Client.
func (c lanesClient) Metadata() (kafkagroup.Metadata, error) { return c.m.metadata() }

// Class implements kafkagroup.Client.
func (lanesClient) Class(err error) kafkagroup.Class { return txnClass(err) }

// Annotate implements kafkagroup.Client: franz-go's errors name their
// causes themselves.
func (lanesClient) Annotate(err error) error { return err }

// transactionsV2 reports whether the cluster runs transactions v2 (KIP-890
// part 2: its finalized transaction.version is 2 or more, and
// TxnOffsetCommit v5 is there), as kgo decides for its own transactions
// from the same answer: then the TxnOffsetCommit itself adds the group's
// offsets to the transaction, and AddOffsetsToTxn is a round trip for
// nothing.
func transactionsV2(ctx context.Context, cl *kgo.Client) (bool, error) {
	resp, err := kmsg.NewPtrApiVersionsRequest().RequestWith(ctx, cl)
	if err == nil {
		err = kerr.ErrorForCode(resp.ErrorCode)
	}
	if err != nil {
		return false, err
	}
	feature := slices.ContainsFunc(resp.FinalizedFeatures, func(f kmsg.ApiVersionsResponseFinalizedFeature) bool {
		return f.Name == "transaction.version" && f.MaxVersionLevel >= 2
	})
	request := slices.ContainsFunc(resp.ApiKeys, func(k kmsg.ApiVersionsResponseApiKey) bool {
		return k.ApiKey == int16(kmsg.TxnOffsetCommit) && k.MaxVersion >= 5
	})
	return feature && request, nil
}

// txnClient is a lane's transactional client (kafkagroup.Producer). It is
// no kafkagroup.ConcurrentFencer: on transactions v2 a TxnOffsetCommit
// sent while the records are produced contends with the produce's own
// registration at the transaction coordinator (CONCURRENT_TRANSACTIONS,
// retried on both sides); measured, it doubled the produce (0.9 → 2.0 ms)
// and fenced Execute fell from 0.80× to 0.44× unfenced at 64.
type txnClient struct {
	m    *member
	txid string
	cl   *kgo.Client
	v2   bool // the cluster runs transactions v2 (KIP-890 part 2): no AddOffsetsToTxn
}

// Close implements kafkagroup.Producer.
func (t *txnClient) Close() { t.cl.Close() }

// Begin implements kafkagroup.Producer.
func (t *txnClient) Begin() error { return t.cl.BeginTransaction() }

// Produce implements kafkagroup.Producer: every record to its explicit
// partition, a flush, and every promise. kgo fails a record of a
// transaction at the delivery timeout only when it is sure of its fate;
// should no promise come within bound, the client is given up.
func (t *txnClient) Produce(batch []*kafkagroup.Append, bound time.Duration) (offsets [][]int64, errs [][]error, answered bool) {
	var wg sync.WaitGroup
	// Not named results: a promise that comes after the bound still
	// writes here.
	offs, errsOf := make([][]int64, len(batch)), make([][]error, len(batch))
	for bi, a := range batch {
		offs[bi], errsOf[bi] = make([]int64, len(a.Records)), make([]error, len(a.Records))
		for i, rec := range a.Records {
			wg.Add(1)
			t.cl.Produce(context.Background(), toRecord(rec, t.m.topic, a.Parts[i]), func(kr *kgo.Record, err error) {
				if err != nil {
					errsOf[bi][i] = err
				} else {
					offs[bi][i] = kr.Offset
				}
				wg.Done()
			})
		}
	}
	waited := make(chan struct{})
	ctx, cancel := context.WithTimeout(context.Background(), bound)
	defer cancel()
	go func() {
		_ = t.cl.Flush(ctx) // manual flushing: the records go now; an error leaves them to the bound below
		wg.Wait()
		close(waited)
	}()
	select {
	case <-waited:
		for bi, a := range batch {
			t.m.p.refineTooLarge(a.Records, errsOf[bi])
		}
		return offs, errsOf, true
	case <-ctx.Done():
		return nil, nil, false
	}
}

// SendOffsets implements kafkagroup.Producer: the member's group added to
// the transaction where needed, then TxnOffsetCommit of next with md, the
// request the coordinator fences.
func (t *txnClient) SendOffsets(md kafkagroup.Metadata, next map[int32]int64) (answered bool, err error) {
	return true, t.sendOffsets(md, next)
}

func (t *txnClient) sendOffsets(md kafkagroup.Metadata, next map[int32]int64) error {
	ctx, cancel := context.WithTimeout(context.Background(), t.m.p.cfg.Timeout)
	defer cancel()
	id, epoch, err := t.cl.ProducerID(ctx)
	if err != nil {
		return err
	}
	if !t.v2 {
		if err := t.addOffsets(ctx, id, epoch); err != nil {
			return err
		}
	}
	commit := kmsg.NewPtrTxnOffsetCommitRequest()
	commit.TransactionalID = t.txid
	commit.Group = t.m.cfg.Group
	commit.ProducerID = id
	commit.ProducerEpoch = epoch
	commit.Generation = md.Generation
	commit.MemberID = md.MemberID
	rt := kmsg.NewTxnOffsetCommitRequestTopic()
	rt.Topic = t.m.topic
	rt.TopicID = t.m.topicID
	for _, part := range slices.Sorted(maps.Keys(next)) {
		p := kmsg.NewTxnOffsetCommitRequestTopicPartition()
		p.Partition = part
		p.Offset = next[part]
		p.LeaderEpoch = -1
		p.Metadata = &t.txid // for kafkagroup.Leavers
		rt.Partitions = append(rt.Partitions, p)
	}
	commit.Topics = append(commit.Topics, rt)
	// On transactions v2 it adds the group to the transaction itself, and
	// may meet the previous transaction's markers still being written:
	// CONCURRENT_TRANSACTIONS, retried like the errors of a moving
	// coordinator.
	return untilSettled(ctx, func() error {
		resp, err := commit.RequestWith(ctx, t.cl)
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
	})
}

// untilSettled calls req again, a few milliseconds apart, while it fails
// with an error kerr calls retriable (the coordinator loading or moving) or
// with CONCURRENT_TRANSACTIONS (the previous transaction's markers still
// being written, which kerr does not call retriable), within ctx.
func untilSettled(ctx context.Context, req func() error) error {
	for {
		err := req()
		var ke *kerr.Error
		if err == nil || !errors.As(err, &ke) || !(ke.Retriable || ke == kerr.ConcurrentTransactions) || ctx.Err() != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(5 * time.Millisecond): // the coordinator's markers take a moment; bounded by ctx
		}
	}
}

// addOffsets adds the member's group to the transaction (AddOffsetsToTxn),
// which transactions before v2 need before TxnOffsetCommit.
func (t *txnClient) addOffsets(ctx context.Context, id int64, epoch int16) error {
	add := kmsg.NewPtrAddOffsetsToTxnRequest()
	add.TransactionalID = t.txid
	add.ProducerID = id
	add.ProducerEpoch = epoch
	add.Group = t.m.cfg.Group
	// CONCURRENT_TRANSACTIONS: the previous transaction's markers are
	// still being written.
	return untilSettled(ctx, func() error {
		resp, err := add.RequestWith(ctx, t.cl)
		if err == nil {
			err = kerr.ErrorForCode(resp.ErrorCode)
		}
		return err
	})
}

// Commit implements kafkagroup.Producer: EndTransaction(TryCommit) within
// Config.Timeout.
func (t *txnClient) Commit() error {
	ctx, cancel := context.WithTimeout(context.Background(), t.m.p.cfg.Timeout)
	defer cancel()
	return t.cl.EndTransaction(ctx, kgo.TryCommit)
}

// Abort implements kafkagroup.Producer: what is still buffered is dropped,
// then EndTransaction(TryAbort), within Config.Timeout.
func (t *txnClient) Abort() error {
	ctx, cancel := context.WithTimeout(context.Background(), t.m.p.cfg.Timeout)
	defer cancel()
	if err := t.cl.AbortBufferedRecords(ctx); err != nil {
		return err
	}
	return t.cl.EndTransaction(ctx, kgo.TryAbort)
}
