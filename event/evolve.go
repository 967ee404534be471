package event

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// Upcaster turns a payload of one schema version into the next: it gets the
// payload as a document (field name → value, as the codec decodes a map:
// JSON numbers as json.Number) and returns the document of the next
// version. It must not keep doc.
type Upcaster func(doc map[string]any) (map[string]any, error)

// WithSchema declares the current schema version of the type's payload
// (the default is 1) and the upcasters from every older one: upcasters[i]
// turns schema i+1 into i+2, so a type at version 3 needs two. Events are
// written with the current version (header schema-version when above 1);
// an older event is decoded as a document, upcast step by step, and then
// decoded into the type. An event of a newer version than the type's is
// refused (ErrMalformed): roll forward the readers first.
func WithSchema(version uint32, upcasters ...Upcaster) TypeOption {
	return typeOptionFunc(func(r *Registry, t *typeInfo) {
		t.schema = version
		t.upcasters = upcasters
	})
}

// WithAliases decodes events whose event-type is one of names (former names
// of the type) as this type. Their handlers are the type's: Decode and
// CurrentName give the current name.
func WithAliases(names ...string) TypeOption {
	return typeOptionFunc(func(r *Registry, t *typeInfo) { t.aliases = append(t.aliases, names...) })
}

// WithStrictDecoding makes Decode refuse a payload with a field the type
// does not have, or without one of the type's fields (other than those
// tagged omitempty), instead of dropping it or leaving it zero. The error
// wraps ErrMalformed and names the field; readers wrap it with the record's
// partition and offset.
func WithStrictDecoding() RegistryOption {
	return registryOptionFunc(func(r *Registry) { r.strict = true })
}

// CurrentName returns the registered name of the type that decodes events
// named name (name itself, or the type's current name when name is one of
// its aliases), and whether there is one.
func (r *Registry) CurrentName(name string) (string, bool) {
	t, ok := r.byName[name]
	if !ok {
		return name, false
	}
	return t.name, true
}

// checkSchema validates a type's WithSchema options at Register.
func (t *typeInfo) checkSchema() error {
	if t.schema == 0 {
		t.schema = 1
	}
	if want := int(t.schema) - 1; len(t.upcasters) != want {
		return fmt.Errorf("schema version %d needs %d upcasters (from each older version), got %d", t.schema, want, len(t.upcasters))
	}
	if slices.ContainsFunc(t.upcasters, func(u Upcaster) bool { return u == nil }) {
		return fmt.Errorf("nil upcaster")
	}
	return nil
}

// evolve returns the payload of an event of schema version schema,
// upcast to the type's current version and, under strict decoding, checked
// field by field; data itself when there is nothing to do.
func (r *Registry) evolve(t *typeInfo, c Codec, schema uint32, data []byte) ([]byte, error) {
	schema = max(schema, 1)
	if schema > t.schema {
		return nil, fmt.Errorf("schema version %d is newer than this build's %d", schema, t.schema)
	}
	if schema == t.schema && !r.strict {
		return data, nil
	}
	doc, err := decodeDocument(c, data)
	if err != nil {
		return nil, err
	}
	for v := schema; v < t.schema; v++ {
		if doc, err = t.upcasters[v-1](doc); err != nil {
			return nil, fmt.Errorf("upcast from schema version %d: %w", v, err)
		}
	}
	if r.strict {
		if err := t.fields.check(doc); err != nil {
			return nil, err
		}
	}
	if schema == t.schema {
		return data, nil
	}
	return c.Marshal(doc)
}

// decodeDocument decodes a payload as a document. JSON numbers stay
// json.Number: a float64 would round integers above 2^53.
func decodeDocument(c Codec, data []byte) (map[string]any, error) {
	var doc map[string]any
	if c.ContentType() == ContentTypeJSON {
		d := json.NewDecoder(bytes.NewReader(data))
		d.UseNumber()
		if err := d.Decode(&doc); err != nil {
			return nil, err
		}
		return doc, nil
	}
	if err := c.Unmarshal(data, &doc); err != nil {
		return nil, err
	}
	return doc, nil
}

// fieldSet is a payload type's field names as both codecs see them (the
// json tag's name, else the Go name), and which may be absent.
type fieldSet map[string]bool // name → required

func fieldsOf(typ reflect.Type) fieldSet {
	fs := fieldSet{}
	if typ.Kind() != reflect.Struct {
		return fs
	}
	for _, f := range reflect.VisibleFields(typ) {
		if !f.IsExported() || f.Anonymous && f.Type.Kind() == reflect.Struct {
			continue // promoted fields are listed on their own
		}
		name, opts, _ := strings.Cut(f.Tag.Get("json"), ",")
		if name == "-" && opts == "" {
			continue
		}
		if name == "" {
			name = f.Name
		}
		fs[name] = !strings.Contains(","+opts+",", ",omitempty,") && !strings.Contains(","+opts+",", ",omitzero,")
	}
	return fs
}

func (fs fieldSet) check(doc map[string]any) error {
	var problems []string
	for name := range doc {
		if _, ok := fs[name]; !ok {
			problems = append(problems, fmt.Sprintf("unknown field %q", name))
		}
	}
	for name, required := range fs {
		if _, ok := doc[name]; required && !ok {
			problems = append(problems, fmt.Sprintf("missing field %q", name))
		}
	}
	if len(problems) > 0 {
		slices.Sort(problems)
		return fmt.Errorf("strict decoding: %s", strings.Join(problems, ", "))
	}
	return nil
}
