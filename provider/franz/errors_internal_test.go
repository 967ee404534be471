package franz

import (
	"context"
	"errors"
	"fmt"
	"io"
	"syscall"
	"testing"

	"github.com/twmb/franz-go/pkg/kerr"

	"github.com/rehydrate/rehydrate/provider/kafkagroup"
)

// TestTxnClass: what a transactional client's error means for the
// transaction; above all, a commit that failed without a definite answer
// from the broker has an unknown outcome (ClassRetriable), never one an
// abort could prove.
func TestTxnClass(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want kafkagroup.Class
	}{
		{context.DeadlineExceeded, kafkagroup.ClassRetriable},
		{fmt.Errorf("commit: %w", context.DeadlineExceeded), kafkagroup.ClassRetriable},
		{errors.New("connection reset"), kafkagroup.ClassRetriable},
		{kerr.RequestTimedOut, kafkagroup.ClassRetriable},
		{kerr.NotCoordinator, kafkagroup.ClassRetriable},
		{kerr.UnknownServerError, kafkagroup.ClassRetriable},
		{kerr.InvalidTxnState, kafkagroup.ClassAbortable},
		{kerr.ConcurrentTransactions, kafkagroup.ClassAbortable},
		{kerr.TransactionAbortable, kafkagroup.ClassAbortable},
		{kerr.IllegalGeneration, kafkagroup.ClassStaleGeneration},
		{fmt.Errorf("partition 3: %w", kerr.UnknownMemberID), kafkagroup.ClassRefused},
		{kerr.FencedInstanceID, kafkagroup.ClassRefused},
		{kerr.MessageTooLarge, kafkagroup.ClassRecordRefused},
		{kerr.ProducerFenced, kafkagroup.ClassFatal},
		{kerr.InvalidProducerEpoch, kafkagroup.ClassFatal},
	} {
		if got := txnClass(tc.err); got != tc.want {
			t.Errorf("txnClass(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}

// TestClassify: what a plain append's or a read's client error means; a
// connection that failed in any way is unavailable, not a failure of the
// request for what it is.
func TestClassify(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want class
	}{
		{kerr.MessageTooLarge, classRefused},
		{kerr.NotLeaderForPartition, classUnavailable},
		{context.DeadlineExceeded, classUnavailable},
		{io.EOF, classUnavailable},
		{fmt.Errorf("read: %w", io.ErrUnexpectedEOF), classUnavailable},
		{syscall.ECONNREFUSED, classUnavailable},
		{errors.New("something else"), classOther},
	} {
		if got := classify(tc.err); got != tc.want {
			t.Errorf("classify(%v) = %d, want %d", tc.err, got, tc.want)
		}
	}
}
