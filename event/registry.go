package event

import (
	"fmt"
	"reflect"
	"time"
)

// Validator is implemented by payloads that can check themselves. Validate is
// called before an event is encoded for appending; a non-nil error refuses the
// event with ErrInvalid.
type Validator interface {
	Validate() error
}

// Registry maps event type names to Go payload types and chooses their codecs.
// Register every type before the registry is used; after that it is read-only
// and safe for concurrent use.
type Registry struct {
	strict bool // WithStrictDecoding
	codec  Codec
	codecs map[string]Codec // by content type, for decoding
	byName map[string]*typeInfo
	byType map[reflect.Type]*typeInfo
}

type typeInfo struct {
	name      string
	codec     Codec
	decode    func(c Codec, data []byte) (any, error)
	schema    uint32     // current schema version, 1 unless WithSchema
	upcasters []Upcaster // upcasters[i]: schema i+1 → i+2
	aliases   []string   // former names (WithAliases)
	fields    fieldSet   // for strict decoding
}

// RegistryOption configures a Registry.
type RegistryOption interface{ applyRegistry(*Registry) }

type registryOptionFunc func(*Registry)

func (f registryOptionFunc) applyRegistry(r *Registry) { f(r) }

// WithCodec sets the codec used to encode payloads of types registered without
// their own. The default is [Msgpack]. Records in either built-in encoding are
// decoded whatever the choice, so a topic may hold both.
func WithCodec(c Codec) RegistryOption {
	return registryOptionFunc(func(r *Registry) {
		r.codec = c
		r.codecs[c.ContentType()] = c
	})
}

// Codec returns the registry's codec: the one WithCodec set, else Msgpack.
func (r *Registry) Codec() Codec { return r.codec }

// NewRegistry returns an empty registry.
func NewRegistry(opts ...RegistryOption) *Registry {
	r := &Registry{
		codec:  Msgpack,
		codecs: map[string]Codec{ContentTypeMsgpack: Msgpack, ContentTypeJSON: JSON},
		byName: make(map[string]*typeInfo),
		byType: make(map[reflect.Type]*typeInfo),
	}
	for _, o := range opts {
		o.applyRegistry(r)
	}
	return r
}

// TypeOption configures one registered type.
type TypeOption interface{ applyType(*Registry, *typeInfo) }

type typeOptionFunc func(*Registry, *typeInfo)

func (f typeOptionFunc) applyType(r *Registry, t *typeInfo) { f(r, t) }

// WithTypeCodec encodes this type with c instead of the registry's codec.
func WithTypeCodec(c Codec) TypeOption {
	return typeOptionFunc(func(r *Registry, t *typeInfo) {
		t.codec = c
		r.codecs[c.ContentType()] = c
	})
}

// Register maps name to the payload type T, a struct type (not a pointer).
// Registering a name or a type twice is an error.
func Register[T any](r *Registry, name string, opts ...TypeOption) error {
	typ := reflect.TypeFor[T]()
	if name == "" {
		return fmt.Errorf("event: register %v: empty name", typ)
	}
	if typ.Kind() == reflect.Pointer || typ.Kind() == reflect.Interface {
		return fmt.Errorf("event: register %q: payload type %v must not be a pointer or interface", name, typ)
	}
	if _, ok := r.byName[name]; ok {
		return fmt.Errorf("event: register %q: name already registered", name)
	}
	if t, ok := r.byType[typ]; ok {
		return fmt.Errorf("event: register %q: type %v already registered as %q", name, typ, t.name)
	}
	t := &typeInfo{
		name:  name,
		codec: r.codec,
		decode: func(c Codec, data []byte) (any, error) {
			v := new(T)
			if err := c.Unmarshal(data, v); err != nil {
				return nil, err
			}
			return v, nil
		},
	}
	for _, o := range opts {
		o.applyType(r, t)
	}
	if err := t.checkSchema(); err != nil {
		return fmt.Errorf("event: register %q: %w", name, err)
	}
	for _, alias := range t.aliases {
		if _, ok := r.byName[alias]; ok || alias == name || alias == "" {
			return fmt.Errorf("event: register %q: alias %q is empty or taken", name, alias)
		}
	}
	t.fields = fieldsOf(typ)
	r.byName[name] = t
	for _, alias := range t.aliases {
		r.byName[alias] = t
	}
	r.byType[typ] = t
	return nil
}

// TypeName returns the registered name of payload's type (T or *T).
func (r *Registry) TypeName(payload any) (string, error) {
	t, err := r.lookupType(payload)
	if err != nil {
		return "", err
	}
	return t.name, nil
}

func (r *Registry) lookupType(payload any) (*typeInfo, error) {
	typ := reflect.TypeOf(payload)
	if typ != nil && typ.Kind() == reflect.Pointer {
		typ = typ.Elem()
	}
	t, ok := r.byType[typ]
	if !ok {
		return nil, fmt.Errorf("%w: Go type %v", ErrUnknownType, typ)
	}
	return t, nil
}

// Validate runs payload's Validate method, if it has one (on the value or on
// a pointer to it), and wraps a failure in ErrInvalid.
func Validate(payload any) error {
	v, ok := payload.(Validator)
	if !ok {
		// A value payload whose Validate has a pointer receiver.
		rv := reflect.ValueOf(payload)
		if !rv.IsValid() || rv.Kind() == reflect.Pointer {
			return nil
		}
		ptr := reflect.New(rv.Type())
		ptr.Elem().Set(rv)
		if v, ok = ptr.Interface().(Validator); !ok {
			return nil
		}
	}
	if err := v.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return nil
}

// NewEnvelope validates and encodes payload, a value (or pointer) of a
// registered type, as the event of aggregate id at the given version. It sets
// a new event id and the current time.
func (r *Registry) NewEnvelope(aggregateID string, version uint64, payload any) (Envelope, error) {
	t, err := r.lookupType(payload)
	if err != nil {
		return Envelope{}, err
	}
	if err := Validate(payload); err != nil {
		return Envelope{}, fmt.Errorf("%s: %w", t.name, err)
	}
	data, err := t.codec.Marshal(payload)
	if err != nil {
		return Envelope{}, fmt.Errorf("event: encode %s: %w", t.name, err)
	}
	return Envelope{
		ID:          NewID(),
		Type:        t.name,
		AggregateID: aggregateID,
		Version:     version,
		Time:        time.Now().UTC(),
		ContentType: t.codec.ContentType(),
		Payload:     data,
		Schema:      t.schema,
	}, nil
}

// Decode decodes the envelope's payload into a new value of its registered
// type and returns a pointer to it (*T as any): an event named by one of the
// type's aliases gets the type's current name in e.Type, one of an older
// schema version is upcast (WithSchema), and under WithStrictDecoding its
// fields are checked. Errors wrap ErrUnknownType or ErrMalformed.
func (r *Registry) Decode(e *Envelope) (any, error) {
	t, ok := r.byName[e.Type]
	if !ok {
		return nil, fmt.Errorf("%w: %q", ErrUnknownType, e.Type)
	}
	e.Type = t.name
	c, ok := r.codecs[e.ContentType]
	if !ok {
		return nil, fmt.Errorf("%w: %s: unsupported content-type %q", ErrMalformed, e.Type, e.ContentType)
	}
	data, err := r.evolve(t, c, e.Schema, e.Payload)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %s payload: %v", ErrMalformed, e.Type, e.ContentType, err)
	}
	v, err := t.decode(c, data)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %s payload: %v", ErrMalformed, e.Type, e.ContentType, err)
	}
	return v, nil
}

// Known reports whether name is a registered type.
func (r *Registry) Known(name string) bool {
	_, ok := r.byName[name]
	return ok
}
