package repository

import (
	"reflect"
	"sync/atomic"
	"unsafe"
)

// Limits bounds what a repository holds in memory (WithLimits), so that a
// state larger than planned fails clearly instead of the process being
// killed for memory.
type Limits struct {
	// Aggregates caps the aggregates held, deleted ones included (they are
	// kept to refuse their ids), over every partition the instance serves.
	// 0 means no cap. Stats().Partitions reports the approximate bytes per
	// aggregate to size it from a memory budget.
	Aggregates int64
}

// WithLimits bounds the repository's memory: a restore or takeover that
// would hold more aggregates fails with a *LimitError (errors.Is ErrLimit)
// naming the partition, and Create refuses a new aggregate with one.
func WithLimits(l Limits) Option {
	return optionFunc(func(s *settings) { s.limits = l })
}

// heldCount counts the aggregates in memory over all partitions, against a
// maximum (0: none).
type heldCount struct {
	n   atomic.Int64
	max int64
}

// add adds d (negative to remove) unless that would pass the maximum; a
// refused add changes nothing.
func (h *heldCount) add(d int64) error {
	if d <= 0 || h.max == 0 {
		h.n.Add(d)
		return nil
	}
	for {
		n := h.n.Load()
		if n+d > h.max {
			return ErrLimit
		}
		if h.n.CompareAndSwap(n, n+d) {
			return nil
		}
	}
}

// sampledBytes estimates the memory a partition's aggregates take: the
// entries' fixed size, plus their ids and the indirect memory of their states
// (strings, slices, maps) measured on up to 64 of them, at random.
func (pt *partition[A]) sampledBytes() (aggregates int, bytes int64) {
	const sampleSize = 64
	pt.mu.RLock()
	defer pt.mu.RUnlock()
	var sampledBytes int64
	sampled := 0
	for id, e := range pt.aggs { // map iteration starts at random
		if sampled == sampleSize {
			break
		}
		if e.mu.TryLock() { // a busy aggregate is skipped, not waited for
			sampledBytes += int64(len(id)) + deepSize(reflect.ValueOf(&e.state).Elem())
			e.mu.Unlock()
			sampled++
		}
	}
	n := len(pt.aggs)
	// A map slot costs about its key, its value and a control byte.
	perEntry := int64(unsafe.Sizeof(entry[A]{})) + int64(unsafe.Sizeof("")+unsafe.Sizeof(uintptr(0))) + 1
	bytes = int64(n) * perEntry
	if sampled > 0 {
		bytes += sampledBytes * int64(n) / int64(sampled)
	}
	return n, bytes
}

// deepSize is the memory v refers to beyond its own size: string bytes,
// slice backing arrays, map entries, pointees.
func deepSize(v reflect.Value) int64 {
	switch v.Kind() {
	case reflect.String:
		return int64(v.Len())
	case reflect.Pointer:
		if v.IsNil() {
			return 0
		}
		return int64(v.Type().Elem().Size()) + deepSize(v.Elem())
	case reflect.Slice:
		if v.IsNil() {
			return 0
		}
		n := int64(v.Cap()) * int64(v.Type().Elem().Size())
		for i := range v.Len() {
			n += deepSize(v.Index(i))
		}
		return n
	case reflect.Array:
		var n int64
		for i := range v.Len() {
			n += deepSize(v.Index(i))
		}
		return n
	case reflect.Map:
		n := int64(v.Len()) * int64(v.Type().Key().Size()+v.Type().Elem().Size()+1)
		for it := v.MapRange(); it.Next(); {
			n += deepSize(it.Key()) + deepSize(it.Value())
		}
		return n
	case reflect.Struct:
		var n int64
		for i := range v.NumField() {
			n += deepSize(v.Field(i))
		}
		return n
	case reflect.Interface:
		if v.IsNil() {
			return 0
		}
		return int64(v.Elem().Type().Size()) + deepSize(v.Elem())
	}
	return 0
}
