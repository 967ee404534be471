package kafkaconfig

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestLosses covers the configurations brokers give that the integration
// tests cannot set up: values missing, malformed, or an empty policy.
func TestLosses(t *testing.T) {
	topic := func(kv ...string) map[string]Setting {
		m := make(map[string]Setting)
		for i := 0; i < len(kv); i += 2 {
			m[kv[i]] = Setting{Value: kv[i+1], From: "set on the topic"}
		}
		return m
	}
	for _, tc := range []struct {
		name    string
		configs map[string]Setting
		want    []string // names of the settings refused
	}{
		{"kept", topic("cleanup.policy", "delete", "retention.ms", "-1", "retention.bytes", "-1"), nil},
		{"expiring", topic("cleanup.policy", "delete", "retention.ms", "0", "retention.bytes", "-1"), []string{"retention.ms"}},
		{"size limited", topic("cleanup.policy", "delete", "retention.ms", "-1", "retention.bytes", "0"), []string{"retention.bytes"}},
		{"compacted, retention unused yet", topic("cleanup.policy", "compact", "retention.ms", "604800000", "retention.bytes", "-1"),
			[]string{"cleanup.policy", "retention.ms"}},
		{"policy in another case and spacing", topic("cleanup.policy", "Delete, COMPACT", "retention.ms", "-1", "retention.bytes", "-1"),
			[]string{"cleanup.policy"}},
		{"no policy reported means delete", topic("retention.ms", "3600000", "retention.bytes", "-1"), []string{"retention.ms"}},
		{"retention not reported", topic("cleanup.policy", "delete"), []string{"retention.ms", "retention.bytes"}},
		{"retention not a number", topic("cleanup.policy", "delete", "retention.ms", "forever", "retention.bytes", "-1"), []string{"retention.ms"}},
		// Recent Kafka versions accept an empty policy: infinite
		// retention, whatever the retention settings.
		{"empty policy", topic("cleanup.policy", "", "retention.ms", "604800000", "retention.bytes", "-1"), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var got []string
			for _, l := range Losses(tc.configs) {
				got = append(got, l.Name)
				assert.NotEmpty(t, l.Why)
				assert.NotEmpty(t, l.Keep)
			}
			assert.Equal(t, tc.want, got)
		})
	}
}

func TestAge(t *testing.T) {
	assert.Equal(t, "7 days", age(7*24*3600e9))
	assert.Equal(t, "1 day", age(24*3600e9))
	assert.Equal(t, "36h0m0s", age(36*3600e9))
	assert.Equal(t, "0s", age(0))
}
