package repositorytest

import (
	"context"
	"fmt"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/provider"
)

// BenchmarkExecute measures Execute on existing aggregates of p's empty
// topic at concurrency 1, 16 and 64 (goroutines, whatever GOMAXPROCS is).
func BenchmarkExecute(b *testing.B, p provider.Provider) {
	const accounts = 1000
	r := Restored(b, p)
	ctx := context.Background()
	for i := range accounts {
		if _, err := r.Create(ctx, fmt.Sprint("acct-", i), Open("owner")); err != nil {
			b.Fatal(err)
		}
	}
	for _, concurrency := range []int{1, 16, 64} {
		b.Run(fmt.Sprint("concurrency=", concurrency), func(b *testing.B) {
			b.SetParallelism((concurrency + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
			var next atomic.Int64
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					id := fmt.Sprint("acct-", next.Add(1)%accounts)
					if _, err := r.Execute(ctx, id, Deposit(1)); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}

// BenchmarkRestore measures restoring events events over events/10
// aggregates from p's empty topic, which it fills first.
func BenchmarkRestore(b *testing.B, p provider.Provider, events int) {
	ctx := context.Background()
	reg := Registry(b)
	const chunk = 5000
	recs := make([]event.Record, 0, chunk)
	aggregates := max(events/10, 1)
	for i := range events {
		var payload any = Deposited{Amount: int64(i%100 + 1)}
		if i < aggregates {
			payload = Opened{Owner: "owner"}
		}
		env, err := reg.NewEnvelope(fmt.Sprintf("acct-%07d", i%aggregates), uint64(i/aggregates+1), payload)
		if err != nil {
			b.Fatal(err)
		}
		recs = append(recs, env.Record())
		if len(recs) == chunk || i == events-1 {
			if _, err := p.Append(ctx, recs); err != nil {
				b.Fatal(err)
			}
			recs = recs[:0]
		}
	}
	b.ResetTimer()
	for b.Loop() {
		r := NewRepository(b, p)
		stats, err := r.Restore(ctx)
		if err != nil {
			b.Fatal(err)
		}
		if stats.Events != int64(events) {
			b.Fatalf("restored %d events, want %d", stats.Events, events)
		}
		b.ReportMetric(stats.EventsPerSecond(), "events/s")
	}
}
