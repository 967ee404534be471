package tracing_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/rehydrate/rehydrate/consume"
	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/observe/tracing"
	"github.com/rehydrate/rehydrate/provider"
	"github.com/rehydrate/rehydrate/provider/memory"
	"github.com/rehydrate/rehydrate/repository"
	rt "github.com/rehydrate/rehydrate/repository/repositorytest"
)

func TestSpansAndTheirContextInEvents(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec))
	p, err := memory.New(2)
	require.NoError(t, err)
	r := rt.NewRepository(t, p, repository.WithObserver(tracing.New(tp)))
	_, err = r.Restore(t.Context())
	require.NoError(t, err)

	ctx, parent := tp.Tracer("test").Start(context.Background(), "http POST /accounts")
	res, err := r.Create(ctx, "a", rt.Open("ada"), repository.WithMetadata(map[string]string{"correlation-id": "c1"}))
	require.NoError(t, err)
	parent.End()
	_, err = r.Execute(t.Context(), "nobody", rt.Deposit(1))
	require.ErrorIs(t, err, repository.ErrNotFound)

	spans := map[string][]sdktrace.ReadOnlySpan{}
	for _, s := range rec.Ended() {
		spans[s.Name()] = append(spans[s.Name()], s)
	}
	require.Len(t, spans["rehydrate.restore"], 1)
	require.Len(t, spans["rehydrate.command"], 2)
	require.Len(t, spans["rehydrate.append"], 1)
	command, appendSpan := spans["rehydrate.command"][0], spans["rehydrate.append"][0]
	assert.Equal(t, parent.SpanContext().SpanID(), command.Parent().SpanID(), "the command joins the caller's span")
	assert.Equal(t, command.SpanContext().SpanID(), appendSpan.Parent().SpanID(), "the append is the command's child")
	assert.Contains(t, command.Attributes(), attrString("rehydrate.aggregate.id", "a"))
	assert.Equal(t, "Error", spans["rehydrate.command"][1].Status().Code.String(), "a failed command is an error span")

	// The event carries the command's trace context; a reader's span joins it.
	env := res.Events[0]
	assert.Equal(t, "c1", env.Metadata["correlation-id"], "the caller's metadata stays")
	assert.NotEmpty(t, env.Metadata["traceparent"])
	var read []event.Envelope
	require.NoError(t, consume.Stream(t.Context(), p, consume.Replay, consume.StreamOptions{}, func(b provider.Batch) error {
		for _, r := range b.Records {
			e, err := event.ParseRecord(r)
			require.NoError(t, err)
			read = append(read, e)
		}
		return nil
	}))
	require.Len(t, read, 1)
	_, handled := tp.Tracer("reader").Start(tracing.Extract(context.Background(), &read[0]), "project Opened")
	handled.End()
	assert.Equal(t, command.SpanContext().TraceID(), handled.SpanContext().TraceID(), "the projection joins the writer's trace")
	assert.Equal(t, command.SpanContext().SpanID(), rec.Ended()[len(rec.Ended())-1].Parent().SpanID())
}

func attrString(k, v string) attribute.KeyValue { return attribute.String(k, v) }
