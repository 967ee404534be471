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

var msgpackPool = sync.Pool{New: func() any {
	s := new(msgpackState)
	s.dec = msgpack.NewDecoder(&s.rd)
	s.enc = msgpack.NewEncoder(&s.buf)
	return s
}}

func (msgpackCodec) Marshal(v any) ([]byte, error) {
	s := msgpackPool.Get().(*msgpackState)
	defer msgpackPool.Put(s)
	s.buf.Reset()
	s.enc.Reset(&s.buf)
	s.enc.SetCustomStructTag("json")
	s.enc.UseCompactInts(true)
	if err := s.enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.Clone(s.buf.Bytes()), nil
}

func (msgpackCodec) Unmarshal(data []byte, v any) error {
	s := msgpackPool.Get().(*msgpackState)
	defer func() {
		// A pooled reader must not keep data alive: a record's value may
		// be a slice of a whole fetch buffer (franz-go reads without
		// copying), which would then outlive the restore.
		s.rd.Reset(nil)
		msgpackPool.Put(s)
	}()
	s.rd.Reset(data)
	s.dec.Reset(&s.rd)
	s.dec.SetCustomStructTag("json")
	if err := s.dec.Decode(v); err != nil {
		return err
	}
	if s.rd.Len() != 0 {
		return fmt.Errorf("%d bytes after the msgpack value", s.rd.Len())
	}
	return nil
}

type jsonCodec struct{}

func (jsonCodec) ContentType() string { return ContentTypeJSON }

func (jsonCodec) Marshal(v any) ([]byte, error) { return json.Marshal(v) }

func (jsonCodec) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }
