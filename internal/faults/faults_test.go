// Package faults holds the fault tests that need a three-broker cluster they
// may crash: `make test-faults` starts one with docker/kafka-local and runs
// them; elsewhere they skip, saying so, except under CI=true, where a
// missing cluster fails them (as kafkatest.Brokers does).
package faults

import (
	"context"
	crand "crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/provider"
	kafka "github.com/rehydrate/rehydrate/provider/kafkaclient"
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
			_ = c.launcher("resume-broker", strconv.Itoa(n)) // harmless when running
		}
		c.start(1, 2, 3)
	})
	return c
}

// launcher runs docker/kafka-local on the cluster (KAFKA_LOCAL_CACHE, as
// make test-faults passes it, says where the cluster lives).
func (c *cluster) launcher(args ...string) error {
	cmd := exec.Command("../../docker/kafka-local", args...)
	cmd.Env = append(os.Environ(), "KAFKA_PORT="+c.port)
	out, err := cmd.CombinedOutput()
	c.t.Logf("kafka-local %v: %v\n%s", args, err, out)
	if err != nil {
		return fmt.Errorf("kafka-local %v: %w: %s", args, err, out)
	}
	return nil
}

// inject runs a fault on the cluster; the test fails when it could not.
func (c *cluster) inject(args ...string) {
	c.t.Helper()
	require.NoError(c.t, c.launcher(args...), "the fault was not injected")
}

func (c *cluster) kill(node int) { c.inject("kill-broker", strconv.Itoa(node)) }

// start restarts nodes at once: one node alone cannot form a controller
// quorum, so it would not come up before the others do. A node that is
// running already is left as it is.
func (c *cluster) start(nodes ...int) {
	var wg sync.WaitGroup
	errs := make([]error, len(nodes))
	for i, n := range nodes {
		wg.Go(func() { errs[i] = c.launcher("start-broker", strconv.Itoa(n)) })
	}
	wg.Wait()
	for _, err := range errs {
		assert.NoError(c.t, err, "a broker did not start")
	}
}

func (c *cluster) pause(node int)  { c.inject("pause-broker", strconv.Itoa(node)) }
func (c *cluster) resume(node int) { c.inject("resume-broker", strconv.Itoa(node)) }

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

// writer returns a restored repository on cfg's topic of n partitions,
// which when group is a group's only member, serving every partition.
func (c *cluster) writer(t *testing.T, cfg kafka.Config, group bool, n int) *repository.Repository[rt.Account] {
	var opts []repository.Option
	if group {
		c.ensureCoordinators()
		opts = append(opts, repository.WithGroup(repository.Group{Name: cfg.Topic, Instance: "a"}))
	}
	r := rt.NewRepository(t, open(t, cfg), opts...)
	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	_, err := r.Restore(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { _ = r.Close() })
	if group {
		waitFor(t, "the member to serve every partition", time.Minute, func() bool { return len(r.Owned()) == n })
	}
	return r
}

func open(t *testing.T, cfg kafka.Config) *kafka.Provider {
	p, err := kafka.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// deposit deposits a fresh amount on id and records what became of it.
func deposit(ctx context.Context, r *repository.Repository[rt.Account], id string, l *rt.Ledger) (repository.Result, error) {
	amount := l.Amounts(1)[0]
	res, err := r.Execute(ctx, id, rt.Deposit(amount))
	l.Record(id, []any{rt.Deposited{Amount: amount}}, res, err)
	return res, err
}

// burst deposits on random accounts from workers goroutines until ctx ends.
func burst(ctx context.Context, r *repository.Repository[rt.Account], ids []string, workers int, l *rt.Ledger) *sync.WaitGroup {
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; ctx.Err() == nil; i += workers {
				cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				_, _ = deposit(cctx, r, ids[i%len(ids)], l)
				cancel()
			}
		})
	}
	return &wg
}

// createAccounts opens n accounts, recorded in l.
func createAccounts(t *testing.T, r *repository.Repository[rt.Account], n int, l *rt.Ledger) []string {
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("acct-%03d", i)
		res, err := r.Create(t.Context(), ids[i], rt.Open("owner"))
		require.NoError(t, err)
		l.Record(ids[i], []any{rt.Opened{Owner: "owner"}}, res, err)
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

// verify checks the log and the state against the ledger, an independent
// model of what was acknowledged: every acknowledged deposit is in the log
// exactly once at its version with its amount, no version appears twice,
// nothing refused is there; the live repository, once its unknown outcomes
// are resolved, and a fresh restore hold the ledger's fold of the
// acknowledged commands (a command of unknown outcome whole or not at all)
// and equal each other.
func verify(t *testing.T, cfg kafka.Config, live *repository.Repository[rt.Account], ids []string, l *rt.Ledger) {
	ctx := t.Context()
	for _, id := range ids {
		// A command raising nothing resolves a pending unknown outcome
		// first. A group member whose group connection a fault cut
		// rejoins once the link is back (franz-go's heartbeat meets the
		// cut connection and ends the session, also when a command went
		// through in between), and its partitions are revoked and
		// restored again: wait it out.
		waitFor(t, "the live repository to resolve "+id, time.Minute, func() bool {
			_, err := live.Execute(ctx, id, func(rt.Account) ([]any, error) { return nil, nil })
			if moving(err) {
				t.Logf("resolving %s: %v (again)", id, err)
				return false
			}
			require.NoError(t, err, "resolving %s", id)
			return true
		})
	}
	awaitMarkers(t, cfg)
	p := open(t, cfg)
	lost := l.CheckLog(t, p)
	restored := rt.Restored(t, p)
	l.Check(t, restored)
	assert.Zero(t, restored.Stats().Duplicates, "no version was appended twice")
	// The live repository last, once it serves every account: a rejoin
	// that began after the resolving commands has ended by now.
	waitFor(t, "the live repository to serve every account", time.Minute, func() bool {
		for _, id := range ids {
			if _, _, err := live.Get(id); moving(err) {
				return false
			}
		}
		return true
	})
	l.Check(t, live)
	for _, id := range ids {
		want, wv, err := live.Get(id)
		require.NoError(t, err)
		got, gv, err := restored.Get(id)
		require.NoError(t, err)
		assert.Equal(t, wv, gv, "%s version", id)
		assert.Equal(t, want, got, "%s", id)
	}
	t.Logf("RESULT %s: acknowledged=%d unknown=%d failed=%d lost=%d", t.Name(), l.Acknowledged(), l.Unknown(), l.Failed(), lost)
}

// moving reports whether err says that the partition is not served for
// the moment: revoked, or restored again.
func moving(err error) bool {
	return errors.Is(err, provider.ErrNotOwner) || errors.Is(err, repository.ErrNotReady)
}

// awaitMarkers waits until every partition of cfg's topic has its last
// stable offset at its end: the commit markers of a group member's last
// transactions are written just after it acknowledged them, and a
// read_committed reader sees them only then.
func awaitMarkers(t *testing.T, cfg kafka.Config) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(cfg.Brokers, ",")...))
	require.NoError(t, err)
	defer cl.Close()
	adm := kadm.NewClient(cl)
	waitFor(t, "every transaction's markers", 30*time.Second, func() bool {
		ends, err := adm.ListEndOffsets(t.Context(), cfg.Topic)
		if err != nil {
			return false
		}
		stable, err := adm.ListCommittedOffsets(t.Context(), cfg.Topic)
		if err != nil {
			return false
		}
		same := true
		ends.Each(func(o kadm.ListedOffset) {
			if so, ok := stable.Lookup(o.Topic, o.Partition); !ok || so.Offset != o.Offset {
				same = false
			}
		})
		return same
	})
}

func TestKillLeaderDuringBurst(t *testing.T) {
	c := newCluster(t)
	cfg := c.topic(3, 10*time.Second)
	r := rt.Restored(t, open(t, cfg))
	var l rt.Ledger
	ids := createAccounts(t, r, 100, &l)
	ctx, stop := context.WithCancel(t.Context())
	wg := burst(ctx, r, ids, 16, &l)
	begun := l.Acknowledged()
	waitFor(t, "a first burst", time.Minute, func() bool { return l.Acknowledged() >= begun+500 })
	leader := c.leader(cfg.Topic, 0)
	c.kill(leader)
	before := l.Acknowledged()
	waitFor(t, "commands to succeed without the killed leader", 2*time.Minute, func() bool { return l.Acknowledged() >= before+500 })
	c.start(leader)
	after := l.Acknowledged()
	waitFor(t, "commands after the restart", time.Minute, func() bool { return l.Acknowledged() >= after+200 })
	stop()
	wg.Wait()
	verify(t, cfg, r, ids, &l)
}

func TestTwoOfThreeDownRefusesThenRecovers(t *testing.T) {
	c := newCluster(t)
	const timeout = 5 * time.Second
	cfg := c.topic(1, timeout)
	r := rt.Restored(t, open(t, cfg))
	var l rt.Ledger
	ids := createAccounts(t, r, 1, &l)
	for range 5 {
		_, err := deposit(t.Context(), r, ids[0], &l)
		require.NoError(t, err)
	}
	before, version, err := r.Get(ids[0])
	require.NoError(t, err)

	c.kill(2)
	c.kill(3)
	start := time.Now()
	_, err = deposit(t.Context(), r, ids[0], &l)
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
		_, err := deposit(t.Context(), r, ids[0], &l)
		return err == nil
	})
	verify(t, cfg, r, ids, &l)
}

// All brokers killed during a restore: the restore is held at a known
// point (its first progress report, with most of the log still to read)
// while every broker dies, so it cannot finish from what it fetched. It
// must fail within its bound with ErrUnavailable, serve nothing, and
// succeed when retried after the brokers are back.
func TestBrokersDownDuringRestore(t *testing.T) {
	c := newCluster(t)
	const timeout = 5 * time.Second
	cfg := c.topic(3, timeout)
	p := open(t, cfg)
	const events = 200_000
	seed := rt.Restored(t, p)
	ids := createAccounts(t, seed, 1000, new(rt.Ledger))
	reg := rt.Registry(t)
	recs := make([]event.Record, 0, 5000)
	// Random metadata the producer cannot compress: about 40 MB in all, so
	// that what the clients fetch ahead (franz-go 2 MB a partition, a
	// compressed batch of tiny deposits holding a whole partition) is a
	// small part of the log.
	pad := make([]byte, 128)
	for i := len(ids); i < events; i++ {
		id := ids[i%len(ids)]
		env, err := reg.NewEnvelope(id, uint64(i/len(ids)+1), rt.Deposited{Amount: 1})
		require.NoError(t, err)
		_, _ = crand.Read(pad)
		env.Metadata = map[string]string{"pad": base64.StdEncoding.EncodeToString(pad)}
		recs = append(recs, env.Record())
		if len(recs) == cap(recs) || i == events-1 {
			_, err := p.Append(t.Context(), recs)
			require.NoError(t, err)
			recs = recs[:0]
		}
	}

	// librdkafka would prefetch the whole log (queued.min.messages is
	// 100 000 a partition) while the brokers die: keep its queue small, as
	// franz-go's one fetch ahead is, so that the restore needs the brokers
	// it loses. franz-go ignores these properties.
	rcfg := cfg
	rcfg.Properties = map[string]string{"queued.min.messages": "1000", "queued.max.messages.kbytes": "1024"}
	held, release := make(chan repository.Progress, 1), make(chan struct{})
	var once sync.Once
	r := rt.NewRepository(t, open(t, rcfg), repository.WithProgress(time.Millisecond, func(pr repository.Progress) {
		if pr.Done > 0 && pr.Done < pr.Total {
			once.Do(func() {
				held <- pr
				<-release
			})
		}
	}))
	type result struct {
		stats repository.Stats
		err   error
	}
	done := make(chan result, 1)
	go func() {
		s, err := r.Restore(t.Context())
		done <- result{s, err}
	}()
	var at repository.Progress
	select {
	case at = <-held:
	case res := <-done:
		t.Fatalf("the restore ended before its first progress report: %+v", res)
	case <-time.After(time.Minute):
		t.Fatal("the restore made no progress in a minute")
	}
	for n := 1; n <= 3; n++ {
		c.kill(n)
	}
	downAt := time.Now()
	close(release)
	var res result
	select {
	case res = <-done:
	case <-time.After(2 * time.Minute):
		t.Fatal("with every broker down the restore neither finished nor failed in 2 minutes")
	}
	took := time.Since(downAt)
	t.Logf("RESULT restore held at %d of %d events while the 3 brokers were killed; it ended %v later: %v",
		at.Done, at.Total, took.Round(time.Millisecond), res.err)
	require.Error(t, res.err, "the restore completed without brokers after %d of %d events: it did not need them", res.stats.Events, events)
	assert.ErrorIs(t, res.err, provider.ErrUnavailable)
	assert.Less(t, took, 10*timeout, "failed within a bound of the configured timeout")
	_, _, err := r.Get(ids[0])
	assert.ErrorIs(t, err, repository.ErrNotReady, "a failed restore serves nothing")
	assert.Zero(t, r.Len())

	c.start(1, 2, 3)
	rctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
	defer cancel()
	var stats repository.Stats
	waitFor(t, "a retried restore to succeed once the brokers are back", 3*time.Minute, func() bool {
		stats, err = r.Restore(rctx)
		if err != nil {
			t.Logf("retried restore: %v", err)
		}
		return err == nil
	})
	assert.Equal(t, int64(events), stats.Events)
	for _, id := range ids {
		a, v, err := r.Get(id)
		require.NoError(t, err)
		assert.Equal(t, uint64(events/len(ids)), v, id)
		assert.Equal(t, int64(events/len(ids)-1), a.Balance, id)
	}
}

// TestUnknownOutcomeIsResolvedFromTheLog hangs every broker (SIGSTOP) under
// an append: the request stays on open connections to brokers that answer
// late, once resumed, and whether it was written is left to chance (the
// test takes either). The deterministic cases, written and not written,
// lose one direction of the traffic instead (outcome_test.go).
func TestUnknownOutcomeIsResolvedFromTheLog(t *testing.T) {
	c := newCluster(t)
	cfg := c.topic(1, 3*time.Second)
	r := rt.Restored(t, open(t, cfg))
	var l rt.Ledger
	ids := createAccounts(t, r, 1, &l)
	for n := 1; n <= 3; n++ {
		c.pause(n)
	}
	_, err := deposit(t.Context(), r, ids[0], &l)
	t.Logf("append while every broker hangs: %v", err)
	// The request is on its way to a broker that never answers: the
	// outcome is unknown, not a refusal (a fail-fast ErrUnavailable would
	// leave the path this test is named after untried).
	require.ErrorIs(t, err, provider.ErrOutcomeUnknown)
	require.Equal(t, 1, l.Unknown())
	_, v, err2 := r.Get(ids[0])
	require.NoError(t, err2)
	assert.Equal(t, uint64(1), v, "memory unchanged")
	for n := 1; n <= 3; n++ {
		c.resume(n)
	}
	waitFor(t, "the next command to go through", 2*time.Minute, func() bool {
		res, err := deposit(t.Context(), r, ids[0], &l)
		if err != nil {
			return false
		}
		t.Logf("RESULT next command at version %d (the hung append %s)", res.Version,
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
	var l rt.Ledger
	ids := createAccounts(t, r, 400, &l)
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
				_, err := deposit(t.Context(), r, id, &l)
				if errors.Is(err, provider.ErrUnavailable) && !errors.Is(err, provider.ErrOutcomeUnknown) {
					refused.Add(1)
				}
			}
		})
	}
	wg.Wait()
	heapAfter := heap()
	t.Logf("RESULT overload: acknowledged=%d refused=%d heap %d→%d bytes", l.Acknowledged(), refused.Load(), heapBefore, heapAfter)
	assert.Positive(t, refused.Load(), "a full producer queue refuses instead of queueing without bound")
	assert.Less(t, heapAfter, heapBefore+64<<20, "memory stays bounded")
	verify(t, cfg, r, ids, &l)
}
