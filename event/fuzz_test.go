package event_test

import (
	"bytes"
	"errors"
	"testing"

	"github.com/rehydrate/rehydrate/event"
)

// FuzzParseRecord feeds arbitrary keys, values and header values through
// ParseRecord and Decode: any input gives an envelope or an error, never a
// panic, and an accepted record maps back to the same fields.
func FuzzParseRecord(f *testing.F) {
	f.Add([]byte("user-1"), []byte{0x81, 0xaa, 'f', 'i', 'r', 's', 't', '_', 'n', 'a', 'm', 'e', 0xa3, 'A', 'd', 'a'},
		"UserCreated", "1", "2026-01-02T03:04:05.123456789Z", "application/msgpack", "meta-correlation-id")
	f.Add([]byte("user-2"), []byte(`{"first_name":"Ada","last_name":"L"}`),
		"UserCreated", "18446744073709551615", "2026-01-02T03:04:05Z", "application/json", "aggregate-type")
	f.Add([]byte(""), []byte{}, "", "", "", "", "")
	f.Add([]byte("k"), []byte{0xc1}, "UserRenamed", "007", "not a time", "text/plain", "meta-")
	reg := event.NewRegistry()
	if err := event.Register[userCreated](reg, "UserCreated"); err != nil {
		f.Fatal(err)
	}
	if err := event.Register[userRenamed](reg, "UserRenamed"); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, key, value []byte, typ, version, when, contentType, extraHeader string) {
		rec := event.Record{Key: key, Value: value, Partition: 1, Offset: 9, Headers: []event.Header{
			{Key: event.HeaderType, Value: []byte(typ)},
			{Key: event.HeaderID, Value: []byte("id")},
			{Key: event.HeaderVersion, Value: []byte(version)},
			{Key: event.HeaderTime, Value: []byte(when)},
			{Key: event.HeaderContentType, Value: []byte(contentType)},
			{Key: extraHeader, Value: value},
		}}
		env, err := event.ParseRecord(rec)
		if err != nil {
			var re *event.RecordError
			if !errors.As(err, &re) || re.Partition != 1 || re.Offset != 9 || !errors.Is(err, event.ErrMalformed) {
				t.Fatalf("error %v does not name the record's position or ErrMalformed", err)
			}
			return
		}
		if env.AggregateID != string(key) || env.Type != typ || env.Version == 0 || !bytes.Equal(env.Payload, value) {
			t.Fatalf("parsed %+v from key %q type %q version %q", env, key, typ, version)
		}
		again, err := event.ParseRecord(env.Record())
		if err != nil {
			t.Fatalf("a parsed envelope's record does not parse: %v", err)
		}
		if again.Version != env.Version || !again.Time.Equal(env.Time) || again.Type != env.Type {
			t.Fatalf("round trip changed %+v into %+v", env, again)
		}
		if _, err := reg.Decode(&env); err != nil && !errors.Is(err, event.ErrUnknownType) && !errors.Is(err, event.ErrMalformed) {
			t.Fatalf("Decode error %v is neither ErrUnknownType nor ErrMalformed", err)
		}
	})
}
