package kafkagroup

import "testing"

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
