//go:build cgo

package kafka

import ckafka "github.com/confluentinc/confluent-kafka-go/v2/kafka"

// Test seams, as database/sql's hookTxGrabConn: package-level, nil in
// production, set only by the tests (export_test.go), so that no member
// carries state it has only for them. Each is asked about one member.
var (
	// seamHoldPolls reports whether the member's poll loop stops calling
	// Poll, as a process paused past max.poll.interval.ms would.
	seamHoldPolls func(*member) bool
	// seamStayOut reports whether the member, having lost its partitions,
	// stays out of the group instead of rejoining.
	seamStayOut func(*member) bool
	// seamMetadata returns group metadata the member's transactions send
	// instead of the consumer's, or nil.
	seamMetadata func(*member) *ckafka.ConsumerGroupMetadata
	// seamCommit returns the error a successful commit of the member
	// reports instead (a commit whose answer was lost), or nil.
	seamCommit func(*member) error
	// seamSendOffsets is called before each SendOffsetsToTransaction of the
	// member and may block (librdkafka's, with the coordinator down).
	seamSendOffsets func(*member)
	// seamNewProducer is called after each transactional producer of the
	// member initialised.
	seamNewProducer func(*member)
)
