package users

import (
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rehydrate/rehydrate/event"
)

func TestValidateNames(t *testing.T) {
	for _, tc := range []struct {
		first, last string
		problems    []string
	}{
		{"Ada", "Lovelace", nil},
		{" Ada ", "Lovelace", nil},
		{strings.Repeat("é", 100), "x", nil},
		{strings.Repeat("é", 101), "x", []string{"first_name: must be at most 100 characters"}},
		{"", "  ", []string{"first_name: is required", "last_name: is required"}},
		{"A\x00", "B\u0085", []string{"first_name: must not contain control characters", "last_name: must not contain control characters"}},
		{"A\xff", "B", []string{"first_name: must be valid UTF-8"}},
	} {
		err := ValidateNames(tc.first, tc.last)
		if tc.problems == nil {
			assert.NoError(t, err, "%q %q", tc.first, tc.last)
			continue
		}
		var v ValidationError
		require.ErrorAs(t, err, &v)
		assert.Equal(t, strings.Join(tc.problems, "; "), v.Error())
	}
}

func TestInvalidEventsCannotBeEncoded(t *testing.T) {
	reg, err := Registry()
	require.NoError(t, err)
	_, err = reg.NewEnvelope("id", 1, Created{FirstName: "", LastName: "B"})
	assert.ErrorIs(t, err, event.ErrInvalid)
	var v ValidationError
	assert.True(t, errors.As(err, &v))
	_, err = reg.NewEnvelope("id", 2, Modified{FirstName: "A", LastName: "B"})
	assert.NoError(t, err)
}
