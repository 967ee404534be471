//go:build cgo

package kafka

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unsafe"

	ckafka "github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/rehydrate/rehydrate/provider/kafkagroup"
)

// flagged returns a client error with the retriable and abort flags, which
// only librdkafka's transactional and admin APIs set (ckafka.NewError sets
// only fatal); the table's flag branches are what a transaction's fate
// rests on, so the test sets the unexported fields.
func flagged(t *testing.T, code ckafka.ErrorCode, fatal, retriable, abort bool) ckafka.Error {
	t.Helper()
	e := ckafka.NewError(code, "", fatal)
	v := reflect.ValueOf(&e).Elem()
	for name, b := range map[string]bool{"retriable": retriable, "txnRequiresAbort": abort} {
		f := v.FieldByName(name)
		if f.Kind() != reflect.Bool {
			t.Fatalf("ckafka.Error has no bool field %s: update flagged to the new confluent-kafka-go", name)
		}
		reflect.NewAt(f.Type(), unsafe.Pointer(f.UnsafeAddr())).Elem().SetBool(b)
	}
	if e.IsRetriable() != retriable || e.TxnRequiresAbort() != abort || e.IsFatal() != fatal {
		t.Fatalf("flagged(%v, %v, %v, %v) = %#v", code, fatal, retriable, abort, e)
	}
	return e
}

// TestErrorTable: what each path makes of an error. holds lists the
// predicates that are true; every other one must be false.
func TestErrorTable(t *testing.T) {
	predicates := map[string]func(error) bool{
		"notPersisted":      notPersisted,
		"recordRefused":     recordRefused,
		"topicGone":         topicGone,
		"handshakeFailed":   handshakeFailed,
		"appendUnavailable": appendUnavailable,
		"retriable":         retriable,
		"brokerUnavailable": brokerUnavailable,
	}
	e := func(code ckafka.ErrorCode) ckafka.Error { return ckafka.NewError(code, "", false) }
	const (
		fatal = 1 << iota
		retry
		abort
	)
	f := func(code ckafka.ErrorCode, flags int) ckafka.Error {
		return flagged(t, code, flags&fatal != 0, flags&retry != 0, flags&abort != 0)
	}
	for _, tc := range []struct {
		err       error
		holds     string
		txn       kafkagroup.Class
		read      readClass // of a consumer error; 0: not a client error
		partition readClass
	}{
		// Refused for what it is: proof, and the record's own fault.
		{e(ckafka.ErrMsgSizeTooLarge), "notPersisted recordRefused", kafkagroup.ClassRecordRefused, readFails, readFails},
		{e(ckafka.ErrInvalidRecord), "notPersisted recordRefused", kafkagroup.ClassRecordRefused, readFails, readFails},
		{e(ckafka.ErrInvalidMsgSize), "recordRefused", kafkagroup.ClassRecordRefused, readFails, readFails},
		// Refused, not for the record: proof, nobody's fault in particular.
		{e(ckafka.ErrTopicAuthorizationFailed), "notPersisted", kafkagroup.ClassFatal, readFails, readFails},
		{e(ckafka.ErrInvalidRequiredAcks), "notPersisted", kafkagroup.ClassFatal, readFails, readFails},
		{e(ckafka.ErrUnknownTopic), "notPersisted topicGone", kafkagroup.ClassFatal, readFails, readFails},
		// A retry's refusal is no proof of the first attempt.
		{e(ckafka.ErrNotEnoughReplicas), "appendUnavailable", kafkagroup.ClassFatal, readFails, readFails},
		{e(ckafka.ErrMsgTimedOut), "appendUnavailable", kafkagroup.ClassFatal, readFails, readFails},
		{e(ckafka.ErrQueueFull), "appendUnavailable", kafkagroup.ClassFatal, readFails, readFails},
		// Unavailable, each path its own set.
		{e(ckafka.ErrTimedOut), "appendUnavailable retriable brokerUnavailable", kafkagroup.ClassRetriable, readTransient, readFails},
		{e(ckafka.ErrTimedOutQueue), "appendUnavailable brokerUnavailable", kafkagroup.ClassRetriable, readFails, readFails},
		{e(ckafka.ErrTransport), "appendUnavailable retriable brokerUnavailable", kafkagroup.ClassFatal, readTransient, readFails},
		{e(ckafka.ErrAllBrokersDown), "appendUnavailable retriable brokerUnavailable", kafkagroup.ClassFatal, readTransient, readFails},
		{e(ckafka.ErrNotLeaderForPartition), "retriable", kafkagroup.ClassFatal, readTransient, readFails},
		{e(ckafka.ErrUnknownTopicOrPart), "retriable topicGone", kafkagroup.ClassFatal, readFails, readFails},
		{e(ckafka.ErrNotCoordinator), "retriable", kafkagroup.ClassFatal, readFails, readFails},
		{e(ckafka.ErrCoordinatorNotAvailable), "retriable", kafkagroup.ClassFatal, readFails, readFails},
		{e(ckafka.ErrCoordinatorLoadInProgress), "retriable", kafkagroup.ClassFatal, readFails, readFails},
		{e(ckafka.ErrBrokerNotAvailable), "", kafkagroup.ClassFatal, readTransient, readFails},
		{f(ckafka.ErrCoordinatorLoadInProgress, retry), "appendUnavailable retriable", kafkagroup.ClassRetriable, readTransient, readTransient},
		{context.DeadlineExceeded, "brokerUnavailable", kafkagroup.ClassFatal, 0, readFails},
		// Handshakes, and the read's throwaway group.
		{e(ckafka.ErrAuthentication), "handshakeFailed", kafkagroup.ClassFatal, readUnavailable, readFails},
		{e(ckafka.ErrSsl), "handshakeFailed", kafkagroup.ClassFatal, readUnavailable, readFails},
		{e(ckafka.ErrGroupAuthorizationFailed), "", kafkagroup.ClassFatal, readIgnored, readFails},
		{e(ckafka.ErrPartitionEOF), "", kafkagroup.ClassFatal, readFails, readEnd},
		// Transactions: the codes first, then the flags.
		{e(ckafka.ErrIllegalGeneration), "", kafkagroup.ClassStaleGeneration, readFails, readFails},
		{f(ckafka.ErrIllegalGeneration, fatal), "", kafkagroup.ClassStaleGeneration, readFails, readFails},
		{e(ckafka.ErrUnknownMemberID), "", kafkagroup.ClassRefused, readFails, readFails},
		{fmt.Errorf("wrapped: %w", e(ckafka.ErrFencedInstanceID)), "", kafkagroup.ClassRefused, readFails, readFails},
		{ckafka.NewError(ckafka.ErrFenced, "", true), "", kafkagroup.ClassFatal, readFails, readFails},
		{f(ckafka.ErrProducerFenced, abort|retry), "appendUnavailable retriable", kafkagroup.ClassFatal, readTransient, readTransient},
		{f(ckafka.ErrInvalidTxnState, abort), "", kafkagroup.ClassAbortable, readFails, readFails},
		{f(ckafka.ErrInvalidTxnState, fatal|abort|retry), "appendUnavailable retriable", kafkagroup.ClassFatal, readFails, readFails},
		{ckafka.NewError(ckafka.ErrMsgTimedOut, "", true), "appendUnavailable", kafkagroup.ClassFatal, readFails, readFails},
		{e(ckafka.ErrState), "", kafkagroup.ClassFatal, readFails, readFails},
		{e(ckafka.ErrPurgeQueue), "", kafkagroup.ClassPurged, readFails, readFails},
		{e(ckafka.ErrPurgeInflight), "", kafkagroup.ClassPurged, readFails, readFails},
		// Not a client error, also behind another error.
		{errors.New("not a client error"), "", kafkagroup.ClassFatal, 0, readFails},
		{fmt.Errorf("%w (%w)", errors.New("first"), e(ckafka.ErrMsgSizeTooLarge)), "notPersisted recordRefused", kafkagroup.ClassRecordRefused, readFails, readFails},
	} {
		holds := strings.Fields(tc.holds)
		for name, p := range predicates {
			if got, want := p(tc.err), slices.Contains(holds, name); got != want {
				t.Errorf("%s(%#v) = %v, want %v", name, tc.err, got, want)
			}
		}
		for _, name := range holds {
			if predicates[name] == nil {
				t.Fatalf("no predicate %s", name)
			}
		}
		if got := txnClass(tc.err); got != tc.txn {
			t.Errorf("txnClass(%#v) = %d, want %d", tc.err, got, tc.txn)
		}
		var ke ckafka.Error
		if errors.As(tc.err, &ke) {
			if got := readError(ke); got != tc.read {
				t.Errorf("readError(%#v) = %d, want %d", ke, got, tc.read)
			}
		} else if tc.read != 0 {
			t.Errorf("%v is no client error: read class %d", tc.err, tc.read)
		}
		if got := partitionReadError(tc.err); got != tc.partition {
			t.Errorf("partitionReadError(%#v) = %d, want %d", tc.err, got, tc.partition)
		}
	}
}
