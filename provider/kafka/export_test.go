//go:build cgo

package kafka

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"

	ckafka "github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/rehydrate/rehydrate/provider"
	"github.com/rehydrate/rehydrate/provider/kafkagroup"
)

// Hooks for the tests of package kafka_test, on the seams of seams.go.

// hooks is what the tests made of one member.
type hooks struct {
	holdPolls        atomic.Bool                                  // the poll loop stops calling Poll
	metadataOverride atomic.Pointer[ckafka.ConsumerGroupMetadata] // sent instead of the consumer's
	stayOut          atomic.Bool                                  // after losing its partitions, the member does not rejoin
	commitHook       atomic.Pointer[error]                        // reported once by a successful commit
	stallSendOffsets atomic.Pointer[chan struct{}]                // SendOffsetsToTransaction waits for it to close
	producers        atomic.Int64                                 // transactional producers initialised since a test set the hooks
}

var memberHooks sync.Map // *member → *hooks, once a test set one

func hooksOf(m provider.Member) *hooks {
	h, _ := memberHooks.LoadOrStore(m.(*member), new(hooks))
	return h.(*hooks)
}

// lookHooks returns m's hooks, or nil when no test set one.
func lookHooks(m *member) *hooks {
	h, ok := memberHooks.Load(m)
	if !ok {
		return nil
	}
	return h.(*hooks)
}

func init() {
	seamHoldPolls = func(m *member) bool { h := lookHooks(m); return h != nil && h.holdPolls.Load() }
	seamStayOut = func(m *member) bool { h := lookHooks(m); return h != nil && h.stayOut.Load() }
	seamMetadata = func(m *member) *ckafka.ConsumerGroupMetadata {
		if h := lookHooks(m); h != nil {
			return h.metadataOverride.Load()
		}
		return nil
	}
	seamCommit = func(m *member) error {
		if h := lookHooks(m); h != nil {
			if err := h.commitHook.Swap(nil); err != nil {
				return *err // a test's commit of unknown outcome
			}
		}
		return nil
	}
	seamNewProducer = func(m *member) {
		if h := lookHooks(m); h != nil {
			h.producers.Add(1)
		}
	}
	seamSendOffsets = func(m *member) {
		if h := lookHooks(m); h != nil {
			if stall := h.stallSendOffsets.Load(); stall != nil {
				<-*stall
			}
		}
	}
}

// HoldPolls stops (true) or resumes the member's poll loop, as a process
// paused past max.poll.interval.ms would: librdkafka then leaves the group
// by itself, and the member hears of it only when it polls again.
func HoldPolls(m provider.Member, hold bool) { hooksOf(m).holdPolls.Store(hold) }

// StayOut makes the member stay out of the group once it has lost its
// partitions, instead of rejoining.
func StayOut(m provider.Member) { hooksOf(m).stayOut.Store(true) }

// GroupMetadata returns the member's consumer group metadata now, and its
// generation and member id.
func GroupMetadata(m provider.Member) (md *ckafka.ConsumerGroupMetadata, generation int32, memberID string, err error) {
	mm := m.(*member)
	mm.cmu.RLock()
	defer mm.cmu.RUnlock()
	if mm.consumerClosed {
		return nil, 0, "", provider.ErrClosed
	}
	md, err = mm.consumer.GetConsumerGroupMetadata()
	if err != nil {
		return nil, 0, "", err
	}
	b, ok := serializedMetadata(md)
	if !ok {
		return nil, 0, "", errors.New("undecodable")
	}
	generation, _, memberID, err = decodeGroupMetadata(b)
	return md, generation, memberID, err
}

// UseGroupMetadata makes the member's transactions send md instead of its
// own metadata; nil restores its own.
func UseGroupMetadata(m provider.Member, md *ckafka.ConsumerGroupMetadata) {
	hooksOf(m).metadataOverride.Store(md)
}

// InitLate initialises a producer under each of the member's transactional
// ids, as a late instance of the member would (a stale process, or its
// restart): the producer's InitTransactions fences the member's producers.
func InitLate(ctx context.Context, m provider.Member) error {
	mm := m.(*member)
	var errs []error
	for _, txid := range kafkagroup.TxIDs(mm.cfg.Group, mm.cfg.Instance, mm.p.cfg.GroupProducers) {
		p, err := mm.txn.NewProducer(ctx, txid)
		if err == nil {
			p.Close()
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// ProducerResets returns how many transactional producers the member has
// initialised since a test first asked it (or set another of its hooks).
func ProducerResets(m provider.Member) int64 { return hooksOf(m).producers.Load() }

// DecodeGroupMetadata decodes md as the member does before sending it.
func DecodeGroupMetadata(md *ckafka.ConsumerGroupMetadata) (generation int32, group, memberID string, err error) {
	b, ok := serializedMetadata(md)
	if !ok {
		return 0, "", "", errors.New("undecodable")
	}
	return decodeGroupMetadata(b)
}

// FailNextCommit makes the member's next successful commit report err, as a
// commit whose answer was lost would.
func FailNextCommit(m provider.Member, err error) { hooksOf(m).commitHook.Store(&err) }

// StallSendOffsets makes the member's next SendOffsetsToTransaction calls
// block until release is called, as librdkafka's can with the group
// coordinator down (see txnProducer.SendOffsets).
func StallSendOffsets(m provider.Member) (release func()) {
	stall := make(chan struct{})
	h := hooksOf(m)
	h.stallSendOffsets.Store(&stall)
	return func() {
		h.stallSendOffsets.Store(nil)
		close(stall)
	}
}

// MaxStuck is the number of given-up producers at which a lane refuses
// appends at once.
const MaxStuck = maxStuck
