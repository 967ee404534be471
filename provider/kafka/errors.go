//go:build cgo

package kafka

import (
	"context"
	"errors"

	ckafka "github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/rehydrate/rehydrate/provider/kafkaconfig"
	"github.com/rehydrate/rehydrate/provider/kafkagroup"
)

// trait is one thing an error code tells, in the library's terms.
type trait uint32

const (
	// invalidRecord: the broker refused the record for what it is (too
	// large, malformed). In a transaction the append that sent it is at
	// fault, not the others the abort takes along.
	invalidRecord trait = 1 << iota
	// notWritten: a delivery report with it proves that the record was not
	// written. Few do: the idempotent producer retries a batch whose
	// request timed out, and the retry's refusal (NOT_ENOUGH_REPLICAS, say)
	// says nothing of the first attempt, which the leader may have
	// appended. Only refusals that no attempt could have passed over are
	// proof: the record is too large or malformed, the principal may not
	// write, librdkafka knows no such topic or partition.
	notWritten
	// timedOut: the call timed out locally (ckafka.Error.IsTimeout).
	timedOut
	// unreachable: no broker answered: the connection failed, every broker
	// is down, or the call timed out.
	unreachable
	// leaderMoving: a partition's leader is being elected; the answer
	// changes within moments.
	leaderMoving
	// settling: the cluster's metadata is catching up (a topic just
	// created, a coordinator moving, a broker slow to answer); an admin
	// request asked again soon succeeds.
	settling
	// connecting: a consumer's connection is being (re)established.
	connecting
	// backpressure: the producer got no acknowledgement in time, its queue
	// is full, or too few replicas are in sync: appends are unavailable
	// for now, and the record may have been written.
	backpressure
	// handshake: a TLS handshake or SASL login failed. Not transient: until
	// a broker answers, the client's timeouts name it as their cause
	// (withHandshake).
	handshake
	// fencedByGroup: the group coordinator refused the member's metadata
	// (illegal generation, unknown member, fenced instance): the group has
	// moved on without it.
	fencedByGroup
	// oldGeneration: of fencedByGroup, the coordinator still knows the
	// member, at a newer generation: a rejoin lets it try again.
	oldGeneration
	// fencedProducer: a newer producer with the same transactional.id
	// took over, or librdkafka gave the producer up: it must be replaced,
	// whatever flags the error carries.
	fencedProducer
	// purgedRecord: librdkafka dropped the record because another one
	// failed its transaction: the error says nothing of the record itself.
	purgedRecord
	// partitionEnd: a read reached the end of a partition (not an error).
	partitionEnd
	// groupNotAllowed: the principal may not use a consumer group; a read's
	// throwaway group needs no access (it fetches and commits no offset),
	// librdkafka still looks up its coordinator and reports the refusal.
	groupNotAllowed
	// topicMissing: the topic does not exist.
	topicMissing
)

// codes is the one table of client errors: what each librdkafka error code
// means for the library. Every path asks the predicates below it, which
// read a code's row together with the flags librdkafka sets on some errors
// (fatal, retriable, transaction requires abort). A code without a row
// tells nothing by itself.
//
// The classes the paths make of it:
//
//   - refused: proof that a record was not written (notPersisted), and in
//     a transaction the record's own fault (recordRefused).
//   - unknown: an append's failure that is no such proof, once anything
//     was sent: its records may be in the log (provider.ErrOutcomeUnknown).
//   - unavailable: transient, retried within the timeout or reported as
//     provider.ErrUnavailable (appendUnavailable, retriable,
//     brokerUnavailable, readError).
//   - refused by the group: the member is fenced; its transaction is
//     aborted and its appends fail with provider.ErrNotOwner (txnClass).
//   - abortable: the transaction must be aborted; the producer stays
//     usable (txnClass).
//   - fatal: the client is unusable and must be replaced (txnClass,
//     readError).
//   - read specials: the end of a partition, a refused throwaway group
//     (readError, partitionReadError).
//
// The paths' sets of unavailable codes differ: reads wait out connection
// attempts and leader elections, admin requests a settling cluster, appends
// a full queue or too few replicas. The traits keep them apart, so that
// widening one path's set is a decision, not a side effect.
var codes = map[ckafka.ErrorCode]trait{
	ckafka.ErrMsgSizeTooLarge:    invalidRecord | notWritten,
	ckafka.ErrInvalidRecord:      invalidRecord | notWritten,
	ckafka.ErrRecordListTooLarge: invalidRecord | notWritten,
	ckafka.ErrInvalidMsg:         invalidRecord | notWritten,
	// Not notWritten: Kafka calls code 4 INVALID_FETCH_SIZE now, a fetch
	// error no produce gets; listed as invalidRecord as it always was.
	ckafka.ErrInvalidMsgSize: invalidRecord,

	ckafka.ErrUnknownTopic:                       notWritten | topicMissing,
	ckafka.ErrUnknownPartition:                   notWritten,
	ckafka.ErrTopicAuthorizationFailed:           notWritten,
	ckafka.ErrClusterAuthorizationFailed:         notWritten,
	ckafka.ErrTransactionalIDAuthorizationFailed: notWritten,
	ckafka.ErrInvalidRequiredAcks:                notWritten,

	ckafka.ErrTimedOut: timedOut | unreachable,
	// Timed out in librdkafka's own queue: a timeout, but reads and admin
	// retries never counted it as an unreachable broker.
	ckafka.ErrTimedOutQueue:  timedOut,
	ckafka.ErrTransport:      unreachable,
	ckafka.ErrAllBrokersDown: unreachable,

	ckafka.ErrNotLeaderForPartition: leaderMoving,
	ckafka.ErrLeaderNotAvailable:    leaderMoving,

	// A read of a topic that is not there fails; an admin request about a
	// topic just created retries.
	ckafka.ErrUnknownTopicOrPart: settling | topicMissing,
	ckafka.ErrNotCoordinator:     settling,
	ckafka.ErrRequestTimedOut:    settling,
	// A group's coordinator on a fresh cluster, while __consumer_offsets
	// is created and loaded: what a description of the first group gets,
	// as the group's own error, without librdkafka's retriable flag.
	ckafka.ErrCoordinatorNotAvailable:   settling,
	ckafka.ErrCoordinatorLoadInProgress: settling,

	ckafka.ErrResolve:            connecting,
	ckafka.ErrIntr:               connecting,
	ckafka.ErrNetworkException:   connecting,
	ckafka.ErrBrokerNotAvailable: connecting,

	ckafka.ErrQueueFull:         backpressure,
	ckafka.ErrMsgTimedOut:       backpressure,
	ckafka.ErrNotEnoughReplicas: backpressure,

	ckafka.ErrAuthentication: handshake,
	ckafka.ErrSsl:            handshake,

	ckafka.ErrIllegalGeneration: fencedByGroup | oldGeneration,
	ckafka.ErrUnknownMemberID:   fencedByGroup,
	ckafka.ErrFencedInstanceID:  fencedByGroup,

	ckafka.ErrFenced:               fencedProducer,
	ckafka.ErrProducerFenced:       fencedProducer,
	ckafka.ErrInvalidProducerEpoch: fencedProducer,
	ckafka.ErrFatal:                fencedProducer,

	ckafka.ErrPurgeQueue:    purgedRecord,
	ckafka.ErrPurgeInflight: purgedRecord,

	ckafka.ErrPartitionEOF: partitionEnd,

	ckafka.ErrGroupAuthorizationFailed: groupNotAllowed,
}

// lookup returns err's client error and the traits of its code; ok is
// false if err is no client error.
func lookup(err error) (ke ckafka.Error, t trait, ok bool) {
	if !errors.As(err, &ke) {
		return ke, 0, false
	}
	return ke, codes[ke.Code()], true
}

// is reports whether err is a client error whose code has any of traits.
func is(err error, traits trait) bool {
	_, t, _ := lookup(err)
	return t&traits != 0
}

// notPersisted reports whether a delivery report's error proves its record
// was not written.
func notPersisted(err error) bool { return is(err, notWritten) || kafkaconfig.IsBatchRefused(err) }

// recordRefused reports whether the log refused a record for what it is,
// whatever transaction it was in.
func recordRefused(err error) bool { return is(err, invalidRecord) }

// topicGone reports whether err says that the topic does not exist.
func topicGone(err error) bool { return is(err, topicMissing) }

// handshakeFailed reports whether err is a failed TLS handshake or SASL
// login.
func handshakeFailed(err error) bool { return is(err, handshake) }

// appendUnavailable reports whether an append failed for want of brokers,
// time or room: provider.ErrUnavailable.
func appendUnavailable(err error) bool {
	if kafkaconfig.IsBatchRefused(err) {
		return true
	}
	ke, t, ok := lookup(err)
	return ok && (ke.IsRetriable() || t&(timedOut|unreachable|backpressure) != 0)
}

// retriable reports whether an admin request is worth another try: the
// cluster is settling (leaders, coordinators, a new topic) or unreachable
// for now.
func retriable(err error) bool {
	ke, t, ok := lookup(err)
	return ok && (ke.IsRetriable() || t&(unreachable|leaderMoving|settling) != 0)
}

// brokerUnavailable reports whether an admin request failed for want of
// brokers or time: provider.ErrUnavailable.
func brokerUnavailable(err error) bool {
	return errors.Is(err, context.DeadlineExceeded) || is(err, timedOut|unreachable)
}

// txnClass is what err, returned by a transactional producer's call, means
// for the transaction (kafkagroup.Class). The transactional API sets the
// fatal, abortable and retriable flags itself; only the codes that override
// them are in the table.
func txnClass(err error) kafkagroup.Class {
	ke, t, ok := lookup(err)
	switch {
	case kafkaconfig.IsBatchRefused(err):
		// Not the culprit: the transaction aborts for the record that
		// was too large (kafkaconfig.MessageLimit).
		return kafkagroup.ClassAbortable
	case !ok:
		return kafkagroup.ClassFatal
	case t&oldGeneration != 0:
		return kafkagroup.ClassStaleGeneration
	case t&fencedByGroup != 0:
		return kafkagroup.ClassRefused
	case t&invalidRecord != 0:
		return kafkagroup.ClassRecordRefused
	case t&purgedRecord != 0:
		return kafkagroup.ClassPurged
	case t&fencedProducer != 0, ke.IsFatal():
		return kafkagroup.ClassFatal
	case ke.TxnRequiresAbort():
		return kafkagroup.ClassAbortable
	case ke.IsRetriable(), t&timedOut != 0:
		return kafkagroup.ClassRetriable
	}
	// Anything else (an invalid state, a conflicting call) is not worth
	// reasoning about: replace the producer.
	return kafkagroup.ClassFatal
}

// readClass is what an error a read's consumer reports means for the read.
type readClass int

const (
	// readFails: the read fails with the error.
	readFails readClass = iota + 1
	// readUnavailable: the read fails with provider.ErrUnavailable.
	readUnavailable
	// readTransient: librdkafka retries; the read carries on, and gives
	// up when it makes no progress within the timeout.
	readTransient
	// readIgnored: harmless to a read.
	readIgnored
	// readEnd: the read reached the end of a partition.
	readEnd
)

// readError is what a client error the read's consumer reports (not tied
// to a partition) means for the read.
func readError(e ckafka.Error) readClass {
	_, t, _ := lookup(e)
	switch {
	case e.IsFatal():
		return readFails
	case t&groupNotAllowed != 0:
		return readIgnored
	case t&handshake != 0:
		// A failed SASL login or TLS handshake: not transient.
		return readUnavailable
	case t&(unreachable|leaderMoving|connecting) != 0, e.IsRetriable():
		return readTransient
	}
	return readFails
}

// partitionReadError is what a partition's error, reported with a fetched
// message, means for the read.
func partitionReadError(err error) readClass {
	ke, t, ok := lookup(err)
	switch {
	case t&partitionEnd != 0:
		return readEnd
	case ok && !ke.IsFatal() && ke.IsRetriable():
		return readTransient
	}
	return readFails
}
