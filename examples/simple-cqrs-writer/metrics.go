package main

import (
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/rehydrate/rehydrate/examples/users"
	"github.com/rehydrate/rehydrate/observe/prom"
	"github.com/rehydrate/rehydrate/repository"
)

// metrics are the writer's Prometheus metrics, on a registry of their own
// (never the global one: a library or a test must not see them).
type metrics struct {
	reg           *prometheus.Registry
	commands      *prometheus.CounterVec
	appendSeconds *prometheus.HistogramVec
	forwards      *prometheus.CounterVec
}

// newMetrics registers the writer's own metrics (by HTTP command) beside
// the repository's, which obs collects (rehydrate_*: commands, appends,
// restores and their progress, partitions, memory, snapshots; obs must be
// the repository's Observer to count commands).
func newMetrics(repo *repository.Repository[users.User], obs *prom.Collector) *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "users_commands_total",
			Help: "Commands by command (create, update, delete, unknown) and result (ok, unchanged, bad_request, too_large, not_found, conflict, invalid, not_ready, unavailable, outcome_unknown, unresolved, error).",
		}, []string{"command", "result"}),
		appendSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "users_append_duration_seconds",
			Help:    "Time from a command's start to Kafka's acknowledgement of its events, for commands that appended.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16), // 0.5 ms … 16 s
		}, []string{"command"}),
		forwards: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "users_forwarded_total",
			Help: "Requests for users this instance does not own, by result: ok (answered by the owner), unavailable (503, owner unknown, moving or unreachable) or unknown (sent, the owner's answer lost: 503 with outcome_unknown).",
		}, []string{"result"}),
	}
	m.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		m.commands, m.appendSeconds, m.forwards,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "rehydrate_ready",
			Help: "1 once the first restore has succeeded and commands are served.",
		}, func() float64 {
			select {
			case <-repo.Ready():
				return 1
			default:
				return 0
			}
		}),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "users_current",
			Help: "Users in memory, deleted ones excluded.",
		}, func() float64 { return float64(repo.Len()) }),
	)
	if repo != nil { // the fuzz tests' metrics watch no repository
		obs.Watch(repo)
	}
	m.reg.MustRegister(obs)
	return m
}

func (m *metrics) handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Registry: m.reg})
}

func (m *metrics) command(command, result string) {
	m.commands.WithLabelValues(command, result).Inc()
}

func (m *metrics) appended(command string, d time.Duration) {
	m.appendSeconds.WithLabelValues(command).Observe(d.Seconds())
}

func (m *metrics) forwarded(result string) {
	m.forwards.WithLabelValues(result).Inc()
}
