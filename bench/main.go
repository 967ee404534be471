//go:build cgo

// Command bench measures rehydrate against the Kafka client it is built on,
// in one run, on the same topics: restore (a bare confluent-kafka-go consumer
// that only counts records, the repository with msgpack and with JSON, and
// the repository on the memory provider), restore time as the log grows,
// Execute next to a bare idempotent acks=all producer at several
// concurrencies, with and without a group (WithGroup: fenced transactions),
// on a topic of 12 partitions, the takeover of partitions when an
// instance joins or leaves and restores by 1, 2 and 3 instances at once, and
// restarts with and without snapshots, with the cost of taking them on
// Execute, and the example writer from its exec to /readyz 200 beside the
// bare loop of each client from its exec (writer.go), and a projection into
// PostgreSQL beside a bare loop with the same statements, a rebuild and the
// lag of a live projection (projection.go, with DATABASE_URL). It
// seeds its own topics on KAFKA_BROKERS and deletes them and its groups
// afterwards, prints a markdown table and writes results.md, results.csv and
// scaling.png under -out.
//
// Each restore runs in a child process of its own, so that its peak RSS is
// its own; so does each instance of a group.
//
//	go run ./bench            # the full run (make bench)
//	go run ./bench -quick     # about 100 000 events, in seconds
package main

import (
	"cmp"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"math"
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/provider"
	"github.com/rehydrate/rehydrate/provider/franz"
	"github.com/rehydrate/rehydrate/provider/kafka"
	"github.com/rehydrate/rehydrate/repository"
	"github.com/rehydrate/rehydrate/snapshot"
)

// workload is what the benchmark seeds.
type workload struct {
	Events, Partitions, Aggregates int
}

type config struct {
	brokers        string
	out            string
	quick          bool
	work           workload
	scaling        []int
	concurrency    []int
	duration       time.Duration
	batchSize      int
	isolate        bool // run each restore in a child process
	keep           bool // keep the seeded topics, for profiling with -child
	cpuProfile     string
	memProfile     string            // allocations of a -child run
	traceFile      string            // execution trace of a -child run
	sections       map[string]bool   // what to measure (-sections)
	groupParts     int               // partitions of the group topic
	groupProducers int               // transactional producers of the fenced Execute (0: default)
	instances      []int             // instance counts of the group restores
	props          map[string]string // extra librdkafka consumer properties, for tuning
	repeat         int               // restore runs per measurement; the median is reported
}

func main() {
	var cfg config
	var scaling, conc, instances, sections string
	flag.StringVar(&cfg.brokers, "brokers", cmp.Or(os.Getenv("KAFKA_BROKERS"), "127.0.0.1:9092"), "bootstrap brokers")
	flag.StringVar(&cfg.out, "out", "bench/results", "folder for results.md, results.csv and scaling.png")
	flag.BoolVar(&cfg.quick, "quick", false, "a small run (about 100 000 events) that checks the harness")
	flag.IntVar(&cfg.work.Events, "events", 1_000_000, "events in the restore workload")
	flag.IntVar(&cfg.work.Partitions, "partitions", 6, "partitions")
	flag.IntVar(&cfg.work.Aggregates, "aggregates", 100_000, "aggregates in the restore workload")
	flag.StringVar(&scaling, "scaling", "100000,300000,1000000,3000000", "event counts for the scaling series")
	flag.StringVar(&conc, "concurrency", "1,16,64,256", "command concurrencies")
	flag.IntVar(&cfg.groupProducers, "group-producers", 0, "transactional producers of the fenced Execute's member (0: the providers' default)")
	flag.IntVar(&cfg.groupParts, "group-partitions", 12, "partitions of the topic of the takeover and group restore measurements")
	flag.StringVar(&instances, "instances", "1,2,3", "instance counts of the group restores")
	flag.StringVar(&sections, "sections", strings.Join(allSections, ","), "what to measure (a subset for profiling; results.md then has only those)")
	flag.DurationVar(&cfg.duration, "duration", 5*time.Second, "time per command measurement")
	flag.IntVar(&cfg.batchSize, "batch", 0, "restore batch size (0: the provider's default)")
	flag.BoolVar(&cfg.isolate, "isolate", true, "run each restore in a child process (per-phase peak RSS)")
	flag.IntVar(&cfg.repeat, "repeat", 3, "runs of each restore measurement; the median is reported (shared machines are noisy)")
	flag.BoolVar(&cfg.keep, "keep", false, "keep the seeded topics (to profile a -child run on them)")
	flag.StringVar(&cfg.cpuProfile, "cpuprofile", "", "write a CPU profile of the run (with -child, of the child) here")
	flag.StringVar(&cfg.memProfile, "memprofile", "", "with -child: write the child's allocation profile here")
	flag.StringVar(&cfg.traceFile, "trace", "", "with -child: write the child's execution trace here (go tool trace: where workers wait)")
	props := flag.String("props", "", "extra librdkafka properties k=v,k=v for every consumer (bare and provider)")
	child := flag.String("child", "", "internal: run one restore measurement and print it as JSON")
	topic := flag.String("topic", "", "internal: the child's topic")
	group := flag.String("group", "", "internal: the group of a group-instance child")
	instance := flag.String("instance", "", "internal: the instance name of a group-instance child")
	codec := flag.String("codec", "msgpack", "internal: the child's codec")
	flag.Parse()
	cfg.props = map[string]string{}
	for kv := range strings.SplitSeq(*props, ",") {
		if k, v, ok := strings.Cut(kv, "="); ok {
			cfg.props[k] = v
		}
	}
	cfg.scaling = parseInts(scaling)
	cfg.concurrency = parseInts(conc)
	cfg.instances = parseInts(instances)
	cfg.sections = map[string]bool{}
	for name := range strings.SplitSeq(sections, ",") {
		if name = strings.TrimSpace(name); !slices.Contains(allSections, name) {
			log.Fatalf("-sections: unknown section %q (known: %s)", name, strings.Join(allSections, ","))
		}
		cfg.sections[name] = true
	}
	if cfg.quick {
		cfg = cfg.quickened()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *child == "group-instance" {
		if err := runInstanceChild(ctx, cfg, *topic, *group, *instance); err != nil {
			log.Fatal(err)
		}
		return
	}
	// A child profiles its own measurement, the parent the whole run.
	if cfg.cpuProfile != "" {
		f, err := os.Create(cfg.cpuProfile)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	if *child != "" {
		stopProfiles, err := profileChild(cfg)
		if err != nil {
			log.Fatal(err)
		}
		res, err := runChild(ctx, cfg, *child, *topic, *codec)
		stopProfiles()
		if err != nil {
			pprof.StopCPUProfile()
			log.Fatal(err)
		}
		res.PeakRSSMB = ownPeakRSSMB()
		_ = json.NewEncoder(os.Stdout).Encode(res)
		return
	}
	if err := run(ctx, cfg, os.Stdout); err != nil {
		pprof.StopCPUProfile()
		log.Fatal(err)
	}
}

// profileChild starts the child's trace (-trace); the returned function
// stops it and writes the allocation profile (-memprofile).
func profileChild(cfg config) (stop func(), err error) {
	var tf *os.File
	if cfg.traceFile != "" {
		if tf, err = os.Create(cfg.traceFile); err != nil {
			return nil, err
		}
		if err := trace.Start(tf); err != nil {
			return nil, err
		}
	}
	return func() {
		if tf != nil {
			trace.Stop()
			_ = tf.Close()
		}
		if cfg.memProfile != "" {
			f, err := os.Create(cfg.memProfile)
			if err == nil {
				err = pprof.Lookup("allocs").WriteTo(f, 0)
				_ = f.Close()
			}
			if err != nil {
				log.Printf("-memprofile: %v", err)
			}
		}
	}, nil
}

// quickened is the -quick configuration: every measurement, small.
func (cfg config) quickened() config {
	cfg.quick = true
	cfg.work = workload{Events: 100_000, Partitions: 6, Aggregates: 10_000}
	cfg.scaling = []int{20_000, 50_000, 100_000}
	cfg.concurrency = []int{1, 16, 64}
	cfg.duration = time.Second
	cfg.repeat = 1
	cfg.instances = []int{1, 2, 3}
	cfg.groupParts = cmp.Or(cfg.groupParts, 12)
	if cfg.sections == nil {
		cfg.sections = map[string]bool{}
		for _, s := range allSections {
			cfg.sections[s] = true
		}
	}
	return cfg
}

// allSections are the measurements, in the order they run.
var allSections = []string{"restore", "scaling", "commands", "takeover", "instances", "snapshots", "writer", "projection"}

func parseInts(s string) []int {
	var out []int
	for f := range strings.SplitSeq(s, ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(f)); err == nil && n > 0 {
			out = append(out, n)
		}
	}
	return out
}

func codecByName(name string) event.Codec {
	if name == "json" {
		return event.JSON
	}
	return event.Msgpack
}

// runChild is one restore measurement, in the process that reports it.
func runChild(ctx context.Context, cfg config, what, topic, codecName string) (restoreResult, error) {
	switch what {
	case "bare":
		return bareConsume(ctx, cfg.brokers, topic, cfg.props)
	case "restore":
		p, err := kafka.New(kafka.Config{Brokers: cfg.brokers, Topic: topic, BatchSize: cfg.batchSize, Properties: cfg.props})
		if err != nil {
			return restoreResult{}, err
		}
		defer p.Close()
		codec := codecByName(codecName)
		return restoreWith(ctx, "repository restore, Kafka, "+codecName, p, codec, cfg.batchSize)
	case "bare-franz":
		return bareFranz(ctx, cfg.brokers, topic)
	case "kcat":
		return kcatConsume(ctx, cfg.brokers, topic)
	case "restore-franz":
		p, err := franz.New(franz.Config{Brokers: cfg.brokers, Topic: topic, BatchSize: cfg.batchSize})
		if err != nil {
			return restoreResult{}, err
		}
		defer p.Close()
		return restoreWith(ctx, "repository restore, franz, "+codecName, p, codecByName(codecName), cfg.batchSize)
	case "memory":
		return restoreMemory(ctx, cfg.work, codecByName(codecName))
	case "snapshot-restore":
		return restoreFromSnapshots(ctx, cfg, topic)
	}
	return restoreResult{}, fmt.Errorf("unknown child %q", what)
}

// measure runs a restore measurement cfg.repeat times and returns the run of
// median duration, with the highest peak RSS of all runs.
func measure(ctx context.Context, cfg config, what, topic, codec string) (restoreResult, error) {
	var runs []restoreResult
	for range max(cfg.repeat, 1) {
		res, err := measureOnce(ctx, cfg, what, topic, codec)
		if err != nil {
			return res, err
		}
		runs = append(runs, res)
	}
	slices.SortFunc(runs, func(a, b restoreResult) int { return cmp.Compare(a.Seconds, b.Seconds) })
	median := runs[len(runs)/2]
	for _, r := range runs {
		median.PeakRSSMB = max(median.PeakRSSMB, r.PeakRSSMB)
	}
	return median, nil
}

// measureOnce runs one restore measurement, in a child process when isolating.
func measureOnce(ctx context.Context, cfg config, what, topic, codec string) (restoreResult, error) {
	if !cfg.isolate {
		return runChild(ctx, cfg, what, topic, codec)
	}
	exe, err := os.Executable()
	if err != nil {
		return restoreResult{}, err
	}
	args := []string{"-props", propsArg(cfg.props), "-child", what, "-topic", topic, "-codec", codec, "-brokers", cfg.brokers,
		"-batch", strconv.Itoa(cfg.batchSize), "-events", strconv.Itoa(cfg.work.Events),
		"-partitions", strconv.Itoa(cfg.work.Partitions), "-aggregates", strconv.Itoa(cfg.work.Aggregates)}
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return restoreResult{}, fmt.Errorf("child %s %s: %w", what, topic, err)
	}
	var res restoreResult
	if err := json.Unmarshal(out, &res); err != nil {
		return restoreResult{}, fmt.Errorf("child %s output %q: %w", what, out, err)
	}
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok && res.PeakRSSMB == 0 {
		// An overestimate: on Linux a child's ru_maxrss includes the
		// parent's peak before the exec (os/exec forks with CLONE_VM).
		res.PeakRSSMB = float64(ru.Maxrss) / 1024 // KiB on Linux
	}
	return res, nil
}

// report is everything one run measured; a section not measured is empty.
type report struct {
	Machine  string
	Work     workload
	Restores []restoreResult
	Bare     restoreResult
	Scaling  []scalingPoint
	Commands []commandRow

	GroupWork     workload // the topic of Takeovers and GroupRestores
	Isolated      bool     // instances were child processes
	Repeat        int
	Takeovers     []takeoverResult
	GroupRestores []groupRestoreResult

	SnapshotRestarts []snapshotRestart
	SnapshotCommands *snapshotCommands

	WriterStarts []writerStartResult

	Projection *projectionResult

	Notes []string // what went wrong without failing a measurement
}

type scalingPoint struct {
	Events        int
	Bare, Restore restoreResult
}

type commandRow struct {
	Concurrency          int
	Kafka, Raw, InMemory commandResult
	Franz, RawFranz      commandResult // the same with franz-go: provider/franz, a bare kgo producer
	Txn                  commandResult // Execute through WithGroup: fenced transactions
	TxnMarkers           int64         // commit markers the transactions left in the log
	Txns                 float64       // transactions, estimated from the markers
	TxnFranz             commandResult // the same with provider/franz
	TxnFranzMarkers      int64
	TxnsFranz            float64
	TxnSteps             stepMeans // where the fenced transactions' time went (the lanes' own timings)
	TxnFranzSteps        stepMeans
}

func run(ctx context.Context, cfg config, w io.Writer) error {
	runID := fmt.Sprintf("%d", time.Now().Unix())
	var topics, groups []string
	defer func() {
		if !cfg.keep {
			_ = cleanUp(context.Background(), cfg.brokers, topics, groups)
		}
	}()
	seed := func(label string, partitions, n, aggregates int, codec event.Codec) (string, error) {
		topic := fmt.Sprintf("bench-%s-%s", runID, label)
		topics = append(topics, topic)
		start := time.Now()
		err := seedKafka(ctx, cfg.brokers, topic, partitions, n, aggregates, codec)
		log.Printf("seeded %s with %d events in %v", topic, n, time.Since(start).Round(time.Millisecond))
		return topic, err
	}
	// seedWork seeds n events of the workload's shape, on its partitions.
	seedWork := func(n, aggregates int, codec event.Codec) (string, error) {
		return seed(fmt.Sprintf("%d-%s", n, strings.ToLower(codecName(codec))), cfg.work.Partitions, n, aggregates, codec)
	}
	group := func(label string) string {
		g := fmt.Sprintf("bench-%s-%s-%d", runID, label, len(groups))
		groups = append(groups, g)
		return g
	}
	rep := report{Machine: machine(), Work: cfg.work, Isolated: cfg.isolate, Repeat: max(cfg.repeat, 1)}

	var msgpackTopic string
	var err error
	if cfg.sections["restore"] {
		if msgpackTopic, err = seedWork(cfg.work.Events, cfg.work.Aggregates, event.Msgpack); err != nil {
			return err
		}
		jsonTopic, err := seedWork(cfg.work.Events, cfg.work.Aggregates, event.JSON)
		if err != nil {
			return err
		}
		if rep.Bare, err = measure(ctx, cfg, "bare", msgpackTopic, "msgpack"); err != nil {
			return err
		}
		measured := []struct{ what, topic, codec string }{
			{"bare-franz", msgpackTopic, "msgpack"},
			{"restore", msgpackTopic, "msgpack"},
			{"restore", jsonTopic, "json"},
			{"restore-franz", msgpackTopic, "msgpack"},
			{"restore-franz", jsonTopic, "json"},
			{"memory", "", "msgpack"},
			{"memory", "", "json"},
		}
		if _, err := exec.LookPath("kcat"); err == nil {
			measured = append([]struct{ what, topic, codec string }{{"kcat", msgpackTopic, "msgpack"}}, measured...)
		} else {
			rep.Notes = append(rep.Notes, "kcat is not installed: no kcat row (apt-get install kcat)")
		}
		for _, m := range measured {
			res, err := measure(ctx, cfg, m.what, m.topic, m.codec)
			if err != nil {
				return err
			}
			log.Printf("%s: %.0f events/s", res.Name, res.rate())
			rep.Restores = append(rep.Restores, res)
		}
	}

	for _, n := range cfg.scaling {
		if !cfg.sections["scaling"] {
			break
		}
		topic := msgpackTopic
		if n != cfg.work.Events || topic == "" {
			if topic, err = seedWork(n, max(n/10, 1), event.Msgpack); err != nil {
				return err
			}
		}
		pt := scalingPoint{Events: n}
		if pt.Bare, err = measure(ctx, cfg, "bare", topic, "msgpack"); err != nil {
			return err
		}
		if pt.Restore, err = measure(ctx, cfg, "restore", topic, "msgpack"); err != nil {
			return err
		}
		rep.Scaling = append(rep.Scaling, pt)
	}

	if cfg.sections["commands"] {
		if rep.Commands, err = commandBenchmarks(ctx, cfg, seed, group); err != nil {
			return err
		}
	}

	if cfg.sections["takeover"] || cfg.sections["instances"] {
		// The workload's events and aggregates, over more partitions.
		rep.GroupWork = workload{Events: cfg.work.Events, Partitions: cfg.groupParts, Aggregates: cfg.work.Aggregates}
		topic, err := seed(fmt.Sprintf("group-%dp-%d", cfg.groupParts, cfg.work.Events), cfg.groupParts, cfg.work.Events, cfg.work.Aggregates, event.Msgpack)
		if err != nil {
			return err
		}
		if cfg.sections["takeover"] {
			if rep.Takeovers, err = takeoverBench(ctx, cfg, topic, cfg.groupParts, func() string { return group("takeover") }, &rep.Notes); err != nil {
				return err
			}
			for _, t := range rep.Takeovers {
				log.Printf("takeover: %s: %d partitions, %d records in %.2f s", t.Name, t.Partitions, t.Read, t.Seconds)
			}
		}
		if cfg.sections["instances"] {
			if rep.GroupRestores, err = groupRestoreBench(ctx, cfg, topic, cfg.groupParts, func() string { return group("restore") }, &rep.Notes); err != nil {
				return err
			}
			for _, g := range rep.GroupRestores {
				log.Printf("restore with %d instances: every partition served after %.2f s, balanced after %.2f s", g.Instances, g.AllServedS, g.BalancedS)
			}
		}
	}
	if cfg.sections["snapshots"] {
		track := func(topic string) { topics = append(topics, topic) }
		if rep.SnapshotRestarts, err = snapshotRestarts(ctx, cfg, seed, track); err != nil {
			return err
		}
		sc, err := snapshotCommandCost(ctx, cfg, seed, track)
		if err != nil {
			return err
		}
		rep.SnapshotCommands = &sc
	}
	if cfg.sections["writer"] {
		seedTopic := func(label string, w workload) (string, error) {
			topic := fmt.Sprintf("bench-%s-%s", runID, label)
			topics = append(topics, topic, snapshot.TopicName(topic))
			start := time.Now()
			err := seedUsers(ctx, cfg.brokers, topic, w)
			log.Printf("seeded %s with %d events in %v", topic, w.Events, time.Since(start).Round(time.Millisecond))
			return topic, err
		}
		if rep.WriterStarts, err = writerStarts(ctx, cfg, seedTopic, group); err != nil {
			return err
		}
	}
	if cfg.sections["projection"] {
		if url := os.Getenv("DATABASE_URL"); url == "" {
			rep.Notes = append(rep.Notes, "projection: DATABASE_URL unset, no projection rows (make bench starts docker/postgres-local)")
		} else if rep.Projection, err = projectionBench(ctx, cfg, url, seed); err != nil {
			return err
		}
	}
	for _, n := range rep.Notes {
		log.Printf("note: %s", n)
	}
	return writeReport(cfg, rep, w)
}

func commandBenchmarks(ctx context.Context, cfg config, seed func(string, int, int, int, event.Codec) (string, error), group func(string) string) ([]commandRow, error) {
	const aggregates = 10_000
	topic, err := seed(fmt.Sprintf("commands-%d", aggregates), cfg.work.Partitions, aggregates, aggregates, event.Msgpack)
	if err != nil {
		return nil, err
	}
	p, err := kafka.New(kafka.Config{Brokers: cfg.brokers, Topic: topic})
	if err != nil {
		return nil, err
	}
	defer p.Close()
	repo, err := newRepository(p, event.Msgpack)
	if err != nil {
		return nil, err
	}
	if _, err := repo.Restore(ctx); err != nil {
		return nil, err
	}
	// franz-go's repository writes a topic of its own: a plain repository
	// is its topic's only writer.
	franzTopic, err := seed(fmt.Sprintf("commands-franz-%d", aggregates), cfg.work.Partitions, aggregates, aggregates, event.Msgpack)
	if err != nil {
		return nil, err
	}
	fp, err := franz.New(franz.Config{Brokers: cfg.brokers, Topic: franzTopic})
	if err != nil {
		return nil, err
	}
	defer fp.Close()
	franzRepo, err := newRepository(fp, event.Msgpack)
	if err != nil {
		return nil, err
	}
	if _, err := franzRepo.Restore(ctx); err != nil {
		return nil, err
	}
	steps, franzSteps := &txnSteps{}, &txnSteps{}
	txnRepo, txnLog, closeTxn, err := groupRepository(ctx, cfg, seed, group, aggregates, "kafka", steps)
	if err != nil {
		return nil, err
	}
	defer closeTxn()
	txnFranzRepo, txnFranzLog, closeTxnFranz, err := groupRepository(ctx, cfg, seed, group, aggregates, "franz", franzSteps)
	if err != nil {
		return nil, err
	}
	defer closeTxnFranz()
	memRepo, err := memoryRepository(ctx, cfg.work.Partitions, aggregates)
	if err != nil {
		return nil, err
	}
	var rows []commandRow
	for _, c := range cfg.concurrency {
		row := commandRow{Concurrency: c}
		if row.Kafka, err = executeBench(ctx, "Execute, Kafka", repo, aggregates, c, cfg.duration); err != nil {
			return nil, err
		}
		if row.Raw, err = rawProduceBench(ctx, cfg.brokers, topic, c, cfg.duration); err != nil {
			return nil, err
		}
		if row.Franz, err = executeBench(ctx, "Execute, franz", franzRepo, aggregates, c, cfg.duration); err != nil {
			return nil, err
		}
		if row.RawFranz, err = rawFranzProduceBench(ctx, cfg.brokers, franzTopic, c, cfg.duration); err != nil {
			return nil, err
		}
		steps.take()
		if row.Txn, row.TxnMarkers, row.Txns, err = fencedBench(ctx, cfg, "Execute, Kafka, WithGroup (transactions)", txnRepo, txnLog, aggregates, c); err != nil {
			return nil, err
		}
		row.TxnSteps = steps.take()
		franzSteps.take()
		if row.TxnFranz, row.TxnFranzMarkers, row.TxnsFranz, err = fencedBench(ctx, cfg, "Execute, franz, WithGroup (transactions)", txnFranzRepo, txnFranzLog, aggregates, c); err != nil {
			return nil, err
		}
		row.TxnFranzSteps = franzSteps.take()
		log.Printf("concurrency %d: fenced steps, confluent %+v, franz %+v", c, row.TxnSteps, row.TxnFranzSteps)
		if row.InMemory, err = executeBench(ctx, "Execute, memory", memRepo, aggregates, c, cfg.duration); err != nil {
			return nil, err
		}
		log.Printf("concurrency %d: Execute %.0f/s, bare producer %.0f/s, Execute with franz %.0f/s, bare franz producer %.0f/s, Execute in transactions %.0f/s (p99 %.1f ms), with franz %.0f/s (p99 %.1f ms)",
			c, row.Kafka.opsPerSec(), row.Raw.opsPerSec(), row.Franz.opsPerSec(), row.RawFranz.opsPerSec(), row.Txn.opsPerSec(), row.Txn.P99Ms, row.TxnFranz.opsPerSec(), row.TxnFranz.P99Ms)
		rows = append(rows, row)
	}
	return rows, nil
}

// groupRepository is a repository with WithGroup on a topic of its own (a
// plain repository must be its topic's only writer), the only member of its
// group, on the Kafka client named (kafka or franz): it owns every partition
// and appends in fenced transactions, with the provider's group settings at
// their defaults.
func groupRepository(ctx context.Context, cfg config, seed func(string, int, int, int, event.Codec) (string, error), group func(string) string, aggregates int, client string, steps *txnSteps) (*repository.Repository[Account], provider.Provider, func(), error) {
	topic, err := seed(fmt.Sprintf("commands-txn-%s-%d", client, aggregates), cfg.work.Partitions, aggregates, aggregates, event.Msgpack)
	if err != nil {
		return nil, nil, nil, err
	}
	var p interface {
		provider.Provider
		Close() error
	}
	if client == "franz" {
		p, err = franz.New(franz.Config{Brokers: cfg.brokers, Topic: topic, GroupProducers: cfg.groupProducers, Logger: slog.New(steps)})
	} else {
		p, err = kafka.New(kafka.Config{Brokers: cfg.brokers, Topic: topic, GroupProducers: cfg.groupProducers, Logger: slog.New(steps)})
	}
	if err != nil {
		return nil, nil, nil, err
	}
	repo, err := newRepository(p, event.Msgpack, repository.WithGroup(repository.Group{Name: group("execute-" + client), Instance: "bench"}))
	if err == nil {
		_, err = repo.Restore(ctx)
	}
	if err == nil && len(repo.Owned()) != cfg.work.Partitions {
		err = fmt.Errorf("the only member of its group serves %d of %d partitions", len(repo.Owned()), cfg.work.Partitions)
	}
	closeAll := func() {
		if repo != nil {
			_ = repo.Close()
		}
		_ = p.Close()
	}
	if err != nil {
		closeAll()
		return nil, nil, nil, fmt.Errorf("repository with a group (%s): %w", client, err)
	}
	return repo, p, closeAll, nil
}

// fencedBench runs Execute on a group repository and counts the commit
// markers its transactions left in txnLog, and the transactions they make.
func fencedBench(ctx context.Context, cfg config, name string, repo *repository.Repository[Account], txnLog provider.Provider, aggregates, c int) (commandResult, int64, float64, error) {
	before, err := logEnd(ctx, txnLog)
	if err != nil {
		return commandResult{}, 0, 0, err
	}
	res, err := executeBench(ctx, name, repo, aggregates, c, cfg.duration)
	if err != nil {
		return commandResult{}, 0, 0, err
	}
	after, err := logEnd(ctx, txnLog)
	if err != nil {
		return commandResult{}, 0, 0, err
	}
	// Every offset beyond the commands' events is a commit marker: one per
	// partition a transaction wrote.
	commands := res.Ops + 1 // the warm-up's
	markers := after - before - commands
	return res, markers, transactions(commands, markers, cfg.work.Partitions), nil
}

// logEnd is the sum of the partitions' end offsets once they stopped
// moving: the coordinator writes a transaction's commit markers after its
// commit returned, and the end (the last stable offset) waits for them.
func logEnd(ctx context.Context, p provider.Provider) (int64, error) {
	last := int64(-1)
	for range 40 {
		ps, err := p.Partitions(ctx)
		if err != nil {
			return 0, err
		}
		var n int64
		for _, part := range ps {
			n += part.High
		}
		if n == last {
			return n, nil
		}
		last = n
		time.Sleep(50 * time.Millisecond)
	}
	return last, nil
}

// transactions estimates how many transactions carried commands commands
// whose keys spread evenly over partitions, from the commit markers they
// left (one per partition a transaction wrote): a transaction of k commands
// writes partitions·(1-(1-1/partitions)^k) partitions on average.
func transactions(commands, markers int64, partitions int) float64 {
	if markers <= 0 || commands <= 0 {
		return 0
	}
	P, n, m := float64(partitions), float64(commands), float64(markers)
	f := func(t float64) float64 { return t * P * (1 - math.Pow(1-1/P, n/t)) } // grows with t
	lo, hi := m/P, min(m, n)
	for range 60 {
		mid := (lo + hi) / 2
		if f(mid) < m {
			lo = mid
		} else {
			hi = mid
		}
	}
	return (lo + hi) / 2
}

func memoryRepository(ctx context.Context, partitions, aggregates int) (*repository.Repository[Account], error) {
	p, err := memoryProvider(partitions)
	if err != nil {
		return nil, err
	}
	if err := seedMemory(ctx, p, aggregates, aggregates, event.Msgpack); err != nil {
		return nil, err
	}
	repo, err := newRepository(p, event.Msgpack)
	if err != nil {
		return nil, err
	}
	_, err = repo.Restore(ctx)
	return repo, err
}

func machine() string {
	host, _ := os.Hostname()
	cpu := "unknown CPU"
	if data, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.SplitSeq(string(data), "\n") {
			if name, ok := strings.CutPrefix(line, "model name"); ok {
				cpu = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(name), ":"))
				break
			}
		}
	}
	return fmt.Sprintf("%s, %d cores (%s), %s %s/%s, Kafka at %s", host, runtime.NumCPU(), cpu,
		runtime.Version(), runtime.GOOS, runtime.GOARCH, cmp.Or(os.Getenv("KAFKA_BROKERS"), "127.0.0.1:9092"))
}
