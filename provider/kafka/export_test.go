//go:build cgo

package kafka

import (
	"context"
	"errors"

	ckafka "github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/rehydrate/rehydrate/provider"
)

// Hooks for the tests of package kafka_test.

// HoldPolls stops (true) or resumes the member's poll loop, as a process
// paused past max.poll.interval.ms would: librdkafka then leaves the group
// by itself, and the member hears of it only when it polls again.
func HoldPolls(m provider.Member, hold bool) { m.(*member).holdPolls.Store(hold) }

// StayOut makes the member stay out of the group once it has lost its
// partitions, instead of rejoining.
func StayOut(m provider.Member) { m.(*member).stayOut.Store(true) }

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
	m.(*member).metadataOverride.Store(md)
}

// ReinitProducers replaces every transactional producer of the member (a
// new producer, InitTransactions under the same transactional.id), as a
// stale instance that re-initialises late would.
func ReinitProducers(ctx context.Context, m provider.Member) error {
	return m.(*member).lanes.Reinit(ctx)
}

// ProducerResets returns how many producers the member has initialised.
func ProducerResets(m provider.Member) int64 { return m.(*member).lanes.Resets() }

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
func FailNextCommit(m provider.Member, err error) { m.(*member).commitHook.Store(&err) }

// StallSendOffsets makes the member's next SendOffsetsToTransaction calls
// block until release is called, as librdkafka's can with the group
// coordinator down (see txnProducer.SendOffsets).
func StallSendOffsets(m provider.Member) (release func()) {
	stall := make(chan struct{})
	m.(*member).stallSendOffsets.Store(&stall)
	return func() {
		m.(*member).stallSendOffsets.Store(nil)
		close(stall)
	}
}

// MaxStuck is the number of given-up producers at which a lane refuses
// appends at once.
const MaxStuck = maxStuck
