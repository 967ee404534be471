package repository_test

import (
	"context"
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/provider"
	rt "github.com/rehydrate/rehydrate/repository/repositorytest"
)

// TestRestoreKeepsNoRecordBytes: a restored repository must not keep the
// memory its records were read from. franz-go's records are slices of whole
// fetch responses (megabytes): an aggregate, an id or a pooled decoder
// holding on to one record keeps its whole response alive, which is what a
// restore through provider/franz once did.
func TestRestoreKeepsNoRecordBytes(t *testing.T) {
	p, released := newBufferProvider(t)
	r := rt.NewRepository(t, p)
	stats, err := r.Restore(t.Context())
	require.NoError(t, err)
	require.Equal(t, 100, stats.Aggregates)
	// One collection only: sync.Pool lets go of what it holds at the
	// second, which would hide a pooled decoder that keeps a record.
	runtime.GC()
	select {
	case <-released:
	case <-time.After(5 * time.Second):
		t.Fatal("the buffer the records were read from is still reachable after the restore")
	}
	acct, _, err := r.Get("acct-7")
	require.NoError(t, err)
	require.Equal(t, "owner-acct-7", acct.Owner)
}

// bufferProvider serves records whose bytes all lie in one buffer, as a
// fetch response's do, once: it drops them after the read.
type bufferProvider struct {
	provider.Provider
	records []event.Record
}

// newBufferProvider returns a provider of 100 aggregates' events, and a
// channel closed once their buffer is garbage.
func newBufferProvider(t *testing.T) (*bufferProvider, <-chan struct{}) {
	reg := rt.Registry(t)
	var records []event.Record
	size := 1 << 20 // a response's worth, beyond the records
	for i := range 100 {
		id := fmt.Sprintf("acct-%d", i)
		for v, payload := range []any{rt.Opened{Owner: "owner-" + id}, rt.Deposited{Amount: 5}} {
			env, err := reg.NewEnvelope(id, uint64(v+1), payload)
			require.NoError(t, err)
			rec := env.Record()
			rec.Offset = int64(len(records))
			records = append(records, rec)
			size += len(rec.Key) + len(rec.Value)
			for _, h := range rec.Headers {
				size += len(h.Value)
			}
		}
	}
	buf := make([]byte, 0, size)
	carve := func(b []byte) []byte {
		buf = append(buf, b...)
		return buf[len(buf)-len(b) : len(buf) : len(buf)]
	}
	for i := range records {
		rec := &records[i]
		rec.Key, rec.Value = carve(rec.Key), carve(rec.Value)
		for j := range rec.Headers {
			rec.Headers[j].Value = carve(rec.Headers[j].Value)
		}
	}
	released := make(chan struct{})
	runtime.AddCleanup(&buf[0], func(ch chan struct{}) { close(ch) }, released)
	return &bufferProvider{Provider: newMemory(t, 1), records: records}, released
}

func (p *bufferProvider) Partitions(context.Context) ([]provider.Partition, error) {
	return []provider.Partition{{ID: 0, High: int64(len(p.records))}}, nil
}

func (p *bufferProvider) Read(_ context.Context, _ []provider.Range, _ int, fn func(provider.Batch) error) error {
	b := provider.Batch{Partition: 0, Records: p.records, Next: int64(len(p.records))}
	p.records = nil
	return fn(b)
}
