//go:build cgo

package kafka

// Temporary: compares the old, scattered classifications (copied verbatim
// from 663b607) with the table, for every code and flag combination.

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"testing"
	"unsafe"

	"github.com/rehydrate/rehydrate/provider"

	ckafka "github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

var generatedCodes = []ckafka.ErrorCode{ckafka.ErrAllBrokersDown, ckafka.ErrApplication, ckafka.ErrAssignPartitions, ckafka.ErrAssignmentLost, ckafka.ErrAuthentication, ckafka.ErrAutoOffsetReset, ckafka.ErrBadCompression, ckafka.ErrBadMsg, ckafka.ErrBrokerNotAvailable, ckafka.ErrClusterAuthorizationFailed, ckafka.ErrConcurrentTransactions, ckafka.ErrConflict, ckafka.ErrCoordinatorLoadInProgress, ckafka.ErrCoordinatorNotAvailable, ckafka.ErrCritSysResource, ckafka.ErrDelegationTokenAuthDisabled, ckafka.ErrDelegationTokenAuthorizationFailed, ckafka.ErrDelegationTokenExpired, ckafka.ErrDelegationTokenNotFound, ckafka.ErrDelegationTokenOwnerMismatch, ckafka.ErrDelegationTokenRequestNotAllowed, ckafka.ErrDestroy, ckafka.ErrDestroyBroker, ckafka.ErrDuplicateResource, ckafka.ErrDuplicateSequenceNumber, ckafka.ErrElectionNotNeeded, ckafka.ErrEligibleLeadersNotAvailable, ckafka.ErrExistingSubscription, ckafka.ErrFail, ckafka.ErrFatal, ckafka.ErrFeatureUpdateFailed, ckafka.ErrFenced, ckafka.ErrFencedInstanceID, ckafka.ErrFencedLeaderEpoch, ckafka.ErrFencedMemberEpoch, ckafka.ErrFetchSessionIDNotFound, ckafka.ErrFs, ckafka.ErrGaplessGuarantee, ckafka.ErrGroupAuthorizationFailed, ckafka.ErrGroupIDNotFound, ckafka.ErrGroupMaxSizeReached, ckafka.ErrGroupSubscribedToTopic, ckafka.ErrIllegalGeneration, ckafka.ErrIllegalSaslState, ckafka.ErrInProgress, ckafka.ErrInconsistent, ckafka.ErrInconsistentGroupProtocol, ckafka.ErrInconsistentVoterSet, ckafka.ErrIntr, ckafka.ErrInvalidArg, ckafka.ErrInvalidCommitOffsetSize, ckafka.ErrInvalidConfig, ckafka.ErrInvalidDifferentRecord, ckafka.ErrInvalidFetchSessionEpoch, ckafka.ErrInvalidGroupID, ckafka.ErrInvalidMsg, ckafka.ErrInvalidMsgSize, ckafka.ErrInvalidPartitions, ckafka.ErrInvalidPrincipalType, ckafka.ErrInvalidProducerEpoch, ckafka.ErrInvalidProducerIDMapping, ckafka.ErrInvalidRecord, ckafka.ErrInvalidReplicaAssignment, ckafka.ErrInvalidReplicationFactor, ckafka.ErrInvalidRequest, ckafka.ErrInvalidRequiredAcks, ckafka.ErrInvalidSessionTimeout, ckafka.ErrInvalidTimestamp, ckafka.ErrInvalidTransactionTimeout, ckafka.ErrInvalidTxnState, ckafka.ErrInvalidType, ckafka.ErrInvalidUpdateVersion, ckafka.ErrIsrInsuff, ckafka.ErrKafkaStorageError, ckafka.ErrKeyDeserialization, ckafka.ErrKeySerialization, ckafka.ErrLeaderNotAvailable, ckafka.ErrListenerNotFound, ckafka.ErrLogDirNotFound, ckafka.ErrLogTruncation, ckafka.ErrMaxPollExceeded, ckafka.ErrMemberIDRequired, ckafka.ErrMsgSizeTooLarge, ckafka.ErrMsgTimedOut, ckafka.ErrNetworkException, ckafka.ErrNoError, ckafka.ErrNoOffset, ckafka.ErrNoReassignmentInProgress, ckafka.ErrNodeUpdate, ckafka.ErrNoent, ckafka.ErrNonEmptyGroup, ckafka.ErrNoop, ckafka.ErrNotConfigured, ckafka.ErrNotController, ckafka.ErrNotCoordinator, ckafka.ErrNotEnoughReplicas, ckafka.ErrNotEnoughReplicasAfterAppend, ckafka.ErrNotImplemented, ckafka.ErrNotLeaderForPartition, ckafka.ErrOffsetMetadataTooLarge, ckafka.ErrOffsetNotAvailable, ckafka.ErrOffsetOutOfRange, ckafka.ErrOperationNotAttempted, ckafka.ErrOutOfOrderSequenceNumber, ckafka.ErrOutdated, ckafka.ErrPartial, ckafka.ErrPartitionEOF, ckafka.ErrPolicyViolation, ckafka.ErrPreferredLeaderNotAvailable, ckafka.ErrPrevInProgress, ckafka.ErrPrincipalDeserializationFailure, ckafka.ErrProducerFenced, ckafka.ErrPurgeInflight, ckafka.ErrPurgeQueue, ckafka.ErrQueueFull, ckafka.ErrReadOnly, ckafka.ErrReassignmentInProgress, ckafka.ErrRebalanceInProgress, ckafka.ErrRebootstrapRequired, ckafka.ErrRecordListTooLarge, ckafka.ErrReplicaNotAvailable, ckafka.ErrRequestTimedOut, ckafka.ErrResolve, ckafka.ErrResourceNotFound, ckafka.ErrRetry, ckafka.ErrRevokePartitions, ckafka.ErrSaslAuthenticationFailed, ckafka.ErrSecurityDisabled, ckafka.ErrSsl, ckafka.ErrStaleBrokerEpoch, ckafka.ErrStaleCtrlEpoch, ckafka.ErrStaleMemberEpoch, ckafka.ErrState, ckafka.ErrTelemetryTooLarge, ckafka.ErrThrottlingQuotaExceeded, ckafka.ErrTimedOut, ckafka.ErrTimedOutQueue, ckafka.ErrTopicAlreadyExists, ckafka.ErrTopicAuthorizationFailed, ckafka.ErrTopicDeletionDisabled, ckafka.ErrTopicException, ckafka.ErrTransactionCoordinatorFenced, ckafka.ErrTransactionalIDAuthorizationFailed, ckafka.ErrTransport, ckafka.ErrUnacceptableCredential, ckafka.ErrUnderflow, ckafka.ErrUnknown, ckafka.ErrUnknownBroker, ckafka.ErrUnknownGroup, ckafka.ErrUnknownLeaderEpoch, ckafka.ErrUnknownMemberID, ckafka.ErrUnknownPartition, ckafka.ErrUnknownProducerID, ckafka.ErrUnknownProtocol, ckafka.ErrUnknownSubscriptionID, ckafka.ErrUnknownTopic, ckafka.ErrUnknownTopicID, ckafka.ErrUnknownTopicOrPart, ckafka.ErrUnreleasedInstanceID, ckafka.ErrUnstableOffsetCommit, ckafka.ErrUnsupportedAssignor, ckafka.ErrUnsupportedCompressionType, ckafka.ErrUnsupportedFeature, ckafka.ErrUnsupportedForMessageFormat, ckafka.ErrUnsupportedSaslMechanism, ckafka.ErrUnsupportedVersion, ckafka.ErrValueDeserialization, ckafka.ErrValueSerialization, ckafka.ErrWaitCache, ckafka.ErrWaitCoord}

// kafka.go notPersisted
func oldNotPersisted(err error) bool {
	var ke ckafka.Error
	if !errors.As(err, &ke) {
		return false
	}
	switch ke.Code() {
	case ckafka.ErrMsgSizeTooLarge, ckafka.ErrUnknownTopic, ckafka.ErrUnknownPartition,
		ckafka.ErrTopicAuthorizationFailed, ckafka.ErrClusterAuthorizationFailed,
		ckafka.ErrTransactionalIDAuthorizationFailed, ckafka.ErrInvalidRecord,
		ckafka.ErrRecordListTooLarge, ckafka.ErrInvalidMsg, ckafka.ErrInvalidRequiredAcks:
		return true
	}
	return false
}

// kafka.go appendError's condition
func oldAppendUnavailable(err error) bool {
	var ke ckafka.Error
	unavailable := errors.As(err, &ke) && (ke.IsTimeout() || ke.IsRetriable() ||
		ke.Code() == ckafka.ErrQueueFull || ke.Code() == ckafka.ErrMsgTimedOut ||
		ke.Code() == ckafka.ErrAllBrokersDown || ke.Code() == ckafka.ErrTransport ||
		ke.Code() == ckafka.ErrNotEnoughReplicas)
	return unavailable
}

// kafka.go retriable
func oldRetriable(err error) bool {
	var ke ckafka.Error
	if !errors.As(err, &ke) {
		return false
	}
	switch ke.Code() {
	case ckafka.ErrNotLeaderForPartition, ckafka.ErrLeaderNotAvailable, ckafka.ErrUnknownTopicOrPart,
		ckafka.ErrNotCoordinator, ckafka.ErrRequestTimedOut, ckafka.ErrTransport,
		ckafka.ErrAllBrokersDown, ckafka.ErrTimedOut:
		return true
	}
	return ke.IsRetriable()
}

// kafka.go brokerError's condition
func oldBrokerUnavailable(err error) bool {
	var ke ckafka.Error
	return errors.Is(err, context.DeadlineExceeded) ||
		errors.As(err, &ke) && (ke.IsTimeout() || ke.Code() == ckafka.ErrTransport ||
			ke.Code() == ckafka.ErrAllBrokersDown || ke.Code() == ckafka.ErrTimedOut ||
			ke.Code() == ckafka.ErrTimedOutQueue)
}

// kafka.go deliveries' condition (on a ckafka.Error event)
func oldHandshake(e ckafka.Error) bool {
	c := e.Code()
	return c == ckafka.ErrAuthentication || c == ckafka.ErrSsl
}

// kafka.go partitionIDs' condition (on a topic's ckafka.Error)
func oldTopicGone(e ckafka.Error) bool {
	return e.Code() == ckafka.ErrUnknownTopicOrPart || e.Code() == ckafka.ErrUnknownTopic
}

// txn.go
func oldClassify(err error) txnClass {
	var ke ckafka.Error
	if !errors.As(err, &ke) {
		return classFatal
	}
	switch ke.Code() {
	case ckafka.ErrIllegalGeneration, ckafka.ErrUnknownMemberID, ckafka.ErrFencedInstanceID:
		return classRefused
	case ckafka.ErrFenced, ckafka.ErrProducerFenced, ckafka.ErrInvalidProducerEpoch, ckafka.ErrFatal:
		return classFatal
	}
	switch {
	case ke.IsFatal():
		return classFatal
	case ke.TxnRequiresAbort():
		return classAbortable
	case ke.IsRetriable(), ke.IsTimeout(), ke.Code() == ckafka.ErrTimedOut:
		return classRetriable
	}
	return classFatal
}

func oldCode(err error) ckafka.ErrorCode {
	var ke ckafka.Error
	if errors.As(err, &ke) {
		return ke.Code()
	}
	return ckafka.ErrUnknown
}

func oldRecordRefused(err error) bool {
	switch oldCode(err) {
	case ckafka.ErrMsgSizeTooLarge, ckafka.ErrInvalidRecord, ckafka.ErrRecordListTooLarge,
		ckafka.ErrInvalidMsg, ckafka.ErrInvalidMsgSize:
		return true
	}
	return false
}

func oldPurged(err error) bool {
	c := oldCode(err)
	return c == ckafka.ErrPurgeQueue || c == ckafka.ErrPurgeInflight
}

// txn.go transact's condition
func oldStaleGeneration(err error) bool { return oldCode(err) == ckafka.ErrIllegalGeneration }

// read.go reader.clientError, its returns and logs mapped onto readClass
// (the two Warn logs of transient and retriable errors are one class).
func oldReadError(e ckafka.Error) readClass {
	if e.IsFatal() {
		return readFails
	}
	switch e.Code() {
	case ckafka.ErrGroupAuthorizationFailed:
		return readIgnored
	case ckafka.ErrAuthentication, ckafka.ErrSsl:
		return readUnavailable
	case ckafka.ErrTransport, ckafka.ErrAllBrokersDown, ckafka.ErrTimedOut, ckafka.ErrResolve,
		ckafka.ErrIntr, ckafka.ErrNetworkException, ckafka.ErrNotLeaderForPartition,
		ckafka.ErrLeaderNotAvailable, ckafka.ErrBrokerNotAvailable:
		return readTransient
	}
	if e.IsRetriable() {
		return readTransient
	}
	return readFails
}

// read.go reader.partitionError, mapped onto readClass
func oldPartitionReadError(err error) readClass {
	var ke ckafka.Error
	if errors.As(err, &ke) && (ke.Code() == ckafka.ErrPartitionEOF) {
		return readEnd
	}
	if errors.As(err, &ke) && !ke.IsFatal() && ke.IsRetriable() {
		return readTransient
	}
	return readFails
}

// withFlags returns a client error with the flags only librdkafka can set.
func withFlags(code ckafka.ErrorCode, fatal, retriable, abort bool) ckafka.Error {
	e := ckafka.NewError(code, "test", fatal)
	v := reflect.ValueOf(&e).Elem()
	set := func(name string, b bool) {
		f := v.FieldByName(name)
		reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem().SetBool(b)
	}
	set("retriable", retriable)
	set("txnRequiresAbort", abort)
	return e
}

func TestCompareOldClassification(t *testing.T) {
	const lo, hi = -1000, 1000
	seen := map[ckafka.ErrorCode]bool{}
	var all []ckafka.ErrorCode
	for c := ckafka.ErrorCode(lo); c <= hi; c++ {
		all = append(all, c)
		seen[c] = true
	}
	for _, c := range generatedCodes {
		if !seen[c] {
			t.Errorf("generated code %v (%d) outside %d..%d", c, int(c), lo, hi)
			all = append(all, c)
		}
	}
	for c := range codes {
		if !seen[c] {
			t.Errorf("table code %v (%d) outside %d..%d", c, int(c), lo, hi)
		}
	}
	var errs []error
	for _, c := range all {
		for flags := range 8 {
			e := withFlags(c, flags&1 != 0, flags&2 != 0, flags&4 != 0)
			if e.Code() != c || e.IsFatal() != (flags&1 != 0) || e.IsRetriable() != (flags&2 != 0) || e.TxnRequiresAbort() != (flags&4 != 0) {
				t.Fatalf("withFlags(%d, %03b) = %#v", c, flags, e)
			}
			errs = append(errs, e, fmt.Errorf("wrapped: %w", e), fmt.Errorf("%w (%w)", errors.New("first"), e))
			if old, new := oldHandshake(e), handshakeFailed(e); old != new {
				t.Errorf("handshake(%#v) = %v, was %v", e, new, old)
			}
			if old, new := oldTopicGone(e), topicGone(e); old != new {
				t.Errorf("topicGone(%#v) = %v, was %v", e, new, old)
			}
			if old, new := oldReadError(e), readError(e); old != new {
				t.Errorf("readError(%#v) = %v, was %v", e, new, old)
			}
		}
	}
	errs = append(errs, nil, errors.New("plain"), context.DeadlineExceeded, context.Canceled,
		fmt.Errorf("x: %w", context.DeadlineExceeded), fmt.Errorf("%w: x", provider.ErrUnavailable))
	describeDiffs := 0
	for _, err := range errs {
		for _, p := range []struct {
			name     string
			old, new func(error) bool
		}{
			{"notPersisted", oldNotPersisted, notPersisted},
			{"appendUnavailable", oldAppendUnavailable, appendUnavailable},
			{"retriable", oldRetriable, retriable},
			{"brokerUnavailable", oldBrokerUnavailable, brokerUnavailable},
			{"recordRefused", oldRecordRefused, recordRefused},
			{"purged", oldPurged, purged},
			{"staleGeneration", oldStaleGeneration, staleGeneration},
		} {
			if old, new := p.old(err), p.new(err); old != new {
				t.Errorf("%s(%#v) = %v, was %v", p.name, err, new, old)
			}
		}
		// retention.go describeTopic: a retried error still there at the
		// timeout, reported as a missing topic.
		var ke ckafka.Error
		oldMissing := oldRetriable(err) && errors.As(err, &ke) && ke.Code() == ckafka.ErrUnknownTopicOrPart
		if newMissing := retriable(err) && topicGone(err); oldMissing != newMissing {
			// The one difference: ErrUnknownTopic with the retriable flag,
			// which DescribeConfigs never returns (its errors come from
			// rd_kafka_event_error and the results' error strings, which
			// carry no flags).
			if ke.Code() == ckafka.ErrUnknownTopic && ke.IsRetriable() {
				describeDiffs++
			} else {
				t.Errorf("describeTopic missing(%#v) = %v, was %v", err, newMissing, oldMissing)
			}
		}
		if old, new := oldClassify(err), classify(err); old != new {
			t.Errorf("classify(%#v) = %v, was %v", err, new, old)
		}
		if old, new := oldPartitionReadError(err), partitionReadError(err); old != new {
			t.Errorf("partitionReadError(%#v) = %v, was %v", err, new, old)
		}
	}
	t.Logf("describeTopic's missing topic differs only for ErrUnknownTopic with the retriable flag: %d errors", describeDiffs)
	t.Logf("%d codes (%d..%d and %d generated), 8 flag combinations, %d errors compared", len(all), lo, hi, len(generatedCodes), len(errs))
}
