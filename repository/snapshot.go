package repository

import (
	"context"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/provider"
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

// PartitionStats says how a partition was last restored.
type PartitionStats struct {
	Partition int32
	// Snapshot is the offset of the snapshot the partition was restored
	// from, -1 when it was read from its first event.
	Snapshot int64
	// Fallback says why no snapshot was used, when snapshots are on.
	Fallback string
	// Start and End are the offsets the restore read between.
	Start, End int64
	// Aggregates and Bytes describe what the partition holds in memory
	// now, deleted aggregates included; Bytes is an estimate (the entries,
	// their ids, and what their states refer to, sampled). Zero for a
	// partition this instance does not serve.
	Aggregates int
	Bytes      int64
	// Applied is the offset up to which this instance has every record of
	// the partition in memory: read by the restore or Follow, or
	// acknowledged to its appends. The log's end offset minus Applied is
	// how far it lags, in offsets (transaction markers included). -1 for a
	// partition it does not serve (or not yet).
	Applied int64
}

// start is where a partition's restore begins: its aggregates from a
// snapshot (none for a replay), and the offset to read from.
type start[A any] struct {
	aggs  map[string]*entry[A]
	stats PartitionStats
}

// starts returns where the restore of each partition of ps begins: the
// newest usable snapshot, else the partition's first offset. A partition
// that cannot be replayed (its first events are gone) and has no usable
// snapshot fails, wrapping provider.ErrNotRetained.
func (r *Repository[A]) starts(ctx context.Context, ps []provider.Partition) (map[int32]*start[A], error) {
	out := make(map[int32]*start[A], len(ps))
	for _, p := range ps {
		out[p.ID] = &start[A]{aggs: make(map[string]*entry[A]),
			stats: PartitionStats{Partition: p.ID, Snapshot: -1, Start: p.Low, End: p.High}}
	}
	if r.snaps != nil {
		r.fromSnapshots(ctx, ps, out)
	}
	var gone []string
	for _, p := range ps {
		if st := out[p.ID]; st.stats.Snapshot < 0 && p.Low > 0 {
			why := ""
			if st.stats.Fallback != "" {
				why = " (" + st.stats.Fallback + ")"
			}
			gone = append(gone, fmt.Sprintf("partition %d starts at offset %d%s", p.ID, p.Low, why))
		}
	}
	if len(gone) > 0 {
		return nil, fmt.Errorf("%s, not 0: the events below are gone (expired or deleted) and no snapshot holds them: %w",
			strings.Join(gone, ", "), provider.ErrNotRetained)
	}
	return out, nil
}

// fromSnapshots fills out with the partitions' newest usable snapshots. A
// partition without one is replayed; why is logged and kept in its stats.
func (r *Repository[A]) fromSnapshots(ctx context.Context, ps []provider.Partition, out map[int32]*start[A]) {
	ids := make([]int32, len(ps))
	bounds := make(map[int32]provider.Partition, len(ps))
	for i, p := range ps {
		ids[i], bounds[p.ID] = p.ID, p
	}
	s := r.snaps
	decoded := make(map[int32]map[string]*entry[A], len(ps))
	// Load calls accept newest first: a snapshot refused here, one that
	// does not decode included, leaves the next older one to try.
	loaded, err := s.store.Load(ctx, ids, func(sn *snapshot.Snapshot) error {
		p := bounds[sn.Partition]
		switch {
		case sn.StateVersion != s.cfg.StateVersion:
			return fmt.Errorf("state version %d, this repository's is %d", sn.StateVersion, s.cfg.StateVersion)
		case sn.Codec != s.codec.ContentType():
			return fmt.Errorf("states encoded as %s, this repository's codec is %s", sn.Codec, s.codec.ContentType())
		case sn.Offset < p.Low:
			return fmt.Errorf("offset %d is below the partition's first offset %d: the events between are gone", sn.Offset, p.Low)
		case sn.Offset > p.High:
			return fmt.Errorf("offset %d is beyond the partition's end %d: a snapshot of another history (was the topic recreated?)", sn.Offset, p.High)
		case sn.Anchor == (snapshot.Anchor{}) && sn.Offset > p.Low:
			return fmt.Errorf("holds no event to check it against the partition's history")
		}
		aggs, err := r.decodeSnapshot(sn)
		if err != nil {
			return err
		}
		decoded[sn.Partition] = aggs
		return nil
	})
	if err != nil {
		r.log.Error("snapshots unreadable: replaying every partition", "err", err)
		for _, st := range out {
			st.stats.Fallback = "snapshots unreadable: " + err.Error()
		}
		return
	}
	foreign, err := snapshot.CheckAnchors(ctx, r.p, loaded)
	if err != nil {
		r.log.Error("snapshots not checked against the log: replaying every partition", "err", err)
		for _, st := range out {
			st.stats.Fallback = "snapshots not checked against the log: " + err.Error()
		}
		return
	}
	for _, id := range ids {
		st, l := out[id], loaded[id]
		var reasons []string
		for _, rej := range l.Rejected {
			reasons = append(reasons, rej.String())
		}
		if sn := l.Snapshot; sn != nil {
			if why, bad := foreign[id]; !bad {
				st.aggs = decoded[id]
				st.stats.Snapshot, st.stats.Start = sn.Offset, sn.Offset
				if len(reasons) > 0 {
					r.log.Warn("newer snapshots unusable", "partition", id, "used", sn.Offset, "reasons", reasons)
				}
				continue
			} else {
				reasons = append(reasons, fmt.Sprintf("snapshot %s at offset %d: %s", sn.ID, sn.Offset, why))
			}
		}
		if len(reasons) == 0 {
			reasons = append(reasons, "no snapshot stored")
		}
		st.stats.Fallback = strings.Join(reasons, "; ")
		r.log.Warn("no usable snapshot: replaying the partition", "partition", id, "reasons", reasons)
	}
}

// decodeSnapshot decodes a snapshot's entries into a partition's map.
func (r *Repository[A]) decodeSnapshot(sn *snapshot.Snapshot) (map[string]*entry[A], error) {
	aggs := make(map[string]*entry[A], sn.Aggregates)
	for e, err := range snapshot.Entries(sn.Data) {
		if err != nil {
			return nil, err
		}
		if provider.PartitionFor([]byte(e.ID), len(r.parts)) != sn.Partition {
			return nil, fmt.Errorf("aggregate %s belongs in partition %d", e.ID, provider.PartitionFor([]byte(e.ID), len(r.parts)))
		}
		ent := &entry[A]{version: e.Version, offset: e.Offset, deleted: e.Deleted, otherType: e.OtherType}
		if !e.Deleted && e.OtherType == "" {
			if err := r.snaps.codec.Unmarshal(e.State, &ent.state); err != nil {
				return nil, fmt.Errorf("aggregate %s: state: %w", e.ID, err)
			}
		}
		aggs[e.ID] = ent
	}
	if len(aggs) != sn.Aggregates {
		return nil, fmt.Errorf("%d aggregates, the manifest says %d", len(aggs), sn.Aggregates)
	}
	return aggs, nil
}

// Snapshot writes now a snapshot of every partition this instance serves
// that changed since its last one, and returns once they are stored (or
// why not); a partition revoked or restored again while it is copied is
// left out, not an error. Call it before a clean shutdown, so that the next
// start reads almost nothing but snapshots. Without WithSnapshots it
// returns an error.
func (r *Repository[A]) Snapshot(ctx context.Context) error {
	if r.snaps == nil {
		return errors.New("repository: Snapshot: no snapshot store (WithSnapshots)")
	}
	if !r.isReady() {
		return ErrNotReady
	}
	var errs []error
	for _, pt := range r.parts {
		if pt.status.Load() == partServing && pt.changes.Load() > 0 {
			errs = append(errs, r.snapshotPartition(ctx, pt))
		}
	}
	return errors.Join(errs...)
}

// snapshotPartition takes and stores a snapshot of pt.
//
// Why the snapshot is consistent: it must hold, for every aggregate, at
// least every event of it below its offset (it may hold later ones: a
// restore skips events not newer than an aggregate's version). The offset is
// taken first, as the partition's read position or just past this
// instance's last acknowledged append, whichever is later: every event below
// it was read or appended and acknowledged here, so it is applied, since this
// instance is the partition's only writer (the group fences any other). An
// append in flight at that moment is applied before its aggregate's lock is
// released, which the copy takes; one whose outcome is unknown may have
// landed anywhere after its aggregate's unresolved mark, so the offset is
// lowered below that. Appends that start later land beyond the offset.
// Aggregates are copied one at a time under their lock, each encoded at
// once: a command waits at most for one aggregate's encoding.
func (r *Repository[A]) snapshotPartition(ctx context.Context, pt *partition[A]) error {
	pt.snapMu.Lock()
	defer pt.snapMu.Unlock()
	epoch := pt.epoch.Load()
	if pt.status.Load() != partServing {
		return nil
	}
	began := time.Now()
	changes := pt.changes.Load()
	offset := pt.upTo()
	codec := r.snaps.codec
	var data []byte
	n := 0
	// longest is the longest an aggregate's lock was held for the copy: the
	// longest a command can have waited for the snapshot (reported).
	var longest time.Duration
	var anchor snapshot.Anchor // the entry of highest offset
	for id, e := range pt.entries() {
		e.mu.Lock()
		locked := time.Now()
		if e.unresolved != nil {
			offset = min(offset, *e.unresolved+1)
		}
		if e.removed || e.version == 0 && e.otherType == "" {
			e.mu.Unlock()
			continue
		}
		var state []byte
		if !e.deleted && e.otherType == "" {
			var err error
			if state, err = codec.Marshal(&e.state); err != nil {
				e.mu.Unlock()
				return fmt.Errorf("repository: snapshot of partition %d: aggregate %s: %w", pt.id, id, err)
			}
		}
		data = snapshot.AppendEntry(data, snapshot.Entry{ID: id, Version: e.version, Offset: e.offset, Deleted: e.deleted,
			OtherType: e.otherType, State: state})
		if e.offset >= 0 && e.offset > anchor.Offset || anchor.AggregateID == "" {
			anchor = snapshot.Anchor{Offset: e.offset, AggregateID: id, Version: e.version}
		}
		e.mu.Unlock()
		longest = max(longest, time.Since(locked))
		n++
	}
	copied := time.Since(began)
	if pt.epoch.Load() != epoch || pt.status.Load() != partServing {
		return nil // revoked or restored again meanwhile: the copy may be partial
	}
	sn := &snapshot.Snapshot{Partition: pt.id, Offset: offset, StateVersion: r.snaps.cfg.StateVersion,
		Codec: codec.ContentType(), Aggregates: n, Data: data}
	if anchor.Offset >= 0 && anchor.AggregateID != "" {
		sn.Anchor = anchor
	}
	err := r.snaps.store.Save(ctx, sn)
	r.settings.observer.Snapshot(pt.id, offset, len(data), time.Since(began), err)
	if err != nil {
		return fmt.Errorf("repository: snapshot of partition %d: %w", pt.id, err)
	}
	if pt.epoch.Load() == epoch {
		// A restore meanwhile started the count again: leave it.
		pt.changes.Add(-changes)
		pt.lastSnapshot.Store(time.Now().UnixNano())
	}
	r.log.Info("snapshot saved", "partition", pt.id, "offset", offset, "aggregates", n, "bytes", len(data),
		"copy", copied, "longest_lock", longest, "took", time.Since(began))
	return nil
}

// snapshotLoop takes snapshots in the background, as Snapshots says, until
// Close. A failed snapshot is tried again after a pause.
func (r *Repository[A]) snapshotLoop() {
	s := r.snaps
	defer close(s.stopped)
	tick := max(time.Millisecond, min(time.Second, s.cfg.Interval/4))
	t := time.NewTicker(tick)
	defer t.Stop()
	retryAt := make(map[int32]time.Time)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		<-s.stop
		cancel()
	}()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		}
		now := time.Now()
		for _, pt := range r.parts {
			changes := pt.changes.Load()
			due := changes >= s.cfg.Events ||
				changes > 0 && now.Sub(time.Unix(0, pt.lastSnapshot.Load())) >= s.cfg.Interval
			if !due || pt.status.Load() != partServing || now.Before(retryAt[pt.id]) {
				continue
			}
			if err := r.snapshotPartition(ctx, pt); err != nil {
				if ctx.Err() != nil {
					return
				}
				r.log.Error("snapshot failed; retrying", "partition", pt.id, "err", err)
				retryAt[pt.id] = now.Add(min(s.cfg.Interval, 10*time.Second))
			}
		}
	}
}

// startSnapshots starts the background snapshots, once.
func (r *Repository[A]) startSnapshots() {
	if r.snaps != nil {
		r.snaps.startLoop.Do(func() { go r.snapshotLoop() })
	}
}

// close stops the background snapshots, if they run, and waits for them.
func (s *snapshots) close() {
	if s == nil {
		return
	}
	s.startLoop.Do(func() { close(s.stopped) }) // never started: nothing to wait for
	s.stopLoop.Do(func() { close(s.stop) })
	<-s.stopped
}

// sortedPartitionStats returns the stats of every partition restored so far.
func sortedPartitionStats(m map[int32]PartitionStats) []PartitionStats {
	out := make([]PartitionStats, 0, len(m))
	for _, s := range m {
		out = append(out, s)
	}
	slices.SortFunc(out, func(a, b PartitionStats) int { return int(a.Partition - b.Partition) })
	return out
}
