package projections_test

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/rehydrate/rehydrate/consume"
	"github.com/rehydrate/rehydrate/projection"
	"github.com/rehydrate/rehydrate/projection/postgres"
)

// BenchmarkLiveLag measures the lag (offsets between the checkpoints and the
// partitions' ends) a following reader keeps while a writer appends about
// 4 000 events/s (batches of 20 every 5 ms) for 10 s, sampled every 100 ms:
// go test -run '^$' -bench LiveLag -benchtime=1x ./internal/projections/
// (with PROJECTION_LONG_TESTS=1, DATABASE_URL and KAFKA_BROKERS).
func BenchmarkLiveLag(b *testing.B) {
	w := newWorld(b, 4)
	store, err := postgres.New(b.Context(), w.db, postgres.WithTable(w.cps))
	require.NoError(b, err)
	r, err := projection.New(projection.Config[pgx.Tx]{
		Name: "users", Provider: w.p, Store: store, Handler: handlers(w.reg, w.table), Mode: consume.ReplayThenFollow, BatchSize: 500,
	})
	require.NoError(b, err)
	ctx, cancel := context.WithCancel(b.Context())
	defer cancel()
	errc := make(chan error, 1)
	go func() { errc <- r.Run(ctx) }()
	<-r.CaughtUp()
	stop := w.load()
	var samples, sum, most int64
	start := time.Now()
	for time.Since(start) < 10*time.Second {
		time.Sleep(100 * time.Millisecond) // the sampling period
		lag, err := r.Lag(b.Context())
		require.NoError(b, err)
		var total int64
		for _, l := range lag {
			total += l
		}
		samples++
		sum += total
		most = max(most, total)
	}
	stop()
	var written int
	w.mu.Lock()
	written = w.model["_seq"]
	w.mu.Unlock()
	cancel()
	<-errc
	b.ReportMetric(float64(written)/time.Since(start).Seconds(), "written/s")
	b.ReportMetric(float64(sum)/float64(samples), "mean-lag")
	b.ReportMetric(float64(most), "max-lag")
}
