package repository

import (
	"bytes"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rehydrate/rehydrate/snapshot"
)

func TestSnapshotEntriesRoundTrip(t *testing.T) {
	want := []snapshotEntry{
		{ID: "a", Version: 3, Offset: 10, State: []byte("s1")},
		{ID: "deleted", Version: 9, Offset: 1 << 40, Deleted: true},
		{ID: "an-account", Offset: 3, OtherType: "account"},
		{ID: strings.Repeat("x", 300), Version: 1 << 62, Offset: 0, State: bytes.Repeat([]byte{0}, 1000)},
		{ID: "last", Version: 1, Offset: -1, State: []byte("s")},
	}
	var buf []byte
	ends := make(map[int]int) // the end of each entry → entries up to it
	for i, e := range want {
		buf = appendEntry(buf, e)
		ends[len(buf)] = i + 1
	}
	decode := func(data []byte) ([]snapshotEntry, error) {
		var got []snapshotEntry
		for e, err := range snapshotEntries(data) {
			if err != nil {
				return got, err
			}
			if len(e.State) == 0 {
				e.State = nil
			}
			got = append(got, e)
		}
		return got, nil
	}
	got, err := decode(buf)
	require.NoError(t, err)
	assert.Equal(t, want, got)

	// Every cut: at the end of an entry, a shorter valid sequence; anywhere
	// else, corrupt after the whole entries before it. A decoder that takes
	// a truncated entry for a whole one fails here.
	whole := 0 // entries before the cut
	for cut := range len(buf) {
		got, err := decode(buf[:cut])
		if n, between := ends[cut]; between || cut == 0 {
			whole = n
			require.NoError(t, err, "cut at %d, after %d entries", cut, n)
			require.Equal(t, want[:n], append([]snapshotEntry{}, got...), "cut at %d", cut)
			continue
		}
		require.ErrorIs(t, err, snapshot.ErrCorrupt, "cut at %d, inside entry %d", cut, whole+1)
		require.Equal(t, want[:whole], append([]snapshotEntry{}, got...), "cut at %d: the whole entries before it", cut)
	}
}

func FuzzSnapshotEntries(f *testing.F) {
	f.Add(appendEntry(nil, snapshotEntry{ID: "a", Version: 1, State: []byte("x")}))
	f.Add([]byte{1, 'a', 1, 0, 2, 5})
	f.Fuzz(func(t *testing.T, data []byte) {
		size := 0
		for e, err := range snapshotEntries(data) {
			if err != nil {
				require.ErrorIs(t, err, snapshot.ErrCorrupt)
				return
			}
			require.NotEmpty(t, e.ID)
			size += len(e.ID) + len(e.State)
		}
		require.LessOrEqual(t, size, len(data))
	})
}
