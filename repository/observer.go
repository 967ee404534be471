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
