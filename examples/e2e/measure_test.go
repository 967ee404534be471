package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/examples/users"
	"github.com/rehydrate/rehydrate/internal/kafkatest"
)

// TestMeasureFleet measures how long a fleet of writers leaves partitions
// unserved when an instance crashes or stops, with real processes on a real
// broker, and prints each figure as a "MEASURE name seconds" line for
// bench/fleet.sh, which runs it (E2E_MEASURE=1; E2E_EVENTS, default
// 1 000 000). It checks counts, as the other tests do: nothing acknowledged
// is lost; the times are only reported.
func TestMeasureFleet(t *testing.T) {
	if os.Getenv("E2E_MEASURE") == "" {
		t.Skip("a measurement: bench/fleet.sh runs it (E2E_MEASURE=1)")
	}
	events := 1_000_000
	if v := os.Getenv("E2E_EVENTS"); v != "" {
		var err error
		events, err = strconv.Atoi(v)
		require.NoError(t, err)
	}
	const partitions = 12
	tp := newTopicOf(t, partitions)
	ids := seedUsers(t, tp, events, events/10)
	t.Logf("seeded %d events of %d users on %d partitions", events, len(ids), partitions)

	report := func(name string, d time.Duration) { t.Logf("MEASURE %s %.2f", name, d.Seconds()) }
	a := startWriterAt(t, tp, 0, "WRITER_INSTANCE=w-a")
	t0 := time.Now()
	a.waitServingWithin(partitions, 5*time.Minute)
	report("full_replay", time.Since(t0))
	require.Equal(t, 0, a.terminate(), "a exits cleanly, with snapshots")
	t0 = time.Now()
	a = startWriterAt(t, tp, a.port(), "WRITER_INSTANCE=w-a")
	a.waitServingWithin(partitions, time.Minute)
	report("clean_restart_from_snapshots", time.Since(t0))

	// kill -9 the only writer under load, restart it under its name; three
	// times, the median and the slowest reported (the machine is shared).
	load := newFleetLoad(t, ids[:300], a)
	load.start(4)
	waitAcks(t, load, 100)
	var fromKill, fromStart []time.Duration
	for range 3 {
		a.kill9()
		killed := time.Now()
		a = startWriterAt(t, tp, a.port(), "WRITER_INSTANCE=w-a")
		started := time.Now()
		load.setWriters(a)
		a.waitServingWithin(partitions, time.Minute)
		fromKill, fromStart = append(fromKill, time.Since(killed)), append(fromStart, time.Since(started))
		waitAcks(t, load, load.ok.Load()+100)
	}
	slices.Sort(fromKill)
	slices.Sort(fromStart)
	report("kill9_restart_same_name_from_kill_median", fromKill[1])
	report("kill9_restart_same_name_from_kill_max", fromKill[2])
	report("kill9_restart_same_name_from_start_median", fromStart[1])

	// One of three, killed and restarted under its name: the others keep
	// what they serve.
	b := startWriterAt(t, tp, 0, "WRITER_INSTANCE=w-b")
	c := startWriterAt(t, tp, 0, "WRITER_INSTANCE=w-c")
	fleet := []*service{a, b, c}
	load.setWriters(fleet...)
	waitSpread(t, partitions, fleet...)
	before := [][]int32{b.served(), c.served()}
	waitAcks(t, load, load.ok.Load()+100)
	load.setWriters(b, c)
	a.kill9()
	killed := time.Now()
	a = startWriterAt(t, tp, a.port(), "WRITER_INSTANCE=w-a")
	waitSpread(t, partitions, a, b, c)
	report("kill9_one_of_three_restart_same_name", time.Since(killed))
	require.Equal(t, before, [][]int32{b.served(), c.served()}, "the others' partitions did not move")
	load.setWriters(a, b, c)

	// A clean stop of one of three and its restart under its name, with
	// the default WRITER_LEAVE=on: its partitions go to the others and
	// come back.
	load.setWriters(b, c)
	stopped := time.Now()
	require.NoError(t, a.signal(syscall.SIGTERM))
	waitSpread(t, partitions, b, c)
	report("leave_on_stop_until_others_serve", time.Since(stopped))
	<-a.exited // after WRITER_DRAIN
	require.Equal(t, 0, a.cmd.ProcessState.ExitCode())
	a = startWriterAt(t, tp, a.port(), "WRITER_INSTANCE=w-a", "WRITER_LEAVE=off")
	waitSpread(t, partitions, a, b, c)
	report("leave_on_stop_and_restart_until_spread", time.Since(stopped))

	// The same with WRITER_LEAVE=off (a was started with it): its
	// partitions wait for it.
	load.setWriters(b, c)
	stopped = time.Now()
	require.Equal(t, 0, a.terminate())
	a = startWriterAt(t, tp, a.port(), "WRITER_INSTANCE=w-a")
	waitSpread(t, partitions, a, b, c)
	report("leave_off_stop_and_restart_until_spread", time.Since(stopped))
	load.setWriters(a, b, c)

	// One of three killed under load and not restarted: every user
	// writable again through the survivors.
	waitAcks(t, load, load.ok.Load()+100)
	killed = load.kill9InFlight(a, b, c)
	waitSpread(t, partitions, b, c)
	report("kill9_one_of_three_until_survivors_serve", time.Since(killed))
	t.Logf("MEASURE kill9_one_of_three_fencings %d", b.countLogs(fencedMsg)+c.countLogs(fencedMsg))
	waitAcks(t, load, load.ok.Load()+100)
	load.halt()
	load.checkTopic(tp)
	t.Logf("%d updates acknowledged, %d answered 503: %v", load.ok.Load(), load.refused.Load(), load.why)
}

// newTopicOf is newTopic with the given number of partitions.
func newTopicOf(t *testing.T, partitions int) topic {
	cfg := kafkatest.Config(t, partitions, nil)
	return topic{cfg: cfg, env: []string{"KAFKA_BROKERS=" + cfg.Brokers, "KAFKA_TOPIC=" + cfg.Topic}}
}

// seedUsers writes n events of the given number of users (each created,
// then updated in turn) to the topic, unfenced, and returns their ids.
func seedUsers(t *testing.T, tp topic, n, count int) []string {
	t.Helper()
	reg, err := users.Registry()
	require.NoError(t, err)
	ids := make([]string, count)
	for i := range ids {
		ids[i] = event.NewID()
	}
	p := tp.provider(t)
	// At most 8 000 records in flight: franz-go buffers 10 000 by default.
	const writers, batch = 4, 2000
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Go(func() {
			var recs []event.Record
			flush := func() error {
				if len(recs) == 0 {
					return nil
				}
				_, err := p.Append(context.Background(), recs)
				recs = recs[:0]
				return err
			}
			// Version by version over this writer's users: each user's
			// events are appended in order.
			for v := 1; (v-1)*count < n; v++ {
				for i := w; i < count && (v-1)*count+i < n; i += writers {
					var payload any = users.Modified{FirstName: "F" + strconv.Itoa(v), LastName: "L" + strconv.Itoa(i)}
					if v == 1 {
						payload = users.Created{FirstName: "Ada", LastName: "L" + strconv.Itoa(i)}
					}
					env, err := reg.NewEnvelope(ids[i], uint64(v), payload)
					if err != nil {
						errs <- err
						return
					}
					recs = append(recs, env.Record())
					if len(recs) == batch {
						if err := flush(); err != nil {
							errs <- err
							return
						}
					}
				}
				if err := flush(); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	return ids
}

// startWriterAt starts a writer on port (0: a free one) in the topic's
// default group; env comes last, so it may name the instance.
func startWriterAt(t *testing.T, tp topic, port int, env ...string) *service {
	t.Helper()
	if port == 0 {
		return startWriter(t, tp, env...)
	}
	return start(t, writerBin, append(append([]string{
		"PORT=" + strconv.Itoa(port),
		"WRITER_ADVERTISE=http://127.0.0.1:" + strconv.Itoa(port),
	}, tp.env...), env...)...)
}

func (s *service) port() int {
	p, err := strconv.Atoi(s.url[len("http://127.0.0.1:"):])
	require.NoError(s.t, err)
	return p
}

// served returns the partitions the writer serves, as /readyz tells, nil
// when it does not answer 200.
func (s *service) served() []int32 {
	status, body, err := s.call(http.MethodGet, "/readyz", "", nil)
	if err != nil || status != http.StatusOK {
		return nil
	}
	var r struct{ Partitions []int32 }
	if jsonUnmarshal(body, &r) != nil {
		return nil
	}
	return r.Partitions
}

// waitServingWithin polls /readyz every 10 ms until the writer serves n
// partitions.
func (s *service) waitServingWithin(n int, limit time.Duration) {
	s.t.Helper()
	for end := time.Now().Add(limit); len(s.served()) != n; time.Sleep(10 * time.Millisecond) {
		require.True(s.t, time.Now().Before(end), "%s does not serve %d partitions after %v", s.name, n, limit)
		require.True(s.t, s.running(), "%s exited", s.name)
	}
}

// waitSpread polls until the writers serve every partition between them,
// each one at most once, each writer at least one.
func waitSpread(t *testing.T, partitions int, ws ...*service) {
	t.Helper()
	for end := time.Now().Add(2 * time.Minute); ; time.Sleep(10 * time.Millisecond) {
		var all []int32
		each := true
		for _, w := range ws {
			got := w.served()
			each = each && len(got) > 0
			all = append(all, got...)
		}
		slices.Sort(all)
		if each && len(slices.Compact(all)) == partitions && len(all) == partitions {
			return
		}
		require.True(t, time.Now().Before(end), "the writers do not serve the %d partitions between them: %v", partitions, all)
	}
}

// waitAcks waits until the load has n acknowledgements.
func waitAcks(t *testing.T, load *fleetLoad, n int64) {
	t.Helper()
	eventually(t, fmt.Sprint(n, " acknowledged updates"), func() (bool, string) {
		return load.ok.Load() >= n, fmt.Sprint(load.ok.Load())
	})
}
