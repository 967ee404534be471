package repository

import (
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"time"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/snapshot"
)

// Snapshots configures WithSnapshots.
type Snapshots struct {
	// StateVersion is the version of the aggregate's state as the handlers
	// build it. Bump it whenever a handler changes what it makes of an
	// event, or the state type changes shape: snapshots of another version
	// are then ignored, and the partitions replayed (and snapshotted anew).
	StateVersion uint32
	// Events triggers a partition's snapshot once this many events were
	// applied to it since its last one; 0 means 50 000 (a tail that
	// restores in well under a second).
	Events int64
	// Interval triggers a snapshot of a partition that changed at all, once
	// this long has passed since its last one; 0 means 10 minutes.
	Interval time.Duration
}

// WithSnapshots makes the repository keep snapshots of its partitions in
// store (a snapshot.Store on the event topic's snapshot topic): Restore and
// every takeover load a partition's newest usable snapshot and read only the
// events after it, and the repository writes new snapshots in the
// background (see Snapshots for the triggers, Snapshot to force one). New
// refuses an aggregate type the registry's codec cannot carry whole; a
// time.Time in the state comes back as the codec restores it (without its
// monotonic clock reading, its location maybe another), so compare times
// with Equal. Close stops the background snapshots.
//
// See the package documentation, "Snapshots", for why a snapshot is
// consistent and what makes one unusable.
func WithSnapshots(store *snapshot.Store, cfg Snapshots) Option {
	return optionFunc(func(s *settings) { s.snapshots = &snapshotSettings{store: store, cfg: cfg} })
}

type snapshotSettings struct {
	store *snapshot.Store
	cfg   Snapshots
}

// snapshots is a repository's snapshotting: its settings, and the loop that
// takes them in the background.
type snapshots struct {
	store *snapshot.Store
	cfg   Snapshots
	codec event.Codec

	startLoop, stopLoop sync.Once
	stop                chan struct{}
	stopped             chan struct{}
}

func newSnapshots[A any](s *snapshotSettings, codec event.Codec) (*snapshots, error) {
	if s.store == nil {
		return nil, errors.New("repository: WithSnapshots: nil store")
	}
	if err := checkSnapshottable(reflect.TypeFor[A](), codec); err != nil {
		return nil, fmt.Errorf("repository: WithSnapshots: aggregate type %v: %w", reflect.TypeFor[A](), err)
	}
	cfg := s.cfg
	if cfg.Events <= 0 {
		cfg.Events = 50_000
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 10 * time.Minute
	}
	return &snapshots{store: s.store, cfg: cfg, codec: codec, stop: make(chan struct{}), stopped: make(chan struct{})}, nil
}

var (
	jsonMarshaler = reflect.TypeFor[json.Marshaler]()
	textMarshaler = reflect.TypeFor[encoding.TextMarshaler]()
	binMarshaler  = reflect.TypeFor[encoding.BinaryMarshaler]()
)

// checkSnapshottable refuses a state type a codec would not carry whole:
// one with funcs, channels, interfaces (decoded as maps, not as what they
// held) or fields the codec skips (unexported, or tagged "-"). A snapshot of
// such a state would restore a different one. Types that marshal themselves
// are trusted.
func checkSnapshottable(t reflect.Type, codec event.Codec) error {
	seen := make(map[reflect.Type]bool)
	var walk func(t reflect.Type, path string) error
	walk = func(t reflect.Type, path string) error {
		if seen[t] {
			return nil
		}
		seen[t] = true
		for _, m := range []reflect.Type{jsonMarshaler, textMarshaler, binMarshaler} {
			if t.Implements(m) || reflect.PointerTo(t).Implements(m) {
				return nil
			}
		}
		switch t.Kind() {
		case reflect.Func, reflect.Chan, reflect.UnsafePointer, reflect.Interface:
			return fmt.Errorf("%s is a %v: a snapshot cannot carry it", path, t.Kind())
		case reflect.Pointer, reflect.Slice, reflect.Array:
			return walk(t.Elem(), path+"[]")
		case reflect.Map:
			if err := walk(t.Key(), path+" key"); err != nil {
				return err
			}
			return walk(t.Elem(), path+"[]")
		case reflect.Struct:
			for i := range t.NumField() {
				f := t.Field(i)
				name := path + "." + f.Name
				// An embedded struct's exported fields are promoted, and
				// encoded; any other unexported field is dropped.
				if !f.IsExported() && !(f.Anonymous && f.Type.Kind() == reflect.Struct) {
					return fmt.Errorf("%s is unexported: the codec would drop it (export it)", name)
				}
				for _, tag := range []string{"json", "msgpack"} {
					if f.Tag.Get(tag) == "-" { // "-," names a field "-"
						return fmt.Errorf("%s is tagged %s:\"-\": a snapshot would drop it", name, tag)
					}
				}
				if err := walk(f.Type, name); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk(t, t.String()); err != nil {
		return err
	}
	// And what the codec itself refuses.
	zero := reflect.New(t)
	data, err := codec.Marshal(zero.Interface())
	if err == nil {
		err = codec.Unmarshal(data, reflect.New(t).Interface())
	}
	if err != nil {
		return fmt.Errorf("does not round-trip through %s: %w", codec.ContentType(), err)
	}
	return nil
}
