//go:build cgo

package main

import (
	"context"
	"errors"
	"fmt"
	"log"
	"slices"
	"sort"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/rehydrate/rehydrate/consume"
	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/projection"
	"github.com/rehydrate/rehydrate/projection/postgres"
	"github.com/rehydrate/rehydrate/provider"
	"github.com/rehydrate/rehydrate/provider/franz"
)

// The projection section: a projection into PostgreSQL (package projection,
// projection/postgres) beside a bare loop that applies the same rows with
// the same statements, one transaction per batch of the same size, taking
// turns on one topic; then a rebuild into a new table while a live
// projection follows a writer; then the lag the live projection keeps at
// given write rates. Both read with provider/franz.

const projectionBatch = 500

// benchFailures retries a store failure a few times (a bench run is long);
// it costs nothing while the store does not fail.
var benchFailures = consume.Failures{Retries: 3}

type projectionResult struct {
	Events, Partitions, Aggregates, BatchSize int
	// Events/s of each run, in the order they ran (taking turns).
	Bare, Runner []float64
	// Rebuild: a new projection of the whole topic into a new table, to
	// caught up, while the live one follows a writer at RebuildWriteRate.
	RebuildEvents    int64
	RebuildS         float64
	RebuildWriteRate float64
	Lags             []lagResult
}

type lagResult struct {
	Rate    float64 // events/s asked of the writer
	Written float64 // events/s it wrote
	Samples int
	// Offsets between the live projection's checkpoints and the
	// partitions' ends, sampled every 100 ms.
	Mean, P99, Max float64
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	sort.Float64s(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func (r *projectionResult) ratio() float64 { return median(r.Runner) / median(r.Bare) }

// projectionBench runs the section on a topic of its own in the database at
// url.
func projectionBench(ctx context.Context, cfg config, url string, seed func(label string, partitions, n, aggregates int, codec event.Codec) (string, error)) (*projectionResult, error) {
	res := &projectionResult{Events: cfg.work.Events, Partitions: cfg.work.Partitions, Aggregates: cfg.work.Aggregates, BatchSize: projectionBatch}
	if cfg.quick {
		// A statement per event: about 4 000 events/s here.
		res.Events, res.Aggregates = 20_000, 2_000
	}
	topic, err := seed(fmt.Sprintf("projection-%d", res.Events), res.Partitions, res.Events, res.Aggregates, event.Msgpack)
	if err != nil {
		return nil, err
	}
	p, err := franz.New(franz.Config{Brokers: cfg.brokers, Topic: topic})
	if err != nil {
		return nil, err
	}
	defer p.Close()
	pool, err := pgxpool.New(ctx, url)
	if err != nil {
		return nil, err
	}
	defer pool.Close()
	suffix := fmt.Sprint(time.Now().Unix())
	cps := "bench_checkpoints_" + suffix
	store, err := postgres.New(ctx, pool, postgres.WithTable(cps))
	if err != nil {
		return nil, err
	}
	var tables []string
	newTable := func(label string) (string, error) {
		t := "bench_" + label + "_" + suffix
		tables = append(tables, t)
		_, err := pool.Exec(ctx, `CREATE TABLE `+t+` (id text PRIMARY KEY, balance bigint NOT NULL, deposits bigint NOT NULL, version bigint NOT NULL)`)
		return t, err
	}
	defer func() {
		for _, t := range append(tables, cps) {
			_, _ = pool.Exec(context.Background(), `DROP TABLE IF EXISTS `+t)
		}
	}()
	reg := registry(event.Msgpack)

	// Taking turns, each run into a table of its own.
	rounds := max(1, min(cfg.repeat, 2))
	for i := range rounds {
		t, err := newTable(fmt.Sprintf("bare_%d", i))
		if err != nil {
			return nil, err
		}
		rate, err := bareProjection(ctx, p, pool, reg, t, res.Events)
		if err != nil {
			return nil, fmt.Errorf("bare loop: %w", err)
		}
		res.Bare = append(res.Bare, rate)
		log.Printf("projection: bare loop %.0f events/s", rate)
		if t, err = newTable(fmt.Sprintf("runner_%d", i)); err != nil {
			return nil, err
		}
		start := time.Now()
		r, err := projection.New(projection.Config[pgx.Tx]{
			Name: "bench-" + t, Provider: p, Store: store, Handler: benchHandlers(reg, t), BatchSize: projectionBatch, Failures: benchFailures,
		})
		if err != nil {
			return nil, err
		}
		if err := r.Run(ctx); err != nil {
			return nil, fmt.Errorf("runner: %w", err)
		}
		rate = float64(res.Events) / time.Since(start).Seconds()
		res.Runner = append(res.Runner, rate)
		log.Printf("projection: runner %.0f events/s", rate)
	}

	// A live projection that follows; a writer; a rebuild beside them.
	live, err := newTable("live")
	if err != nil {
		return nil, err
	}
	lr, err := projection.New(projection.Config[pgx.Tx]{
		Name: "bench-live", Provider: p, Store: store, Handler: benchHandlers(reg, live), BatchSize: projectionBatch, Failures: benchFailures, Mode: consume.ReplayThenFollow,
	})
	if err != nil {
		return nil, err
	}
	lctx, stopLive := context.WithCancel(ctx)
	defer stopLive()
	liveErr := make(chan error, 1)
	go func() { liveErr <- lr.Run(lctx) }()
	select {
	case <-lr.CaughtUp():
	case err := <-liveErr:
		return nil, fmt.Errorf("live projection: %w", err)
	}
	w := &benchWriter{p: p, reg: reg, next: res.Events, aggregates: res.Aggregates}

	res.RebuildWriteRate = 1000
	rebuilt, err := newTable("rebuild")
	if err != nil {
		return nil, err
	}
	stopWriting := w.run(ctx, res.RebuildWriteRate)
	ps, err := p.Partitions(ctx)
	if err != nil {
		return nil, err
	}
	for _, part := range ps {
		res.RebuildEvents += part.High - part.Low
	}
	start := time.Now()
	rb, err := projection.New(projection.Config[pgx.Tx]{
		Name: "bench-rebuild", Provider: p, Store: store, Handler: benchHandlers(reg, rebuilt), BatchSize: projectionBatch, Failures: benchFailures, Mode: consume.ReplayThenFollow,
	})
	if err != nil {
		return nil, err
	}
	rctx, stopRebuild := context.WithCancel(ctx)
	rebuildErr := make(chan error, 1)
	go func() { rebuildErr <- rb.Run(rctx) }()
	select {
	case <-rb.CaughtUp():
		res.RebuildS = time.Since(start).Seconds()
	case err := <-rebuildErr:
		stopRebuild()
		return nil, fmt.Errorf("rebuild: %w", err)
	}
	if _, err := stopWriting(); err != nil {
		stopRebuild()
		return nil, err
	}
	stopRebuild()
	<-rebuildErr
	log.Printf("projection: rebuild of %d events in %.1f s beside a writer at %.0f events/s", res.RebuildEvents, res.RebuildS, res.RebuildWriteRate)

	lagFor := 10 * time.Second
	if cfg.quick {
		lagFor = 3 * time.Second
	}
	for _, rate := range []float64{1000, 5000} {
		lag, err := measureLag(ctx, lr, w, rate, lagFor)
		if err != nil {
			return nil, err
		}
		res.Lags = append(res.Lags, lag)
		log.Printf("projection: lag at %.0f events/s written: mean %.0f, p99 %.0f, max %.0f", lag.Written, lag.Mean, lag.P99, lag.Max)
	}
	stopLive()
	if err := <-liveErr; err != nil && !errors.Is(err, context.Canceled) {
		return nil, fmt.Errorf("live projection: %w", err)
	}
	return res, nil
}

// benchHandlers is the projection the section measures: an upsert per
// event into table t.
func benchHandlers(reg *event.Registry, t string) *event.HandlersWith[pgx.Tx] {
	h := event.NewHandlersWith[pgx.Tx](reg)
	upsert := `INSERT INTO ` + t + ` (id, balance, deposits, version) VALUES ($1, $2, 1, $3)
		ON CONFLICT (id) DO UPDATE SET balance = ` + t + `.balance + excluded.balance, deposits = ` + t + `.deposits + 1, version = excluded.version`
	if err := event.AddHandlerWith(h, func(ctx context.Context, tx pgx.Tx, env *event.Envelope, e Deposited) error {
		_, err := tx.Exec(ctx, upsert, env.AggregateID, e.Amount, int64(env.Version))
		return err
	}); err != nil {
		panic(err)
	}
	return h
}

// bareProjection is what a hand-written projection does with the same
// statements: the same batches, decoded and dispatched by the same
// handlers, one transaction per batch with the rows and an upsert of the
// partition's offset, without claims, checks or failure handling.
func bareProjection(ctx context.Context, p provider.Provider, pool *pgxpool.Pool, reg *event.Registry, t string, n int) (float64, error) {
	if _, err := pool.Exec(ctx, `CREATE TABLE `+t+`_offsets (partition int PRIMARY KEY, next bigint NOT NULL)`); err != nil {
		return 0, err
	}
	defer pool.Exec(context.Background(), `DROP TABLE `+t+`_offsets`) //nolint:errcheck // a leftover table of a bench run
	h := benchHandlers(reg, t)
	upsert := `INSERT INTO ` + t + `_offsets VALUES ($1, $2) ON CONFLICT (partition) DO UPDATE SET next = excluded.next`
	start := time.Now()
	err := consume.Stream(ctx, p, consume.Replay, consume.StreamOptions{BatchSize: projectionBatch}, func(b provider.Batch) error {
		return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, upsert, b.Partition, b.Next); err != nil {
				return err
			}
			for _, rec := range b.Records {
				if _, err := h.Handle(ctx, tx, rec); err != nil {
					return err
				}
			}
			return nil
		})
	})
	return float64(n) / time.Since(start).Seconds(), err
}

// benchWriter appends events that continue the seeded workload (each
// aggregate's versions in order) at a given rate.
type benchWriter struct {
	p          *franz.Provider
	reg        *event.Registry
	next       int
	aggregates int
}

// run writes at rate events/s, in batches every 10 ms, until the returned
// stop, which says how many events were written per second.
func (w *benchWriter) run(ctx context.Context, rate float64) (stop func() (float64, error)) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	start := time.Now()
	written := 0
	go func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				done <- nil
				return
			case <-tick.C:
			}
			due := int(rate*time.Since(start).Seconds()) - written
			if due <= 0 {
				continue
			}
			recs := make([]event.Record, 0, due)
			for range due {
				rec, err := eventRecord(w.reg, w.next, w.aggregates)
				if err != nil {
					done <- err
					return
				}
				w.next++
				recs = append(recs, rec)
			}
			if _, err := w.p.Append(ctx, recs); err != nil {
				if ctx.Err() != nil {
					done <- nil
				} else {
					done <- err
				}
				return
			}
			written += due
		}
	}()
	return func() (float64, error) {
		cancel()
		err := <-done
		return float64(written) / time.Since(start).Seconds(), err
	}
}

// measureLag samples the live projection's lag every 100 ms for d while w
// writes at rate.
func measureLag[Tx any](ctx context.Context, r *projection.Runner[Tx], w *benchWriter, rate float64, d time.Duration) (lagResult, error) {
	stop := w.run(ctx, rate)
	var samples []float64
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for end := time.Now().Add(d); time.Now().Before(end); {
		<-tick.C
		lag, err := r.Lag(ctx)
		if err != nil {
			_, _ = stop()
			return lagResult{}, err
		}
		var total int64
		for _, l := range lag {
			total += l
		}
		samples = append(samples, float64(total))
	}
	written, err := stop()
	if err != nil {
		return lagResult{}, err
	}
	sort.Float64s(samples)
	var sum float64
	for _, s := range samples {
		sum += s
	}
	return lagResult{Rate: rate, Written: written, Samples: len(samples), Mean: sum / float64(len(samples)),
		P99: samples[min(len(samples)-1, len(samples)*99/100)], Max: samples[len(samples)-1]}, nil
}
