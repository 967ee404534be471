package event

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sync"

	"github.com/vmihailenco/msgpack/v5"
)

// Content types of the two codecs, as written in the content-type header.
const (
	ContentTypeMsgpack = "application/msgpack"
	ContentTypeJSON    = "application/json"
)

// Codec encodes payloads to bytes and back. Implementations are safe for
// concurrent use.
type Codec interface {
	// ContentType is the value of the content-type header for this codec.
	ContentType() string
	Marshal(v any) ([]byte, error)
	// Unmarshal decodes data into v, a non-nil pointer.
	Unmarshal(data []byte, v any) error
}

// Msgpack is the default codec. Field names come from `msgpack` tags, else
// `json` tags, else the Go field name.
var Msgpack Codec = msgpackCodec{}

// JSON is the encoding/json codec.
var JSON Codec = jsonCodec{}

type msgpackCodec struct{}

func (msgpackCodec) ContentType() string { return ContentTypeMsgpack }

// msgpackState is pooled because a decoder carries buffers that are costly to
// allocate for every event of a restore.
type msgpackState struct {
	rd  bytes.Reader
	dec *msgpack.Decoder
	buf bytes.Buffer
	enc *msgpack.Encoder
}

// A pooled state's decoder reads from its own rd, and its encoder writes to
// its own buf, with the settings below: each use only resets rd or buf.
// Resetting the decoder as well (its reader, flags and struct tag) was a
// seventh of a msgpack payload's decoding in a restore.
var msgpackPool = sync.Pool{New: func() any {
	s := new(msgpackState)
	s.dec = msgpack.NewDecoder(&s.rd)
	s.dec.SetCustomStructTag("json")
	s.enc = msgpack.NewEncoder(&s.buf)
	s.enc.SetCustomStructTag("json")
	s.enc.UseCompactInts(true)
	return s
}}

func (msgpackCodec) Marshal(v any) ([]byte, error) {
	s := msgpackPool.Get().(*msgpackState)
	s.buf.Reset()
	if err := s.enc.Encode(v); err != nil {
		return nil, err // s is dropped: an encoder stopped midway is not reused
	}
	out := bytes.Clone(s.buf.Bytes())
	msgpackPool.Put(s)
	return out, nil
}

func (msgpackCodec) Unmarshal(data []byte, v any) error {
	s := msgpackPool.Get().(*msgpackState)
	s.rd.Reset(data)
	if err := s.dec.Decode(v); err != nil {
		return err // s is dropped: a decoder stopped midway is not reused
	}
	left := s.rd.Len()
	// A pooled reader must not keep data alive: a record's value may be
	// a slice of a whole fetch buffer (franz-go reads without copying),
	// which would then outlive the restore.
	s.rd.Reset(nil)
	msgpackPool.Put(s)
	if left != 0 {
		return fmt.Errorf("%d bytes after the msgpack value", left)
	}
	return nil
}

type jsonCodec struct{}

func (jsonCodec) ContentType() string { return ContentTypeJSON }

func (jsonCodec) Marshal(v any) ([]byte, error) { return json.Marshal(v) }

func (jsonCodec) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }
