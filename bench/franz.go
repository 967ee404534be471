//go:build cgo

package main

import (
	"context"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/provider/franz"
)

// bareFranz reads every partition of topic to its end offsets with a bare
// franz-go consumer (direct assignment, read_committed, the provider's fetch
// sizes) and only counts records and bytes: the ceiling for restores
// through this client, as bareConsume is for confluent-kafka-go's.
func bareFranz(ctx context.Context, brokers, topic string) (restoreResult, error) {
	p, err := franz.New(franz.Config{Brokers: brokers, Topic: topic})
	if err != nil {
		return restoreResult{}, err
	}
	defer p.Close()
	// The clock covers what a restore's covers: querying the end offsets,
	// creating the consumer, reading.
	start := time.Now()
	ps, err := p.Partitions(ctx)
	if err != nil {
		return restoreResult{}, err
	}
	ends := map[int32]int64{}
	offsets := map[int32]kgo.Offset{}
	for _, part := range ps {
		if part.High > part.Low {
			ends[part.ID] = part.High
			offsets[part.ID] = kgo.NewOffset().At(part.Low)
		}
	}
	cl, err := kgo.NewClient(
		kgo.SeedBrokers(strings.Split(brokers, ",")...),
		kgo.ConsumePartitions(map[string]map[int32]kgo.Offset{topic: offsets}),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.FetchMaxBytes(16<<20), kgo.FetchMaxPartitionBytes(2<<20), kgo.FetchMaxWait(100*time.Millisecond),
	)
	if err != nil {
		return restoreResult{}, err
	}
	defer cl.Close()
	res := restoreResult{Name: "bare franz-go consumer"}
	for len(ends) > 0 {
		fs := cl.PollFetches(ctx)
		if err := ctx.Err(); err != nil {
			return res, err
		}
		if errs := fs.Errors(); len(errs) > 0 {
			return res, errs[0].Err
		}
		fs.EachRecord(func(r *kgo.Record) {
			res.Events++
			res.Bytes += int64(len(r.Key) + len(r.Value))
			for _, h := range r.Headers {
				res.Bytes += int64(len(h.Key) + len(h.Value))
			}
			// Bench topics hold no transactions: the last record ends a
			// partition.
			if end, ok := ends[r.Partition]; ok && r.Offset+1 >= end {
				delete(ends, r.Partition)
			}
		})
	}
	res.Seconds = time.Since(start).Seconds()
	res.SinceSpawn, res.CPUSeconds = sinceSpawn()
	return res, nil
}

// rawFranzProduceBench is rawProduceBench with a bare franz-go producer
// (idempotent, acks=all, the provider's partitioner): Execute with franz's
// ceiling.
func rawFranzProduceBench(ctx context.Context, brokers, topic string, concurrency int, d time.Duration) (commandResult, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(brokers, ",")...), kgo.DefaultProduceTopic(topic),
		kgo.RequiredAcks(kgo.AllISRAcks()), kgo.ProducerLinger(time.Millisecond),
		kgo.RecordPartitioner(kgo.StickyKeyPartitioner(nil))) // murmur2 of the key, as Kafka's Java client
	if err != nil {
		return commandResult{}, err
	}
	defer cl.Close()
	reg := registry(event.Msgpack)
	return runConcurrent(ctx, "bare franz-go idempotent acks=all producer", concurrency, d, func(ctx context.Context, _ int, rng *rand.Rand) error {
		rec, err := eventRecord(reg, rng.IntN(1_000_000), 10_000)
		if err != nil {
			return err
		}
		kr := &kgo.Record{Key: rec.Key, Value: rec.Value, Headers: make([]kgo.RecordHeader, len(rec.Headers))}
		for j, h := range rec.Headers {
			kr.Headers[j] = kgo.RecordHeader{Key: h.Key, Value: h.Value}
		}
		return cl.ProduceSync(ctx, kr).FirstErr()
	})
}
