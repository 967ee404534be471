// Package event defines what rehydrate stores in Kafka: the [Envelope] of one
// event, the [Registry] that maps event type names to Go payload types, the
// [Codec]s that encode payloads (msgpack by default, JSON), and the mapping of an
// envelope to and from a Kafka [Record] (the wire format).
//
// # Wire format
//
// One Kafka record per event:
//
//   - key: the aggregate id, UTF-8. Records are partitioned by the murmur2 hash
//     of the key (the Java client's default), so all events of an aggregate land
//     in one partition, in order.
//   - value: the payload, encoded by the codec named in content-type.
//   - headers (values UTF-8):
//     event-type (the registered name, e.g. UserCreated, required),
//     event-id (unique, required),
//     aggregate-version (decimal, 1 for an aggregate's first event, required),
//     event-time (RFC 3339 with nanoseconds, UTC, required),
//     content-type (application/msgpack or application/json, required),
//     aggregate-type (optional), and any number of meta-NAME headers carrying
//     user metadata such as meta-correlation-id and meta-causation-id.
//     Other headers are ignored.
//
// A record with a rehydrate-control header is a control record, not an
// event: readers skip it ([IsControl]). The repository writes one kind, a
// fence (rehydrate-control: fence, the aggregate id as key, no value), to
// settle an append whose outcome was unknown.
//
// A record written by another language that follows this contract restores
// exactly like one written by this package.
//
// # Payloads
//
// Payload types are plain Go structs registered once under a name:
//
//	reg := event.NewRegistry()
//	err := event.Register[UserCreated](reg, "UserCreated")
//
// Both codecs read `json` struct tags (msgpack tags win where present), so one
// set of tags names the fields in either encoding. A payload type may implement
// [Validator]; [Registry.Encode] refuses an invalid payload with [ErrInvalid].
package event
