package franz

import (
	"reflect"
	"testing"

	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rehydrate/rehydrate/event"
)

// TestHeaderLayout guards headers' conversion: both header types must have
// the same fields, of the same types, at the same offsets.
func TestHeaderLayout(t *testing.T) {
	ours, theirs := reflect.TypeFor[event.Header](), reflect.TypeFor[kgo.RecordHeader]()
	if ours.Size() != theirs.Size() || ours.NumField() != theirs.NumField() {
		t.Fatalf("event.Header %v and kgo.RecordHeader %v differ in size or fields", ours, theirs)
	}
	for i := range ours.NumField() {
		a, b := ours.Field(i), theirs.Field(i)
		if a.Type != b.Type || a.Offset != b.Offset {
			t.Fatalf("field %d: %s %v at %d, kgo's %s %v at %d", i, a.Name, a.Type, a.Offset, b.Name, b.Type, b.Offset)
		}
	}
}
