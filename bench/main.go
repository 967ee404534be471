// Command bench measures rehydrate against the Kafka client it is built on,
// in one run, on the same topics: restore (a bare confluent-kafka-go consumer
// that only counts records, the repository with msgpack and with JSON, and
// the repository on the memory provider), restore time as the log grows, and
// Execute next to a bare idempotent acks=all producer at several
// concurrencies. It seeds its own topics on KAFKA_BROKERS and deletes them
// afterwards, prints a markdown table and writes results.md, results.csv and
// scaling.png under -out.
//
// Each restore runs in a child process of its own, so that its peak RSS is
// its own.
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
	"os"
	"os/exec"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/provider/kafka"
	"github.com/rehydrate/rehydrate/repository"
)

// workload is what the benchmark seeds.
type workload struct {
	Events, Partitions, Aggregates int
}

type config struct {
	brokers     string
	out         string
	quick       bool
	work        workload
	scaling     []int
	concurrency []int
	duration    time.Duration
	batchSize   int
	isolate     bool // run each restore in a child process
	keep        bool // keep the seeded topics, for profiling with -child
	cpuProfile  string
	props       map[string]string // extra librdkafka consumer properties, for tuning
	repeat      int               // restore runs per measurement; the median is reported
}

func main() {
	var cfg config
	var scaling, conc string
	flag.StringVar(&cfg.brokers, "brokers", envOr("KAFKA_BROKERS", "127.0.0.1:9092"), "bootstrap brokers")
	flag.StringVar(&cfg.out, "out", "bench/results", "folder for results.md, results.csv and scaling.png")
	flag.BoolVar(&cfg.quick, "quick", false, "a small run (about 100 000 events) that checks the harness")
	flag.IntVar(&cfg.work.Events, "events", 1_000_000, "events in the restore workload")
	flag.IntVar(&cfg.work.Partitions, "partitions", 6, "partitions")
	flag.IntVar(&cfg.work.Aggregates, "aggregates", 100_000, "aggregates in the restore workload")
	flag.StringVar(&scaling, "scaling", "100000,300000,1000000,3000000", "event counts for the scaling series")
	flag.StringVar(&conc, "concurrency", "1,16,64,256", "command concurrencies")
	flag.DurationVar(&cfg.duration, "duration", 5*time.Second, "time per command measurement")
	flag.IntVar(&cfg.batchSize, "batch", 0, "restore batch size (0: the provider's default)")
	flag.BoolVar(&cfg.isolate, "isolate", true, "run each restore in a child process (per-phase peak RSS)")
	flag.IntVar(&cfg.repeat, "repeat", 3, "runs of each restore measurement; the median is reported (shared machines are noisy)")
	flag.BoolVar(&cfg.keep, "keep", false, "keep the seeded topics (to profile a -child run on them)")
	flag.StringVar(&cfg.cpuProfile, "cpuprofile", "", "internal: write the child's CPU profile here")
	props := flag.String("props", "", "extra librdkafka properties k=v,k=v for every consumer (bare and provider)")
	child := flag.String("child", "", "internal: run one restore measurement and print it as JSON")
	topic := flag.String("topic", "", "internal: the child's topic")
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
	if cfg.quick {
		cfg = cfg.quickened()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if *child != "" {
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
		res, err := runChild(ctx, cfg, *child, *topic, *codec)
		if err != nil {
			pprof.StopCPUProfile()
			log.Fatal(err)
		}
		_ = json.NewEncoder(os.Stdout).Encode(res)
		return
	}
	if err := run(ctx, cfg, os.Stdout); err != nil {
		log.Fatal(err)
	}
}

// quickened is the -quick configuration: every measurement, small.
func (cfg config) quickened() config {
	cfg.quick = true
	cfg.work = workload{Events: 100_000, Partitions: 6, Aggregates: 10_000}
	cfg.scaling = []int{20_000, 50_000, 100_000}
	cfg.concurrency = []int{1, 16, 64}
	cfg.duration = time.Second
	cfg.repeat = 1
	return cfg
}

func envOr(k, def string) string {
	if v := os.Getenv(k); v != "" {
		return v
	}
	return def
}

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
	case "memory":
		return restoreMemory(ctx, cfg.work, codecByName(codecName))
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
	var props []string
	for k, v := range cfg.props {
		props = append(props, k+"="+v)
	}
	args := []string{"-props", strings.Join(props, ","), "-child", what, "-topic", topic, "-codec", codec, "-brokers", cfg.brokers,
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
	if ru, ok := cmd.ProcessState.SysUsage().(*syscall.Rusage); ok {
		res.PeakRSSMB = float64(ru.Maxrss) / 1024 // KiB on Linux
	}
	return res, nil
}

// report is everything one run measured.
type report struct {
	Machine  string
	Work     workload
	Restores []restoreResult
	Bare     restoreResult
	Scaling  []scalingPoint
	Commands []commandRow
}

type scalingPoint struct {
	Events        int
	Bare, Restore restoreResult
}

type commandRow struct {
	Concurrency          int
	Kafka, Raw, InMemory commandResult
}

func run(ctx context.Context, cfg config, w io.Writer) error {
	runID := fmt.Sprintf("%d", time.Now().Unix())
	var topics []string
	defer func() {
		if len(topics) > 0 && !cfg.keep {
			_ = deleteTopics(context.Background(), cfg.brokers, topics)
		}
	}()
	seed := func(n, aggregates int, codec event.Codec) (string, error) {
		topic := fmt.Sprintf("bench-%s-%d-%s", runID, n, strings.ToLower(codecName(codec)))
		topics = append(topics, topic)
		start := time.Now()
		err := seedKafka(ctx, cfg.brokers, topic, cfg.work.Partitions, n, aggregates, codec)
		log.Printf("seeded %s with %d events in %v", topic, n, time.Since(start).Round(time.Millisecond))
		return topic, err
	}
	rep := report{Machine: machine(), Work: cfg.work}

	msgpackTopic, err := seed(cfg.work.Events, cfg.work.Aggregates, event.Msgpack)
	if err != nil {
		return err
	}
	jsonTopic, err := seed(cfg.work.Events, cfg.work.Aggregates, event.JSON)
	if err != nil {
		return err
	}
	if rep.Bare, err = measure(ctx, cfg, "bare", msgpackTopic, "msgpack"); err != nil {
		return err
	}
	for _, m := range []struct{ what, topic, codec string }{
		{"restore", msgpackTopic, "msgpack"},
		{"restore", jsonTopic, "json"},
		{"memory", "", "msgpack"},
		{"memory", "", "json"},
	} {
		res, err := measure(ctx, cfg, m.what, m.topic, m.codec)
		if err != nil {
			return err
		}
		log.Printf("%s: %.0f events/s", res.Name, res.rate())
		rep.Restores = append(rep.Restores, res)
	}

	for _, n := range cfg.scaling {
		topic := msgpackTopic
		if n != cfg.work.Events {
			if topic, err = seed(n, max(n/10, 1), event.Msgpack); err != nil {
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

	rows, err := commandBenchmarks(ctx, cfg, seed)
	if err != nil {
		return err
	}
	rep.Commands = rows
	return writeReport(cfg, rep, w)
}

func commandBenchmarks(ctx context.Context, cfg config, seed func(int, int, event.Codec) (string, error)) ([]commandRow, error) {
	const aggregates = 10_000
	topic, err := seed(aggregates, aggregates, event.Msgpack)
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
		if row.InMemory, err = executeBench(ctx, "Execute, memory", memRepo, aggregates, c, cfg.duration); err != nil {
			return nil, err
		}
		log.Printf("concurrency %d: Execute %.0f/s, bare producer %.0f/s", c, row.Kafka.opsPerSec(), row.Raw.opsPerSec())
		rows = append(rows, row)
	}
	return rows, nil
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
		runtime.Version(), runtime.GOOS, runtime.GOARCH, envOr("KAFKA_BROKERS", "127.0.0.1:9092"))
}
