package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rehydrate/rehydrate/consume"
	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/examples/users"
	"github.com/rehydrate/rehydrate/internal/kafkatest"
	"github.com/rehydrate/rehydrate/provider"
	kafka "github.com/rehydrate/rehydrate/provider/kafkaclient"
)

// The binaries under test, built once by TestMain.
var writerBin, readerBin string

func TestMain(m *testing.M) {
	os.Exit(buildAndRun(m))
}

func buildAndRun(m *testing.M) int {
	dir, err := os.MkdirTemp("", "rehydrate-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	args := []string{"build", "-o", dir + string(filepath.Separator)}
	if raceEnabled {
		// The services run with the race detector when the tests do.
		args = append(args, "-race")
	}
	args = append(args, "github.com/rehydrate/rehydrate/examples/simple-cqrs-writer", "github.com/rehydrate/rehydrate/examples/reader")
	build := exec.Command("go", args...)
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: building the examples:", err)
		return 1
	}
	writerBin, readerBin = filepath.Join(dir, "simple-cqrs-writer"), filepath.Join(dir, "reader")
	return m.Run()
}

// deadline is how long a test waits for something it polls for.
func deadline(t *testing.T) time.Time {
	limit := time.Now().Add(90 * time.Second)
	if d, ok := t.Deadline(); ok && d.Before(limit) {
		return d.Add(-5 * time.Second)
	}
	return limit
}

// eventually polls cond every 20 ms until it holds or the test's deadline,
// and fails with the last message cond gave.
func eventually(t *testing.T, what string, cond func() (bool, string)) {
	t.Helper()
	end := deadline(t)
	var msg string
	for time.Now().Before(end) {
		var ok bool
		if ok, msg = cond(); ok {
			return
		}
		time.Sleep(20 * time.Millisecond) // polling with a deadline, not synchronisation
	}
	t.Fatalf("%s: still not true at the deadline: %s", what, msg)
}

// service is one running binary.
type service struct {
	t    *testing.T
	name string
	cmd  *exec.Cmd
	url  string // http://127.0.0.1:port

	mu   sync.Mutex
	logs []string // stderr lines, JSON

	exited  chan struct{}
	waitErr error
}

// start runs bin with PORT=0 and JSON logs, and returns once it listens.
func start(t *testing.T, bin string, env ...string) *service {
	t.Helper()
	s := &service{t: t, name: filepath.Base(bin), exited: make(chan struct{})}
	s.cmd = exec.Command(bin)
	s.cmd.Env = append(os.Environ(), "PORT=0", "LOG_FORMAT=json", "LOG_LEVEL=info")
	s.cmd.Env = append(s.cmd.Env, env...)
	stderr, err := s.cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, s.cmd.Start())
	listening := make(chan string, 1)
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			s.mu.Lock()
			s.logs = append(s.logs, line)
			s.mu.Unlock()
			var rec struct{ Msg, Addr string }
			if json.Unmarshal([]byte(line), &rec) == nil && rec.Msg == "listening" {
				listening <- rec.Addr
			}
		}
	}()
	go func() {
		<-scanned // Wait closes the pipe: read it all first
		s.waitErr = s.cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() {
		if s.running() {
			_ = s.cmd.Process.Kill()
			<-s.exited
		}
		if t.Failed() {
			s.dumpLogs(60)
		}
	})
	select {
	case addr := <-listening:
		_, port, err := net.SplitHostPort(addr)
		require.NoError(t, err)
		s.url = "http://127.0.0.1:" + port
	case <-s.exited:
		s.dumpLogs(60)
		t.Fatalf("%s exited before listening: %v", s.name, s.waitErr)
	case <-time.After(60 * time.Second):
		s.dumpLogs(60)
		t.Fatalf("%s did not listen within a minute", s.name)
	}
	return s
}

func (s *service) running() bool {
	select {
	case <-s.exited:
		return false
	default:
		return true
	}
}

// linesWith returns the service's log lines that contain sub.
func (s *service) linesWith(sub string) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for _, l := range s.logs {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return out
}

func (s *service) dumpLogs(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	from := max(0, len(s.logs)-n)
	s.t.Logf("last %d log lines of %s:\n%s", len(s.logs)-from, s.name, strings.Join(s.logs[from:], "\n"))
}

// kill9 kills the service without warning, as a crash would. Like
// terminate, it may be called from any goroutine.
func (s *service) kill9() {
	if err := s.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		s.t.Errorf("kill -9 %s: %v", s.name, err)
	}
	<-s.exited
}

// terminate sends SIGTERM and returns the exit code once it exits, or -1.
func (s *service) terminate() int {
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		s.t.Errorf("SIGTERM %s: %v", s.name, err)
		return -1
	}
	select {
	case <-s.exited:
		return s.cmd.ProcessState.ExitCode()
	case <-time.After(60 * time.Second):
		s.t.Errorf("%s did not exit within a minute of SIGTERM", s.name)
		return -1
	}
}

// waitReady polls /readyz until 200.
func (s *service) waitReady() {
	s.t.Helper()
	eventually(s.t, s.name+" ready", func() (bool, string) {
		if !s.running() {
			s.t.Fatalf("%s exited: %v", s.name, s.waitErr)
		}
		status, body, err := s.call(http.MethodGet, "/readyz", "", nil)
		if err != nil {
			return false, err.Error()
		}
		return status == http.StatusOK, fmt.Sprint(status, " ", string(body))
	})
}

var client = &http.Client{
	Timeout:   30 * time.Second,
	Transport: &http.Transport{MaxIdleConnsPerHost: 32},
}

// call sends a request and returns the status and body; err is a transport
// failure (the service unreachable or gone).
func (s *service) call(method, path, body string, header map[string]string) (int, []byte, error) {
	resp, b, err := s.do(method, path, body, header)
	if resp == nil {
		return 0, nil, err
	}
	return resp.StatusCode, b, err
}

// do is call for a test that needs the response's headers too; the
// response's body is read and closed.
func (s *service) do(method, path, body string, header map[string]string) (*http.Response, []byte, error) {
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, s.url+path, r)
	if err != nil {
		return nil, nil, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

// mustCall is call for requests that must reach the service.
func (s *service) mustCall(method, path, body string, header map[string]string) (int, []byte) {
	s.t.Helper()
	status, b, err := s.call(method, path, body, header)
	require.NoError(s.t, err, "%s %s", method, path)
	return status, b
}

type user struct {
	ID        string `json:"id"`
	FirstName string `json:"first_name"`
	LastName  string `json:"last_name"`
	Version   uint64 `json:"version"`
}

type ack struct {
	ID      string `json:"id"`
	Version uint64 `json:"version"`
}

// topic is a fresh topic of 6 partitions and the environment that points a
// service at it.
type topic struct {
	cfg kafka.Config
	env []string
}

func newTopic(t *testing.T) topic {
	cfg := kafkatest.Config(t, 6, nil)
	return topic{cfg: cfg, env: []string{"KAFKA_BROKERS=" + cfg.Brokers, "KAFKA_TOPIC=" + cfg.Topic}}
}

func (tp topic) provider(t *testing.T) *kafka.Provider {
	t.Helper()
	p, err := kafka.New(tp.cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// ends returns the end offset of every partition.
func (tp topic) ends(t *testing.T) map[int32]int64 {
	t.Helper()
	ps, err := tp.provider(t).Partitions(t.Context())
	require.NoError(t, err)
	out := make(map[int32]int64, len(ps))
	for _, p := range ps {
		out[p.ID] = p.High
	}
	return out
}

// replayed is a user as replaying the topic gives it.
type replayed struct {
	user
	deleted bool
	// names[v] are the names the event of version v set.
	names map[uint64][2]string
}

// replay reads the whole topic, independently of the services' code, and
// checks as it goes that each user's versions run 1, 2, 3… without gaps or
// repeats.
func (tp topic) replay(t *testing.T) map[string]*replayed {
	t.Helper()
	reg, err := users.Registry()
	require.NoError(t, err)
	out := map[string]*replayed{}
	err = consume.Stream(t.Context(), tp.provider(t), consume.Replay, consume.StreamOptions{}, func(b provider.Batch) error {
		for _, rec := range b.Records {
			if event.IsControl(rec) {
				continue // a fence left by an unknown outcome's resolution
			}
			env, err := event.ParseRecord(rec)
			if err != nil {
				return err
			}
			payload, err := reg.Decode(&env)
			if err != nil {
				return err
			}
			u := out[env.AggregateID]
			if u == nil {
				u = &replayed{user: user{ID: env.AggregateID}, names: map[uint64][2]string{}}
				out[env.AggregateID] = u
			}
			if env.Version != u.Version+1 || u.deleted {
				return fmt.Errorf("user %s: event %s version %d after version %d (deleted %t)", u.ID, env.Type, env.Version, u.Version, u.deleted)
			}
			u.Version = env.Version
			switch e := payload.(type) {
			case *users.Created:
				if env.Version != 1 {
					return fmt.Errorf("user %s: %s at version %d", u.ID, env.Type, env.Version)
				}
				u.FirstName, u.LastName = e.FirstName, e.LastName
			case *users.Modified:
				u.FirstName, u.LastName = e.FirstName, e.LastName
			case *users.Deleted:
				u.deleted = true
			default:
				return fmt.Errorf("unexpected event %T", payload)
			}
			u.names[env.Version] = [2]string{u.FirstName, u.LastName}
		}
		return nil
	})
	require.NoError(t, err)
	return out
}

func decode[T any](t *testing.T, b []byte) T {
	t.Helper()
	var v T
	require.NoError(t, json.Unmarshal(b, &v), "body %s", b)
	return v
}

// isTransport tells a transport failure (the service gone) from an answer.
func isTransport(err error) bool {
	var ne net.Error
	return err != nil && (errors.As(err, &ne) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET))
}

func jsonBody(v any) string {
	var b bytes.Buffer
	_ = json.NewEncoder(&b).Encode(v)
	return b.String()
}

func jsonUnmarshal(b []byte, v any) error {
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%w: %s", err, b)
	}
	return nil
}
