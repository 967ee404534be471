package e2e

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// TestMeasureHTTPCommands measures the example writer's commands over HTTP
// in its default mode (a group member: fenced transactions) beside
// WRITER_GROUP=none (alone, unfenced) on the same topic, taking turns,
// and prints "MEASURE name value" lines for bench/http.sh, which runs it
// (E2E_MEASURE=1): 10 000 users on 6 partitions, E2E_CLIENTS (default 64)
// clients each sending an update and waiting for its answer, for
// E2E_DURATION (default 10s) per turn, E2E_ROUNDS (default 2) rounds of
// both modes. Every answer must be a 200; the figures are only reported.
func TestMeasureHTTPCommands(t *testing.T) {
	if os.Getenv("E2E_MEASURE") == "" {
		t.Skip("a measurement: bench/http.sh runs it (E2E_MEASURE=1)")
	}
	clients := envInt(t, "E2E_CLIENTS", 64)
	rounds := envInt(t, "E2E_ROUNDS", 2)
	d := 10 * time.Second
	if v := os.Getenv("E2E_DURATION"); v != "" {
		var err error
		d, err = time.ParseDuration(v)
		require.NoError(t, err)
	}
	const partitions, users = 6, 10_000
	tp := newTopicOf(t, partitions)
	ids := seedUsers(t, tp, 2*users, users)
	t.Logf("seeded %d events of %d users on %d partitions; %d clients, %v per turn", 2*users, len(ids), partitions, clients, d)

	hc := &http.Client{Timeout: time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 2 * clients}}
	modes := []struct{ name, group string }{{"unfenced", "WRITER_GROUP=none"}, {"fenced", ""}}
	for round := 1; round <= rounds; round++ {
		ops := map[string]float64{}
		for _, mode := range modes {
			env := []string{"WRITER_INSTANCE=w-http"}
			if mode.group != "" {
				env = append(env, mode.group)
			}
			w := startWriterAt(t, tp, 0, env...)
			w.waitServingWithin(partitions, 5*time.Minute)
			measureLoad(t, hc, w, ids, clients, time.Second) // warm-up: connections, the first transactions
			r := measureLoad(t, hc, w, ids, clients, d)
			require.Equal(t, 0, w.terminate(), "the writer exits cleanly")
			ops[mode.name] = r.perSecond
			prefix := fmt.Sprintf("http_%s_round%d", mode.name, round)
			t.Logf("MEASURE %s_commands_per_s %.0f", prefix, r.perSecond)
			t.Logf("MEASURE %s_p50_ms %.2f", prefix, r.p50.Seconds()*1000)
			t.Logf("MEASURE %s_p99_ms %.2f", prefix, r.p99.Seconds()*1000)
		}
		t.Logf("MEASURE http_round%d_fenced_over_unfenced %.2f", round, ops["fenced"]/ops["unfenced"])
	}
}

type loadResult struct {
	perSecond float64
	p50, p99  time.Duration
}

// measureLoad runs clients closed-loop clients against w for d, each
// updating a random user and waiting for the answer, which must be a 200.
func measureLoad(t *testing.T, hc *http.Client, w *service, ids []string, clients int, d time.Duration) loadResult {
	t.Helper()
	lat := make([][]time.Duration, clients)
	errs := make([]error, clients)
	var wg sync.WaitGroup
	start := time.Now()
	end := start.Add(d)
	for c := range clients {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(c), uint64(start.UnixNano())))
			for n := 0; time.Now().Before(end); n++ {
				id := ids[rng.IntN(len(ids))]
				body := fmt.Sprintf(`{"first_name":"F%d-%d","last_name":"L%d"}`, c, n, n)
				t0 := time.Now()
				req, err := http.NewRequest(http.MethodPut, w.url+"/users/"+id, bytes.NewBufferString(body))
				if err != nil {
					errs[c] = err
					return
				}
				req.Header.Set("Content-Type", "application/json")
				resp, err := hc.Do(req)
				if err != nil {
					errs[c] = err
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					errs[c] = fmt.Errorf("PUT /users/%s: %d %s", id, resp.StatusCode, b)
					return
				}
				lat[c] = append(lat[c], time.Since(t0))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	for _, err := range errs {
		require.NoError(t, err)
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	require.NotEmpty(t, all)
	return loadResult{perSecond: float64(len(all)) / elapsed.Seconds(), p50: all[len(all)/2], p99: all[len(all)*99/100]}
}

func envInt(t *testing.T, name string, def int) int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	require.NoError(t, err, name)
	return n
}
