//go:build cgo

package kafka_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	ckafka "github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rehydrate/rehydrate/consume"
	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/internal/kafkatest"
	"github.com/rehydrate/rehydrate/provider"
	"github.com/rehydrate/rehydrate/provider/kafka"
	rt "github.com/rehydrate/rehydrate/repository/repositorytest"
)

// TestClientRoundTrip checks the broker and the client below the provider:
// 10 000 keyed records through an idempotent acks=all producer, every
// delivery report checked, read back by direct partition assignment up to the
// end offsets captured before reading.
func TestClientRoundTrip(t *testing.T) {
	const partitions, records, keys = 6, 10_000, 100
	cfg := kafkatest.Config(t, partitions, nil)

	producer, err := ckafka.NewProducer(&ckafka.ConfigMap{
		"bootstrap.servers": cfg.Brokers, "enable.idempotence": true, "acks": "all", "linger.ms": 5,
	})
	require.NoError(t, err)
	defer producer.Close()
	reports := make(chan ckafka.Event, records)
	for i := range records {
		key := fmt.Sprintf("key-%03d", i%keys)
		require.NoError(t, producer.Produce(&ckafka.Message{
			TopicPartition: ckafka.TopicPartition{Topic: &cfg.Topic, Partition: ckafka.PartitionAny},
			Key:            []byte(key),
			Value:          fmt.Appendf(nil, "%s:%d", key, i/keys),
		}, reports))
	}
	for range records {
		m := (<-reports).(*ckafka.Message)
		require.NoError(t, m.TopicPartition.Error)
	}

	consumer, err := ckafka.NewConsumer(&ckafka.ConfigMap{
		"bootstrap.servers": cfg.Brokers, "group.id": "unused-" + event.NewID(),
		"enable.auto.commit": false, "enable.partition.eof": true,
	})
	require.NoError(t, err)
	defer consumer.Close()
	ends := make(map[int32]int64)
	var assign []ckafka.TopicPartition
	for p := range int32(partitions) {
		_, high, err := consumer.QueryWatermarkOffsets(cfg.Topic, p, 10_000)
		require.NoError(t, err)
		ends[p] = high
		if high > 0 {
			assign = append(assign, ckafka.TopicPartition{Topic: &cfg.Topic, Partition: p, Offset: ckafka.OffsetBeginning})
		}
	}
	require.NoError(t, consumer.Assign(assign))

	next := map[string]int{} // per key, the sequence number expected next
	count := 0
	deadline := time.Now().Add(time.Minute)
	for left := len(assign); left > 0; {
		require.True(t, time.Now().Before(deadline), "read %d of %d records before the deadline", count, records)
		switch e := consumer.Poll(100).(type) {
		case *ckafka.Message:
			require.NoError(t, e.TopicPartition.Error)
			if int64(e.TopicPartition.Offset) >= ends[e.TopicPartition.Partition] {
				continue
			}
			count++
			key := string(e.Key)
			assert.Equal(t, fmt.Sprintf("%s:%d", key, next[key]), string(e.Value), "per-key order")
			next[key]++
			if int64(e.TopicPartition.Offset)+1 == ends[e.TopicPartition.Partition] {
				left--
			}
		case ckafka.Error:
			require.False(t, e.IsFatal(), "fatal: %v", e)
		}
	}
	assert.Equal(t, records, count)
	assert.Len(t, next, keys)
}

// TestTransactionsAndMarkers: a committed and an aborted transaction (as a
// transactional writer of another service leaves them) restore to the
// committed records only, and the read ends although the partition ends in
// a transaction marker, an offset with no record.
func TestTransactionsAndMarkers(t *testing.T) {
	cfg := kafkatest.Config(t, 1, nil)
	producer, err := ckafka.NewProducer(&ckafka.ConfigMap{
		"bootstrap.servers": cfg.Brokers, "transactional.id": "test-" + event.NewID(),
	})
	require.NoError(t, err)
	defer producer.Close()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	require.NoError(t, producer.InitTransactions(ctx))
	write := func(commit bool, values ...string) {
		require.NoError(t, producer.BeginTransaction())
		for _, v := range values {
			e := event.Envelope{ID: v, Type: "T", AggregateID: v, Version: 1, Time: time.Now(),
				ContentType: event.ContentTypeJSON, Payload: []byte(`{}`)}
			rec := e.Record()
			headers := make([]ckafka.Header, len(rec.Headers))
			for i, h := range rec.Headers {
				headers[i] = ckafka.Header{Key: h.Key, Value: h.Value}
			}
			require.NoError(t, producer.Produce(&ckafka.Message{
				TopicPartition: ckafka.TopicPartition{Topic: &cfg.Topic, Partition: 0},
				Key:            rec.Key, Value: rec.Value, Headers: headers,
			}, nil))
		}
		if commit {
			require.NoError(t, producer.CommitTransaction(ctx))
		} else {
			require.NoError(t, producer.AbortTransaction(ctx))
		}
	}
	write(true, "c1", "c2")
	write(false, "a1", "a2", "a3")
	write(true, "c3")

	p, err := kafka.New(cfg)
	require.NoError(t, err)
	defer p.Close()
	ps, err := p.Partitions(ctx)
	require.NoError(t, err)
	require.Len(t, ps, 1)
	// 6 records and 3 markers.
	assert.Greater(t, ps[0].High-ps[0].Low, int64(3), "transaction markers and aborted records take offsets")

	var got []string
	var next int64
	err = p.Read(ctx, provider.Ranges(ps), 0, func(b provider.Batch) error {
		for _, r := range b.Records {
			got = append(got, string(r.Key))
		}
		next = b.Next
		return nil
	})
	require.NoError(t, err)
	assert.Equal(t, []string{"c1", "c2", "c3"}, got)
	assert.Equal(t, ps[0].High, next, "the read position reaches the end despite the final marker")

	// A follower catches up too, although no record follows the marker.
	followCtx, stop := context.WithCancel(ctx)
	defer stop()
	caughtUp := make(chan struct{})
	go func() {
		_ = consume.Stream(followCtx, p, consume.ReplayThenFollow,
			consume.StreamOptions{CaughtUp: func() { close(caughtUp) }},
			func(provider.Batch) error { return nil })
	}()
	select {
	case <-caughtUp:
	case <-time.After(30 * time.Second):
		t.Fatal("replay-then-follow never caught up on a partition ending in a marker")
	}
}

// TestCancelledAppendStillSettles: a caller that gives up while its records
// are in flight gets their real outcome, not an early "unknown" that would
// let the next command reuse the version (found in review).
func TestCancelledAppendStillSettles(t *testing.T) {
	cfg := kafkatest.Config(t, 1, nil)
	cfg.Linger = 300 * time.Millisecond // the records wait in the producer
	p, err := kafka.New(cfg)
	require.NoError(t, err)
	defer p.Close()
	r := rt.Restored(t, p)
	_, err = r.Create(t.Context(), "a", rt.Open("x"))
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Millisecond)
	defer cancel()
	res, err := r.Execute(ctx, "a", rt.Deposit(1))
	require.NoError(t, err, "the append was queued: its outcome is waited for")
	assert.Equal(t, uint64(2), res.Version)
	_, err = r.Execute(t.Context(), "a", rt.Deposit(2))
	require.NoError(t, err)
	fresh := rt.Restored(t, p)
	acct, v, err := fresh.Get("a")
	require.NoError(t, err)
	assert.Equal(t, uint64(3), v)
	assert.Equal(t, int64(3), acct.Balance)
}

// TestFollowDeliversATrickle: records appended one by one while the
// follower reads reach it without waiting for a full batch (found in
// review), and a partition ending in a transaction marker still catches up.
func TestFollowDeliversATrickle(t *testing.T) {
	cfg := kafkatest.Config(t, 1, nil)
	p, err := kafka.New(cfg)
	require.NoError(t, err)
	defer p.Close()
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	got := make(chan int64, 100)
	caughtUp := make(chan struct{})
	go func() {
		_ = consume.Stream(ctx, p, consume.ReplayThenFollow, consume.StreamOptions{CaughtUp: func() { close(caughtUp) }},
			func(b provider.Batch) error {
				for _, r := range b.Records {
					got <- r.Offset
				}
				return nil
			})
	}()
	<-caughtUp
	const n = 20
	for i := range n {
		e := event.Envelope{ID: event.NewID(), Type: "T", AggregateID: "k", Version: uint64(i + 1), Time: time.Now(),
			ContentType: event.ContentTypeJSON, Payload: []byte(`{}`)}
		_, err := p.Append(ctx, []event.Record{e.Record()})
		require.NoError(t, err)
		// The next append comes only once this record was delivered: a
		// follower that held records back for a full batch would stall here.
		select {
		case off := <-got:
			assert.Equal(t, int64(i), off)
		case <-time.After(5 * time.Second):
			t.Fatalf("record %d not delivered while the topic trickles", i)
		}
	}
}
