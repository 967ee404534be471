// Package faults holds the fault tests that need a three-broker cluster they
// may crash: `make test-faults` starts one with docker/kafka-local and runs
// them; elsewhere they skip, saying so, except under CI=true, where a
// missing cluster fails them (as kafkatest.Brokers does).
package faults

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rehydrate/rehydrate/event"
	kafka "github.com/rehydrate/rehydrate/internal/kafkaclient"
	"github.com/rehydrate/rehydrate/provider"
	"github.com/rehydrate/rehydrate/repository"
	rt "github.com/rehydrate/rehydrate/repository/repositorytest"
)

// cluster drives the three local brokers through the launcher.
type cluster struct {
	t       *testing.T
	brokers string
	port    string
}

func newCluster(t *testing.T) *cluster {
	brokers, port := os.Getenv("KAFKA_FAULT_BROKERS"), os.Getenv("KAFKA_FAULT_PORT")
	if brokers == "" || port == "" {
		const how = "three-broker fault tests need KAFKA_FAULT_BROKERS and KAFKA_FAULT_PORT: run `make test-faults` (it starts the cluster)"
		if os.Getenv("CI") == "true" {
			t.Fatal("CI=true: " + how)
		}
		t.Skip(how)
	}
	c := &cluster{t: t, brokers: brokers, port: port}
	t.Cleanup(func() {
		for n := 1; n <= 3; n++ {
			c.launcher("resume-broker", strconv.Itoa(n)) // harmless when running
		}
		c.start(1, 2, 3)
	})
	return c
}

func (c *cluster) launcher(args ...string) string {
	cmd := exec.Command("../../docker/kafka-local", args...)
	cmd.Env = append(os.Environ(), "KAFKA_PORT="+c.port)
	out, err := cmd.CombinedOutput()
	c.t.Logf("kafka-local %v: %v\n%s", args, err, out)
	return string(out)
}

func (c *cluster) kill(node int) { c.launcher("kill-broker", strconv.Itoa(node)) }

// start restarts nodes at once: one node alone cannot form a controller
// quorum, so it would not come up before the others do.
func (c *cluster) start(nodes ...int) {
	var wg sync.WaitGroup
	for _, n := range nodes {
		wg.Go(func() { c.launcher("start-broker", strconv.Itoa(n)) })
	}
	wg.Wait()
}

func (c *cluster) pause(node int)  { c.launcher("pause-broker", strconv.Itoa(node)) }
func (c *cluster) resume(node int) { c.launcher("resume-broker", strconv.Itoa(node)) }

// leader returns the node leading a partition of topic.
func (c *cluster) leader(topic string, partition int32) int {
	leader, ok := c.leaders(topic)[partition]
	if !ok {
		c.t.Fatalf("no leader for %s/%d", topic, partition)
	}
	return leader
}

// topic creates a replicated topic (3 replicas, min.insync.replicas 2).
func (c *cluster) topic(partitions int, timeout time.Duration) kafka.Config {
	cfg := kafka.Config{
		Brokers: c.brokers,
		Topic:   fmt.Sprintf("faults-%s-%d", c.t.Name(), time.Now().UnixNano()),
		Timeout: timeout,
	}
	p, err := kafka.New(cfg)
	require.NoError(c.t, err)
	defer p.Close()
	require.NoError(c.t, p.EnsureTopic(c.t.Context(), kafka.TopicSpec{
		Partitions: partitions, ReplicationFactor: 3, Config: map[string]string{"min.insync.replicas": "2"},
	}))
	return cfg
}

func open(t *testing.T, cfg kafka.Config) *kafka.Provider {
	p, err := kafka.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// ledger records every command the repository acknowledged.
type ledger struct {
	mu    sync.Mutex
	acked map[string][]uint64
	n     atomic.Int64
	fails atomic.Int64
}

func (l *ledger) add(id string, v uint64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.acked == nil {
		l.acked = map[string][]uint64{}
	}
	l.acked[id] = append(l.acked[id], v)
	l.n.Add(1)
}

// burst deposits on random accounts from workers goroutines until ctx ends.
func burst(ctx context.Context, r *repository.Repository[rt.Account], ids []string, workers int, l *ledger) *sync.WaitGroup {
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; ctx.Err() == nil; i += workers {
				id := ids[i%len(ids)]
				cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				res, err := r.Execute(cctx, id, rt.Deposit(1))
				cancel()
				if err != nil {
					l.fails.Add(1)
					continue
				}
				l.add(id, res.Version)
			}
		})
	}
	return &wg
}

func createAccounts(t *testing.T, r *repository.Repository[rt.Account], n int) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("acct-%03d", i)
		_, err := r.Create(t.Context(), ids[i], rt.Open("owner"))
		require.NoError(t, err)
	}
	return ids
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		require.True(t, time.Now().Before(deadline), "timed out waiting for %s", what)
		time.Sleep(50 * time.Millisecond) // polling, bounded by the deadline
	}
}

// verify checks the log against what was acknowledged and the live state:
// every acknowledged command is in the log exactly once at its version, no
// version appears twice, and a fresh restore equals the live repository once
// its unknown outcomes are resolved.
func verify(t *testing.T, cfg kafka.Config, live *repository.Repository[rt.Account], ids []string, l *ledger) {
	ctx := t.Context()
	for _, id := range ids {
		// A command raising nothing resolves a pending unknown outcome first.
		_, err := live.Execute(ctx, id, func(rt.Account) ([]any, error) { return nil, nil })
		require.NoError(t, err, "resolving %s", id)
	}
	p := open(t, cfg)
	ps, err := p.Partitions(ctx)
	require.NoError(t, err)
	type key struct {
		id      string
		version uint64
	}
	inLog := map[key]int{}
	require.NoError(t, p.Read(ctx, provider.Ranges(ps), 0, func(b provider.Batch) error {
		for _, rec := range b.Records {
			if event.IsControl(rec) {
				continue // a fence left by an unknown outcome's resolution
			}
			env, err := event.ParseRecord(rec)
			if err != nil {
				return err
			}
			inLog[key{env.AggregateID, env.Version}]++
		}
		return nil
	}))
	lost := 0
	for id, versions := range l.acked {
		for _, v := range versions {
			if inLog[key{id, v}] != 1 {
				lost++
				t.Errorf("acknowledged %s version %d is in the log %d times", id, v, inLog[key{id, v}])
			}
		}
	}
	for k, n := range inLog {
		assert.Equal(t, 1, n, "%s version %d appears %d times", k.id, k.version, n)
	}
	restored := rt.Restored(t, p)
	for _, id := range ids {
		want, wv, err := live.Get(id)
		require.NoError(t, err)
		got, gv, err := restored.Get(id)
		require.NoError(t, err)
		assert.Equal(t, wv, gv, "%s version", id)
		assert.Equal(t, want.Balance, got.Balance, "%s balance", id)
	}
	t.Logf("RESULT %s: acknowledged=%d failed=%d lost=%d", t.Name(), l.n.Load(), l.fails.Load(), lost)
}

func TestKillLeaderDuringBurst(t *testing.T) {
	c := newCluster(t)
	cfg := c.topic(3, 10*time.Second)
	r := rt.Restored(t, open(t, cfg))
	ids := createAccounts(t, r, 100)
	var l ledger
	ctx, stop := context.WithCancel(t.Context())
	wg := burst(ctx, r, ids, 16, &l)
	waitFor(t, "a first burst", time.Minute, func() bool { return l.n.Load() >= 500 })
	leader := c.leader(cfg.Topic, 0)
	c.kill(leader)
	before := l.n.Load()
	waitFor(t, "commands to succeed without the killed leader", 2*time.Minute, func() bool { return l.n.Load() >= before+500 })
	c.start(leader)
	after := l.n.Load()
	waitFor(t, "commands after the restart", time.Minute, func() bool { return l.n.Load() >= after+200 })
	stop()
	wg.Wait()
	verify(t, cfg, r, ids, &l)
}

func TestTwoOfThreeDownRefusesThenRecovers(t *testing.T) {
	c := newCluster(t)
	const timeout = 5 * time.Second
	cfg := c.topic(1, timeout)
	r := rt.Restored(t, open(t, cfg))
	ids := createAccounts(t, r, 1)
	var l ledger
	for range 5 {
		res, err := r.Execute(t.Context(), ids[0], rt.Deposit(1))
		require.NoError(t, err)
		l.add(ids[0], res.Version)
	}
	before, version, err := r.Get(ids[0])
	require.NoError(t, err)

	c.kill(2)
	c.kill(3)
	start := time.Now()
	_, err = r.Execute(t.Context(), ids[0], rt.Deposit(1))
	took := time.Since(start)
	require.Error(t, err)
	assert.ErrorIs(t, err, provider.ErrUnavailable)
	assert.Less(t, took, 3*timeout, "refused within the configured bound")
	t.Logf("refused after %v: %v", took, err)
	now, v, err := r.Get(ids[0])
	require.NoError(t, err)
	assert.Equal(t, version, v, "memory unchanged")
	assert.Equal(t, before, now, "memory unchanged")

	c.start(2, 3)
	waitFor(t, "the service to recover without a restart", 2*time.Minute, func() bool {
		res, err := r.Execute(t.Context(), ids[0], rt.Deposit(1))
		if err != nil {
			l.fails.Add(1)
			return false
		}
		l.add(ids[0], res.Version)
		return true
	})
	verify(t, cfg, r, ids, &l)
}

func TestBrokersDownDuringRestore(t *testing.T) {
	c := newCluster(t)
	cfg := c.topic(3, 5*time.Second)
	p := open(t, cfg)
	const events = 200_000
	seed := rt.Restored(t, p)
	ids := createAccounts(t, seed, 1000)
	reg := rt.Registry(t)
	recs := make([]event.Record, 0, 5000)
	for i := len(ids); i < events; i++ {
		id := ids[i%len(ids)]
		env, err := reg.NewEnvelope(id, uint64(i/len(ids)+1), rt.Deposited{Amount: 1})
		require.NoError(t, err)
		recs = append(recs, env.Record())
		if len(recs) == cap(recs) || i == events-1 {
			_, err := p.Append(t.Context(), recs)
			require.NoError(t, err)
			recs = recs[:0]
		}
	}

	r := rt.NewRepository(t, open(t, cfg))
	type result struct {
		stats repository.Stats
		err   error
	}
	done := make(chan result, 1)
	go func() {
		s, err := r.Restore(t.Context())
		done <- result{s, err}
	}()
	waitFor(t, "the restore to start", time.Minute, func() bool { return r.Progress().Done > 0 })
	for n := 1; n <= 3; n++ {
		c.kill(n)
	}
	var res result
	ended := false
	select {
	case res = <-done:
		ended = true
		t.Logf("restore ended while the brokers were down: %+v", res)
	case <-time.After(3 * time.Second): // how long the brokers stay down
	}
	c.start(1, 2, 3)
	if !ended {
		select {
		case res = <-done:
		case <-time.After(3 * time.Minute):
			t.Fatal("restore neither finished nor failed")
		}
	}
	if res.err != nil {
		t.Logf("RESULT restore failed clearly: %v", res.err)
		_, _, err := r.Get(ids[0])
		assert.ErrorIs(t, err, repository.ErrNotReady, "a failed restore serves nothing")
		return
	}
	t.Logf("RESULT restore completed after the brokers returned: %d events", res.stats.Events)
	assert.Equal(t, int64(events), res.stats.Events)
	for _, id := range ids {
		_, v, err := r.Get(id)
		require.NoError(t, err)
		assert.Equal(t, uint64(events/len(ids)), v, id)
	}
}

func TestUnknownOutcomeIsResolvedFromTheLog(t *testing.T) {
	c := newCluster(t)
	cfg := c.topic(1, 3*time.Second)
	r := rt.Restored(t, open(t, cfg))
	ids := createAccounts(t, r, 1)
	var l ledger
	l.add(ids[0], 1)
	for n := 1; n <= 3; n++ {
		c.pause(n)
	}
	_, err := r.Execute(t.Context(), ids[0], rt.Deposit(5))
	require.Error(t, err)
	t.Logf("append while every broker hangs: %v", err)
	_, v, err2 := r.Get(ids[0])
	require.NoError(t, err2)
	assert.Equal(t, uint64(1), v, "memory unchanged")
	for n := 1; n <= 3; n++ {
		c.resume(n)
	}
	waitFor(t, "the next command to go through", 2*time.Minute, func() bool {
		res, err := r.Execute(t.Context(), ids[0], rt.Deposit(1))
		if err != nil {
			return false
		}
		l.add(ids[0], res.Version)
		t.Logf("next command at version %d (the hung append %s)", res.Version,
			map[bool]string{true: "was written", false: "was not written"}[res.Version == 3])
		return true
	})
	verify(t, cfg, r, ids, &l)
}

func TestOverloadRefusesAndStaysBounded(t *testing.T) {
	c := newCluster(t)
	cfg := c.topic(3, 10*time.Second)
	cfg.Properties = map[string]string{"queue.buffering.max.messages": "64"}
	r := rt.Restored(t, open(t, cfg))
	ids := createAccounts(t, r, 400)
	var l ledger
	var refused atomic.Int64
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapAlloc
	}
	heapBefore := heap()
	var wg sync.WaitGroup
	for _, id := range ids {
		wg.Go(func() {
			for range 10 {
				res, err := r.Execute(t.Context(), id, rt.Deposit(1))
				switch {
				case err == nil:
					l.add(id, res.Version)
				case errors.Is(err, provider.ErrUnavailable) && !errors.Is(err, provider.ErrOutcomeUnknown):
					refused.Add(1)
					l.fails.Add(1)
				default:
					l.fails.Add(1)
				}
			}
		})
	}
	wg.Wait()
	heapAfter := heap()
	t.Logf("RESULT overload: acknowledged=%d refused=%d heap %d→%d bytes", l.n.Load(), refused.Load(), heapBefore, heapAfter)
	assert.Positive(t, refused.Load(), "a full producer queue refuses instead of queueing without bound")
	assert.Less(t, heapAfter, heapBefore+64<<20, "memory stays bounded")
	verify(t, cfg, r, ids, &l)
}
