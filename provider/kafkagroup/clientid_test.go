package kafkagroup

import (
	"strings"
	"testing"
)

func TestMemberClientID(t *testing.T) {
	for _, addr := range []string{"", "http://10.0.0.7:4000", "a;b%c d", "ünï\x00\n", "address=;instance="} {
		id := ClientID("rehydrate", "pod;1", addr)
		if strings.Count(id, ";") != 2 {
			t.Fatalf("%q: client.id %q has separators in its fields", addr, id)
		}
		got, ok := ParseClientID(id)
		if !ok || got != addr {
			t.Fatalf("%q: parsed %q, %v from %q", addr, got, ok, id)
		}
	}
	for _, id := range []string{"", "rdkafka", "a;b;c", "a;instance=x;address=%G0", "a;instance=x;address=%4"} {
		if addr, ok := ParseClientID(id); ok {
			t.Errorf("%q parsed as %q", id, addr)
		}
	}
}

func FuzzMemberClientID(f *testing.F) {
	f.Add("rehydrate", "pod-1", "http://10.0.0.7:4000")
	f.Fuzz(func(t *testing.T, base, instance, addr string) {
		got, ok := ParseClientID(ClientID(base, instance, addr))
		if !ok || got != addr {
			t.Fatalf("round trip of %q gave %q, %v", addr, got, ok)
		}
		_, _ = ParseClientID(addr) // any string: no panic
	})
}
