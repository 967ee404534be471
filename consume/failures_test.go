package consume_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rehydrate/rehydrate/consume"
	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/provider"
	"github.com/rehydrate/rehydrate/provider/memory"
)

// failOn is a handler that fails on the record with key bad, times times
// (forever when times < 0), and counts what it handled.
type failOn struct {
	bad     string
	times   int
	failed  atomic.Int32
	handled []string
}

func (h *failOn) handle(rec event.Record) error {
	if string(rec.Key) == h.bad && (h.times < 0 || int(h.failed.Load()) < h.times) {
		h.failed.Add(1)
		return errors.New("projection store down")
	}
	h.handled = append(h.handled, string(rec.Key))
	return nil
}

func streamAll(t *testing.T, p provider.Provider, fn func(provider.Batch) error) error {
	return consume.Stream(t.Context(), p, consume.Replay, consume.StreamOptions{}, fn)
}

func threeRecords(t *testing.T) *memory.Provider {
	p, err := memory.New(1)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	appendN(t, p, "k", 3) // keys k-0, k-1, k-2
	return p
}

func TestEachRecordRetriesThenRecovers(t *testing.T) {
	p := threeRecords(t)
	h := &failOn{bad: "k-1", times: 2}
	var retries atomic.Int32
	err := streamAll(t, p, consume.EachRecord(t.Context(), consume.Failures{
		Retries: 3, Backoff: time.Millisecond,
		OnRetry: func(event.Record, error) { retries.Add(1) },
	}, h.handle))
	require.NoError(t, err)
	assert.Equal(t, []string{"k-0", "k-1", "k-2"}, h.handled)
	assert.EqualValues(t, 2, retries.Load())
}

func TestEachRecordStopsNamingTheRecord(t *testing.T) {
	p := threeRecords(t)
	h := &failOn{bad: "k-1", times: -1}
	err := streamAll(t, p, consume.EachRecord(t.Context(), consume.Failures{Retries: 2, Backoff: time.Millisecond}, h.handle))
	var re *event.RecordError
	require.ErrorAs(t, err, &re)
	assert.Equal(t, int64(1), re.Offset)
	assert.ErrorContains(t, err, "after 3 attempts: projection store down")
	assert.Equal(t, []string{"k-0"}, h.handled, "nothing after the record")
}

func TestEachRecordDeadLettersAndGoesOn(t *testing.T) {
	p := threeRecords(t)
	dlq, err := memory.New(1)
	require.NoError(t, err)
	defer dlq.Close()
	h := &failOn{bad: "k-1", times: -1}
	var dead atomic.Int32
	err = streamAll(t, p, consume.EachRecord(t.Context(), consume.Failures{
		Retries: 1, Backoff: time.Millisecond, DeadLetter: dlq,
		OnDeadLetter: func(event.Record, error) { dead.Add(1) },
	}, h.handle))
	require.NoError(t, err)
	assert.Equal(t, []string{"k-0", "k-2"}, h.handled, "the stream goes on")
	assert.EqualValues(t, 1, dead.Load())

	var got []event.Record
	require.NoError(t, streamAll(t, dlq, func(b provider.Batch) error { got = append(got, b.Records...); return nil }))
	require.Len(t, got, 1)
	assert.Equal(t, "k-1", string(got[0].Key))
	assert.Equal(t, "v", string(got[0].Value))
	headers := map[string]string{}
	for _, h := range got[0].Headers {
		headers[h.Key] = string(h.Value)
	}
	assert.Equal(t, "projection store down", headers[consume.HeaderDeadLetterError])
	assert.Equal(t, "0", headers[consume.HeaderDeadLetterPartition])
	assert.Equal(t, "1", headers[consume.HeaderDeadLetterOffset])
	assert.Equal(t, "2", headers[consume.HeaderDeadLetterAttempts])
}

func TestEachRecordBackoffEndsWithTheContext(t *testing.T) {
	p := threeRecords(t)
	ctx, cancel := context.WithCancel(t.Context())
	h := &failOn{bad: "k-0", times: -1}
	err := consume.Stream(t.Context(), p, consume.Replay, consume.StreamOptions{}, consume.EachRecord(ctx, consume.Failures{
		Retries: 5, Backoff: time.Hour, OnRetry: func(event.Record, error) { cancel() },
	}, h.handle))
	require.ErrorIs(t, err, context.Canceled)
}
