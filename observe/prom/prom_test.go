package prom_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rehydrate/rehydrate/observe/prom"
	"github.com/rehydrate/rehydrate/provider/memory"
	"github.com/rehydrate/rehydrate/repository"
	rt "github.com/rehydrate/rehydrate/repository/repositorytest"
	"github.com/rehydrate/rehydrate/snapshot"
)

func TestCollector(t *testing.T) {
	p, err := memory.New(2)
	require.NoError(t, err)
	sp, err := memory.New(2)
	require.NoError(t, err)
	store, err := snapshot.NewStore(sp)
	require.NoError(t, err)
	metrics := prom.New(prom.WithLabels(prometheus.Labels{"aggregate": "account"}))
	r := rt.NewRepository(t, p, repository.WithObserver(metrics),
		repository.WithSnapshots(store, repository.Snapshots{StateVersion: 1, Events: 1 << 40, Interval: time.Hour}))
	metrics.Watch(r)
	_, err = r.Restore(t.Context())
	require.NoError(t, err)
	ctx := t.Context()
	_, err = r.Create(ctx, "a", rt.Open("ada"))
	require.NoError(t, err)
	_, err = r.Create(ctx, "a", rt.Open("ada"))
	require.ErrorIs(t, err, repository.ErrExists)
	_, err = r.Execute(ctx, "nobody", rt.Deposit(1))
	require.ErrorIs(t, err, repository.ErrNotFound)
	_, err = r.Execute(ctx, "a", rt.Deposit(5, 6))
	require.NoError(t, err)
	require.NoError(t, r.Snapshot(ctx))

	reg := prometheus.NewPedanticRegistry() // checks descriptions against metrics
	require.NoError(t, reg.Register(metrics))
	got := gather(t, reg)
	for series, value := range map[string]float64{
		`rehydrate_commands_total{aggregate="account",kind="create",result="ok"}`:         1,
		`rehydrate_commands_total{aggregate="account",kind="create",result="exists"}`:     1,
		`rehydrate_commands_total{aggregate="account",kind="execute",result="not_found"}`: 1,
		`rehydrate_commands_total{aggregate="account",kind="execute",result="ok"}`:        1,
		`rehydrate_appends_total{aggregate="account",result="ok"}`:                        2,
		`rehydrate_restores_total{aggregate="account",result="ok"}`:                       1,
		`rehydrate_partitions_served{aggregate="account"}`:                                2,
		`rehydrate_snapshots_total{aggregate="account",result="ok"}`:                      1,
		`rehydrate_command_duration_seconds_count{aggregate="account",kind="execute"}`:    2,
		`rehydrate_append_duration_seconds_count{aggregate="account"}`:                    2,
	} {
		assert.Equal(t, value, got[series], series)
	}
	part := r.PartitionOf("a")
	for _, name := range []string{"rehydrate_aggregates", "rehydrate_aggregate_bytes", "rehydrate_snapshot_bytes", "rehydrate_snapshot_age_seconds"} {
		series := fmt.Sprintf(`%s{aggregate="account",partition="%d"}`, name, part)
		assert.Contains(t, got, series)
	}
	assert.Equal(t, 1.0, got[fmt.Sprintf(`rehydrate_aggregates{aggregate="account",partition="%d"}`, part)])
}

// TestCollectorLag: a repository restored before another wrote lags by
// what was written; the writer itself does not.
func TestCollectorLag(t *testing.T) {
	ctx := t.Context()
	p, err := memory.New(2)
	require.NoError(t, err)
	writer := rt.NewRepository(t, p)
	_, err = writer.Restore(ctx)
	require.NoError(t, err)
	standby := rt.NewRepository(t, p)
	_, err = standby.Restore(ctx)
	require.NoError(t, err)
	_, err = writer.Create(ctx, "a", rt.Open("ada"))
	require.NoError(t, err)
	_, err = writer.Execute(ctx, "a", rt.Deposit(5, 6))
	require.NoError(t, err)
	part := writer.PartitionOf("a")

	for name, tc := range map[string]struct {
		r       *repository.Repository[rt.Account]
		lagging float64
	}{"writer": {writer, 0}, "standby": {standby, 3}} {
		metrics := prom.New()
		metrics.Watch(tc.r)
		metrics.WatchLog(p)
		reg := prometheus.NewPedanticRegistry()
		require.NoError(t, reg.Register(metrics))
		got := gather(t, reg)
		assert.Equal(t, 3.0, got[fmt.Sprintf(`rehydrate_log_end_offset{partition="%d"}`, part)], name)
		assert.Equal(t, tc.lagging, got[fmt.Sprintf(`rehydrate_lag_offsets{partition="%d"}`, part)], name)
		other := fmt.Sprintf(`rehydrate_lag_offsets{partition="%d"}`, 1-part)
		if assert.Contains(t, got, other, name) {
			assert.Equal(t, 0.0, got[other], name)
		}
	}
}

// gather returns every series of reg by its name and labels, as Prometheus
// writes them; histograms as their _count.
func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	mfs, err := reg.Gather()
	require.NoError(t, err)
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
			}
			name, v := mf.GetName(), 0.0
			switch {
			case m.GetCounter() != nil:
				v = m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				v = m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				name, v = name+"_count", float64(m.GetHistogram().GetSampleCount())
			}
			out[name+"{"+strings.Join(labels, ",")+"}"] = v
		}
	}
	return out
}

func TestResult(t *testing.T) {
	assert.Equal(t, "ok", prom.Result(nil))
	assert.Equal(t, "outcome_unknown", prom.Result(repository.ErrOutcomeUnknown))
	assert.Equal(t, "not_owner", prom.Result(&repository.PartitionError{Err: repository.ErrNotOwner}))
	assert.Equal(t, "not_ready", prom.Result(&repository.PartitionError{Err: repository.ErrNotReady}))
	assert.Equal(t, "limit", prom.Result(&repository.LimitError{}))
}
