//go:build cgo

package kafka_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	ckafka "github.com/confluentinc/confluent-kafka-go/v2/kafka"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/internal/kafkatest"
	"github.com/rehydrate/rehydrate/provider"
	"github.com/rehydrate/rehydrate/provider/kafka"
	"github.com/rehydrate/rehydrate/provider/providertest"
	"github.com/rehydrate/rehydrate/repository/repositorytest"
)

// expellable lets a test expel a member by holding its polls: librdkafka
// leaves the group once max.poll.interval.ms passes without a poll (the
// brokers' minimum session timeout, 6 s, is also its minimum).
func expellable(cfg kafka.Config) kafka.Config {
	cfg.SessionTimeout = 6 * time.Second
	// Properties reach every client: the read consumers too, which want
	// session.timeout.ms <= max.poll.interval.ms as well.
	cfg.Properties = map[string]string{"max.poll.interval.ms": "6000", "session.timeout.ms": "6000"}
	return cfg
}

func TestGroupConformance(t *testing.T) {
	providertest.RunGroup(t, providertest.GroupHarness{
		New: func(t *testing.T, partitions int) (provider.Provider, func() provider.Provider) {
			cfg := expellable(kafkatest.Config(t, partitions, nil))
			cfg.GroupProducers = 3 // several producers, so appends of one member run in parallel transactions
			open := func() provider.Provider {
				p, err := kafka.New(cfg)
				require.NoError(t, err)
				return p
			}
			return open(), open
		},
		Expel: expel,
		Fence: func(t *testing.T, p provider.Provider, group, instance string) func() {
			return kafkatest.FenceStatic(t, group, p.(*kafka.Provider).Topic(), instance)
		},
		Static:     true,
		Generation: generation,
		Topic:      func(p provider.Provider) string { return p.(*kafka.Provider).Topic() },
		// Above the client's default limits (librdkafka's message.max.bytes,
		// franz-go's ProducerBatchMaxBytes) and the broker's.
		TooLarge: 2 << 20,
	})
}

// generation is GroupHarness.Generation against a real broker.
var generation = func() func(provider.Member) int32 {
	if !kafkatest.Real() {
		return nil // kfake rebalances at a static rejoin
	}
	return func(m provider.Member) int32 {
		_, gen, _, err := kafka.GroupMetadata(m)
		if err != nil {
			return -1
		}
		return gen
	}
}()

// expel drops m from its group by holding its polls past
// max.poll.interval.ms, waits until the group has moved on without it, and
// lets it poll again: it then learns it lost its partitions, and stays out.
func expel(t *testing.T, p provider.Provider, m provider.Member) {
	t.Helper()
	md, _, id, err := kafka.GroupMetadata(m)
	require.NoError(t, err)
	_, group, _, err := kafka.DecodeGroupMetadata(md)
	require.NoError(t, err)
	kafka.StayOut(m)
	kafka.HoldPolls(m, true)
	defer kafka.HoldPolls(m, false)
	admin, err := ckafka.NewAdminClient(&ckafka.ConfigMap{"bootstrap.servers": kafkatest.Brokers(t)})
	require.NoError(t, err)
	defer admin.Close()
	waitFor(t, 60*time.Second, "the group to drop the member", func() bool {
		res, err := admin.DescribeConsumerGroups(t.Context(), []string{group})
		if err != nil || len(res.ConsumerGroupDescriptions) != 1 {
			return false
		}
		g := res.ConsumerGroupDescriptions[0]
		if g.State != ckafka.ConsumerGroupStateStable && g.State != ckafka.ConsumerGroupStateEmpty {
			return false
		}
		return !slices.ContainsFunc(g.Members, func(d ckafka.MemberDescription) bool { return d.ConsumerID == id })
	})
}

func TestRepositoryGroupSuite(t *testing.T) {
	repositorytest.RunGroup(t, kafkatest.Topics(kafka.New, nil))
}

// ---- Kafka-specific fencing tests ----

var groupSeq atomic.Int64

func groupName(t *testing.T) string {
	return fmt.Sprintf("g-%d-%d", time.Now().UnixNano(), groupSeq.Add(1))
}

func openProvider(t *testing.T, cfg kafka.Config) *kafka.Provider {
	t.Helper()
	p, err := kafka.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	return p
}

func join(t *testing.T, p *kafka.Provider, gc provider.GroupConfig) provider.Member {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	m, err := p.JoinGroup(ctx, gc)
	require.NoError(t, err, "join %s", gc.Instance)
	t.Cleanup(func() { _ = m.Close() })
	return m
}

// waitFor polls cond until it holds, failing the test after d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v still waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond) // polling, with a deadline
	}
}

func waitOwned(t *testing.T, m provider.Member, n int) {
	t.Helper()
	waitFor(t, 60*time.Second, fmt.Sprintf("the member to own %d partitions", n), func() bool { return len(m.Owned()) == n })
}

// keyIn returns a key that lands in partition x of n.
func keyIn(x int32, n int, salt string) []byte {
	for i := 0; ; i++ {
		k := fmt.Appendf(nil, "%s-%d", salt, i)
		if provider.PartitionFor(k, n) == x {
			return k
		}
	}
}

func rec(key []byte, value string) event.Record {
	return event.Record{Key: key, Value: []byte(value)}
}

// values reads partitions 0..n-1 of cfg's topic from the start to their
// ends at the given isolation level and returns the records' values of each.
func values(t *testing.T, cfg kafka.Config, n int, isolation string) map[int32][]string {
	t.Helper()
	c, err := ckafka.NewConsumer(&ckafka.ConfigMap{
		"bootstrap.servers": cfg.Brokers, "group.id": "reader-" + event.NewID(), "fetch.wait.max.ms": 10,
		"enable.auto.commit": false, "enable.partition.eof": true, "isolation.level": isolation,
	})
	require.NoError(t, err)
	defer c.Close()
	var tps []ckafka.TopicPartition
	for x := range int32(n) {
		tps = append(tps, ckafka.TopicPartition{Topic: &cfg.Topic, Partition: x, Offset: ckafka.OffsetBeginning})
	}
	require.NoError(t, c.Assign(tps))
	out := make(map[int32][]string)
	ended := make(map[int32]bool)
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		switch ev := c.Poll(100).(type) {
		case *ckafka.Message:
			out[ev.TopicPartition.Partition] = append(out[ev.TopicPartition.Partition], string(ev.Value))
		case ckafka.PartitionEOF:
			ended[ev.Partition] = true
			if len(ended) == n {
				return out
			}
		case ckafka.Error:
			t.Logf("reader: %v", ev)
		}
	}
	t.Fatalf("no end of every partition within 30 s (%s)", isolation)
	return nil
}

func kafkaCode(err error) ckafka.ErrorCode {
	var ke ckafka.Error
	if errors.As(err, &ke) {
		return ke.Code()
	}
	return ckafka.ErrNoError
}

// TestGroupLateInitialiserCannotWrite: a owns the partition; its process
// stalls (no polls) until librdkafka leaves the group and b takes the
// partition over; a late instance of a then initialises a's transactional
// ids (a's next append is refused: its producer is fenced), a replaces its
// producer, initialising late itself, and a, which has not heard it lost
// the partition, appends: with its own metadata now
// (no membership: refused before sending) and with the last metadata it
// had as the owner (refused by the coordinator). Nothing of a's becomes
// visible; b's appends do.
func TestGroupLateInitialiserCannotWrite(t *testing.T) {
	cfg := expellable(kafkatest.Config(t, 1, nil))
	// One lane: the test follows one producer through its fence and its
	// replacement (with two, the second append would meet the other lane's
	// fenced producer first).
	cfg.GroupProducers = 1
	group := groupName(t)
	ctx := t.Context()
	var lostA atomic.Bool
	a := join(t, openProvider(t, cfg), provider.GroupConfig{Group: group, Instance: "a",
		OnRevoked: func(_ []int32, lost bool) {
			if lost {
				lostA.Store(true)
			}
		}})
	waitOwned(t, a, 1)
	key := keyIn(0, 1, "acct")
	_, err := a.Append(ctx, []event.Record{rec(key, "A1")})
	require.NoError(t, err)
	mdA, genA, _, err := kafka.GroupMetadata(a)
	require.NoError(t, err)

	b := join(t, openProvider(t, cfg), provider.GroupConfig{Group: group, Instance: "b"})
	kafka.HoldPolls(a, true)
	waitFor(t, 60*time.Second, "b to take the partition over", func() bool { return len(b.Owned()) == 1 })
	assert.Equal(t, []int32{0}, a.Owned(), "a has not polled: it believes it still owns the partition")

	// A late instance of a initialises a's transactional ids, which fences
	// a's producers; a replaces the fenced one, initialising late itself.
	require.NoError(t, kafka.InitLate(ctx, a), "a late instance of a initialises its producers")
	resets := kafka.ProducerResets(a)
	_, err = a.Append(ctx, []event.Record{rec(key, "A-fenced")})
	// librdkafka's fenced producer purges what it was given: refused,
	// nothing written.
	require.ErrorIs(t, err, provider.ErrUnavailable, "a's producer is fenced")
	require.NotErrorIs(t, err, provider.ErrOutcomeUnknown, "nothing was sent")
	t.Logf("with its producer fenced: %v", err)
	_, err = a.Append(ctx, []event.Record{rec(key, "A-stale-now")})
	assert.Equal(t, resets+1, kafka.ProducerResets(a), "a replaced its fenced producer, late, before it appended")
	require.ErrorIs(t, err, provider.ErrNotOwner, "a's own metadata names no membership now")
	t.Logf("with its metadata now: %v", err)

	kafka.UseGroupMetadata(a, mdA)
	_, err = a.Append(ctx, []event.Record{rec(key, "A-stale-as-owner")})
	require.ErrorIs(t, err, provider.ErrNotOwner, "the coordinator refuses generation %d", genA)
	assert.Contains(t, []ckafka.ErrorCode{ckafka.ErrUnknownMemberID, ckafka.ErrIllegalGeneration}, kafkaCode(err), "%v", err)
	t.Logf("with its metadata as the owner: %v", err)
	kafka.UseGroupMetadata(a, nil)

	stable, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	require.NoError(t, b.AwaitStable(stable, []int32{0}))
	_, err = b.Append(ctx, []event.Record{rec(key, "B1")})
	require.NoError(t, err)

	kafka.HoldPolls(a, false)
	waitFor(t, 30*time.Second, "a's OnRevoked with lost set", lostA.Load)
	assert.Empty(t, a.Owned())
	_, err = a.Append(ctx, []event.Record{rec(key, "A-after-lost")})
	require.ErrorIs(t, err, provider.ErrNotOwner)

	assert.Equal(t, []string{"A1", "B1"}, values(t, cfg, 1, "read_committed")[0])
	all := values(t, cfg, 1, "read_uncommitted")[0]
	// A-stale-now reached the log before its transaction was refused
	// here; A-stale-as-owner may not have: its fence went to the
	// coordinator while it was produced, and librdkafka purges what it
	// has not sent once the fence is refused.
	assert.Contains(t, all, "A-stale-now", "a's record reached the log, in an aborted transaction")
}

// TestGroupStaleMetadataCannotCommit: a member that still owns a partition
// but sends the metadata of a generation the group has left, metadata of no
// generation (-1, which the coordinator would accept) or of another group:
// nothing of it commits.
func TestGroupStaleMetadataCannotCommit(t *testing.T) {
	cfg := kafkatest.Config(t, 2, nil)
	group := groupName(t)
	ctx := t.Context()
	a := join(t, openProvider(t, cfg), provider.GroupConfig{Group: group, Instance: "a"})
	waitOwned(t, a, 2)
	mdOld, genOld, _, err := kafka.GroupMetadata(a)
	require.NoError(t, err)
	b := join(t, openProvider(t, cfg), provider.GroupConfig{Group: group, Instance: "b"})
	waitFor(t, 60*time.Second, "a and b to own one partition each", func() bool {
		return len(a.Owned()) == 1 && len(b.Owned()) == 1
	})
	_, genNow, _, err := kafka.GroupMetadata(a)
	require.NoError(t, err)
	require.Greater(t, genNow, genOld, "the group's generation moved on")
	x := a.Owned()[0]
	key := keyIn(x, 2, "acct")

	noGeneration, err := ckafka.NewTestConsumerGroupMetadata(group)
	require.NoError(t, err)
	otherGroup, err := ckafka.NewTestConsumerGroupMetadata("other-" + group)
	require.NoError(t, err)
	for _, tc := range []struct {
		name string
		md   *ckafka.ConsumerGroupMetadata
		code ckafka.ErrorCode // the coordinator's refusal; ErrNoError: refused before sending
	}{
		{"previous-generation", mdOld, ckafka.ErrIllegalGeneration},
		{"no-generation", noGeneration, ckafka.ErrNoError},
		{"other-group", otherGroup, ckafka.ErrNoError},
	} {
		t.Run(tc.name, func(t *testing.T) {
			kafka.UseGroupMetadata(a, tc.md)
			defer kafka.UseGroupMetadata(a, nil)
			_, err := a.Append(ctx, []event.Record{rec(key, "stale-"+tc.name)})
			require.ErrorIs(t, err, provider.ErrNotOwner)
			assert.Equal(t, tc.code, kafkaCode(err), "%v", err)
		})
	}
	_, err = a.Append(ctx, []event.Record{rec(key, "fresh")})
	require.NoError(t, err, "with its own metadata again")
	assert.Equal(t, []string{"fresh"}, values(t, cfg, 2, "read_committed")[x])
	assert.Subset(t, values(t, cfg, 2, "read_uncommitted")[x], []string{"stale-previous-generation", "stale-no-generation", "stale-other-group"})
}

// TestGroupStalledSendOffsetsGivesProducerUp: librdkafka's
// SendOffsetsToTransaction can block past its timeout while the group
// coordinator is down (librdkafka #5456). The append fails as unavailable
// within the bound, not as an unknown outcome, and nothing of it becomes
// visible; a new producer takes over, until maxStuck given-up producers are
// stuck, when appends fail at once instead of giving up one producer after
// another; once the calls return, appends succeed.
func TestGroupStalledSendOffsetsGivesProducerUp(t *testing.T) {
	cfg := kafkatest.Config(t, 1, nil)
	cfg.Timeout = 2 * time.Second
	ctx := t.Context()
	a := join(t, openProvider(t, cfg), provider.GroupConfig{Group: groupName(t), Instance: "a"})
	waitOwned(t, a, 1)
	key := keyIn(0, 1, "acct")

	release := kafka.StallSendOffsets(a)
	for i := range kafka.MaxStuck {
		start := time.Now()
		_, err := a.Append(ctx, []event.Record{rec(key, fmt.Sprintf("stalled-%d", i))})
		require.ErrorIs(t, err, provider.ErrUnavailable)
		require.NotErrorIs(t, err, provider.ErrOutcomeUnknown)
		assert.Less(t, time.Since(start), 30*time.Second, "failed within the bound: %v", err)
	}

	start := time.Now()
	_, err := a.Append(ctx, []event.Record{rec(key, "while-stuck")})
	require.ErrorIs(t, err, provider.ErrUnavailable)
	assert.Less(t, time.Since(start), cfg.Timeout, "refused at once while %d given-up producers are stuck: %v", kafka.MaxStuck, err)

	release()
	waitFor(t, 30*time.Second, "an append to succeed once the stalled call returned", func() bool {
		_, err := a.Append(ctx, []event.Record{rec(key, "after")})
		return err == nil
	})
	assert.Equal(t, []string{"after"}, values(t, cfg, 1, "read_committed")[0])
}

// TestGroupAppendAcrossPartitionsIsAtomic: an append with records in two
// partitions commits both or neither, even when both were written before
// the transaction failed.
func TestGroupAppendAcrossPartitionsIsAtomic(t *testing.T) {
	cfg := kafkatest.Config(t, 2, nil)
	group := groupName(t)
	ctx := t.Context()
	a := join(t, openProvider(t, cfg), provider.GroupConfig{Group: group, Instance: "a"})
	waitOwned(t, a, 2)
	k0, k1 := keyIn(0, 2, "acct"), keyIn(1, 2, "acct")

	pos, err := a.Append(ctx, []event.Record{rec(k0, "ok-0"), rec(k1, "ok-1")})
	require.NoError(t, err)
	assert.Equal(t, []int32{0, 1}, []int32{pos[0].Partition, pos[1].Partition})

	noGeneration, err := ckafka.NewTestConsumerGroupMetadata(group)
	require.NoError(t, err)
	kafka.UseGroupMetadata(a, noGeneration) // fails the transaction after both records are in the log
	_, err = a.Append(ctx, []event.Record{rec(k0, "bad-0"), rec(k1, "bad-1")})
	require.ErrorIs(t, err, provider.ErrNotOwner)
	kafka.UseGroupMetadata(a, nil)

	_, err = a.Append(ctx, []event.Record{rec(k0, "ok-2")})
	require.NoError(t, err)
	committed, all := values(t, cfg, 2, "read_committed"), values(t, cfg, 2, "read_uncommitted")
	assert.Equal(t, []string{"ok-0", "ok-2"}, committed[0])
	assert.Equal(t, []string{"ok-1"}, committed[1])
	assert.Contains(t, all[0], "bad-0")
	assert.Contains(t, all[1], "bad-1")
}

// TestGroupAwaitStable: while another producer's transaction holds pending
// offsets for the partition (a previous owner that passed the fence and has
// not committed yet), AwaitStable waits; it returns once that transaction
// commits or aborts, and then Partitions' High covers a commit.
func TestGroupAwaitStable(t *testing.T) {
	cfg := kafkatest.Config(t, 1, nil)
	group := groupName(t)
	ctx := t.Context()
	p := openProvider(t, cfg)
	a := join(t, p, provider.GroupConfig{Group: group, Instance: "a"})
	waitOwned(t, a, 1)
	require.NoError(t, a.AwaitStable(ctx, []int32{0}), "nothing pending")

	x, err := ckafka.NewProducer(&ckafka.ConfigMap{"bootstrap.servers": cfg.Brokers, "transactional.id": "x-" + group, "transaction.timeout.ms": 60000})
	require.NoError(t, err)
	defer x.Close()
	require.NoError(t, x.InitTransactions(ctx))

	for _, end := range []string{"commit", "abort"} {
		t.Run(end, func(t *testing.T) {
			require.NoError(t, x.BeginTransaction())
			reports := make(chan ckafka.Event, 1)
			require.NoError(t, x.Produce(&ckafka.Message{TopicPartition: ckafka.TopicPartition{Topic: &cfg.Topic, Partition: 0}, Key: []byte("x"), Value: []byte("X-" + end)}, reports))
			m := (<-reports).(*ckafka.Message)
			require.NoError(t, m.TopicPartition.Error)
			md, _, _, err := kafka.GroupMetadata(a)
			require.NoError(t, err)
			require.NoError(t, x.SendOffsetsToTransaction(ctx, []ckafka.TopicPartition{{Topic: &cfg.Topic, Partition: 0, Offset: m.TopicPartition.Offset + 1}}, md))

			short, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
			defer cancel()
			require.ErrorIs(t, a.AwaitStable(short, []int32{0}), context.DeadlineExceeded, "the transaction is open")

			var ended atomic.Bool
			returned := make(chan error, 1)
			go func() {
				long, cancel := context.WithTimeout(ctx, 60*time.Second)
				defer cancel()
				err := a.AwaitStable(long, []int32{0})
				if !ended.Load() && err == nil {
					err = errors.New("returned before the transaction ended")
				}
				returned <- err
			}()
			ended.Store(true) // set before the end: AwaitStable cannot return before it
			if end == "commit" {
				require.NoError(t, x.CommitTransaction(ctx))
			} else {
				require.NoError(t, x.AbortTransaction(ctx))
			}
			require.NoError(t, <-returned)
			ps, err := p.Partitions(ctx)
			require.NoError(t, err)
			if end == "commit" {
				assert.Greater(t, ps[0].High, int64(m.TopicPartition.Offset), "High covers the committed record")
			}
		})
	}
	assert.Equal(t, []string{"X-commit"}, values(t, cfg, 1, "read_committed")[0])
}

// TestGroupUnknownOutcomeSettlesFirst: a commit whose answer is lost fails
// its append with ErrOutcomeUnknown although it committed; the producer is
// replaced (which settles the transaction), and the partition's next append
// lands after it.
func TestGroupUnknownOutcomeSettlesFirst(t *testing.T) {
	cfg := kafkatest.Config(t, 1, nil)
	ctx := t.Context()
	a := join(t, openProvider(t, cfg), provider.GroupConfig{Group: groupName(t), Instance: "a"})
	waitOwned(t, a, 1)
	key := keyIn(0, 1, "acct")
	resets := kafka.ProducerResets(a)

	kafka.FailNextCommit(a, ckafka.NewError(ckafka.ErrFatal, "lost answer", true))
	_, err := a.Append(ctx, []event.Record{rec(key, "unknown")})
	require.ErrorIs(t, err, provider.ErrOutcomeUnknown)
	pos, err := a.Append(ctx, []event.Record{rec(key, "next")})
	require.NoError(t, err)
	assert.Equal(t, resets+1, kafka.ProducerResets(a), "the producer was replaced before the next append")
	assert.Equal(t, []string{"unknown", "next"}, values(t, cfg, 1, "read_committed")[0])
	assert.Positive(t, pos[0].Offset)
}

// TestGroupCloseHandsOver: Close revokes (not lost) before it returns, and
// the other member takes every partition; a closed member refuses calls.
func TestGroupCloseHandsOver(t *testing.T) {
	cfg := kafkatest.Config(t, 3, nil)
	group := groupName(t)
	var mu sync.Mutex
	var revoked []int32
	a := join(t, openProvider(t, cfg), provider.GroupConfig{Group: group, Instance: "a", Address: "http://a:4000/x;y z%",
		OnRevoked: func(ps []int32, lost bool) {
			mu.Lock()
			defer mu.Unlock()
			assert.False(t, lost)
			revoked = append(revoked, ps...)
		}})
	waitOwned(t, a, 3)
	b := join(t, openProvider(t, cfg), provider.GroupConfig{Group: group, Instance: "b", Address: "b"})
	waitFor(t, 60*time.Second, "a and b to share the partitions", func() bool { return len(a.Owned()) > 0 && len(b.Owned()) > 0 })
	waitFor(t, 60*time.Second, "Owners to name both addresses", func() bool {
		owners, err := b.Owners(t.Context())
		require.NoError(t, err)
		n := map[string]int{}
		for _, addr := range owners {
			n[addr]++
		}
		return len(owners) == 3 && n["http://a:4000/x;y z%"] > 0 && n["b"] > 0
	})
	require.NoError(t, a.Close())
	mu.Lock()
	slices.Sort(revoked)
	assert.Equal(t, []int32{0, 1, 2}, revoked, "every partition a had was revoked")
	mu.Unlock()
	waitOwned(t, b, 3)
	_, err := a.Append(t.Context(), []event.Record{rec([]byte("k"), "v")})
	assert.ErrorIs(t, err, provider.ErrClosed)
	assert.NoError(t, a.Close(), "Close again")
}

// ---- Benchmarks ----

// BenchmarkGroupAppend measures fenced group-commit appends of one 200-byte
// record each (random keys over 6 partitions, all owned by one member) at
// several concurrencies and GroupProducers, beside Provider.Append
// (idempotent, not fenced).
//
//	KAFKA_BROKERS=127.0.0.1:9092 go test -run '^$' -bench GroupAppend -benchtime 3s ./provider/kafka/
func BenchmarkGroupAppend(b *testing.B) {
	cfg := kafkatest.Config(b, 6, nil)
	concurrency := []int{1, 16, 64, 256}
	for _, producers := range []int{1, 2, 4, 8} {
		cfg := cfg
		cfg.GroupProducers = producers
		p, err := kafka.New(cfg)
		require.NoError(b, err)
		m, err := p.JoinGroup(b.Context(), provider.GroupConfig{Group: fmt.Sprintf("bench-%d", time.Now().UnixNano())})
		require.NoError(b, err)
		for len(m.Owned()) < 6 {
			time.Sleep(10 * time.Millisecond) // waiting for the assignment
		}
		for _, n := range concurrency {
			b.Run(fmt.Sprintf("member/producers=%d/appenders=%d", producers, n), func(b *testing.B) { benchAppend(b, n, m.Append) })
		}
		require.NoError(b, p.Close())
	}
	p, err := kafka.New(cfg)
	require.NoError(b, err)
	defer p.Close()
	for _, n := range concurrency {
		b.Run(fmt.Sprintf("idempotent/appenders=%d", n), func(b *testing.B) { benchAppend(b, n, p.Append) })
	}
}

func benchAppend(b *testing.B, appenders int, appendFn func(context.Context, []event.Record) ([]provider.Position, error)) {
	value := make([]byte, 200)
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for g := range appenders {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(g), 1))
			for next.Add(1) <= int64(b.N) {
				key := fmt.Appendf(nil, "agg-%d", rng.IntN(10_000))
				if _, err := appendFn(b.Context(), []event.Record{{Key: key, Value: value}}); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "records/s")
}
