//go:build cgo

package kafka

import (
	"encoding/binary"
	"strings"
	"testing"

	ckafka "github.com/confluentinc/confluent-kafka-go/v2/kafka"
)

// TestGroupMetadataLayout guards serializedMetadata and
// decodeGroupMetadata against a new confluent-kafka-go or librdkafka: the
// metadata librdkafka makes for "no membership" must decode as exactly that.
func TestGroupMetadataLayout(t *testing.T) {
	md, err := ckafka.NewTestConsumerGroupMetadata("svc")
	if err != nil {
		t.Fatal(err)
	}
	b, ok := serializedMetadata(md)
	if !ok {
		t.Fatal("ConsumerGroupMetadata is no longer one []byte field: the member cannot check its metadata")
	}
	gen, group, member, err := decodeGroupMetadata(b)
	if err != nil || gen != -1 || group != "svc" || member != "" {
		t.Fatalf("decode = %d %q %q %v, want -1 \"svc\" \"\" <nil>", gen, group, member, err)
	}
}

func encodeMetadata(gen int32, group, member string, instance *string) []byte {
	b := []byte(metadataMagic)
	b = binary.NativeEndian.AppendUint32(b, uint32(gen))
	b = append(append(b, group...), 0)
	b = append(append(b, member...), 0)
	if instance == nil {
		return append(b, 1)
	}
	return append(append(append(b, 0), *instance...), 0)
}

func TestDecodeGroupMetadata(t *testing.T) {
	inst := "pod-1"
	for _, tc := range []struct {
		name   string
		b      []byte
		gen    int32
		member string
		ok     bool
	}{
		{"member", encodeMetadata(7, "svc", "m-1", nil), 7, "m-1", true},
		{"static member", encodeMetadata(3, "svc", "m-2", &inst), 3, "m-2", true},
		{"no membership", encodeMetadata(-1, "svc", "", nil), -1, "", true},
		{"empty", nil, 0, "", false},
		{"other magic", append([]byte("CGMDv3:"), encodeMetadata(7, "svc", "m", nil)[7:]...), 0, "", false},
		{"truncated generation", []byte(metadataMagic + "\x01"), 0, "", false},
		{"no member terminator", encodeMetadata(7, "svc", "m", nil)[:len(metadataMagic)+4+4+1], 0, "", false},
		{"no instance flag", encodeMetadata(7, "svc", "m", nil)[:len(metadataMagic)+4+4+2], 0, "", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			gen, group, member, err := decodeGroupMetadata(tc.b)
			if (err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok=%v", err, tc.ok)
			}
			if tc.ok && (gen != tc.gen || group != "svc" || member != tc.member) {
				t.Fatalf("decode = %d %q %q", gen, group, member)
			}
		})
	}
}

func FuzzDecodeGroupMetadata(f *testing.F) {
	inst := "i"
	f.Add(encodeMetadata(1, "g", "m", nil))
	f.Add(encodeMetadata(-1, "g", "", &inst))
	f.Add([]byte(metadataMagic))
	f.Fuzz(func(t *testing.T, b []byte) {
		_, group, member, err := decodeGroupMetadata(b)
		if err == nil && (strings.ContainsRune(group, 0) || strings.ContainsRune(member, 0)) {
			t.Fatalf("decoded a NUL into %q/%q", group, member)
		}
	})
}
