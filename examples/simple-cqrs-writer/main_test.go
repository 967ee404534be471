package main

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestConfigOfTheHardening(t *testing.T) {
	for _, tc := range []struct{ key, value, errorHas string }{
		{"READ_HEADER_TIMEOUT", "0s", "positive Go duration"},
		{"READ_HEADER_TIMEOUT", "5", "positive Go duration"},
		{"WRITER_TOKEN", "two words", "RFC 6750"},
		{"WRITER_TOKEN", "token\n", "RFC 6750"},
		{"WRITER_TOKEN", "to=ken", "RFC 6750"},
	} {
		t.Run(tc.key+"="+tc.value, func(t *testing.T) {
			t.Setenv(tc.key, tc.value)
			_, err := loadConfig()
			require.ErrorContains(t, err, tc.errorHas)
			if tc.key == "WRITER_TOKEN" {
				assert.NotContains(t, err.Error(), tc.value, "the error is logged: it must not hold the token")
			}
		})
	}
	t.Setenv("WRITER_TOKEN", "0123abcXYZ-._~+/==")
	t.Setenv("READ_HEADER_TIMEOUT", "250ms")
	c, err := loadConfig()
	require.NoError(t, err)
	assert.Equal(t, "0123abcXYZ-._~+/==", c.token)
	assert.Equal(t, 250*time.Millisecond, c.readHeaderTimeout)
}
