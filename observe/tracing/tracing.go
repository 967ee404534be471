// Package tracing records what a repository does as OpenTelemetry spans: a
// Tracer is the repository's Observer (repository.WithObserver). The
// repository does not depend on OpenTelemetry; only a program that imports
// this package does.
//
// Spans: "rehydrate.command" for each Execute or Create, with the child
// "rehydrate.append" for its append; "rehydrate.restore" for each restore
// or takeover; "rehydrate.snapshot" for each snapshot stored. The command's
// trace context travels in its events' metadata (W3C traceparent and
// tracestate, the headers meta-traceparent and meta-tracestate), so that a
// projection handling an event joins the writer's trace: Extract.
//
//	tracer := tracing.New(otel.GetTracerProvider())
//	users, err := repository.New[User](p, reg, handlers..., repository.WithObserver(tracer))
//	// in a projection's handler:
//	ctx, span := otel.Tracer("reader").Start(tracing.Extract(ctx, env), "project "+env.Type)
package tracing

import (
	"context"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/repository"
)

// Instrumentation is the name spans are recorded under.
const Instrumentation = "github.com/rehydrate/rehydrate"

// propagator writes and reads trace contexts in event metadata.
var propagator = propagation.TraceContext{}

// Tracer is a repository.Observer that records spans, and a
// repository.MetadataInjector that puts the command's trace context in
// its events.
type Tracer struct {
	tracer trace.Tracer
}

// New returns a Tracer recording with tp.
func New(tp trace.TracerProvider) *Tracer {
	return &Tracer{tracer: tp.Tracer(Instrumentation)}
}

func end(span trace.Span, err error) {
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End()
}

// Command implements repository.Observer.
func (t *Tracer) Command(ctx context.Context, aggregateID string, create bool) (context.Context, func(int, error)) {
	kind := "execute"
	if create {
		kind = "create"
	}
	ctx, span := t.tracer.Start(ctx, "rehydrate.command", trace.WithSpanKind(trace.SpanKindInternal),
		trace.WithAttributes(attribute.String("rehydrate.aggregate.id", aggregateID), attribute.String("rehydrate.command.kind", kind)))
	return ctx, func(events int, err error) {
		span.SetAttributes(attribute.Int("rehydrate.events", events))
		end(span, err)
	}
}

// Append implements repository.Observer.
func (t *Tracer) Append(ctx context.Context, partition int32, events int) (context.Context, func(error)) {
	ctx, span := t.tracer.Start(ctx, "rehydrate.append", trace.WithSpanKind(trace.SpanKindProducer),
		trace.WithAttributes(attribute.Int("rehydrate.partition", int(partition)), attribute.Int("rehydrate.events", events)))
	return ctx, func(err error) { end(span, err) }
}

// Restore implements repository.Observer.
func (t *Tracer) Restore(ctx context.Context, partitions []int32) (context.Context, func(int64, error)) {
	ids := make([]int64, len(partitions))
	for i, p := range partitions {
		ids[i] = int64(p)
	}
	ctx, span := t.tracer.Start(ctx, "rehydrate.restore", trace.WithAttributes(attribute.Int64Slice("rehydrate.partitions", ids)))
	return ctx, func(events int64, err error) {
		span.SetAttributes(attribute.Int64("rehydrate.events", events))
		end(span, err)
	}
}

// Snapshot implements repository.Observer: a span of the snapshot's
// duration, ending now.
func (t *Tracer) Snapshot(partition int32, offset int64, bytes int, took time.Duration, err error) {
	now := time.Now()
	_, span := t.tracer.Start(context.Background(), "rehydrate.snapshot", trace.WithTimestamp(now.Add(-took)),
		trace.WithAttributes(attribute.Int("rehydrate.partition", int(partition)), attribute.Int64("rehydrate.offset", offset),
			attribute.Int("rehydrate.bytes", bytes)))
	if err != nil {
		span.RecordError(err)
		span.SetStatus(codes.Error, err.Error())
	}
	span.End(trace.WithTimestamp(now))
}

// InjectMetadata implements repository.MetadataInjector: the trace context
// of ctx goes into the events' metadata.
func (t *Tracer) InjectMetadata(ctx context.Context, metadata map[string]string) {
	propagator.Inject(ctx, propagation.MapCarrier(metadata))
}

// Extract returns ctx with the trace context env's writer put in its
// metadata, if any: a span started from it joins the writer's trace.
func Extract(ctx context.Context, env *event.Envelope) context.Context {
	if len(env.Metadata) == 0 {
		return ctx
	}
	return propagator.Extract(ctx, propagation.MapCarrier(env.Metadata))
}

var (
	_ repository.Observer         = (*Tracer)(nil)
	_ repository.MetadataInjector = (*Tracer)(nil)
)
