package kafkaconfig_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/provider/kafkaconfig"
)

func TestMessageLimitRefine(t *testing.T) {
	errTooLarge := errors.New("too large")
	tooLarge := func(err error) bool { return errors.Is(err, errTooLarge) }
	other := errors.New("other")
	fits := event.Record{Key: []byte("k"), Value: make([]byte, 1000-kafkaconfig.AloneBytes(event.Record{Key: []byte("k")}))}
	over := event.Record{Key: []byte("k"), Value: make([]byte, len(fits.Value)+1)}
	records := []event.Record{fits, over, fits, fits}
	asks := 0
	describe := func(context.Context) (map[string]kafkaconfig.Setting, error) {
		asks++
		return map[string]kafkaconfig.Setting{"max.message.bytes": {Value: "1000"}}, nil
	}

	var l kafkaconfig.MessageLimit
	errs := []error{errTooLarge, errTooLarge, other, nil}
	l.Refine(records, errs, tooLarge, 1_000_000, describe)
	assert.True(t, kafkaconfig.IsBatchRefused(errs[0]), "a record of exactly the limit fits alone")
	assert.ErrorIs(t, errs[1], errTooLarge, "a record one byte over keeps its refusal")
	assert.False(t, kafkaconfig.IsBatchRefused(errs[1]))
	assert.Equal(t, []error{other, nil}, errs[2:], "other errors are left alone")
	assert.Equal(t, 1, kafkaconfig.FirstError(errs), "a record refused for what it is comes first")

	l.Refine(records, []error{errTooLarge}, tooLarge, 1_000_000, describe)
	assert.Equal(t, 1, asks, "the limit is kept")
	l.Refine(records, []error{nil, other}, tooLarge, 1_000_000, describe)
	assert.Equal(t, 1, asks, "nothing asked without a refusal")

	var low kafkaconfig.MessageLimit
	errs = []error{errTooLarge}
	low.Refine(records, errs, tooLarge, 999, describe)
	assert.False(t, kafkaconfig.IsBatchRefused(errs[0]), "the client's own limit counts")

	var unknown kafkaconfig.MessageLimit
	errs = []error{errTooLarge}
	unknown.Refine(records, errs, tooLarge, 1_000_000, func(context.Context) (map[string]kafkaconfig.Setting, error) {
		return nil, errors.New("no DescribeConfigs right")
	})
	assert.Equal(t, []error{errTooLarge}, errs, "without the limit the refusal stays")
	assert.Equal(t, -1, kafkaconfig.FirstError([]error{nil}))
}
