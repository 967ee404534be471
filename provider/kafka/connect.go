//go:build cgo

package kafka

import (
	"context"
	"time"

	ckafka "github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// connected waits, within ctx and a second at most, until a new producer
// has a broker connection up, before InitTransactions. librdkafka looks
// for the transaction coordinator as soon as InitTransactions is called;
// on a handle that has no connection up yet the lookup finds no broker and
// is tried again by a 500 ms timer: 5 of 20 fresh producers here, and most
// starts of the example writer, spent those 500 ms before the group join.
// A metadata request waits for a connection instead. Its error is not
// InitTransactions': that call reports an unreachable broker itself.
func connected(ctx context.Context, p *ckafka.Producer) {
	wait := time.Second
	if d, ok := ctx.Deadline(); ok {
		wait = min(wait, time.Until(d))
	}
	if wait >= time.Millisecond {
		_, _ = p.GetMetadata(nil, false, int(wait.Milliseconds()))
	}
}
