package kafkatest

import (
	crand "crypto/rand"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/provider"
	"github.com/rehydrate/rehydrate/provider/kafkaconfig"
)

// RecordBesideOneTooLarge tests a provider opened with open: a small record
// that shares its batch with one above the topic's max.message.bytes is
// refused by the broker with it, and must fail unavailable (not written,
// worth a retry), while the big one is refused for what it is. The fault
// suite's TestOversizeRecordIsRefused met it by chance; the linger here
// makes the two appends share a batch.
func RecordBesideOneTooLarge[P interface {
	provider.Provider
	provider.PartitionAppender
}](t *testing.T, open func(kafkaconfig.Config) (P, error)) {
	cfg := Config(t, 1, map[string]string{"max.message.bytes": "65536"})
	cfg.Linger = 300 * time.Millisecond
	p, err := open(cfg)
	require.NoError(t, err)
	defer p.Close()

	value := make([]byte, 100<<10) // incompressible: the batch is compressed
	_, _ = crand.Read(value)
	big := event.Record{Key: []byte("big"), Value: value}
	small := event.Record{Key: []byte("small"), Value: []byte("x")}
	const tooLarge = `(?i)(too.large|larger than)`

	var bigErr, smallErr error
	var wg sync.WaitGroup
	wg.Go(func() { _, bigErr = p.AppendPartition(t.Context(), 0, []event.Record{big}) })
	wg.Go(func() { _, smallErr = p.AppendPartition(t.Context(), 0, []event.Record{small}) })
	wg.Wait()
	require.Error(t, bigErr)
	assert.NotErrorIs(t, bigErr, provider.ErrUnavailable, "a retry of the big record changes nothing")
	assert.NotErrorIs(t, bigErr, provider.ErrOutcomeUnknown)
	assert.Regexp(t, tooLarge, bigErr.Error())
	require.Error(t, smallErr, "the two appends were to share one batch")
	assert.ErrorIs(t, smallErr, provider.ErrUnavailable, "the small record fits alone")
	assert.NotErrorIs(t, smallErr, provider.ErrOutcomeUnknown, "the broker refused its batch: not written")

	// One append of both: refused for the big record, whichever failed first.
	_, err = p.AppendPartition(t.Context(), 0, []event.Record{small, big})
	require.Error(t, err)
	assert.NotErrorIs(t, err, provider.ErrUnavailable)
	assert.Regexp(t, `record 2 of 2: .*`+tooLarge, err.Error())

	// Alone, the small record is written: nothing before it was.
	pos, err := p.AppendPartition(t.Context(), 0, []event.Record{small})
	require.NoError(t, err)
	assert.Equal(t, int64(0), pos[0].Offset)
}
