//go:build cgo

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
	if len(rep.Scaling) > 0 {
		if err := plotScaling(filepath.Join(cfg.out, "scaling.png"), rep.Scaling); err != nil {
			return err
		}
	}
	if len(rep.Restores) > 0 && len(rep.Commands) > 0 {
		if err := plotClients(filepath.Join(cfg.out, "clients.png"), rep); err != nil {
			return err
		}
	}
	if len(rep.SnapshotRestarts) > 0 {
		return plotSnapshots(filepath.Join(cfg.out, "snapshots.png"), rep.SnapshotRestarts)
	}
	return nil
}

func markdown(rep report) string {
	var b strings.Builder
	fmt.Fprintf(&b, "Machine: %s\n", rep.Machine)
	if len(rep.Restores) > 0 {
		fmt.Fprintf(&b, "\n### Restore: %d events, %d partitions, %d aggregates\n\n", rep.Work.Events, rep.Work.Partitions, rep.Work.Aggregates)
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
	}
	if len(rep.Scaling) > 0 {
		b.WriteString("\n### Restore time as the log grows (msgpack)\n\n")
		b.WriteString("| events | bare consumer s | restore s | restore events/s | vs bare |\n|---:|---:|---:|---:|---:|\n")
		for _, p := range rep.Scaling {
			fmt.Fprintf(&b, "| %d | %.2f | %.2f | %.0f | %.2f |\n", p.Events, p.Bare.Seconds, p.Restore.Seconds, p.Restore.rate(), p.Restore.rate()/p.Bare.rate())
		}
	}
	if len(rep.Commands) > 0 {
		b.WriteString("\n### Commands: Execute on existing aggregates vs a bare idempotent acks=all producer\n\n")
		b.WriteString("| concurrency | Execute ops/s | p50 ms | p99 ms | bare producer ops/s | p50 ms | p99 ms | Execute/bare | Execute on memory ops/s | p99 ms |\n")
		b.WriteString("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, c := range rep.Commands {
			fmt.Fprintf(&b, "| %d | %.0f | %.2f | %.2f | %.0f | %.2f | %.2f | %.2f | %.0f | %.3f |\n", c.Concurrency,
				c.Kafka.opsPerSec(), c.Kafka.P50Ms, c.Kafka.P99Ms, c.Raw.opsPerSec(), c.Raw.P50Ms, c.Raw.P99Ms,
				c.Kafka.opsPerSec()/c.Raw.opsPerSec(), c.InMemory.opsPerSec(), c.InMemory.P99Ms)
		}
		b.WriteString("\n### Commands with each Kafka client: Execute beside each client's bare idempotent acks=all producer\n\n")
		b.WriteString("Same run; each repository on a topic of its own (10 000 aggregates).\n\n")
		b.WriteString("| concurrency | Execute, confluent ops/s | p99 ms | bare confluent ops/s | Execute, franz ops/s | p99 ms | bare franz ops/s | franz/confluent Execute |\n")
		b.WriteString("|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, c := range rep.Commands {
			fmt.Fprintf(&b, "| %d | %.0f | %.2f | %.0f | %.0f | %.2f | %.0f | %.2f |\n", c.Concurrency,
				c.Kafka.opsPerSec(), c.Kafka.P99Ms, c.Raw.opsPerSec(), c.Franz.opsPerSec(), c.Franz.P99Ms, c.RawFranz.opsPerSec(),
				c.Franz.opsPerSec()/c.Kafka.opsPerSec())
		}
		fmt.Fprintf(&b, "\n### Commands in fenced transactions: Execute through WithGroup, one instance owning all %d partitions\n\n", rep.Work.Partitions)
		b.WriteString("Group settings at their defaults (session timeout 10 s); group commit. Same run, same concurrency as the tables above; each client beside its own unfenced Execute. " +
			"Each transaction leaves a commit marker in every partition it wrote; transactions are estimated from those markers, and transactions in flight from them by Little's law (transactions/s × median latency).\n\n")
		b.WriteString("| client | concurrency | fenced ops/s | p50 ms | p99 ms | unfenced Execute ops/s | p99 ms | fenced/unfenced | p99 fenced/unfenced | commands per transaction | transactions in flight |\n")
		b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, client := range []string{"confluent", "franz"} {
			for _, c := range rep.Commands {
				txn, plain, txns := c.Txn, c.Kafka, c.Txns
				if client == "franz" {
					txn, plain, txns = c.TxnFranz, c.Franz, c.TxnsFranz
				}
				perTxn, inFlight := "–", "–"
				if txns > 0 {
					perTxn = fmt.Sprintf("%.1f", float64(txn.Ops+1)/txns)
					inFlight = fmt.Sprintf("%.1f", txns/txn.Seconds*txn.P50Ms/1000)
				}
				fmt.Fprintf(&b, "| %s | %d | %.0f | %.2f | %.2f | %.0f | %.2f | %.2f | %.2f | %s | %s |\n", client, c.Concurrency,
					txn.opsPerSec(), txn.P50Ms, txn.P99Ms, plain.opsPerSec(), plain.P99Ms,
					txn.opsPerSec()/plain.opsPerSec(), txn.P99Ms/plain.P99Ms, perTxn, inFlight)
			}
		}
		b.WriteString("\nWhere a fenced transaction's time goes, from the lanes' own timings (kafkagroup.TxnCommittedMsg), means per committed transaction: " +
			"queued is an append's wait from its queueing to its transaction's begin; produce includes the partitions' registration; " +
			fmt.Sprintf("slow produce is the share of transactions whose produce took over %v (long enough for the broker's 20 ms CONCURRENT_TRANSACTIONS retry, or for a thread descheduled on a loaded machine).\n\n", slowProduce))
		b.WriteString("| client | concurrency | transactions | appends per transaction | queued ms | produce ms | send offsets ms | commit ms | slow produce |\n")
		b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, client := range []string{"confluent", "franz"} {
			for _, c := range rep.Commands {
				s := c.TxnSteps
				if client == "franz" {
					s = c.TxnFranzSteps
				}
				fmt.Fprintf(&b, "| %s | %d | %d | %.1f | %.2f | %.2f | %.2f | %.2f | %.0f %% |\n", client, c.Concurrency,
					s.Txns, s.AppendsPerTxn, s.QueuedMs, s.ProduceMs, s.OffsetsMs, s.CommitMs, 100*s.SlowShare)
			}
		}
	}
	how := "each instance a child process with its own kafka.Provider"
	if !rep.Isolated {
		how = "each instance a goroutine with its own kafka.Provider, in one process"
	}
	gw := rep.GroupWork
	if len(rep.Takeovers) > 0 {
		fmt.Fprintf(&b, "\n### Takeover: %d events on %d partitions (%d per partition), %d aggregates; no commands running\n\n",
			gw.Events, gw.Partitions, gw.Events/max(gw.Partitions, 1), gw.Aggregates)
		fmt.Fprintf(&b, "Instances A and B with WithGroup, %s; group settings at their defaults. From the trigger: the group assigns the moved partitions "+
			"(join or leave, rebalance, revocation by their owner), the new owner waits for stable offsets (AwaitStable), then reads them until it serves them. Median of %d runs, step by step.\n\n", how, rep.Repeat)
		b.WriteString("| step | partitions moved | records read | seconds | assigned after s | AwaitStable s | reading s | events/s (whole) | events/s (reading) |\n")
		b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, t := range rep.Takeovers {
			fmt.Fprintf(&b, "| %s | %d | %d | %.2f | %.2f | %.2f | %.2f | %.0f | %.0f |\n", t.Name, t.Partitions, t.Read, t.Seconds,
				t.AssignS, t.WaitS-t.AssignS, t.Seconds-t.WaitS, t.rate(), t.readRate())
		}
		if last := rep.Takeovers[len(rep.Takeovers)-1]; last.CloseS > 0 {
			fmt.Fprintf(&b, "\nA.Close itself returned after %.2f s.\n", last.CloseS)
		}
	}
	if len(rep.GroupRestores) > 0 {
		fmt.Fprintf(&b, "\n### Restore by instances joining at once: %d events on %d partitions, %d aggregates\n\n", gw.Events, gw.Partitions, gw.Aggregates)
		fmt.Fprintf(&b, "%s, told to call Restore at the same moment; the clock stops when every partition is served by some instance, then when every instance serves its share. Median of %d runs (by time to balance).\n\n", strings.ToUpper(how[:1])+how[1:], rep.Repeat)
		b.WriteString("| instances | every partition served s | balanced s | records read | events/s (all, to balance) | vs 1 instance |\n")
		b.WriteString("|---:|---:|---:|---:|---:|---:|\n")
		var base float64 // one instance's time to balance
		for _, g := range rep.GroupRestores {
			if g.Instances == 1 {
				base = g.BalancedS
			}
		}
		for _, g := range rep.GroupRestores {
			ratio := "–"
			if base > 0 {
				ratio = fmt.Sprintf("%.2f", base/g.BalancedS)
			}
			fmt.Fprintf(&b, "| %d | %.2f | %.2f | %d | %.0f | %s |\n", g.Instances, g.AllServedS, g.BalancedS, g.read(),
				float64(gw.Events)/g.BalancedS, ratio)
		}
		b.WriteString("\nPer instance (records read counts reads a revocation cut short; events applied, those of the restores that finished):\n\n")
		b.WriteString("| instances | instance | partitions served | records read | events applied | seconds to its share | records/s | peak RSS MB |\n")
		b.WriteString("|---:|---|---:|---:|---:|---:|---:|---:|\n")
		for _, g := range rep.GroupRestores {
			for _, e := range g.Each {
				rss := "–"
				if e.PeakRSSMB > 0 {
					rss = fmt.Sprintf("%.0f", e.PeakRSSMB)
				}
				fmt.Fprintf(&b, "| %d | %s | %d | %d | %d | %.2f | %.0f | %s |\n", g.Instances, e.Name, e.Partitions, e.Read, e.Events,
					e.Seconds, float64(e.Read)/e.Seconds, rss)
			}
		}
	}
	if len(rep.SnapshotRestarts) > 0 {
		b.WriteString("\n### Restart with snapshots (msgpack, 6 partitions)\n\n")
		b.WriteString("A restore from the partitions' first events, and one from a snapshot of every partition at the end of the log (taken by `Snapshot` in a process that had just restored). Child processes, median of the runs.\n\n")
		b.WriteString("| events | aggregates | replay s | from snapshots s | faster | events read | snapshot MB | taking the snapshots s | peak RSS MB replay / snapshots |\n")
		b.WriteString("|---:|---:|---:|---:|---:|---:|---:|---:|---|\n")
		for _, r := range rep.SnapshotRestarts {
			fmt.Fprintf(&b, "| %d | %d | %.2f | %.2f | %.1fx | %d | %.1f | %.2f | %.0f / %.0f |\n", r.Events, r.Aggregates, r.Full.Seconds, r.FromSnapshot.Seconds,
				r.Full.Seconds/r.FromSnapshot.Seconds, r.FromSnapshot.Events, float64(r.Bytes)/1e6, r.TakeS, r.Full.PeakRSSMB, r.FromSnapshot.PeakRSSMB)
		}
	}
	if c := rep.SnapshotCommands; c != nil {
		b.WriteString("\n### Execute while snapshots are taken (concurrency 64, 10 000 aggregates, 6 partitions)\n\n")
		fmt.Fprintf(&b, "With snapshots every 1 000 events per partition (%d taken during the run). The longest an aggregate's lock was held by a snapshot: %v.\n\n", c.Snapshots, c.LongestLock)
		b.WriteString("| | ops/s | p50 ms | p99 ms | max ms |\n|---|---:|---:|---:|---:|\n")
		for _, r := range []commandResult{c.Without, c.With} {
			fmt.Fprintf(&b, "| %s | %.0f | %.2f | %.2f | %.2f |\n", r.Name, r.opsPerSec(), r.P50Ms, r.P99Ms, r.MaxMs)
		}
		fmt.Fprintf(&b, "\nCost of snapshotting on throughput: %.1f %%.\n", 100*(1-c.With.opsPerSec()/c.Without.opsPerSec()))
	}
	if len(rep.WriterStarts) > 0 {
		b.WriteString("\n### Writer start: process start to /readyz 200, beside the bare loop of its client\n\n")
		b.WriteString("The example writer as it runs by default (a group member, snapshots on; the snapshot topic exists, empty) against the bench's bare loop of the same client (the provider's fetch settings, counting records), both timed from their exec, taking turns on the same topic; median of the runs. CPU s is the process's CPU time until then (user and system: a loaded machine moves it less than the wall time). The steps are seconds after the exec, from the writer's log.\n\n")
		b.WriteString("| client | partitions | events | bare s | writer s | writer / bare speed | bare CPU s | writer CPU s | connecting | joining | joined | restore started | restored | kcat s |\n")
		b.WriteString("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
		for _, r := range rep.WriterStarts {
			kcat := "–"
			if r.Kcat != nil {
				kcat = fmt.Sprintf("%.2f", r.Kcat.Seconds)
			}
			p := r.Phases
			fmt.Fprintf(&b, "| %s | %d | %d | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %s |\n", r.Client, r.Partitions, r.Events,
				r.Bare.Seconds, r.Writer.Seconds, r.Bare.Seconds/r.Writer.Seconds, r.Bare.CPUSeconds, r.Writer.CPUSeconds,
				p.Connecting, p.Joining, p.Joined, p.RestoreStarted, p.Restored, kcat)
		}
	}
	if r := rep.Projection; r != nil {
		fmt.Fprintf(&b, "\n### Projection into PostgreSQL (%d events, %d partitions, %d aggregates, batches of %d)\n\n", r.Events, r.Partitions, r.Aggregates, r.BatchSize)
		b.WriteString("The runner (package projection, projection/postgres: claims, a checkpoint compare-and-set per batch, failure handling) against a bare loop with the same statements (an upsert per event and one of the partition's offset per batch, one transaction per batch), taking turns on one topic read with provider/franz; each run into a new table.\n\n")
		b.WriteString("| | runs, events/s | median events/s |\n|---|---|---:|\n")
		runs := func(xs []float64) string {
			var out []string
			for _, x := range xs {
				out = append(out, fmt.Sprintf("%.0f", x))
			}
			return strings.Join(out, ", ")
		}
		fmt.Fprintf(&b, "| bare loop | %s | %.0f |\n| runner | %s | %.0f |\n", runs(r.Bare), median(r.Bare), runs(r.Runner), median(r.Runner))
		fmt.Fprintf(&b, "\nRunner / bare loop: %.2f×.\n\n", r.ratio())
		fmt.Fprintf(&b, "Rebuild: a new projection of the %d events into a new table, to caught up, beside the live projection following a writer at %.0f events/s: %.1f s.\n\n", r.RebuildEvents, r.RebuildWriteRate, r.RebuildS)
		b.WriteString("Lag of the live projection (offsets between its checkpoints and the partitions' ends, every 100 ms):\n\n| written events/s | samples | mean | p99 | max | mean as time |\n|---:|---:|---:|---:|---:|---:|\n")
		for _, l := range r.Lags {
			fmt.Fprintf(&b, "| %.0f | %d | %.0f | %.0f | %.0f | %.0f ms |\n", l.Written, l.Samples, l.Mean, l.P99, l.Max, 1000*l.Mean/l.Written)
		}
	}
	if len(rep.Notes) > 0 {
		b.WriteString("\n### Notes\n\n")
		for _, n := range rep.Notes {
			fmt.Fprintf(&b, "- %s\n", n)
		}
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
	i64 := func(v int64) string { return strconv.FormatInt(v, 10) }
	itoa := strconv.Itoa
	// The group columns (instances to all_served_s) are empty for the other
	// sections; commit_markers and txn_commands_per_txn for all but the
	// commands in transactions.
	header := []string{"section", "name", "events_or_concurrency", "events_per_s_or_ops_per_s", "mb_per_s", "seconds", "peak_rss_mb", "heap_b_per_aggregate", "p50_ms", "p99_ms",
		"instances", "partitions", "assigned_s", "restore_start_s", "all_served_s", "commit_markers", "commands_per_txn"}
	_ = w.Write(header)
	row := func(cols ...string) {
		for len(cols) < len(header) {
			cols = append(cols, "")
		}
		_ = w.Write(cols)
	}
	if len(rep.Restores) > 0 {
		for _, r := range append([]restoreResult{rep.Bare}, rep.Restores...) {
			row("restore", r.Name, i64(r.Events), f64(r.rate()), f64(r.mbps()), f64(r.Seconds), f64(r.PeakRSSMB), f64(r.HeapPerAggB))
		}
	}
	for _, p := range rep.Scaling {
		for _, r := range []restoreResult{p.Bare, p.Restore} {
			row("scaling", r.Name, itoa(p.Events), f64(r.rate()), f64(r.mbps()), f64(r.Seconds), f64(r.PeakRSSMB))
		}
	}
	for _, c := range rep.Commands {
		for _, r := range []commandResult{c.Kafka, c.Raw, c.Franz, c.RawFranz, c.InMemory} {
			row("commands", r.Name, itoa(r.Concurrency), f64(r.opsPerSec()), "", f64(r.Seconds), "", "", f64(r.P50Ms), f64(r.P99Ms))
		}
		for _, t := range []struct {
			r       commandResult
			markers int64
			txns    float64
		}{{c.Txn, c.TxnMarkers, c.Txns}, {c.TxnFranz, c.TxnFranzMarkers, c.TxnsFranz}} {
			perTxn := ""
			if t.txns > 0 {
				perTxn = f64(float64(t.r.Ops+1) / t.txns)
			}
			row("commands", t.r.Name, itoa(t.r.Concurrency), f64(t.r.opsPerSec()), "", f64(t.r.Seconds), "", "", f64(t.r.P50Ms), f64(t.r.P99Ms),
				"", "", "", "", "", i64(t.markers), perTxn)
		}
	}
	for _, t := range rep.Takeovers {
		row("takeover", t.Name, i64(t.Read), f64(t.rate()), "", f64(t.Seconds), "", "", "", "",
			"", itoa(t.Partitions), f64(t.AssignS), f64(t.WaitS))
	}
	for _, g := range rep.GroupRestores {
		name := fmt.Sprintf("%d instances", g.Instances)
		row("group restore", name, i64(g.read()), f64(float64(rep.GroupWork.Events)/g.BalancedS), "", f64(g.BalancedS), "", "", "", "",
			itoa(g.Instances), itoa(g.Partitions), "", "", f64(g.AllServedS))
		for _, e := range g.Each {
			row("group restore instance", name+": "+e.Name, i64(e.Read), f64(float64(e.Read)/e.Seconds), "", f64(e.Seconds), f64(e.PeakRSSMB), "", "", "",
				itoa(g.Instances), itoa(e.Partitions))
		}
	}
	for _, r := range rep.SnapshotRestarts {
		for _, res := range []restoreResult{r.Full, r.FromSnapshot} {
			row("snapshot restart", fmt.Sprintf("%s, %d aggregates", res.Name, r.Aggregates), itoa(r.Events), f64(float64(r.Events)/res.Seconds), "", f64(res.Seconds), f64(res.PeakRSSMB))
		}
	}
	if c := rep.SnapshotCommands; c != nil {
		for _, r := range []commandResult{c.Without, c.With} {
			row("snapshot commands", r.Name, itoa(r.Concurrency), f64(r.opsPerSec()), "", f64(r.Seconds), "", "", f64(r.P50Ms), f64(r.P99Ms))
		}
	}
	if r := rep.Projection; r != nil {
		for i := range r.Bare {
			row("projection", fmt.Sprintf("bare loop, run %d", i+1), itoa(r.Events), f64(r.Bare[i]), "", f64(float64(r.Events)/r.Bare[i]))
			row("projection", fmt.Sprintf("runner, run %d", i+1), itoa(r.Events), f64(r.Runner[i]), "", f64(float64(r.Events)/r.Runner[i]))
		}
		row("projection", "rebuild", i64(r.RebuildEvents), f64(float64(r.RebuildEvents)/r.RebuildS), "", f64(r.RebuildS))
		for _, l := range r.Lags {
			// events_or_concurrency is the write rate; the rate column the mean lag.
			row("projection lag", fmt.Sprintf("mean lag at %.0f written/s (p99 %.0f, max %.0f)", l.Written, l.P99, l.Max), f64(l.Written), f64(l.Mean))
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

// plotSnapshots draws each workload's restart time, replayed and from
// snapshots, side by side.
func plotSnapshots(path string, restarts []snapshotRestart) error {
	replay := make(plotter.Values, len(restarts))
	fromSnap := make(plotter.Values, len(restarts))
	names := make([]string, len(restarts))
	for i, r := range restarts {
		replay[i], fromSnap[i] = r.Full.Seconds, r.FromSnapshot.Seconds
		names[i] = fmt.Sprintf("%.1fM events, %dk aggregates", float64(r.Events)/1e6, r.Aggregates/1000)
	}
	return plotBars(path, "Restart time with and without snapshots", "seconds", names,
		[]barSeries{{"full replay", replay}, {"from snapshots", fromSnap}})
}

// plotClients draws, per Kafka client, the restore of the same topic beside
// the client's bare reader and kcat, and Execute beside the client's bare
// producer at each concurrency.
func plotClients(path string, rep report) error {
	var names []string
	var seconds plotter.Values
	for _, r := range append([]restoreResult{rep.Bare}, rep.Restores...) {
		if strings.Contains(r.Name, "memory") {
			continue
		}
		names = append(names, shortName(r.Name))
		seconds = append(seconds, r.Seconds)
	}
	if err := plotBars(strings.TrimSuffix(path, ".png")+"-restore.png", fmt.Sprintf("Restore of %d events by Kafka client", rep.Work.Events),
		"seconds", names, []barSeries{{"read to the end", seconds}}); err != nil {
		return err
	}
	names = names[:0]
	series := []barSeries{{name: "Execute, confluent"}, {name: "bare confluent producer"}, {name: "Execute, franz"}, {name: "bare franz producer"}}
	for _, c := range rep.Commands {
		names = append(names, fmt.Sprintf("concurrency %d", c.Concurrency))
		for i, r := range []commandResult{c.Kafka, c.Raw, c.Franz, c.RawFranz} {
			series[i].values = append(series[i].values, r.opsPerSec())
		}
	}
	return plotBars(strings.TrimSuffix(path, ".png")+"-execute.png", "Execute by Kafka client (idempotent producer)", "ops/s", names, series)
}

// shortName shortens a restore measurement's name for a plot's axis:
// "repository restore, Kafka, msgpack" is "confluent msgpack".
func shortName(name string) string {
	name, _, _ = strings.Cut(name, " (")
	name = strings.TrimPrefix(name, "repository restore, ")
	name = strings.TrimSuffix(name, " consumer")
	return strings.NewReplacer("Kafka,", "confluent", "confluent-kafka-go", "confluent", "franz-go", "franz", ",", "").Replace(name)
}

type barSeries struct {
	name   string
	values plotter.Values
}

// plotBars draws series as groups of bars, one group per name.
func plotBars(path, title, yLabel string, names []string, series []barSeries) error {
	p := plot.New()
	p.Title.Text = title
	p.Y.Label.Text = yLabel
	w := vg.Points(float64(60 / len(series)))
	for i, bars := range series {
		b, err := plotter.NewBarChart(bars.values, w)
		if err != nil {
			return err
		}
		b.Color = plotutil.Color(i)
		b.Offset = w * vg.Length(2*i-len(series)+1) / 2
		p.Add(b)
		p.Legend.Add(bars.name, b)
	}
	p.NominalX(names...)
	p.Legend.Top = true
	p.Legend.Left = true
	return p.Save(vg.Length(max(6, 1.3*float64(len(names))+1))*vg.Inch, 4*vg.Inch, path)
}
