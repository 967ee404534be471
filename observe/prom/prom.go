// Package prom exports what a repository does as Prometheus metrics: a
// Collector is both the repository's Observer (repository.WithObserver)
// and a prometheus.Collector. The repository does not depend on Prometheus;
// only a program that imports this package does.
//
//	metrics := prom.New()
//	users, err := repository.New[User](p, reg, handlers..., repository.WithObserver(metrics))
//	metrics.Watch(users)
//	registry.MustRegister(metrics)
//
// Metrics (namespace "rehydrate" unless WithNamespace):
//
//	commands_total{kind,result}         commands by kind (create, execute) and result
//	command_duration_seconds{kind}      from a command's start to its end
//	appends_total{result}               appends by result (ok, refused, outcome_unknown)
//	append_duration_seconds             from an append's start to the log's acknowledgement
//	restores_total{result}              restores and takeovers by result
//	restore_duration_seconds            their duration
//	restored_events_total               events they applied (rate() gives events/s)
//	restore_done_events, restore_total_events   the progress of the restore running now
//	partitions_served                   partitions this instance serves
//	aggregates{partition}, aggregate_bytes{partition}   what each partition holds (bytes estimated)
//	snapshots_total{result}             snapshots stored or failed
//	snapshot_bytes{partition}           the last snapshot's size
//	snapshot_age_seconds{partition}     time since the partition's last snapshot
//	log_end_offset{partition}           the log's end (WatchLog), read-committed
//	lag_offsets{partition}              offsets of the log past what is in memory here (WatchLog):
//	                                    a follower's lag; a WithGroup writer shows 1 where its
//	                                    last commit's marker (no record) ends the partition
//
// Results: ok, not_found, exists, conflict, invalid, not_ready, not_owner,
// limit, unresolved, outcome_unknown, unavailable, canceled, error.
package prom

import (
	"context"
	"errors"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/provider"
	"github.com/rehydrate/rehydrate/repository"
)

// Source is what Watch reads on each scrape: a *repository.Repository of
// any aggregate type.
type Source interface {
	Progress() repository.Progress
	Stats() repository.Stats
	Owned() []int32
}

// Collector is a repository.Observer and a prometheus.Collector.
type Collector struct {
	commands       *prometheus.CounterVec
	commandSeconds *prometheus.HistogramVec
	appends        *prometheus.CounterVec
	appendSeconds  prometheus.Histogram
	restores       *prometheus.CounterVec
	restoreSeconds prometheus.Histogram
	restoredEvents prometheus.Counter
	snapshots      *prometheus.CounterVec
	snapshotBytes  *prometheus.GaugeVec

	restoreDone, restoreTotal, served, aggregates, aggregateBytes, snapshotAge, logEnd, lag *prometheus.Desc

	mu           sync.Mutex
	source       Source
	log          provider.Provider
	lastSnapshot map[int32]time.Time
}

// Option configures a Collector.
type Option func(*options)

type options struct {
	namespace string
	labels    prometheus.Labels
}

// WithNamespace prefixes the metrics' names (default "rehydrate").
func WithNamespace(ns string) Option { return func(o *options) { o.namespace = ns } }

// WithLabels adds constant labels to every metric, e.g. the aggregate
// type of a service with several repositories.
func WithLabels(l prometheus.Labels) Option { return func(o *options) { o.labels = l } }

// New returns a Collector; give it to repository.WithObserver, then Watch
// the repository.
func New(opts ...Option) *Collector {
	o := options{namespace: "rehydrate"}
	for _, f := range opts {
		f(&o)
	}
	ns, cl := o.namespace, o.labels
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(ns, "", name), help, labels, cl)
	}
	latency := prometheus.ExponentialBuckets(0.0005, 2, 16) // 0.5 ms … 16 s
	return &Collector{
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "commands_total", ConstLabels: cl,
			Help: "Commands by kind (create, execute) and result."}, []string{"kind", "result"}),
		commandSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Name: "command_duration_seconds", ConstLabels: cl,
			Help: "Time from a command's start to its end.", Buckets: latency}, []string{"kind"}),
		appends: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "appends_total", ConstLabels: cl,
			Help: "Appends of commands' events by result: ok, refused (nothing written), outcome_unknown."}, []string{"result"}),
		appendSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "append_duration_seconds", ConstLabels: cl,
			Help: "Time from an append's start to the log's answer.", Buckets: latency}),
		restores: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "restores_total", ConstLabels: cl,
			Help: "Restores and takeovers of partitions by result."}, []string{"result"}),
		restoreSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: ns, Name: "restore_duration_seconds", ConstLabels: cl,
			Help: "Duration of restores and takeovers.", Buckets: prometheus.ExponentialBuckets(0.01, 2, 16)}),
		restoredEvents: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Name: "restored_events_total", ConstLabels: cl,
			Help: "Events applied by restores and takeovers."}),
		snapshots: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Name: "snapshots_total", ConstLabels: cl,
			Help: "Snapshots of partitions stored (ok) or failed (error)."}, []string{"result"}),
		snapshotBytes: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Name: "snapshot_bytes", ConstLabels: cl,
			Help: "Size of the partition's last snapshot."}, []string{"partition"}),
		restoreDone:    desc("restore_done_events", "Records the restore running now has applied."),
		restoreTotal:   desc("restore_total_events", "Records the restore running now reads."),
		served:         desc("partitions_served", "Partitions this instance serves."),
		aggregates:     desc("aggregates", "Aggregates a partition holds in memory, deleted ones included.", "partition"),
		aggregateBytes: desc("aggregate_bytes", "Estimated memory of a partition's aggregates.", "partition"),
		snapshotAge:    desc("snapshot_age_seconds", "Time since the partition's last snapshot.", "partition"),
		logEnd:         desc("log_end_offset", "The log's end offset (read-committed), of each partition served.", "partition"),
		lag:            desc("lag_offsets", "Offsets of the log past what is in memory here, of each partition served; a transactional writer's last commit marker counts 1.", "partition"),
		lastSnapshot:   make(map[int32]time.Time),
	}
}

// WatchLog makes the collector ask p, the provider of the watched
// repository, for its partitions' end offsets on each scrape (within
// logTimeout), and report the log's end and the lag of each partition the
// repository serves.
func (c *Collector) WatchLog(p provider.Provider) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.log = p
}

// logTimeout bounds a scrape's wait for the log's end offsets.
const logTimeout = 2 * time.Second

// Watch makes the collector report src's progress, partitions and memory.
func (c *Collector) Watch(src Source) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.source = src
}

func (c *Collector) vecs() []prometheus.Collector {
	return []prometheus.Collector{c.commands, c.commandSeconds, c.appends, c.appendSeconds, c.restores,
		c.restoreSeconds, c.restoredEvents, c.snapshots, c.snapshotBytes}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, v := range c.vecs() {
		v.Describe(ch)
	}
	for _, d := range []*prometheus.Desc{c.restoreDone, c.restoreTotal, c.served, c.aggregates, c.aggregateBytes, c.snapshotAge, c.logEnd, c.lag} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	for _, v := range c.vecs() {
		v.Collect(ch)
	}
	c.mu.Lock()
	src, log := c.source, c.log
	last := make(map[int32]time.Time, len(c.lastSnapshot))
	for p, t := range c.lastSnapshot {
		last[p] = t
	}
	c.mu.Unlock()
	if src == nil {
		return
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	pr := src.Progress()
	gauge(c.restoreDone, float64(pr.Done))
	gauge(c.restoreTotal, float64(pr.Total))
	owned := src.Owned()
	gauge(c.served, float64(len(owned)))
	stats := src.Stats().Partitions
	for _, ps := range stats {
		if ps.Aggregates == 0 && ps.Bytes == 0 {
			continue // not served here
		}
		p := strconv.Itoa(int(ps.Partition))
		gauge(c.aggregates, float64(ps.Aggregates), p)
		gauge(c.aggregateBytes, float64(ps.Bytes), p)
	}
	if log != nil {
		c.collectLag(ch, log, owned, stats)
	}
	for _, id := range owned {
		if t, ok := last[id]; ok {
			gauge(c.snapshotAge, time.Since(t).Seconds(), strconv.Itoa(int(id)))
		}
	}
}

// collectLag reports the log's end and the lag of the partitions served. A
// log that does not answer in time is left out of this scrape (the
// repository's appends and restores report unavailability).
func (c *Collector) collectLag(ch chan<- prometheus.Metric, log provider.Provider, owned []int32, stats []repository.PartitionStats) {
	ctx, cancel := context.WithTimeout(context.Background(), logTimeout)
	defer cancel()
	ps, err := log.Partitions(ctx)
	if err != nil {
		return
	}
	applied := make(map[int32]int64, len(stats))
	for _, s := range stats {
		applied[s.Partition] = s.Applied
	}
	for _, p := range ps {
		if at, ok := applied[p.ID]; !ok || at < 0 || !slices.Contains(owned, p.ID) {
			continue // not served here, or still being restored
		}
		label := strconv.Itoa(int(p.ID))
		ch <- prometheus.MustNewConstMetric(c.logEnd, prometheus.GaugeValue, float64(p.High), label)
		ch <- prometheus.MustNewConstMetric(c.lag, prometheus.GaugeValue, float64(max(p.High-applied[p.ID], 0)), label)
	}
}

func kind(create bool) string {
	if create {
		return "create"
	}
	return "execute"
}

// Result names an error of Execute or Create for a metric label.
func Result(err error) string {
	var pe *repository.PartitionError
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, repository.ErrOutcomeUnknown):
		return "outcome_unknown"
	case errors.Is(err, repository.ErrUnresolved):
		return "unresolved"
	case errors.As(err, &pe) && errors.Is(err, repository.ErrNotOwner):
		return "not_owner"
	case errors.Is(err, repository.ErrNotReady):
		return "not_ready"
	case errors.Is(err, repository.ErrNotFound):
		return "not_found"
	case errors.Is(err, repository.ErrExists):
		return "exists"
	case errors.Is(err, repository.ErrConcurrency):
		return "conflict"
	case errors.Is(err, event.ErrInvalid):
		return "invalid"
	case errors.Is(err, repository.ErrLimit):
		return "limit"
	case errors.Is(err, repository.ErrUnavailable):
		return "unavailable"
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return "canceled"
	}
	return "error"
}

// Command implements repository.Observer.
func (c *Collector) Command(ctx context.Context, _ string, create bool) (context.Context, func(int, error)) {
	start := time.Now()
	return ctx, func(_ int, err error) {
		k := kind(create)
		c.commands.WithLabelValues(k, Result(err)).Inc()
		c.commandSeconds.WithLabelValues(k).Observe(time.Since(start).Seconds())
	}
}

// Append implements repository.Observer.
func (c *Collector) Append(ctx context.Context, _ int32, _ int) (context.Context, func(error)) {
	start := time.Now()
	return ctx, func(err error) {
		c.appendSeconds.Observe(time.Since(start).Seconds())
		switch {
		case err == nil:
			c.appends.WithLabelValues("ok").Inc()
		case errors.Is(err, repository.ErrOutcomeUnknown):
			c.appends.WithLabelValues("outcome_unknown").Inc()
		default:
			c.appends.WithLabelValues("refused").Inc()
		}
	}
}

// Restore implements repository.Observer.
func (c *Collector) Restore(ctx context.Context, _ []int32) (context.Context, func(int64, error)) {
	start := time.Now()
	return ctx, func(events int64, err error) {
		c.restores.WithLabelValues(Result(err)).Inc()
		c.restoreSeconds.Observe(time.Since(start).Seconds())
		c.restoredEvents.Add(float64(events))
	}
}

// Snapshot implements repository.Observer.
func (c *Collector) Snapshot(partition int32, _ int64, bytes int, _ time.Duration, err error) {
	if err != nil {
		c.snapshots.WithLabelValues("error").Inc()
		return
	}
	c.snapshots.WithLabelValues("ok").Inc()
	c.snapshotBytes.WithLabelValues(strconv.Itoa(int(partition))).Set(float64(bytes))
	c.mu.Lock()
	c.lastSnapshot[partition] = time.Now()
	c.mu.Unlock()
}

var _ repository.Observer = (*Collector)(nil)
var _ prometheus.Collector = (*Collector)(nil)
