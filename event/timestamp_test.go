package event

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// FuzzParseTime checks the fast path against time.Parse: whatever it
// accepts, time.Parse accepts as the same instant, in UTC.
func FuzzParseTime(f *testing.F) {
	for _, s := range []string{
		"2026-12-07T17:20:01.123456789Z", "2026-12-07T17:20:01Z", "2024-02-29T00:00:00.5Z",
		"0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999999Z", "2023-02-29T00:00:00Z",
		"2026-12-07T17:20:01.Z", "2026-12-07T24:00:00Z", "2026-12-07T17:20:01+01:00", "2026-13-01T00:00:00Z",
		"2026-12-07T17:20:60Z", "0000-01-01T00:00:00Z", "2026-12-07T17:20:01.1234567890Z", "2026-12-07t17:20:01z",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		fast, ok := parseUTC([]byte(s))
		if !ok {
			return
		}
		want, err := time.Parse(time.RFC3339Nano, s)
		require.NoError(t, err, "%q: accepted by the fast path only", s)
		require.Equal(t, want.UTC(), fast, "%q", s)
	})
}

// TestParseTimeTakesWhatRecordWrites checks that the times Record writes
// take the fast path and come back as they were: random instants from
// year 1 to 9999, at every precision.
func TestParseTimeTakesWhatRecordWrites(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	lo, hi := time.Date(1, 1, 1, 0, 0, 0, 0, time.UTC).Unix(), time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC).Unix()
	for i := range 100_000 {
		want := time.Unix(lo+rng.Int64N(hi-lo), rng.Int64N(1e9)).UTC()
		if i%3 == 0 {
			want = want.Truncate(time.Duration(rng.IntN(10) * int(time.Millisecond)))
		}
		s := want.AppendFormat(nil, time.RFC3339Nano)
		got, ok := parseUTC(s)
		require.True(t, ok, "%s left to time.Parse", s)
		require.Equal(t, want, got, "%s", s)
	}
}
