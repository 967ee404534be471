package repository

import (
	"fmt"
	"testing"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/provider"
	"github.com/rehydrate/rehydrate/provider/memory"
)

// BenchmarkApplyRecords measures what a restore spends per event besides
// the read, on one goroutine: parsing a record's headers, decoding its
// msgpack payload, finding or creating its aggregate and running its
// handler. The events are the example writer's (UserCreated, then
// UserModified, two strings each, with an aggregate type), 10 events per
// aggregate, applied in batches of 1000 to a partition that starts empty,
// as in a restore without snapshots.
func BenchmarkApplyRecords(b *testing.B) {
	type names struct {
		FirstName string `json:"first_name"`
		LastName  string `json:"last_name"`
	}
	type created names
	type modified names
	reg := event.NewRegistry()
	if err := event.Register[created](reg, "UserCreated"); err != nil {
		b.Fatal(err)
	}
	if err := event.Register[modified](reg, "UserModified"); err != nil {
		b.Fatal(err)
	}
	p, err := memory.New(1)
	if err != nil {
		b.Fatal(err)
	}
	r, err := New[names](p, reg,
		On(func(u *names, e created) { *u = names(e) }),
		On(func(u *names, e modified) { *u = names(e) }),
		WithAggregateType("user"))
	if err != nil {
		b.Fatal(err)
	}
	const events, aggregates, batch = 100_000, 10_000, 1000
	recs := make([]event.Record, events)
	for i := range recs {
		var payload any = modified{FirstName: "Ada", LastName: fmt.Sprintf("Lovelace-%d", i)}
		if i < aggregates {
			payload = created{FirstName: "Ada", LastName: fmt.Sprintf("Lovelace-%d", i)}
		}
		env, err := reg.NewEnvelope(fmt.Sprintf("user-%07d", i%aggregates), uint64(i/aggregates+1), payload)
		if err != nil {
			b.Fatal(err)
		}
		env.AggregateType = "user"
		recs[i] = env.Record()
		recs[i].Offset = int64(i)
	}
	if err := r.makePartitions(1); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		pt := &partition[names]{aggs: make(map[string]*entry[names]), held: &r.held}
		var c readCounts
		for i := 0; i < events; i += batch {
			rb := provider.Batch{Records: recs[i : i+batch], Next: int64(i + batch)}
			if err := r.applyBatch(pt, rb, &c, false); err != nil {
				b.Fatal(err)
			}
		}
		if c.events != events {
			b.Fatalf("applied %d events, want %d", c.events, events)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*events), "ns/event")
}
