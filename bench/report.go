package main

import (
	"encoding/csv"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"gonum.org/v1/plot"
	"gonum.org/v1/plot/plotter"
	"gonum.org/v1/plot/plotutil"
	"gonum.org/v1/plot/vg"

	"github.com/rehydrate/rehydrate/provider/memory"
)

func memoryProvider(partitions int) (*memory.Provider, error) { return memory.New(partitions) }

func writeReport(cfg config, rep report, stdout io.Writer) error {
	if err := os.MkdirAll(cfg.out, 0o755); err != nil {
		return err
	}
	md := markdown(rep)
	fmt.Fprint(stdout, md)
	if err := os.WriteFile(filepath.Join(cfg.out, "results.md"), []byte(md), 0o644); err != nil {
		return err
	}
	if err := writeCSV(filepath.Join(cfg.out, "results.csv"), rep); err != nil {
		return err
	}
	return plotScaling(filepath.Join(cfg.out, "scaling.png"), rep.Scaling)
}

func markdown(rep report) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Machine: %s\n\n", rep.Machine)
	fmt.Fprintf(&b, "### Restore: %d events, %d partitions, %d aggregates\n\n", rep.Work.Events, rep.Work.Partitions, rep.Work.Aggregates)
	b.WriteString("| reader | events/s | MB/s | wall s | vs bare consumer | peak RSS MB | heap B/aggregate |\n")
	b.WriteString("|---|---:|---:|---:|---:|---:|---:|\n")
	row := func(r restoreResult, ratio string, heap string) {
		fmt.Fprintf(&b, "| %s | %.0f | %.1f | %.2f | %s | %.0f | %s |\n", r.Name, r.rate(), r.mbps(), r.Seconds, ratio, r.PeakRSSMB, heap)
	}
	row(rep.Bare, "1.00", "–")
	for _, r := range rep.Restores {
		ratio := "–"
		if !strings.Contains(r.Name, "memory") {
			ratio = fmt.Sprintf("%.2f", r.rate()/rep.Bare.rate())
		}
		row(r, ratio, fmt.Sprintf("%.0f", r.HeapPerAggB))
	}
	b.WriteString("\n### Restore time as the log grows (msgpack)\n\n")
	b.WriteString("| events | bare consumer s | restore s | restore events/s | vs bare |\n|---:|---:|---:|---:|---:|\n")
	for _, p := range rep.Scaling {
		fmt.Fprintf(&b, "| %d | %.2f | %.2f | %.0f | %.2f |\n", p.Events, p.Bare.Seconds, p.Restore.Seconds, p.Restore.rate(), p.Restore.rate()/p.Bare.rate())
	}
	b.WriteString("\n### Commands: Execute on existing aggregates vs a bare idempotent acks=all producer\n\n")
	b.WriteString("| concurrency | Execute ops/s | p50 ms | p99 ms | bare producer ops/s | p50 ms | p99 ms | Execute/bare | Execute on memory ops/s | p99 ms |\n")
	b.WriteString("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, c := range rep.Commands {
		fmt.Fprintf(&b, "| %d | %.0f | %.2f | %.2f | %.0f | %.2f | %.2f | %.2f | %.0f | %.3f |\n", c.Concurrency,
			c.Kafka.opsPerSec(), c.Kafka.P50Ms, c.Kafka.P99Ms, c.Raw.opsPerSec(), c.Raw.P50Ms, c.Raw.P99Ms,
			c.Kafka.opsPerSec()/c.Raw.opsPerSec(), c.InMemory.opsPerSec(), c.InMemory.P99Ms)
	}
	return b.String()
}

func writeCSV(path string, rep report) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := csv.NewWriter(f)
	f64 := func(v float64) string { return strconv.FormatFloat(v, 'f', 3, 64) }
	_ = w.Write([]string{"section", "name", "events_or_concurrency", "events_per_s_or_ops_per_s", "mb_per_s", "seconds", "peak_rss_mb", "heap_b_per_aggregate", "p50_ms", "p99_ms"})
	for _, r := range append([]restoreResult{rep.Bare}, rep.Restores...) {
		_ = w.Write([]string{"restore", r.Name, strconv.FormatInt(r.Events, 10), f64(r.rate()), f64(r.mbps()), f64(r.Seconds), f64(r.PeakRSSMB), f64(r.HeapPerAggB), "", ""})
	}
	for _, p := range rep.Scaling {
		for _, r := range []restoreResult{p.Bare, p.Restore} {
			_ = w.Write([]string{"scaling", r.Name, strconv.Itoa(p.Events), f64(r.rate()), f64(r.mbps()), f64(r.Seconds), f64(r.PeakRSSMB), "", "", ""})
		}
	}
	for _, c := range rep.Commands {
		for _, r := range []commandResult{c.Kafka, c.Raw, c.InMemory} {
			_ = w.Write([]string{"commands", r.Name, strconv.Itoa(r.Concurrency), f64(r.opsPerSec()), "", f64(r.Seconds), "", "", f64(r.P50Ms), f64(r.P99Ms)})
		}
	}
	w.Flush()
	if err := w.Error(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

func plotScaling(path string, points []scalingPoint) error {
	p := plot.New()
	p.Title.Text = "Restore time as the log grows"
	p.X.Label.Text = "events (millions)"
	p.Y.Label.Text = "seconds"
	bare := make(plotter.XYs, len(points))
	restore := make(plotter.XYs, len(points))
	for i, pt := range points {
		x := float64(pt.Events) / 1e6
		bare[i] = plotter.XY{X: x, Y: pt.Bare.Seconds}
		restore[i] = plotter.XY{X: x, Y: pt.Restore.Seconds}
	}
	if err := plotutil.AddLinePoints(p, "repository restore (msgpack)", restore, "bare consumer (counts only)", bare); err != nil {
		return err
	}
	p.Legend.Top = true
	p.Legend.Left = true
	return p.Save(6*vg.Inch, 4*vg.Inch, path)
}
