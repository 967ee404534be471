package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"time"

	"github.com/rehydrate/rehydrate/consume"
	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/provider"
)

// inspector reads a topic for an operator. Its commands print text, or one
// JSON object per line with asJSON; long reads report progress on progress.
type inspector struct {
	p        provider.Provider
	out      io.Writer
	progress io.Writer
	asJSON   bool
}

// emit prints v as a JSON line, or text as it is.
func (in *inspector) emit(v any, text string) {
	if in.asJSON {
		b, err := json.Marshal(v)
		if err != nil {
			b = fmt.Appendf(nil, `{"error":%q}`, err.Error())
		}
		fmt.Fprintf(in.out, "%s\n", b)
		return
	}
	fmt.Fprintln(in.out, text)
}

// read reads ranges to their ends, reporting progress every second.
func (in *inspector) read(ctx context.Context, ranges []provider.Range, fn func(event.Record) error) error {
	var total, done int64
	for _, r := range ranges {
		total += r.End - r.Start
	}
	last := time.Now()
	err := in.p.Read(ctx, ranges, 0, func(b provider.Batch) error {
		for _, rec := range b.Records {
			if err := fn(rec); err != nil {
				return err
			}
		}
		done += int64(len(b.Records))
		if in.progress != nil && time.Since(last) >= time.Second {
			last = time.Now()
			fmt.Fprintf(in.progress, "read %d of %d records\n", done, total)
		}
		return nil
	})
	return err
}

// partitionRow is one line of topics.
type partitionRow struct {
	Partition int32 `json:"partition"`
	Low       int64 `json:"low"`
	High      int64 `json:"high"`
	Records   int64 `json:"records"`
}

// topics lists the partitions and their offsets, and whether the topic
// keeps its events.
func (in *inspector) topics(ctx context.Context) error {
	ps, err := in.p.Partitions(ctx)
	if err != nil {
		return err
	}
	var total int64
	for _, p := range ps {
		row := partitionRow{Partition: p.ID, Low: p.Low, High: p.High, Records: p.High - p.Low}
		total += row.Records
		in.emit(row, fmt.Sprintf("partition %d: offsets [%d, %d), %d records", p.ID, p.Low, p.High, row.Records))
	}
	retention := "keeps its events"
	if rc, ok := in.p.(provider.RetentionChecker); ok {
		if err := rc.CheckRetention(ctx); err != nil {
			retention = err.Error()
		}
	} else {
		retention = "not checked: the provider cannot tell"
	}
	in.emit(map[string]any{"partitions": len(ps), "records": total, "retention": retention},
		fmt.Sprintf("%d partitions, %d records; retention: %s", len(ps), total, retention))
	return nil
}

// eventRow is one event as history and tail print it.
type eventRow struct {
	Partition int32             `json:"partition"`
	Offset    int64             `json:"offset"`
	Aggregate string            `json:"aggregate"`
	Version   uint64            `json:"version"`
	Type      string            `json:"type"`
	Time      time.Time         `json:"time"`
	Metadata  map[string]string `json:"metadata,omitempty"`
	Payload   any               `json:"payload"`
}

func rowOf(env event.Envelope) eventRow {
	return eventRow{Partition: env.Partition, Offset: env.Offset, Aggregate: env.AggregateID, Version: env.Version,
		Type: env.Type, Time: env.Time, Metadata: env.Metadata, Payload: decodePayload(env)}
}

func (r eventRow) text() string {
	payload, _ := json.Marshal(r.Payload)
	return fmt.Sprintf("%d/%d  %s v%d  %s  %s  %s", r.Partition, r.Offset, r.Aggregate, r.Version, r.Type,
		r.Time.Format(time.RFC3339Nano), payload)
}

// decodePayload decodes a payload without its Go type: JSON and msgpack
// both give maps, lists and scalars.
func decodePayload(env event.Envelope) any {
	var v any
	var err error
	switch env.ContentType {
	case event.ContentTypeJSON:
		err = json.Unmarshal(env.Payload, &v)
	case event.ContentTypeMsgpack:
		err = event.Msgpack.Unmarshal(env.Payload, &v)
	default:
		return fmt.Sprintf("(%d bytes of %s)", len(env.Payload), env.ContentType)
	}
	if err != nil {
		return fmt.Sprintf("(undecodable %s: %v)", env.ContentType, err)
	}
	return v
}

// aggregateRange is the range of the partition that holds id's events.
func (in *inspector) aggregateRange(ctx context.Context, id string) (provider.Range, error) {
	ps, err := in.p.Partitions(ctx)
	if err != nil {
		return provider.Range{}, err
	}
	part := provider.PartitionFor([]byte(id), len(ps))
	for _, p := range ps {
		if p.ID == part {
			return provider.Range{Partition: part, Start: p.Low, End: p.High}, nil
		}
	}
	return provider.Range{}, fmt.Errorf("partition %d of %s: not in the topic", part, id)
}

// events reads the events of aggregate id (every aggregate of the
// partition when id is "" and partition ≥ 0) that are before at.
func (in *inspector) events(ctx context.Context, id string, partition int32, at point, fn func(event.Envelope)) error {
	var r provider.Range
	var err error
	if id != "" {
		if r, err = in.aggregateRange(ctx, id); err != nil {
			return err
		}
	} else {
		ps, err := in.p.Partitions(ctx)
		if err != nil {
			return err
		}
		i := slices.IndexFunc(ps, func(p provider.Partition) bool { return p.ID == partition })
		if i < 0 {
			return fmt.Errorf("no partition %d", partition)
		}
		r = provider.Range{Partition: partition, Start: ps[i].Low, End: ps[i].High}
	}
	if at.offset >= 0 {
		r.End = min(r.End, at.offset)
	}
	return in.read(ctx, []provider.Range{r}, func(rec event.Record) error {
		if event.IsControl(rec) || id != "" && string(rec.Key) != id {
			return nil
		}
		env, err := event.ParseRecord(rec)
		if err != nil {
			return err
		}
		if !at.time.IsZero() && env.Time.After(at.time) {
			return nil
		}
		fn(env)
		return nil
	})
}

// span is the part of an aggregate's history to show, as an event store's
// "events by revision" and "events since" select it: versions from to to
// (both included; to 0: no end), and only events whose time is at or after
// since (zero: any time).
type span struct {
	from, to uint64
	since    time.Time
}

// now is the clock -since DURATION counts back from; tests set it.
var now = time.Now

// parseSpan reads history's flags. since is an RFC 3339 time or a duration
// back from now.
func parseSpan(from, to uint64, since string, now time.Time) (span, error) {
	sp := span{from: from, to: to}
	if to != 0 && from > to {
		return span{}, fmt.Errorf("-from-version %d is after -to-version %d", from, to)
	}
	if since == "" {
		return sp, nil
	}
	if t, err := time.Parse(time.RFC3339Nano, since); err == nil {
		sp.since = t
		return sp, nil
	}
	d, err := time.ParseDuration(since)
	if err != nil || d < 0 {
		return span{}, fmt.Errorf("-since %q: want an RFC 3339 time or a duration back from now (e.g. 90m)", since)
	}
	sp.since = now.Add(-d)
	return sp, nil
}

func (sp span) holds(env event.Envelope) bool {
	return env.Version >= sp.from && (sp.to == 0 || env.Version <= sp.to) && !env.Time.Before(sp.since)
}

// history prints the events of one aggregate in sp, read from its partition
// only. The whole partition is read even when sp ends early: a version
// written twice can stand anywhere after the first, and the event time is the
// writers' clock, not an order Kafka keeps, so no offset bounds either.
func (in *inspector) history(ctx context.Context, id string, sp span) error {
	var n, shown int
	var last uint64
	err := in.events(ctx, id, -1, point{offset: -1}, func(env event.Envelope) {
		n++
		last = max(last, env.Version)
		if !sp.holds(env) {
			return
		}
		shown++
		row := rowOf(env)
		in.emit(row, row.text())
	})
	switch {
	case err != nil:
		return err
	case n == 0:
		return fmt.Errorf("no events of aggregate %s", id)
	case shown == 0 && in.progress != nil:
		// Not a failure, as an empty range is not in an event store: a
		// script gets an empty output and status 0; a person learns why.
		fmt.Fprintf(in.progress, "aggregate %s: none of its %d events (last version %d) in the range\n", id, n, last)
	}
	return nil
}

// point is where state stops: before an offset (−1: none) or at a time.
type point struct {
	offset int64
	time   time.Time
}

func parsePoint(s string) (point, error) {
	if s == "" {
		return point{offset: -1}, nil
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil && n >= 0 {
		return point{offset: n}, nil
	}
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return point{}, fmt.Errorf("-at %q: want an offset or an RFC 3339 time", s)
	}
	return point{offset: -1, time: t}, nil
}

// stateRow is an aggregate as of a point.
type stateRow struct {
	Aggregate string         `json:"aggregate"`
	Version   uint64         `json:"version"`
	LastType  string         `json:"last_event"`
	Time      time.Time      `json:"time"`
	Offset    int64          `json:"offset"`
	Fields    map[string]any `json:"fields"`
}

// state rebuilds aggregates as of a point: each one's version, last event,
// and its payloads' fields merged in order (later ones win). Without the
// service's handlers that is what a generic tool can fold; a service shows
// its own state through its repository.
func (in *inspector) state(ctx context.Context, id string, partition int32, at point) error {
	states := make(map[string]*stateRow)
	err := in.events(ctx, id, partition, at, func(env event.Envelope) {
		s := states[env.AggregateID]
		if s == nil {
			s = &stateRow{Aggregate: env.AggregateID, Fields: map[string]any{}}
			states[env.AggregateID] = s
		}
		if env.Version <= s.Version {
			return // a duplicate
		}
		s.Version, s.LastType, s.Time, s.Offset = env.Version, env.Type, env.Time, env.Offset
		if m, ok := decodePayload(env).(map[string]any); ok {
			maps.Copy(s.Fields, m)
		}
	})
	if err != nil {
		return err
	}
	if id != "" && len(states) == 0 {
		return fmt.Errorf("no events of aggregate %s at that point", id)
	}
	for _, k := range slices.Sorted(maps.Keys(states)) {
		s := states[k]
		fields, _ := json.Marshal(s.Fields)
		in.emit(s, fmt.Sprintf("%s v%d (last %s at offset %d, %s): %s", s.Aggregate, s.Version, s.LastType, s.Offset,
			s.Time.Format(time.RFC3339Nano), fields))
	}
	return nil
}

// problem is one thing verify found wrong.
type problem struct {
	Partition int32  `json:"partition"`
	Offset    int64  `json:"offset"`
	Kind      string `json:"kind"`
	Detail    string `json:"detail"`
}

// verify reads the whole topic and reports what a restore would trip on or
// silently get wrong: undecodable records, records in the wrong partition,
// version gaps, versions written twice. It returns the number of problems.
func (in *inspector) verify(ctx context.Context) (int, error) {
	ps, err := in.p.Partitions(ctx)
	if err != nil {
		return 0, err
	}
	last := make(map[string]uint64) // aggregate → last version seen
	var problems, events, controls int
	report := func(rec event.Record, kind, detail string) {
		problems++
		p := problem{Partition: rec.Partition, Offset: rec.Offset, Kind: kind, Detail: detail}
		in.emit(p, fmt.Sprintf("%d/%d  %s: %s", p.Partition, p.Offset, kind, detail))
	}
	err = in.read(ctx, provider.Ranges(ps), func(rec event.Record) error {
		if event.IsControl(rec) {
			controls++
			return nil
		}
		env, err := event.ParseRecord(rec)
		if err != nil {
			report(rec, "undecodable", err.Error())
			return nil
		}
		events++
		if want := provider.PartitionFor(rec.Key, len(ps)); want != rec.Partition {
			report(rec, "foreign partition", fmt.Sprintf("aggregate %s belongs in partition %d", env.AggregateID, want))
		}
		if s, ok := decodePayload(env).(string); ok && len(s) > 0 && s[0] == '(' {
			report(rec, "undecodable payload", s)
		}
		key := env.AggregateType + "\x00" + env.AggregateID
		switch prev := last[key]; {
		case env.Version <= prev:
			report(rec, "duplicate", fmt.Sprintf("aggregate %s version %d after version %d", env.AggregateID, env.Version, prev))
			return nil
		case env.Version != prev+1:
			report(rec, "version gap", fmt.Sprintf("aggregate %s version %d after version %d", env.AggregateID, env.Version, prev))
		}
		last[key] = env.Version
		return nil
	})
	if err != nil {
		return problems, err
	}
	in.emit(map[string]any{"events": events, "aggregates": len(last), "control_records": controls, "problems": problems},
		fmt.Sprintf("%d events of %d aggregates, %d control records: %d problems", events, len(last), controls, problems))
	return problems, nil
}

// tail prints the events appended from now on until ctx ends.
func (in *inspector) tail(ctx context.Context) error {
	err := consume.Stream(ctx, in.p, consume.Live, consume.StreamOptions{}, func(b provider.Batch) error {
		for _, rec := range b.Records {
			env, err := event.ParseRecord(rec)
			if err != nil {
				in.emit(problem{Partition: rec.Partition, Offset: rec.Offset, Kind: "undecodable", Detail: err.Error()},
					fmt.Sprintf("%d/%d  undecodable: %v", rec.Partition, rec.Offset, err))
				continue
			}
			row := rowOf(env)
			in.emit(row, row.text())
		}
		return nil
	})
	if ctx.Err() != nil {
		return nil
	}
	return err
}
