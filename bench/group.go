//go:build cgo

package main

// Measurements of repositories that share a topic through a group
// (repository.WithGroup): the takeover of partitions when an instance joins
// or leaves, and restores by several instances joining at once. Each
// instance is a child process with its own kafka.Provider, as the instances
// of a service are; with -isolate=false (the test) a goroutine with its own
// provider. Instances report on stdout, one JSON line whenever what they
// serve changes, and take "go" (call Restore) and "close" (Close) on stdin.

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/provider"
	"github.com/rehydrate/rehydrate/provider/kafka"
	"github.com/rehydrate/rehydrate/repository"
)

// groupWait bounds each wait for a group to reach a state.
const groupWait = 3 * time.Minute

// countingProvider counts the records its Read delivers, reads that a
// revocation cut short and that were started again included. Embedding the
// Kafka provider keeps it a provider.Grouper.
type countingProvider struct {
	*kafka.Provider
	read atomic.Int64
}

func (c *countingProvider) Read(ctx context.Context, ranges []provider.Range, batchSize int, fn func(provider.Batch) error) error {
	return c.Provider.Read(ctx, ranges, batchSize, func(b provider.Batch) error {
		c.read.Add(int64(len(b.Records)))
		return fn(b)
	})
}

// assignments counts the partitions the group assigned to an instance, from
// the repository's log ("partitions assigned"): the moment the group
// protocol has done its part of a takeover.
type assignments struct{ n atomic.Int64 }

func (h *assignments) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }
func (h *assignments) WithAttrs([]slog.Attr) slog.Handler           { return h }
func (h *assignments) WithGroup(string) slog.Handler                { return h }
func (h *assignments) Handle(_ context.Context, r slog.Record) error {
	if r.Message == "partitions assigned" {
		r.Attrs(func(a slog.Attr) bool {
			if ids, ok := a.Value.Any().([]int32); ok && a.Key == "partitions" {
				h.n.Add(int64(len(ids)))
			}
			return true
		})
	}
	return nil
}

// instanceReport is what an instance reports: when it is ready to join,
// whenever what it serves or has started to restore changes, and when it
// has closed. The parent adds Index, Name, Exited and at.
type instanceReport struct {
	Ready    bool    `json:"ready"`
	Owned    []int32 `json:"owned"`    // Repository.Owned: the partitions it serves
	Assigned int     `json:"assigned"` // partitions assigned to it so far, counted at each assignment
	Tracked  int     `json:"tracked"`  // partitions restored or being restored (Progress)
	Read     int64   `json:"read"`     // records its reads delivered
	Events   int64   `json:"events"`   // events applied by finished restores (Stats)
	Restored bool    `json:"restored"`
	Closed   bool    `json:"closed"`
	CloseS   float64 `json:"close_s"` // how long Close took
	// Unrestored counts the polls that found a partition in Owned whose
	// restore had not reached its end (Progress): served while its state
	// was still being read.
	Unrestored int     `json:"unrestored"`
	PeakRSSMB  float64 `json:"peak_rss_mb"` // a child's own, in its last report
	Err        string  `json:"err,omitempty"`

	Index  int       `json:"-"`
	Name   string    `json:"-"`
	Exited bool      `json:"-"`
	at     time.Time // when the parent received it
}

// runInstance is one group instance: a repository with WithGroup on a
// provider of its own. It calls Restore on "go" and Close on "close" or
// when cmds is closed.
func runInstance(ctx context.Context, cfg config, topic, group, name string, cmds <-chan string, emit func(instanceReport)) error {
	p, err := kafka.New(kafka.Config{Brokers: cfg.brokers, Topic: topic, BatchSize: cfg.batchSize, Properties: cfg.props})
	if err != nil {
		return err
	}
	defer p.Close()
	cp := &countingProvider{Provider: p}
	assigned := &assignments{}
	repo, err := newRepository(cp, event.Msgpack, repository.WithBatchSize(cfg.batchSize), repository.WithLogger(slog.New(assigned)),
		repository.WithGroup(repository.Group{Name: group, Instance: name}))
	if err != nil {
		return err
	}
	cur := instanceReport{Ready: true, Owned: []int32{}}
	emit(cur)
	select {
	case c, ok := <-cmds:
		if !ok || c != "go" {
			return nil // closed before it joined
		}
	case <-ctx.Done():
		return ctx.Err()
	}
	restored := make(chan error, 1)
	go func() {
		_, err := repo.Restore(ctx)
		restored <- err
	}()
	tick := time.NewTicker(2 * time.Millisecond)
	defer tick.Stop()
	last := cur
	for {
		select {
		case err := <-restored:
			if err != nil {
				return fmt.Errorf("instance %s: restore: %w", name, err)
			}
			cur.Restored = true
		case c, ok := <-cmds:
			if ok && c != "close" {
				return fmt.Errorf("instance %s: unknown command %q", name, c)
			}
			if !cur.Restored {
				if err := <-restored; err != nil {
					return fmt.Errorf("instance %s: restore: %w", name, err)
				}
				cur.Restored = true
			}
			start := time.Now()
			err := repo.Close()
			cur.CloseS = time.Since(start).Seconds()
			cur.Closed = true
			cur.Owned, cur.Read, cur.Events = repo.Owned(), cp.read.Load(), repo.Stats().Events
			emit(cur)
			return err
		case <-tick.C:
		case <-ctx.Done():
			return ctx.Err()
		}
		// Owned and Stats read the partitions Restore sets up: only once
		// it has returned. Progress is safe before.
		if cur.Restored {
			cur.Owned, cur.Events = repo.Owned(), repo.Stats().Events
		}
		progress := repo.Progress()
		cur.Tracked, cur.Read, cur.Assigned = len(progress.Partitions), cp.read.Load(), int(assigned.n.Load())
		for _, pp := range progress.Partitions {
			if pp.Done < pp.Total && slices.Contains(cur.Owned, pp.Partition) {
				cur.Unrestored++
				break
			}
		}
		if cur.Restored != last.Restored || !slices.Equal(cur.Owned, last.Owned) || cur.Tracked != last.Tracked || cur.Assigned != last.Assigned ||
			cur.Events != last.Events || cur.Unrestored != last.Unrestored {
			emit(cur)
			last = cur
		}
	}
}

// runInstanceChild is runInstance in a child process: commands from stdin,
// reports to stdout.
func runInstanceChild(ctx context.Context, cfg config, topic, group, name string) error {
	cmds := make(chan string)
	go func() {
		defer close(cmds)
		sc := bufio.NewScanner(os.Stdin)
		for sc.Scan() {
			cmds <- strings.TrimSpace(sc.Text())
		}
	}()
	enc := json.NewEncoder(os.Stdout)
	emit := func(r instanceReport) {
		if r.Closed {
			r.PeakRSSMB = ownPeakRSSMB()
		}
		_ = enc.Encode(r)
	}
	err := runInstance(ctx, cfg, topic, group, name, cmds, emit)
	if err != nil {
		emit(instanceReport{Err: err.Error()})
	}
	return err
}

// instance is the parent's handle on a running instance.
type instance struct {
	name string
	send func(cmd string) // "go", "close"
	wait func() error     // waits for the instance to end
}

// startInstance starts an instance that sends its reports to reports.
func startInstance(ctx context.Context, cfg config, topic, group, name string, index int, reports chan<- instanceReport) (*instance, error) {
	deliver := func(r instanceReport) {
		r.Index, r.Name, r.at = index, name, time.Now()
		reports <- r
	}
	if !cfg.isolate {
		cmds := make(chan string, 4)
		done := make(chan error, 1)
		go func() {
			err := runInstance(ctx, cfg, topic, group, name, cmds, deliver)
			if err != nil {
				deliver(instanceReport{Err: err.Error()})
			}
			deliver(instanceReport{Exited: true})
			done <- err
		}()
		closed := false
		return &instance{
			name: name,
			send: func(c string) {
				if closed {
					return
				}
				cmds <- c
				if c == "close" {
					close(cmds)
					closed = true
				}
			},
			wait: func() error { return <-done },
		}, nil
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, exe, "-child", "group-instance", "-topic", topic, "-group", group, "-instance", name,
		"-brokers", cfg.brokers, "-batch", fmt.Sprint(cfg.batchSize), "-props", propsArg(cfg.props))
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("instance %s: %w", name, err)
	}
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var r instanceReport
			if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
				r = instanceReport{Err: fmt.Sprintf("unreadable report %q: %v", sc.Text(), err)}
			}
			deliver(r)
		}
		deliver(instanceReport{Exited: true})
	}()
	return &instance{
		name: name,
		send: func(c string) {
			_, _ = io.WriteString(stdin, c+"\n")
			if c == "close" {
				_ = stdin.Close()
			}
		},
		wait: func() error {
			<-drained // Wait closes stdout: read it all first
			if err := cmd.Wait(); err != nil {
				return fmt.Errorf("instance %s: %w", name, err)
			}
			return nil
		},
	}, nil
}

func propsArg(props map[string]string) string {
	var kv []string
	for k, v := range props {
		kv = append(kv, k+"="+v)
	}
	return strings.Join(kv, ",")
}

// tracker follows the instances of one measurement through their reports.
type tracker struct {
	reports chan instanceReport
	last    []instanceReport
	history [][]instanceReport
	changed []time.Time // when each instance's Owned last changed
}

func newTracker(n int) *tracker {
	return &tracker{
		reports: make(chan instanceReport, 4096), // instances block while it is full
		last:    make([]instanceReport, n),
		history: make([][]instanceReport, n),
		changed: make([]time.Time, n),
	}
}

func (g *tracker) apply(r instanceReport) error {
	if r.Err != "" {
		return fmt.Errorf("instance %s: %s", r.Name, r.Err)
	}
	prev := g.last[r.Index]
	if r.Exited {
		if !prev.Closed {
			return fmt.Errorf("instance %s ended before it was closed", r.Name)
		}
		prev.Exited = true
		g.last[r.Index] = prev
		return nil
	}
	if !slices.Equal(prev.Owned, r.Owned) {
		g.changed[r.Index] = r.at
	}
	g.last[r.Index] = r
	g.history[r.Index] = append(g.history[r.Index], r)
	return nil
}

// until applies reports until cond holds and returns when the report that
// made it hold arrived.
func (g *tracker) until(ctx context.Context, what string, cond func([]instanceReport) bool) (time.Time, error) {
	t := time.NewTimer(groupWait)
	defer t.Stop()
	at := time.Now()
	for !cond(g.last) {
		select {
		case r := <-g.reports:
			if err := g.apply(r); err != nil {
				return at, fmt.Errorf("%s: %w", what, err)
			}
			at = r.at
		case <-t.C:
			return at, fmt.Errorf("%s: not after %v", what, groupWait)
		case <-ctx.Done():
			return at, ctx.Err()
		}
	}
	return at, nil
}

// settle applies the reports of the next d, so that counters that trail a
// change of Owned (Stats) catch up.
func (g *tracker) settle(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	for {
		select {
		case r := <-g.reports:
			if err := g.apply(r); err != nil {
				return err
			}
		case <-t.C:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// firstAfter returns when instance i first reported, at or after t, a
// state for which cond holds.
func (g *tracker) firstAfter(i int, t time.Time, cond func(instanceReport) bool) (time.Time, bool) {
	for _, r := range g.history[i] {
		if !r.at.Before(t) && cond(r) {
			return r.at, true
		}
	}
	return time.Time{}, false
}

// fleet is the instances of one measurement.
type fleet struct {
	*tracker
	instances []*instance
}

// startFleet starts an instance per name, in group, and waits until each
// is ready to join.
func startFleet(ctx context.Context, cfg config, topic, group string, names ...string) (*fleet, error) {
	f := &fleet{tracker: newTracker(len(names))}
	for i, name := range names {
		in, err := startInstance(ctx, cfg, topic, group, name, i, f.reports)
		if err != nil {
			return f, err
		}
		f.instances = append(f.instances, in)
	}
	_, err := f.until(ctx, "instances ready", func(s []instanceReport) bool {
		return !slices.ContainsFunc(s, func(r instanceReport) bool { return !r.Ready })
	})
	return f, err
}

// notes describes what went wrong without failing the measurement: an
// instance that served a partition whose restore had not reached its end.
func (f *fleet) notes(what string) []string {
	var notes []string
	for _, r := range f.last {
		if r.Unrestored > 0 {
			notes = append(notes, fmt.Sprintf("%s: instance %s listed in Owned a partition whose restore had not reached its end, at %d polls (2 ms apart)",
				what, r.Name, r.Unrestored))
		}
	}
	return notes
}

// stop closes every instance that has not closed and waits for all of them.
func (f *fleet) stop(ctx context.Context) error {
	for i, in := range f.instances {
		if !f.last[i].Closed {
			in.send("close")
		}
	}
	_, err := f.until(ctx, "instances closed", func(s []instanceReport) bool {
		return !slices.ContainsFunc(s[:len(f.instances)], func(r instanceReport) bool { return !r.Exited })
	})
	for _, in := range f.instances {
		err = cmp.Or(err, in.wait())
	}
	return err
}

// takeoverResult is one move of partitions, from what triggered it until
// the instance taking them over serves them.
type takeoverResult struct {
	Name       string
	Partitions int     // partitions moved
	Read       int64   // records read to take them over
	Seconds    float64 // from the trigger until they are served
	AssignS    float64 // from the trigger until the group assigned them: rebalance, revocation by their owner
	WaitS      float64 // from the trigger until their restore started: AssignS, then AwaitStable
	CloseS     float64 // how long A.Close took (A leaves)
}

func (t takeoverResult) rate() float64     { return float64(t.Read) / t.Seconds }
func (t takeoverResult) readRate() float64 { return float64(t.Read) / (t.Seconds - t.WaitS) }

// takeoverOnce: instance A joins alone and serves every partition; B joins
// and takes its share over; A closes and B takes the rest over. No commands
// run meanwhile.
func takeoverOnce(ctx context.Context, cfg config, topic string, partitions int, group string, notes *[]string) (alone, join, leave takeoverResult, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the instances on error
	f, err := startFleet(ctx, cfg, topic, group, "a", "b")
	if err != nil {
		return alone, join, leave, err
	}
	const a, b = 0, 1
	owns := func(i, n int) func([]instanceReport) bool {
		return func(s []instanceReport) bool { return len(s[i].Owned) >= n }
	}
	since := func(i int, t time.Time, cond func(instanceReport) bool) float64 {
		at, ok := f.firstAfter(i, t, cond)
		if !ok {
			return 0
		}
		return at.Sub(t).Seconds()
	}
	startedAt := func(i int, t time.Time, n int) float64 {
		return since(i, t, func(r instanceReport) bool { return r.Tracked >= n })
	}
	assignedAt := func(i int, t time.Time, n int) float64 {
		return since(i, t, func(r instanceReport) bool { return r.Assigned >= n })
	}

	t0 := time.Now()
	f.instances[a].send("go")
	served, err := f.until(ctx, "A serves every partition", owns(a, partitions))
	if err != nil {
		return alone, join, leave, err
	}
	alone = takeoverResult{Name: "A joins alone: from A's Restore until A serves all", Partitions: partitions,
		Read: f.last[a].Read, Seconds: served.Sub(t0).Seconds(), AssignS: assignedAt(a, t0, partitions), WaitS: startedAt(a, t0, partitions)}
	if err := f.settle(ctx, 200*time.Millisecond); err != nil {
		return alone, join, leave, err
	}

	share := partitions / 2
	t1 := time.Now()
	f.instances[b].send("go")
	served, err = f.until(ctx, "B serves its share", owns(b, share))
	if err != nil {
		return alone, join, leave, err
	}
	readB := f.last[b].Read
	join = takeoverResult{Name: "B joins: from B's Restore until B serves its share", Partitions: len(f.last[b].Owned),
		Read: readB, Seconds: served.Sub(t1).Seconds(), AssignS: assignedAt(b, t1, share), WaitS: startedAt(b, t1, share)}
	if err := f.settle(ctx, 200*time.Millisecond); err != nil {
		return alone, join, leave, err
	}

	assignedB := f.last[b].Assigned
	t2 := time.Now()
	f.instances[a].send("close")
	served, err = f.until(ctx, "B serves every partition", owns(b, partitions))
	if err != nil {
		return alone, join, leave, err
	}
	leave = takeoverResult{Name: "A closes: from A.Close until B serves all", Partitions: partitions - join.Partitions,
		Read: f.last[b].Read - readB, Seconds: served.Sub(t2).Seconds(), AssignS: assignedAt(b, t2, assignedB+partitions-join.Partitions), WaitS: startedAt(b, t2, partitions)}
	if err := f.stop(ctx); err != nil {
		return alone, join, leave, err
	}
	*notes = append(*notes, f.notes("takeover")...)
	leave.CloseS = f.last[a].CloseS
	return alone, join, leave, nil
}

// takeoverBench runs takeoverOnce cfg.repeat times, each in a group of its
// own, and returns each step's median run.
func takeoverBench(ctx context.Context, cfg config, topic string, partitions int, group func() string, notes *[]string) ([]takeoverResult, error) {
	steps := make([][]takeoverResult, 3)
	for range max(cfg.repeat, 1) {
		alone, join, leave, err := takeoverOnce(ctx, cfg, topic, partitions, group(), notes)
		if err != nil {
			return nil, fmt.Errorf("takeover: %w", err)
		}
		for i, r := range []takeoverResult{alone, join, leave} {
			steps[i] = append(steps[i], r)
		}
	}
	var out []takeoverResult
	for _, runs := range steps {
		slices.SortFunc(runs, func(x, y takeoverResult) int { return cmp.Compare(x.Seconds, y.Seconds) })
		out = append(out, runs[len(runs)/2])
	}
	return out, nil
}

// groupRestoreResult is a restore by several instances joining at once.
type groupRestoreResult struct {
	Instances  int
	Partitions int
	AllServedS float64 // until every partition was served by some instance
	BalancedS  float64 // until every instance served its share
	Each       []instanceResult
}

type instanceResult struct {
	Name       string
	Partitions int     // served at the end
	Read       int64   // records read, reads cut short by a revocation included
	Events     int64   // events applied by restores that finished (Stats)
	Seconds    float64 // until it served its final share
	PeakRSSMB  float64 // 0 when not a process of its own
}

func (g groupRestoreResult) read() int64 {
	var n int64
	for _, e := range g.Each {
		n += e.Read
	}
	return n
}

// groupRestoreOnce starts n instances, tells them to join at the same moment
// and waits until every partition is served and the assignment balanced.
func groupRestoreOnce(ctx context.Context, cfg config, topic string, partitions, n int, group string, notes *[]string) (groupRestoreResult, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	names := make([]string, n)
	for i := range names {
		names[i] = fmt.Sprintf("i%d", i+1)
	}
	f, err := startFleet(ctx, cfg, topic, group, names...)
	if err != nil {
		return groupRestoreResult{}, err
	}
	served := func(s []instanceReport) int {
		total := 0
		for _, r := range s {
			total += len(r.Owned)
		}
		return total
	}
	t0 := time.Now()
	for _, in := range f.instances {
		in.send("go")
	}
	all, err := f.until(ctx, "every partition served", func(s []instanceReport) bool { return served(s) >= partitions })
	if err != nil {
		return groupRestoreResult{}, err
	}
	balanced, err := f.until(ctx, "every instance serves its share", func(s []instanceReport) bool {
		return served(s) >= partitions && !slices.ContainsFunc(s, func(r instanceReport) bool { return len(r.Owned) < partitions/n })
	})
	if err != nil {
		return groupRestoreResult{}, err
	}
	if err := f.settle(ctx, 200*time.Millisecond); err != nil {
		return groupRestoreResult{}, err
	}
	res := groupRestoreResult{Instances: n, Partitions: partitions, AllServedS: all.Sub(t0).Seconds(), BalancedS: balanced.Sub(t0).Seconds()}
	for i, r := range f.last {
		res.Each = append(res.Each, instanceResult{Name: names[i], Partitions: len(r.Owned), Read: r.Read, Events: r.Events,
			Seconds: f.changed[i].Sub(t0).Seconds()})
	}
	if err := f.stop(ctx); err != nil {
		return res, err
	}
	*notes = append(*notes, f.notes(fmt.Sprintf("restore with %d instances", n))...)
	for i := range res.Each {
		res.Each[i].PeakRSSMB = f.last[i].PeakRSSMB
	}
	return res, nil
}

// groupRestoreBench runs groupRestoreOnce cfg.repeat times for each count of
// instances and returns the runs of median time to balance.
func groupRestoreBench(ctx context.Context, cfg config, topic string, partitions int, group func() string, notes *[]string) ([]groupRestoreResult, error) {
	var out []groupRestoreResult
	for _, n := range cfg.instances {
		var runs []groupRestoreResult
		for range max(cfg.repeat, 1) {
			res, err := groupRestoreOnce(ctx, cfg, topic, partitions, n, group(), notes)
			if err != nil {
				return nil, fmt.Errorf("restore with %d instances: %w", n, err)
			}
			runs = append(runs, res)
		}
		slices.SortFunc(runs, func(x, y groupRestoreResult) int { return cmp.Compare(x.BalancedS, y.BalancedS) })
		out = append(out, runs[len(runs)/2])
	}
	return out, nil
}
