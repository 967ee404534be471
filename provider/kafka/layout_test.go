//go:build cgo

package kafka

import (
	"reflect"
	"testing"

	ckafka "github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/rehydrate/rehydrate/event"
)

// TestHeaderLayout guards fromKafkaHeaders' conversion: both header types
// must have the same fields, of the same types, at the same offsets.
func TestHeaderLayout(t *testing.T) {
	ours, theirs := reflect.TypeFor[event.Header](), reflect.TypeFor[ckafka.Header]()
	if ours.Size() != theirs.Size() || ours.NumField() != theirs.NumField() {
		t.Fatalf("event.Header %v and kafka.Header %v differ in size or fields", ours, theirs)
	}
	for i := range ours.NumField() {
		a, b := ours.Field(i), theirs.Field(i)
		if a.Type != b.Type || a.Offset != b.Offset {
			t.Fatalf("field %d: %s %v at %d, kafka's %s %v at %d", i, a.Name, a.Type, a.Offset, b.Name, b.Type, b.Offset)
		}
	}
	hs := []ckafka.Header{{Key: "k", Value: []byte("v")}}
	if got := fromKafkaHeaders(hs); len(got) != 1 || got[0].Key != "k" || string(got[0].Value) != "v" {
		t.Fatalf("fromKafkaHeaders = %+v", got)
	}
}
