package franz

import (
	"context"
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"

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
	// notWritten: the broker or the client refused the request for what it
	// is (too large, not authorised, no such partition): nothing was
	// written, and retrying changes nothing.
	notWritten
	// backpressure: too few replicas in sync, or a failed SASL login:
	// unavailable for now, whatever the code's retriable flag says.
	backpressure
	// fencedByGroup: the group coordinator refused the member's metadata
	// (illegal generation, unknown member, fenced instance): the group has
	// moved on without it.
	fencedByGroup
	// oldGeneration: of fencedByGroup, the coordinator still knows the
	// member, at a newer generation: a rejoin lets it try again.
	oldGeneration
	// fencedProducer: a newer producer with the same transactional id took
	// over: the client must be replaced.
	fencedProducer
)

// codes is the one table of broker error codes: what each means for the
// library. Every path asks the predicates below it, which read a code's row
// together with kerr's retriable flag. A code without a row tells nothing by
// itself. It has the shape of provider/kafka's table of librdkafka's codes.
var codes = map[*kerr.Error]trait{
	kerr.MessageTooLarge:    invalidRecord | notWritten,
	kerr.RecordListTooLarge: invalidRecord | notWritten,
	kerr.InvalidRecord:      invalidRecord | notWritten,
	kerr.CorruptMessage:     invalidRecord | notWritten,

	kerr.UnknownTopicOrPartition:            notWritten,
	kerr.TopicAuthorizationFailed:           notWritten,
	kerr.ClusterAuthorizationFailed:         notWritten,
	kerr.TransactionalIDAuthorizationFailed: notWritten,
	kerr.InvalidRequiredAcks:                notWritten,
	kerr.InvalidTopicException:              notWritten,

	kerr.SaslAuthenticationFailed:     backpressure,
	kerr.NotEnoughReplicas:            backpressure,
	kerr.NotEnoughReplicasAfterAppend: backpressure,

	kerr.IllegalGeneration: fencedByGroup | oldGeneration,
	kerr.UnknownMemberID:   fencedByGroup,
	kerr.FencedInstanceID:  fencedByGroup,

	kerr.ProducerFenced:       fencedProducer,
	kerr.InvalidProducerEpoch: fencedProducer,
}

// lookup returns err's broker error and the traits of its code; ok is
// false if err is no broker error.
func lookup(err error) (ke *kerr.Error, t trait, ok bool) {
	if !errors.As(err, &ke) {
		return nil, 0, false
	}
	return ke, codes[ke], true
}

// class is what a client error means for a plain append or a read.
type class int

const (
	// classRefused: the broker or the client refused the request for what
	// it is (too large, not authorised, no such partition): nothing was
	// written, and retrying changes nothing.
	classRefused class = iota + 1
	// classUnavailable: brokers unreachable, too slow, moving leaders, a
	// failed TLS handshake or SASL login, the producer's buffer full; a
	// retry later may succeed. A record that failed so may have been
	// written, unless the buffer was full (kgo.ErrMaxBuffered: never sent).
	classUnavailable
	// classOther: anything else; a record that failed so may have been
	// written.
	classOther
)

func classify(err error) class {
	if kafkaconfig.IsBatchRefused(err) {
		return classUnavailable
	}
	if ke, t, ok := lookup(err); ok {
		switch {
		case t&notWritten != 0:
			return classRefused
		case t&backpressure != 0, ke.Retriable:
			return classUnavailable
		}
		return classOther
	}
	var authErr *kgo.ErrFirstReadEOF
	switch {
	case errors.Is(err, kgo.ErrRecordTimeout), errors.Is(err, kgo.ErrRecordRetries), errors.Is(err, kgo.ErrMaxBuffered),
		errors.Is(err, context.DeadlineExceeded), errors.As(err, &authErr), isNetErr(err), isTLSErr(err):
		return classUnavailable
	}
	return classOther
}

// txnClass is what err, returned by a transactional client's call, means
// for the transaction (kafkagroup.Class). A broker's definite answer that
// the table does not name leaves the client usable and the transaction to
// abort. Anything else (a timeout, a lost connection, a retriable code that
// outlived kgo's retries, UNKNOWN_SERVER_ERROR) leaves the call's effect
// unconfirmed: a commit that failed so has an unknown outcome. kgo's
// EndTransaction(TryAbort) after such a commit returns nil once it has
// re-initialised the producer id, which ends an unfinished transaction but
// completes one the broker had begun to commit: its success proves nothing
// (the fault suite saw commits so reported as not done in the log).
func txnClass(err error) kafkagroup.Class {
	ke, t, ok := lookup(err)
	switch {
	case kafkaconfig.IsBatchRefused(err):
		// Not the culprit: the transaction aborts for the record that
		// was too large (kafkaconfig.MessageLimit).
		return kafkagroup.ClassAbortable
	case t&oldGeneration != 0:
		return kafkagroup.ClassStaleGeneration
	case t&fencedByGroup != 0:
		return kafkagroup.ClassRefused
	case t&invalidRecord != 0:
		return kafkagroup.ClassRecordRefused
	case t&fencedProducer != 0:
		return kafkagroup.ClassFatal
	case !ok, ke.Retriable, ke == kerr.UnknownServerError:
		return kafkagroup.ClassRetriable
	}
	return kafkagroup.ClassAbortable
}
