package repository

import (
	"context"
	"time"
)

// Observer is told what a repository does, for metrics and tracing: the
// packages under observe/ implement it for Prometheus and OpenTelemetry,
// so that the repository itself depends on neither. Methods are called
// from many goroutines at once and must return quickly; a method's done
// function is called once, when what it observes ends.
type Observer interface {
	// Command is called when Execute or Create starts; done when it ends,
	// with the events appended (0 on error or when the command raised
	// none) and its error. The returned context carries on to Append.
	Command(ctx context.Context, aggregateID string, create bool) (context.Context, func(events int, err error))
	// Append is called before a command's events are appended to
	// partition; done with the append's error.
	Append(ctx context.Context, partition int32, events int) (context.Context, func(err error))
	// Restore is called when the restore of partitions starts (Restore,
	// and each takeover under WithGroup); done with the events it applied
	// and its error.
	Restore(ctx context.Context, partitions []int32) (context.Context, func(events int64, err error))
	// Snapshot is called when a snapshot of partition was stored (err nil)
	// or failed.
	Snapshot(partition int32, offset int64, bytes int, took time.Duration, err error)
}

// MetadataInjector is an optional capability of an Observer: it adds
// entries to the metadata of every event a command appends (a trace
// context, say). ctx is the command's, as Observer.Command returned it;
// metadata is the command's own copy.
type MetadataInjector interface {
	InjectMetadata(ctx context.Context, metadata map[string]string)
}

// WithObserver has o told what the repository does (see Observer).
func WithObserver(o Observer) Option {
	return optionFunc(func(s *settings) { s.observer = o })
}

// noObserver is the Observer of a repository without WithObserver.
type noObserver struct{}

func (noObserver) Command(ctx context.Context, _ string, _ bool) (context.Context, func(int, error)) {
	return ctx, func(int, error) {}
}

func (noObserver) Append(ctx context.Context, _ int32, _ int) (context.Context, func(error)) {
	return ctx, func(error) {}
}

func (noObserver) Restore(ctx context.Context, _ []int32) (context.Context, func(int64, error)) {
	return ctx, func(int64, error) {}
}

func (noObserver) Snapshot(int32, int64, int, time.Duration, error) {}

// Observers returns an Observer that tells each of os, in order (their
// MetadataInjectors too): metrics and tracing at once.
func Observers(os ...Observer) Observer { return observers(os) }

type observers []Observer

func (os observers) Command(ctx context.Context, id string, create bool) (context.Context, func(int, error)) {
	dones := make([]func(int, error), len(os))
	for i, o := range os {
		ctx, dones[i] = o.Command(ctx, id, create)
	}
	return ctx, func(events int, err error) {
		for i := len(dones) - 1; i >= 0; i-- {
			dones[i](events, err)
		}
	}
}

func (os observers) Append(ctx context.Context, partition int32, events int) (context.Context, func(error)) {
	dones := make([]func(error), len(os))
	for i, o := range os {
		ctx, dones[i] = o.Append(ctx, partition, events)
	}
	return ctx, func(err error) {
		for i := len(dones) - 1; i >= 0; i-- {
			dones[i](err)
		}
	}
}

func (os observers) Restore(ctx context.Context, partitions []int32) (context.Context, func(int64, error)) {
	dones := make([]func(int64, error), len(os))
	for i, o := range os {
		ctx, dones[i] = o.Restore(ctx, partitions)
	}
	return ctx, func(events int64, err error) {
		for i := len(dones) - 1; i >= 0; i-- {
			dones[i](events, err)
		}
	}
}

func (os observers) Snapshot(partition int32, offset int64, bytes int, took time.Duration, err error) {
	for _, o := range os {
		o.Snapshot(partition, offset, bytes, took, err)
	}
}

func (os observers) InjectMetadata(ctx context.Context, metadata map[string]string) {
	for _, o := range os {
		if inj, ok := o.(MetadataInjector); ok {
			inj.InjectMetadata(ctx, metadata)
		}
	}
}
