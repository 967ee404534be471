package event

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"sync"
	"time"
)

var (
	// ErrUnknownType means an event's type name is not registered.
	ErrUnknownType = errors.New("event: unknown event type")
	// ErrInvalid means a payload failed its Validate method; the error wrapping
	// it carries the validator's message.
	ErrInvalid = errors.New("event: invalid payload")
	// ErrMalformed means a record does not follow the wire format or its payload
	// cannot be decoded by the codec its content-type names.
	ErrMalformed = errors.New("event: malformed record")
)

// Header names of the wire format. See the package documentation.
const (
	HeaderType          = "event-type"
	HeaderID            = "event-id"
	HeaderVersion       = "aggregate-version"
	HeaderTime          = "event-time"
	HeaderContentType   = "content-type"
	HeaderAggregateType = "aggregate-type"
	// HeaderSchema is the payload's schema version, a positive decimal;
	// absent means 1. See WithSchema.
	HeaderSchema = "schema-version"
	// MetadataPrefix prefixes the header of each metadata entry: the entry
	// "correlation-id" travels as the header "meta-correlation-id".
	MetadataPrefix = "meta-"
	// HeaderControl marks a control record: not an event, skipped by every
	// reader. Its value says what it is for (ControlFence).
	HeaderControl = "rehydrate-control"
	// ControlFence is a control record the repository appends to an
	// aggregate's partition after an append whose outcome is unknown. Once
	// it is acknowledged, the idempotent producer's ordering guarantees that
	// the earlier append, if it was written at all, lies before it.
	ControlFence = "fence"
)

// Envelope is one event: what happened to which aggregate, with its payload
// still encoded. Providers move envelopes as bytes; [Registry.Decode] turns the
// payload into its Go type.
type Envelope struct {
	ID            string
	Type          string
	AggregateID   string
	AggregateType string
	// Version is the aggregate's version after this event: 1 for its first.
	Version     uint64
	Time        time.Time
	Metadata    map[string]string
	ContentType string
	Payload     []byte
	// Schema is the payload's schema version (HeaderSchema); 0 and 1 both
	// mean the first.
	Schema uint32

	// Partition and Offset say where the event was read from; they are zero
	// for an event not yet appended.
	Partition int32
	Offset    int64
}

// Header is a record header.
type Header struct {
	Key   string
	Value []byte
}

// Record is a Kafka record as providers store it.
type Record struct {
	Key       []byte
	Value     []byte
	Headers   []Header
	Partition int32
	Offset    int64
}

// RecordError is an error about the record at one partition and offset. It
// unwraps to the cause, so errors.Is(err, ErrMalformed) and the like work.
type RecordError struct {
	Partition int32
	Offset    int64
	Err       error
}

func (e *RecordError) Error() string {
	return fmt.Sprintf("partition %d offset %d: %v", e.Partition, e.Offset, e.Err)
}

func (e *RecordError) Unwrap() error { return e.Err }

// Record maps the envelope to a Kafka record as the wire format says.
// Partition and offset are left for the provider to choose.
func (e *Envelope) Record() Record {
	headers := make([]Header, 0, 6+len(e.Metadata))
	headers = append(headers,
		Header{HeaderType, []byte(e.Type)},
		Header{HeaderID, []byte(e.ID)},
		Header{HeaderVersion, strconv.AppendUint(nil, e.Version, 10)},
		Header{HeaderTime, e.Time.UTC().AppendFormat(nil, time.RFC3339Nano)},
		Header{HeaderContentType, []byte(e.ContentType)},
	)
	if e.AggregateType != "" {
		headers = append(headers, Header{HeaderAggregateType, []byte(e.AggregateType)})
	}
	if e.Schema > 1 {
		headers = append(headers, Header{HeaderSchema, strconv.AppendUint(nil, uint64(e.Schema), 10)})
	}
	for k, v := range e.Metadata {
		headers = append(headers, Header{MetadataPrefix + k, []byte(v)})
	}
	return Record{Key: []byte(e.AggregateID), Value: e.Payload, Headers: headers}
}

// ErrControlRecord is what ParseRecord says of a control record: check
// IsControl first and skip it.
var ErrControlRecord = errors.New("event: control record, not an event")

// IsControl reports whether r is a control record (it has a
// rehydrate-control header): readers skip it.
func IsControl(r Record) bool {
	for _, h := range r.Headers {
		if h.Key == HeaderControl {
			return true
		}
	}
	return false
}

// FenceRecord returns the fence control record of an aggregate: its key and a
// rehydrate-control: fence header, no value.
func FenceRecord(aggregateID string) Record {
	return Record{Key: []byte(aggregateID), Headers: []Header{{HeaderControl, []byte(ControlFence)}}}
}

// ParseRecord reads an envelope from a record written in the wire format. The
// payload is not decoded (see [Registry.Decode]) and shares the record's
// memory. Errors are *RecordError wrapping ErrMalformed.
func ParseRecord(r Record) (Envelope, error) {
	e := Envelope{
		Payload:   r.Value,
		Partition: r.Partition,
		Offset:    r.Offset,
	}
	malformed := func(format string, args ...any) (Envelope, error) {
		return Envelope{}, &RecordError{r.Partition, r.Offset,
			fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))}
	}
	if len(r.Key) == 0 {
		return malformed("no key (aggregate id)")
	}
	if IsControl(r) {
		return Envelope{}, &RecordError{r.Partition, r.Offset, ErrControlRecord}
	}
	var (
		seen             uint8
		typ, id, aggType []byte
	)
	const (
		hasType = 1 << iota
		hasID
		hasVersion
		hasTime
		hasContentType
		hasAll = hasType | hasID | hasVersion | hasTime | hasContentType
	)
	for _, h := range r.Headers {
		switch h.Key {
		case HeaderType:
			typ, seen = h.Value, seen|hasType
		case HeaderID:
			id, seen = h.Value, seen|hasID
		case HeaderVersion:
			v, ok := parseVersion(h.Value)
			if !ok {
				return malformed("header %s %q is not a positive decimal", HeaderVersion, h.Value)
			}
			e.Version, seen = v, seen|hasVersion
		case HeaderTime:
			t, err := parseTime(h.Value)
			if err != nil {
				return malformed("header %s %q is not RFC 3339", HeaderTime, h.Value)
			}
			e.Time, seen = t, seen|hasTime
		case HeaderContentType:
			e.ContentType, seen = internContentType(h.Value), seen|hasContentType
		case HeaderAggregateType:
			aggType = h.Value
		case HeaderSchema:
			v, ok := parseVersion(h.Value)
			if !ok || v > math.MaxUint32 {
				return malformed("header %s %q is not a positive decimal", HeaderSchema, h.Value)
			}
			e.Schema = uint32(v)
		default:
			if len(h.Key) > len(MetadataPrefix) && h.Key[:len(MetadataPrefix)] == MetadataPrefix {
				if e.Metadata == nil {
					e.Metadata = make(map[string]string, 2)
				}
				e.Metadata[h.Key[len(MetadataPrefix):]] = string(h.Value)
			}
		}
	}
	if seen != hasAll {
		for _, m := range []struct {
			bit  uint8
			name string
		}{{hasType, HeaderType}, {hasID, HeaderID}, {hasVersion, HeaderVersion}, {hasTime, HeaderTime}, {hasContentType, HeaderContentType}} {
			if seen&m.bit == 0 {
				return malformed("missing header %s", m.name)
			}
		}
	}
	if len(typ) == 0 {
		return malformed("empty header %s", HeaderType)
	}
	// One allocation for the four strings of every record: restores read
	// millions.
	var b strings.Builder
	b.Grow(len(r.Key) + len(typ) + len(id) + len(aggType))
	b.Write(r.Key)
	b.Write(typ)
	b.Write(id)
	b.Write(aggType)
	all := b.String()
	e.AggregateID, all = all[:len(r.Key)], all[len(r.Key):]
	e.Type, all = all[:len(typ)], all[len(typ):]
	e.ID, e.AggregateType = all[:len(id)], all[len(id):]
	return e, nil
}

// parseVersion parses a positive decimal without allocating.
func parseVersion(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 19 || (len(b) > 1 && b[0] == '0') {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + uint64(c-'0')
	}
	return v, v > 0
}

// internContentType avoids one allocation per record for the two content
// types every record carries.
func internContentType(b []byte) string {
	switch string(b) {
	case ContentTypeMsgpack:
		return ContentTypeMsgpack
	case ContentTypeJSON:
		return ContentTypeJSON
	}
	return string(b)
}

// NewID returns a new event id: a version 7 UUID (RFC 9562), time-ordered
// and random. Ids from one process are strictly increasing, also within a
// millisecond: the 12 bits after the millisecond timestamp hold the time's
// sub-millisecond part, raised by one past the last id's when the clock has
// not moved on (RFC 9562, section 6.2, method 3), so id order is creation
// order. The remaining 62 bits are random.
func NewID() string {
	var u [16]byte
	t := nextV7Time()
	binary.BigEndian.PutUint64(u[:8], t>>12<<16|t&0xfff) // 48 bits of ms, 4 of version, 12 of sequence
	_, _ = rand.Read(u[8:])                              // crypto/rand.Read never fails on supported platforms
	u[6] = u[6]&0x0f | 0x70
	u[8] = u[8]&0x3f | 0x80
	var s [36]byte
	hex.Encode(s[0:8], u[0:4])
	s[8] = '-'
	hex.Encode(s[9:13], u[4:6])
	s[13] = '-'
	hex.Encode(s[14:18], u[6:8])
	s[18] = '-'
	hex.Encode(s[19:23], u[8:10])
	s[23] = '-'
	hex.Encode(s[24:], u[10:])
	return string(s[:])
}

var (
	v7Mu   sync.Mutex
	v7Last uint64 // the last id's milliseconds << 12 | sequence
)

// nextV7Time returns the Unix time in milliseconds << 12, plus the
// sub-millisecond part in 1/4096 ms, strictly greater than the last value
// returned.
func nextV7Time() uint64 {
	now := time.Now().UnixNano()
	ms := uint64(now / 1e6)
	t := ms<<12 | uint64(now%1e6)*4096/1e6
	v7Mu.Lock()
	defer v7Mu.Unlock()
	if t <= v7Last {
		t = v7Last + 1
	}
	v7Last = t
	return t
}
