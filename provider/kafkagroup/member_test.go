package kafkagroup

import (
	"context"
	"io"
	"log/slog"
	"testing"
)

func TestMayRejoin(t *testing.T) {
	others := []Assignment{{MemberID: "b-1", InstanceID: "b"}, {MemberID: "dyn-1"}}
	for _, tc := range []struct {
		name    string
		members []Assignment
		last    string
		want    bool
	}{
		{"the name held under our last id: the client fenced itself", append(others, Assignment{MemberID: "a-1", InstanceID: "a"}), "a-1", true},
		{"the name held by nobody", others, "a-1", true},
		{"the name held by nobody, never assigned", others, "", true},
		{"the name held under another id: another process", append(others, Assignment{MemberID: "a-2", InstanceID: "a"}), "a-1", false},
		{"the name held, and we never had an id", append(others, Assignment{MemberID: "a-2", InstanceID: "a"}), "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := MayRejoin(tc.members, "a", tc.last); got != tc.want {
				t.Errorf("MayRejoin = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestStable(t *testing.T) {
	const end = 100
	for _, tc := range []struct {
		name      string
		committed map[int32]int64
		lso       int64
		want      bool
	}{
		{"nothing committed, no transaction open", nil, end, true},
		{"committed at the end, no transaction open", map[int32]int64{0: end}, end, true},
		{"a transaction open that sent no offsets", map[int32]int64{0: 90}, 95, false},
		{"a transaction open, nothing committed", nil, 95, false},
		{"the records' markers not yet written", map[int32]int64{0: end}, 90, false},
		{"a committed offset beyond the end: ignored", map[int32]int64{0: end + 5}, end, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			at := func(o int64) Offsets {
				return func(_ context.Context, ids []int32) (map[int32]int64, error) {
					out := map[int32]int64{}
					for _, id := range ids {
						out[id] = o
					}
					return out, nil
				}
			}
			own := New("test", 2, 0)
			got, err := own.Stable(t.Context(), []int32{1, 0}, tc.committed, at(tc.lso), at(end), slog.New(slog.NewTextHandler(io.Discard, nil)))
			if got != tc.want || (err != nil) == tc.want {
				t.Errorf("got %v, %v; want %v", got, err, tc.want)
			}
		})
	}
}
