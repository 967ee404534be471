package event_test

import (
	"testing"
	"time"

	"github.com/rehydrate/rehydrate/event"
)

// BenchmarkParseRecord parses a record as the example writer writes it
// (the five headers, an aggregate type): a restore does it per event.
func BenchmarkParseRecord(b *testing.B) {
	env := event.Envelope{AggregateID: "user-0000042", AggregateType: "user", Type: "UserModified", ID: event.NewID(),
		Version: 7, Time: time.Now(), ContentType: event.ContentTypeMsgpack, Payload: []byte("\x82\xa3abc\xa3def")}
	rec := env.Record()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := event.ParseRecord(rec); err != nil {
			b.Fatal(err)
		}
	}
}
