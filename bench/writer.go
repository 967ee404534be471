//go:build cgo

package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/provider/kafka"
	"github.com/rehydrate/rehydrate/snapshot"
)

// The writer section measures what an operator waits for: the example
// writer (examples/simple-cqrs-writer, a group member with snapshots, as
// it runs by default) from its process start to its first /readyz 200,
// beside the bare loop of the same client from its process start to its
// last record, in the same run, on the same topic, taking turns. Both
// clocks start at the exec, so both include what a process start costs
// (the runtime, the client's set-up, end offsets); the writer's also
// includes its topic check, its snapshot store, its group join and its
// HTTP server. The broker's internal topics already exist (the bench's
// own groups and transactions made them) and so does the snapshot topic,
// empty: a start as after a deploy, reading every event.

// writerStartResult is one configuration of the writer section.
type writerStartResult struct {
	Client     string        // confluent or franz
	Partitions int           // of the topic
	Events     int64         // in the topic
	Bare       restoreResult // the bare loop of Client: process start to its last record
	Writer     restoreResult // the writer: process start to /readyz 200
	Phases     writerPhases  // of the median writer run, from its log
	Kcat       *restoreResult
}

// writerPhases are the seconds from the writer's process start to each
// step its log names: where the start-up goes besides the restore.
type writerPhases struct {
	Connecting, Joining, Joined, RestoreStarted, Restored float64
}

// writerWorkloads are the topics of the section: a million events on 6
// partitions and 1.2 million on 12 (issue 19), or a tenth with -quick.
func writerWorkloads(cfg config) []workload {
	if cfg.quick {
		return []workload{{Events: 100_000, Partitions: 6, Aggregates: 10_000}}
	}
	return []workload{
		{Events: 1_000_000, Partitions: 6, Aggregates: 100_000},
		{Events: 1_200_000, Partitions: 12, Aggregates: 120_000},
	}
}

// writerStarts runs the writer section: for each workload and client, the
// bare loop and the writer take turns cfg.repeat times; medians are
// reported.
func writerStarts(ctx context.Context, cfg config, seed func(label string, w workload) (string, error), group func(string) string) ([]writerStartResult, error) {
	dir, err := os.MkdirTemp("", "bench-writer-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "simple-cqrs-writer")
	build := exec.CommandContext(ctx, "go", "build", "-o", bin, "github.com/rehydrate/rehydrate/examples/simple-cqrs-writer")
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		return nil, fmt.Errorf("build the writer: %w", err)
	}
	var out []writerStartResult
	for _, w := range writerWorkloads(cfg) {
		topic, err := seed(fmt.Sprintf("users-%dp-%d", w.Partitions, w.Events), w)
		if err != nil {
			return nil, err
		}
		for _, client := range []string{"confluent", "franz"} {
			res := writerStartResult{Client: client, Partitions: w.Partitions, Events: int64(w.Events)}
			bareChild := map[string]string{"confluent": "bare", "franz": "bare-franz"}[client]
			var bares, writers []restoreResult
			var phases []writerPhases
			var kcats []restoreResult
			for i := range max(cfg.repeat, 1) {
				b, err := spawnBare(ctx, cfg, bareChild, topic)
				if err != nil {
					return nil, err
				}
				bares = append(bares, b)
				if _, err := exec.LookPath("kcat"); err == nil {
					k, err := kcatConsume(ctx, cfg.brokers, topic)
					if err != nil {
						return nil, err
					}
					kcats = append(kcats, k)
				}
				wr, ph, err := startWriter(ctx, cfg, bin, dir, client, topic, group("writer"), fmt.Sprintf("bench-%d", i))
				if err != nil {
					return nil, err
				}
				wr.Events = b.Events // the writer reads what the bare loop counted
				writers = append(writers, wr)
				phases = append(phases, ph)
				log.Printf("writer start, %s, %d partitions: bare %.2f s, writer %.2f s (connecting %.2f, joining %.2f, joined %.2f, restore started %.2f, restored %.2f)",
					client, w.Partitions, b.Seconds, wr.Seconds, ph.Connecting, ph.Joining, ph.Joined, ph.RestoreStarted, ph.Restored)
			}
			res.Bare, _ = medianRun(bares)
			var at int
			res.Writer, at = medianRun(writers)
			res.Phases = phases[at]
			if len(kcats) > 0 {
				k, _ := medianRun(kcats)
				res.Kcat = &k
			}
			out = append(out, res)
		}
	}
	return out, nil
}

// medianRun is the run of median duration and its index in runs.
func medianRun(runs []restoreResult) (restoreResult, int) {
	idx := make([]int, len(runs))
	for i := range idx {
		idx[i] = i
	}
	slices.SortFunc(idx, func(a, b int) int { return cmpFloat(runs[a].Seconds, runs[b].Seconds) })
	m := idx[len(idx)/2]
	return runs[m], m
}

func cmpFloat(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// seedUsers writes w.Events events of the writer's users (UserCreated,
// then UserModified, in the writer's wire format) over w.Aggregates users,
// and creates the writer's snapshot topic, empty.
func seedUsers(ctx context.Context, brokers, topic string, w workload) error {
	reg := event.NewRegistry()
	if err := errors.Join(event.Register[userNames](reg, "UserCreated"), event.Register[userNamesModified](reg, "UserModified")); err != nil {
		return err
	}
	err := seedRecords(ctx, brokers, topic, w.Partitions, w.Events, func(i int) (event.Record, error) {
		version := i/w.Aggregates + 1
		var payload any = userNames{FirstName: "Ada", LastName: fmt.Sprintf("Lovelace-%d", i)}
		if version > 1 {
			payload = userNamesModified{FirstName: "Ada", LastName: fmt.Sprintf("Lovelace-%d", i)}
		}
		env, err := reg.NewEnvelope(fmt.Sprintf("user-%07d", i%w.Aggregates), uint64(version), payload)
		if err != nil {
			return event.Record{}, err
		}
		env.AggregateType = "user"
		return env.Record(), nil
	})
	if err != nil {
		return err
	}
	sp, err := kafka.New(kafka.Config{Brokers: brokers, Topic: snapshot.TopicName(topic)})
	if err != nil {
		return err
	}
	defer sp.Close()
	return sp.EnsureTopic(ctx, kafka.TopicSpec{Partitions: w.Partitions, ReplicationFactor: 1, Config: snapshot.TopicConfig()})
}

// userNames and userNamesModified are the payloads of the writer's
// UserCreated and UserModified (examples/users, a module the bench
// does not require): the same fields, the same encoding.
type userNames struct {
	FirstName string `json:"first_name"`
	LastName  string `json:"last_name"`
}

type userNamesModified userNames

// spawnedAtEnv carries the parent's clock at a child's exec, so that the
// child can tell how long after it its reading ended.
const spawnedAtEnv = "BENCH_SPAWNED_AT"

// spawnBare runs a bare loop (child "bare" or "bare-franz") in a process
// of its own, timed from the exec to its last record.
func spawnBare(ctx context.Context, cfg config, child, topic string) (restoreResult, error) {
	if !cfg.isolate {
		// In a test (TestQuickRun) this binary is the test binary, which
		// takes no -child: the loop runs in process, timed from its start.
		res, err := runChild(ctx, cfg, child, topic, "msgpack")
		res.Name += ", in process"
		return res, err
	}
	exe, err := os.Executable()
	if err != nil {
		return restoreResult{}, err
	}
	cmd := exec.CommandContext(ctx, exe, "-props", propsArg(cfg.props), "-child", child, "-topic", topic, "-brokers", cfg.brokers)
	cmd.Stderr = os.Stderr
	spawned := time.Now()
	cmd.Env = append(os.Environ(), spawnedAtEnv+"="+strconv.FormatInt(spawned.UnixNano(), 10))
	out, err := cmd.Output()
	if err != nil {
		return restoreResult{}, fmt.Errorf("child %s %s: %w", child, topic, err)
	}
	var res restoreResult
	if err := json.Unmarshal(out, &res); err != nil {
		return restoreResult{}, fmt.Errorf("child %s output %q: %w", child, out, err)
	}
	if res.SinceSpawn <= 0 {
		return restoreResult{}, fmt.Errorf("child %s did not say when its reading ended", child)
	}
	res.Name += ", from process start"
	res.Seconds = res.SinceSpawn
	return res, nil
}

// sinceSpawn is the seconds from the exec of this process (spawnedAtEnv)
// to now, and the CPU seconds it used, 0 when it was not spawned by
// spawnBare.
func sinceSpawn() (seconds, cpu float64) {
	ns, err := strconv.ParseInt(os.Getenv(spawnedAtEnv), 10, 64)
	if err != nil {
		return 0, 0
	}
	seconds = time.Since(time.Unix(0, ns)).Seconds()
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) == nil {
		cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
	}
	return seconds, cpu
}

// processCPUSeconds is the CPU time process pid has used (user and
// system, /proc/pid/stat), 0 where /proc does not tell.
func processCPUSeconds(pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command name, in parentheses, may hold spaces: fields are
	// counted after its closing one.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return 0
	}
	utime, err1 := strconv.ParseFloat(f[11], 64)
	stime, err2 := strconv.ParseFloat(f[12], 64)
	if err1 != nil || err2 != nil {
		return 0
	}
	return (utime + stime) / 100 // USER_HZ, 100 on Linux
}

// startWriter runs the writer binary on topic with client until its
// /readyz answers 200, then kills it (SIGKILL: a SIGTERM would snapshot
// and the next start read the snapshots), and returns the time to 200
// and the steps its log names.
func startWriter(ctx context.Context, cfg config, bin, dir, client, topic, group, instance string) (restoreResult, writerPhases, error) {
	port, err := freePort()
	if err != nil {
		return restoreResult{}, writerPhases{}, err
	}
	logPath := filepath.Join(dir, fmt.Sprintf("%s-%s-%s.log", topic, client, instance))
	logFile, err := os.Create(logPath)
	if err != nil {
		return restoreResult{}, writerPhases{}, err
	}
	defer logFile.Close()
	cmd := exec.CommandContext(ctx, bin)
	cmd.Env = append(os.Environ(),
		"KAFKA_BROKERS="+cfg.brokers, "KAFKA_TOPIC="+topic, "KAFKA_CLIENT="+client, "PORT="+strconv.Itoa(port),
		"WRITER_GROUP="+group, "WRITER_INSTANCE="+instance, "WRITER_TOKEN=bench", "LOG_FORMAT=json",
		// Snapshots on, as by default, but none taken while measuring.
		"WRITER_SNAPSHOTS=on", "WRITER_SNAPSHOT_EVENTS=1000000000000", "WRITER_SNAPSHOT_INTERVAL=100000h")
	cmd.Stdout, cmd.Stderr = logFile, logFile
	res := restoreResult{Name: "example writer (" + client + "), process start to /readyz 200"}
	spawned := time.Now()
	if err := cmd.Start(); err != nil {
		return res, writerPhases{}, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGKILL)
		<-exited
	}()
	url := fmt.Sprintf("http://127.0.0.1:%d/readyz", port)
	hc := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(5 * time.Minute)
	for {
		if time.Now().After(deadline) {
			return res, writerPhases{}, fmt.Errorf("writer on %s: no /readyz 200 within 5 min (log: %s)", topic, logPath)
		}
		select {
		case err := <-exited:
			exited <- err
			data, _ := os.ReadFile(logPath)
			return res, writerPhases{}, fmt.Errorf("writer on %s exited before ready: %v\n%s", topic, err, data)
		case <-ctx.Done():
			return res, writerPhases{}, ctx.Err()
		case <-time.After(5 * time.Millisecond): // polling, as a readiness probe does
		}
		resp, err := hc.Get(url)
		if err != nil {
			continue
		}
		var ready struct {
			Done int64 `json:"done"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&ready)
		_ = resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			res.Seconds = time.Since(spawned).Seconds()
			res.CPUSeconds = processCPUSeconds(cmd.Process.Pid)
			break
		}
	}
	ph, err := readPhases(logPath, spawned)
	return res, ph, err
}

// readPhases reads the writer's JSON log for the time of each step, in
// seconds after spawned.
func readPhases(path string, spawned time.Time) (writerPhases, error) {
	f, err := os.Open(path)
	if err != nil {
		return writerPhases{}, err
	}
	defer f.Close()
	var ph writerPhases
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line struct {
			Time time.Time `json:"time"`
			Msg  string    `json:"msg"`
		}
		if json.Unmarshal(sc.Bytes(), &line) != nil {
			continue
		}
		at := line.Time.Sub(spawned).Seconds()
		switch {
		case line.Msg == "connecting to Kafka":
			ph.Connecting = at
		case line.Msg == "joining group":
			ph.Joining = at
		case line.Msg == "joined group":
			ph.Joined = at
		case line.Msg == "restore started" && ph.RestoreStarted == 0:
			ph.RestoreStarted = at
		case line.Msg == "partitions served" && ph.Restored == 0:
			// Logged before /readyz turns 200; "restored: ready" may
			// come after the kill.
			ph.Restored = at
		}
	}
	return ph, sc.Err()
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
