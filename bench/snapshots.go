//go:build cgo

package main

import (
	"context"
	"fmt"
	"log"
	"log/slog"
	"sync"
	"time"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/provider/kafka"
	"github.com/rehydrate/rehydrate/repository"
	"github.com/rehydrate/rehydrate/snapshot"
)

// snapshotRestart is one workload restarted with and without snapshots.
type snapshotRestart struct {
	Events, Aggregates int
	Full, FromSnapshot restoreResult
	// TakeS is how long Snapshot took for every partition, in one process
	// that had just restored; Bytes is the snapshots' data.
	TakeS float64
	Bytes int64
}

// snapshotCommands is Execute at one concurrency without and with snapshots
// taken in the background.
type snapshotCommands struct {
	Without, With commandResult
	Snapshots     int64         // taken while With ran
	LongestLock   time.Duration // the longest a snapshot held one aggregate's lock
}

// manualSnapshots never triggers on its own.
var manualSnapshots = repository.Snapshots{StateVersion: 1, Events: 1 << 40, Interval: 24 * time.Hour}

// openSnapshots opens the store of topic's snapshots, creating its compacted
// topic; track records the topic for clean-up.
func openSnapshots(ctx context.Context, cfg config, topic string, track func(string)) (*snapshot.Store, func(), error) {
	name := snapshot.TopicName(topic)
	sp, err := kafka.New(kafka.Config{Brokers: cfg.brokers, Topic: name})
	if err != nil {
		return nil, nil, err
	}
	if track != nil {
		track(name)
		if err := sp.EnsureTopic(ctx, kafka.TopicSpec{Partitions: cfg.work.Partitions, Config: snapshot.TopicConfig()}); err != nil {
			sp.Close()
			return nil, nil, err
		}
	}
	store, err := snapshot.NewStore(sp)
	if err != nil {
		sp.Close()
		return nil, nil, err
	}
	return store, func() { sp.Close() }, nil
}

// snapshotLog collects what the repository logs of the snapshots it saves.
type snapshotLog struct {
	mu      sync.Mutex
	saved   int64
	bytes   int64
	longest time.Duration
}

func (h *snapshotLog) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }
func (h *snapshotLog) WithAttrs([]slog.Attr) slog.Handler           { return h }
func (h *snapshotLog) WithGroup(string) slog.Handler                { return h }
func (h *snapshotLog) Handle(_ context.Context, r slog.Record) error {
	if r.Message != "snapshot saved" {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	h.saved++
	r.Attrs(func(a slog.Attr) bool {
		switch a.Key {
		case "bytes":
			h.bytes += a.Value.Int64()
		case "longest_lock":
			h.longest = max(h.longest, a.Value.Duration())
		}
		return true
	})
	return nil
}

// takeSnapshots restores topic in this process and snapshots every
// partition, for the snapshot restores to read.
func takeSnapshots(ctx context.Context, cfg config, topic string, track func(string)) (seconds float64, bytes int64, err error) {
	p, err := kafka.New(kafka.Config{Brokers: cfg.brokers, Topic: topic})
	if err != nil {
		return 0, 0, err
	}
	defer p.Close()
	store, closeStore, err := openSnapshots(ctx, cfg, topic, track)
	if err != nil {
		return 0, 0, err
	}
	defer closeStore()
	var logged snapshotLog
	repo, err := newRepository(p, event.Msgpack, repository.WithSnapshots(store, manualSnapshots), repository.WithLogger(slog.New(&logged)))
	if err != nil {
		return 0, 0, err
	}
	defer repo.Close()
	if _, err := repo.Restore(ctx); err != nil {
		return 0, 0, err
	}
	start := time.Now()
	if err := repo.Snapshot(ctx); err != nil {
		return 0, 0, err
	}
	return time.Since(start).Seconds(), logged.bytes, nil
}

// restoreFromSnapshots is the child of a restore with snapshots.
func restoreFromSnapshots(ctx context.Context, cfg config, topic string) (restoreResult, error) {
	p, err := kafka.New(kafka.Config{Brokers: cfg.brokers, Topic: topic, BatchSize: cfg.batchSize, Properties: cfg.props})
	if err != nil {
		return restoreResult{}, err
	}
	defer p.Close()
	store, closeStore, err := openSnapshots(ctx, cfg, topic, nil)
	if err != nil {
		return restoreResult{}, err
	}
	defer closeStore()
	return restoreWith(ctx, "repository restore from snapshots, Kafka, msgpack", p, event.Msgpack, cfg.batchSize,
		repository.WithSnapshots(store, manualSnapshots))
}

// snapshotWorkloads are the restarts measured: many events over few
// aggregates (where snapshots help most), and fewer over many.
func (cfg config) snapshotWorkloads() []workload {
	if cfg.quick {
		return []workload{{Events: 300_000, Partitions: cfg.work.Partitions, Aggregates: 1_000}, {Events: 100_000, Partitions: cfg.work.Partitions, Aggregates: 10_000}}
	}
	return []workload{{Events: 3_000_000, Partitions: cfg.work.Partitions, Aggregates: 10_000}, {Events: 1_000_000, Partitions: cfg.work.Partitions, Aggregates: 100_000}}
}

func snapshotRestarts(ctx context.Context, cfg config, seed func(string, int, int, int, event.Codec) (string, error), track func(string)) ([]snapshotRestart, error) {
	var out []snapshotRestart
	for _, w := range cfg.snapshotWorkloads() {
		topic, err := seed(fmt.Sprintf("snap-%d-%d", w.Events, w.Aggregates), w.Partitions, w.Events, w.Aggregates, event.Msgpack)
		if err != nil {
			return nil, err
		}
		res := snapshotRestart{Events: w.Events, Aggregates: w.Aggregates}
		if res.Full, err = measure(ctx, cfg, "restore", topic, "msgpack"); err != nil {
			return nil, err
		}
		if res.TakeS, res.Bytes, err = takeSnapshots(ctx, cfg, topic, track); err != nil {
			return nil, err
		}
		if res.FromSnapshot, err = measure(ctx, cfg, "snapshot-restore", topic, "msgpack"); err != nil {
			return nil, err
		}
		log.Printf("restart of %d events over %d aggregates: %.2f s replaying, %.2f s from snapshots (%.1fx)",
			w.Events, w.Aggregates, res.Full.Seconds, res.FromSnapshot.Seconds, res.Full.Seconds/res.FromSnapshot.Seconds)
		out = append(out, res)
	}
	return out, nil
}

// snapshotCommandCost runs Execute at concurrency 64 on the same topic,
// without snapshots and with a snapshot of each partition every few
// thousand events.
func snapshotCommandCost(ctx context.Context, cfg config, seed func(string, int, int, int, event.Codec) (string, error), track func(string)) (snapshotCommands, error) {
	const aggregates, concurrency = 10_000, 64
	topic, err := seed(fmt.Sprintf("snap-commands-%d", aggregates), cfg.work.Partitions, aggregates, aggregates, event.Msgpack)
	if err != nil {
		return snapshotCommands{}, err
	}
	store, closeStore, err := openSnapshots(ctx, cfg, topic, track)
	if err != nil {
		return snapshotCommands{}, err
	}
	defer closeStore()
	var out snapshotCommands
	var logged snapshotLog
	for _, with := range []bool{false, true} {
		p, err := kafka.New(kafka.Config{Brokers: cfg.brokers, Topic: topic})
		if err != nil {
			return out, err
		}
		opts := []repository.Option{repository.WithLogger(slog.New(&logged))}
		name := "Execute"
		if with {
			// About one snapshot per partition per second at this rate.
			opts = append(opts, repository.WithSnapshots(store, repository.Snapshots{StateVersion: 1, Events: 1_000, Interval: time.Second}))
			name = "Execute with snapshots"
		}
		repo, err := newRepository(p, event.Msgpack, opts...)
		if err == nil {
			_, err = repo.Restore(ctx)
		}
		var res commandResult
		if err == nil {
			res, err = executeBench(ctx, name, repo, aggregates, concurrency, cfg.duration)
		}
		if repo != nil {
			repo.Close()
		}
		p.Close()
		if err != nil {
			return out, err
		}
		if with {
			out.With = res
		} else {
			out.Without = res
		}
	}
	out.Snapshots, out.LongestLock = logged.saved, logged.longest
	log.Printf("Execute at %d: %.0f ops/s without snapshots, %.0f with (%d snapshots, longest lock %v)",
		concurrency, out.Without.opsPerSec(), out.With.opsPerSec(), out.Snapshots, out.LongestLock)
	return out, nil
}
