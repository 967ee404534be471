//go:build cgo

package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	ckafka "github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/provider"
	"github.com/rehydrate/rehydrate/provider/kafka"
	"github.com/rehydrate/rehydrate/repository"
)

// Account is the benchmark's aggregate: 24 bytes of its own.
type Account struct {
	Balance  int64
	Deposits int64
	Last     int64
}

// Deposited is the benchmark's event; Note is sized so that a msgpack payload
// is about 150 bytes.
type Deposited struct {
	Amount    int64  `json:"amount"`
	Currency  string `json:"currency"`
	Reference string `json:"reference"`
	Channel   string `json:"channel"`
	Note      string `json:"note"`
}

func registry(codec event.Codec) *event.Registry {
	reg := event.NewRegistry(event.WithCodec(codec))
	if err := event.Register[Deposited](reg, "Deposited"); err != nil {
		panic(err)
	}
	return reg
}

func newRepository(p provider.Provider, codec event.Codec, opts ...repository.Option) (*repository.Repository[Account], error) {
	return repository.New[Account](p, registry(codec), append([]repository.Option{
		repository.On(func(a *Account, e Deposited) {
			a.Balance += e.Amount
			a.Deposits++
			a.Last = e.Amount
		}),
	}, opts...)...)
}

// payloadNote pads Deposited to about 150 bytes in msgpack.
var payloadNote = func() string {
	base := Deposited{Amount: 12345, Currency: "EUR", Reference: "ref-00000000-0000", Channel: "web"}
	data, err := event.Msgpack.Marshal(base)
	if err != nil {
		panic(err)
	}
	return strings.Repeat("n", max(150-len(data)-2, 0))
}()

// eventRecord is the i-th event of a workload over aggregates aggregates:
// aggregate i%aggregates at version i/aggregates+1, so that writing records
// in order of i keeps every aggregate's versions in order.
func eventRecord(reg *event.Registry, i, aggregates int) (event.Record, error) {
	id := fmt.Sprintf("acct-%07d", i%aggregates)
	env, err := reg.NewEnvelope(id, uint64(i/aggregates+1), Deposited{
		Amount: int64(i%1000 + 1), Currency: "EUR", Reference: fmt.Sprintf("ref-%08d-%04d", i, i%9999),
		Channel: "web", Note: payloadNote,
	})
	if err != nil {
		return event.Record{}, err
	}
	return env.Record(), nil
}

// seedKafka creates topic and writes n events to it with a fast, batching,
// idempotent producer, checking every delivery report.
func seedKafka(ctx context.Context, brokers, topic string, partitions, n, aggregates int, codec event.Codec) error {
	reg := registry(codec)
	return seedRecords(ctx, brokers, topic, partitions, n, func(i int) (event.Record, error) { return eventRecord(reg, i, aggregates) })
}

// seedRecords creates topic and writes the records record(0) … record(n-1)
// to it, in that order, with seedKafka's producer.
func seedRecords(ctx context.Context, brokers, topic string, partitions, n int, record func(i int) (event.Record, error)) error {
	p, err := kafka.New(kafka.Config{Brokers: brokers, Topic: topic})
	if err != nil {
		return err
	}
	err = p.EnsureTopic(ctx, kafka.TopicSpec{Partitions: partitions, ReplicationFactor: 1})
	p.Close()
	if err != nil {
		return err
	}
	producer, err := ckafka.NewProducer(&ckafka.ConfigMap{
		"bootstrap.servers": brokers, "enable.idempotence": true, "acks": "all",
		"partitioner": "murmur2_random", "linger.ms": 20, "batch.size": 1 << 20,
		"queue.buffering.max.messages": 500_000, "go.delivery.report.fields": "none",
	})
	if err != nil {
		return err
	}
	defer producer.Close()
	errs := make(chan error, 1)
	go func() {
		var first error
		for i := 0; i < n; i++ {
			m := (<-producer.Events()).(*ckafka.Message)
			if m.TopicPartition.Error != nil && first == nil {
				first = m.TopicPartition.Error
			}
		}
		errs <- first
	}()
	for i := range n {
		rec, err := record(i)
		if err != nil {
			return err
		}
		headers := make([]ckafka.Header, len(rec.Headers))
		for j, h := range rec.Headers {
			headers[j] = ckafka.Header{Key: h.Key, Value: h.Value}
		}
		msg := &ckafka.Message{TopicPartition: ckafka.TopicPartition{Topic: &topic, Partition: ckafka.PartitionAny},
			Key: rec.Key, Value: rec.Value, Headers: headers}
		for {
			err := producer.Produce(msg, nil)
			if err == nil {
				break
			}
			if ke, ok := err.(ckafka.Error); !ok || ke.Code() != ckafka.ErrQueueFull {
				return err
			}
			producer.Flush(100)
		}
	}
	select {
	case err := <-errs:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// seedMemory appends the same n events to an in-memory provider.
func seedMemory(ctx context.Context, p provider.Provider, n, aggregates int, codec event.Codec) error {
	reg := registry(codec)
	const chunk = 10_000
	batch := make([]event.Record, 0, chunk)
	for i := range n {
		rec, err := eventRecord(reg, i, aggregates)
		if err != nil {
			return err
		}
		batch = append(batch, rec)
		if len(batch) == chunk || i == n-1 {
			if _, err := p.Append(ctx, batch); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	return nil
}

// cleanUp deletes the run's topics and groups.
func cleanUp(ctx context.Context, brokers string, topics, groups []string) error {
	admin, err := ckafka.NewAdminClient(&ckafka.ConfigMap{"bootstrap.servers": brokers})
	if err != nil {
		return err
	}
	defer admin.Close()
	var errs []error
	if len(topics) > 0 {
		_, err = admin.DeleteTopics(ctx, topics)
		errs = append(errs, err)
	}
	if len(groups) > 0 {
		// Groups whose members have all left; their offsets went with the
		// topics.
		_, err = admin.DeleteConsumerGroups(ctx, groups)
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
