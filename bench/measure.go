//go:build cgo

package main

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unsafe"

	ckafka "github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/provider"
	"github.com/rehydrate/rehydrate/provider/kafka"
	"github.com/rehydrate/rehydrate/provider/memory"
	"github.com/rehydrate/rehydrate/repository"
)

// restoreResult is one restore measurement.
type restoreResult struct {
	Name        string  `json:"name"`
	Events      int64   `json:"events"`
	Bytes       int64   `json:"bytes"`
	Seconds     float64 `json:"seconds"`
	PeakRSSMB   float64 `json:"peak_rss_mb"`
	HeapPerAggB float64 `json:"heap_per_aggregate_bytes"` // beyond the aggregate's own fields
	// SinceSpawn is the seconds from the exec of a bare loop's process
	// to its last record (the writer section), 0 otherwise; CPUSeconds
	// is the CPU time the process had used by then.
	SinceSpawn float64 `json:"since_spawn,omitempty"`
	CPUSeconds float64 `json:"cpu_seconds,omitempty"`
}

func (r restoreResult) rate() float64 { return float64(r.Events) / r.Seconds }

// ownPeakRSSMB is this process's peak resident set since it started
// (VmHWM), 0 where /proc does not tell. The parent cannot ask the kernel for
// it: a child's ru_maxrss also counts the parent's own peak, which the
// child's address space inherits until its exec (os/exec uses vfork).
func ownPeakRSSMB() float64 {
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 64)
			if err != nil {
				return 0
			}
			return kb / 1024
		}
	}
	return 0
}
func (r restoreResult) mbps() float64 { return float64(r.Bytes) / r.Seconds / 1e6 }

// bareConsume reads every partition of topic to its end offsets with a bare
// confluent-kafka-go consumer, fetch settings as the provider's, and only
// counts records and bytes: the ceiling for restores through this client.
func bareConsume(ctx context.Context, brokers, topic string, props map[string]string) (restoreResult, error) {
	p, err := kafka.New(kafka.Config{Brokers: brokers, Topic: topic})
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
	cm := ckafka.ConfigMap{
		"bootstrap.servers": brokers, "group.id": "bench-" + event.NewID(),
		"enable.auto.commit": false, "enable.partition.eof": true,
		"fetch.max.bytes": 64 << 20, "max.partition.fetch.bytes": 8 << 20, "fetch.wait.max.ms": 100,
		"fetch.queue.backoff.ms": 10,
	}
	for k, v := range props {
		cm[k] = v
	}
	c, err := ckafka.NewConsumer(&cm)
	if err != nil {
		return restoreResult{}, err
	}
	defer c.Close()
	ends := map[int32]int64{}
	var assign []ckafka.TopicPartition
	for _, part := range ps {
		if part.High > part.Low {
			ends[part.ID] = part.High
			assign = append(assign, ckafka.TopicPartition{Topic: &topic, Partition: part.ID, Offset: ckafka.Offset(part.Low)})
		}
	}
	if err := c.Assign(assign); err != nil {
		return restoreResult{}, err
	}
	res := restoreResult{Name: "bare confluent-kafka-go consumer"}
	for len(ends) > 0 {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		switch e := c.Poll(100).(type) {
		case *ckafka.Message:
			if e.TopicPartition.Error != nil {
				return res, e.TopicPartition.Error
			}
			res.Events++
			res.Bytes += int64(len(e.Key) + len(e.Value))
			for _, h := range e.Headers {
				res.Bytes += int64(len(h.Key) + len(h.Value))
			}
			if int64(e.TopicPartition.Offset)+1 >= ends[e.TopicPartition.Partition] {
				delete(ends, e.TopicPartition.Partition)
			}
		case ckafka.PartitionEOF:
			if int64(e.Offset) >= ends[e.Partition] {
				delete(ends, e.Partition)
			}
		case ckafka.Error:
			if e.IsFatal() {
				return res, e
			}
		}
	}
	res.Seconds = time.Since(start).Seconds()
	res.SinceSpawn, res.CPUSeconds = sinceSpawn()
	return res, nil
}

// restoreWith restores a repository from p and measures it.
func restoreWith(ctx context.Context, name string, p provider.Provider, codec event.Codec, batchSize int, opts ...repository.Option) (restoreResult, error) {
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	repo, err := newRepository(p, codec, append(opts, repository.WithBatchSize(batchSize))...)
	if err != nil {
		return restoreResult{}, err
	}
	stats, err := repo.Restore(ctx)
	if err != nil {
		return restoreResult{}, err
	}
	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	perAgg := float64(int64(after.HeapAlloc)-int64(before.HeapAlloc))/float64(stats.Aggregates) - float64(unsafe.Sizeof(Account{}))
	runtime.KeepAlive(repo)
	return restoreResult{
		Name: name, Events: stats.Events, Bytes: stats.Bytes, Seconds: stats.Duration.Seconds(),
		HeapPerAggB: perAgg,
	}, nil
}

// restoreMemory seeds an in-memory log with the workload and restores it: the
// repository's own cost, without Kafka's.
func restoreMemory(ctx context.Context, w workload, codec event.Codec) (restoreResult, error) {
	p, err := memory.New(w.Partitions)
	if err != nil {
		return restoreResult{}, err
	}
	defer p.Close()
	if err := seedMemory(ctx, p, w.Events, w.Aggregates, codec); err != nil {
		return restoreResult{}, err
	}
	// The seeded log stays on the heap during the measurement: subtract it
	// by measuring the baseline after seeding (restoreWith does).
	return restoreWith(ctx, fmt.Sprintf("repository restore, memory provider, %s", codecName(codec)), p, codec, 0)
}

func codecName(c event.Codec) string {
	if c == event.JSON {
		return "JSON"
	}
	return "msgpack"
}

// commandResult is one concurrency level of a command benchmark.
type commandResult struct {
	Name        string  `json:"name"`
	Concurrency int     `json:"concurrency"`
	Ops         int64   `json:"ops"`
	Seconds     float64 `json:"seconds"`
	P50Ms       float64 `json:"p50_ms"`
	P99Ms       float64 `json:"p99_ms"`
	MaxMs       float64 `json:"max_ms"`
}

func (c commandResult) opsPerSec() float64 { return float64(c.Ops) / c.Seconds }

// runConcurrent calls op from concurrency goroutines for d and reports
// throughput and latency.
func runConcurrent(ctx context.Context, name string, concurrency int, d time.Duration, op func(ctx context.Context, worker int, rng *rand.Rand) error) (commandResult, error) {
	// One call first, so that connections are up before the clock runs.
	if err := op(ctx, 0, rand.New(rand.NewPCG(1, 1))); err != nil {
		return commandResult{}, fmt.Errorf("%s: warm-up: %w", name, err)
	}
	ctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	lat := make([][]time.Duration, concurrency)
	errs := make([]error, concurrency)
	var wg sync.WaitGroup
	start := time.Now()
	for w := range concurrency {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 7))
			for ctx.Err() == nil {
				t0 := time.Now()
				if err := op(context.WithoutCancel(ctx), w, rng); err != nil {
					errs[w] = err
					return
				}
				lat[w] = append(lat[w], time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	for _, err := range errs {
		if err != nil {
			return commandResult{}, fmt.Errorf("%s at concurrency %d: %w", name, concurrency, err)
		}
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	res := commandResult{Name: name, Concurrency: concurrency, Ops: int64(len(all)), Seconds: elapsed.Seconds()}
	if len(all) > 0 {
		res.P50Ms = all[len(all)/2].Seconds() * 1000
		res.P99Ms = all[len(all)*99/100].Seconds() * 1000
		res.MaxMs = all[len(all)-1].Seconds() * 1000
	}
	return res, nil
}

// executeBench runs Deposit commands on random existing aggregates.
func executeBench(ctx context.Context, name string, repo *repository.Repository[Account], aggregates, concurrency int, d time.Duration) (commandResult, error) {
	deposit := func(Account) ([]any, error) {
		return []any{Deposited{Amount: 7, Currency: "EUR", Reference: "ref-bench", Channel: "web", Note: payloadNote}}, nil
	}
	return runConcurrent(ctx, name, concurrency, d, func(ctx context.Context, _ int, rng *rand.Rand) error {
		_, err := repo.Execute(ctx, fmt.Sprintf("acct-%07d", rng.IntN(aggregates)), deposit)
		return err
	})
}

// rawProduceBench: each goroutine produces one event-sized record with an
// idempotent acks=all producer and waits for its delivery report.
func rawProduceBench(ctx context.Context, brokers, topic string, concurrency int, d time.Duration) (commandResult, error) {
	producer, err := ckafka.NewProducer(&ckafka.ConfigMap{
		"bootstrap.servers": brokers, "enable.idempotence": true, "acks": "all",
		"partitioner": "murmur2_random", "linger.ms": 1, "go.delivery.report.fields": "none",
	})
	if err != nil {
		return commandResult{}, err
	}
	defer producer.Close()
	reg := registry(event.Msgpack)
	reports := make([]chan ckafka.Event, concurrency)
	for i := range reports {
		reports[i] = make(chan ckafka.Event, 1)
	}
	return runConcurrent(ctx, "bare idempotent acks=all producer", concurrency, d, func(ctx context.Context, w int, rng *rand.Rand) error {
		rec, err := eventRecord(reg, rng.IntN(1_000_000), 10_000)
		if err != nil {
			return err
		}
		headers := make([]ckafka.Header, len(rec.Headers))
		for j, h := range rec.Headers {
			headers[j] = ckafka.Header{Key: h.Key, Value: h.Value}
		}
		if err := producer.Produce(&ckafka.Message{TopicPartition: ckafka.TopicPartition{Topic: &topic, Partition: ckafka.PartitionAny},
			Key: rec.Key, Value: rec.Value, Headers: headers}, reports[w]); err != nil {
			return err
		}
		m := (<-reports[w]).(*ckafka.Message)
		return m.TopicPartition.Error
	})
}

// kcatConsume reads every partition of topic to its end with kcat
// (librdkafka in C, read_committed), counting the records it prints: the
// client's ceiling without Go.
func kcatConsume(ctx context.Context, brokers, topic string) (restoreResult, error) {
	start := time.Now()
	cmd := exec.CommandContext(ctx, "kcat", "-C", "-b", brokers, "-t", topic, "-o", "beginning", "-e", "-q",
		"-X", "isolation.level=read_committed", "-f", "%S\n")
	out, err := cmd.StdoutPipe()
	if err != nil {
		return restoreResult{}, err
	}
	if err := cmd.Start(); err != nil {
		return restoreResult{}, err
	}
	res := restoreResult{Name: "kcat (librdkafka in C), counting"}
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		n, _ := strconv.ParseInt(sc.Text(), 10, 64)
		res.Events++
		res.Bytes += n
	}
	if err := cmd.Wait(); err != nil {
		return res, fmt.Errorf("kcat: %w", err)
	}
	res.Seconds = time.Since(start).Seconds()
	return res, nil
}
