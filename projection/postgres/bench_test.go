package postgres_test

import (
	"context"
	"strconv"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/rehydrate/rehydrate/consume"
	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/projection"
	"github.com/rehydrate/rehydrate/provider"
	"github.com/rehydrate/rehydrate/provider/memory"
)

const benchBatch = 500

// benchTopic fills a memory topic of 4 partitions with n events over 10 000
// aggregates: the read side is the same for both benchmarks, so the
// difference is the runner's.
func benchTopic(b *testing.B, f *fixture, n int) *memory.Provider {
	b.Helper()
	p, err := memory.New(4)
	require.NoError(b, err)
	versions := map[string]uint64{}
	for start := 0; start < n; start += 10_000 {
		recs := make([]event.Record, 0, 10_000)
		for i := start; i < min(n, start+10_000); i++ {
			id := "a" + strconv.Itoa(i%10_000)
			versions[id]++
			env, err := f.reg.NewEnvelope(id, versions[id], counted{N: i})
			require.NoError(b, err)
			recs = append(recs, env.Record())
		}
		_, err := p.Append(b.Context(), recs)
		require.NoError(b, err)
	}
	return p
}

// BenchmarkProjection applies b.N events (one op is one event) with the
// runner: one transaction per batch of 500 with its checkpoint's
// compare-and-set. Run with -benchtime=1000000x for the README's figure.
func BenchmarkProjection(b *testing.B) {
	f := newFixture(b)
	p := benchTopic(b, f, b.N)
	r, err := projection.New(projection.Config[pgx.Tx]{Name: "bench", Provider: p, Store: f.store, Handler: f.handlers(b, f.table, nil), BatchSize: benchBatch})
	require.NoError(b, err)
	b.ResetTimer()
	require.NoError(b, r.Run(b.Context()))
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}

// BenchmarkBareLoop is what a hand-written projection does with the same
// statements: read the same batches, decode and dispatch with the same
// handlers, and per batch one transaction with the rows and an upsert of
// the partition's offset, without claims, checks or failure handling.
func BenchmarkBareLoop(b *testing.B) {
	f := newFixture(b)
	p := benchTopic(b, f, b.N)
	h := f.handlers(b, f.table, nil)
	_, err := f.pool.Exec(b.Context(), `CREATE TABLE `+f.table+`_offsets (partition int PRIMARY KEY, next bigint NOT NULL)`)
	require.NoError(b, err)
	b.Cleanup(func() { _, _ = f.pool.Exec(context.Background(), `DROP TABLE `+f.table+`_offsets`) })
	upsert := `INSERT INTO ` + f.table + `_offsets VALUES ($1, $2) ON CONFLICT (partition) DO UPDATE SET next = excluded.next`
	b.ResetTimer()
	err = consume.Stream(b.Context(), p, consume.Replay, consume.StreamOptions{BatchSize: benchBatch}, func(batch provider.Batch) error {
		return pgx.BeginFunc(b.Context(), f.pool, func(tx pgx.Tx) error {
			if _, err := tx.Exec(b.Context(), upsert, batch.Partition, batch.Next); err != nil {
				return err
			}
			for _, rec := range batch.Records {
				if _, err := h.Handle(b.Context(), tx, rec); err != nil {
					return err
				}
			}
			return nil
		})
	})
	require.NoError(b, err)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
