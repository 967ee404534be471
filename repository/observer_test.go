package repository_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rehydrate/rehydrate/repository"
	rt "github.com/rehydrate/rehydrate/repository/repositorytest"
)

// recorder is an Observer that writes down what it is told.
type recorder struct {
	name string
	mu   sync.Mutex
	log  []string
}

func (r *recorder) note(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.log = append(r.log, s)
}

func (r *recorder) Command(ctx context.Context, id string, _ bool) (context.Context, func(int, error)) {
	r.note("command " + id)
	return ctx, func(events int, err error) { r.note("command done") }
}

func (r *recorder) Append(ctx context.Context, _ int32, _ int) (context.Context, func(error)) {
	r.note("append")
	return ctx, func(error) { r.note("append done") }
}

func (r *recorder) Restore(ctx context.Context, _ []int32) (context.Context, func(int64, error)) {
	r.note("restore")
	return ctx, func(int64, error) { r.note("restore done") }
}

func (r *recorder) Snapshot(int32, int64, int, time.Duration, error) { r.note("snapshot") }

func (r *recorder) InjectMetadata(_ context.Context, md map[string]string) {
	md["seen-by-"+r.name] = "yes"
}

func TestObserversAreToldInOrder(t *testing.T) {
	a, b := &recorder{name: "a"}, &recorder{name: "b"}
	r := rt.Restored(t, newMemory(t, 1), repository.WithObserver(repository.Observers(a, b)))
	res, err := r.Create(t.Context(), "x", rt.Open("ada"))
	require.NoError(t, err)
	want := []string{"restore", "restore done", "command x", "append", "append done", "command done"}
	assert.Equal(t, want, a.log)
	assert.Equal(t, want, b.log)
	assert.Equal(t, "yes", res.Events[0].Metadata["seen-by-a"])
	assert.Equal(t, "yes", res.Events[0].Metadata["seen-by-b"])
}
