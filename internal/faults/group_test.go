package faults

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"math/rand/v2"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unicode/utf16"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/rehydrate/rehydrate/consume"
	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/provider"
	kafka "github.com/rehydrate/rehydrate/provider/kafkaclient"
	"github.com/rehydrate/rehydrate/repository"
	rt "github.com/rehydrate/rehydrate/repository/repositorytest"
)

// The group tests: one repository WithGroup executes three-event commands
// from many goroutines while a broker crashes (kill -9) or hangs (SIGSTOP)
// in the middle of its transactions, and comes back. The log, read
// read_committed, must then hold every command whole or not at all, every
// acknowledged one at the offsets and versions it was acknowledged with,
// none that failed with a known outcome, and versions 1, 2, 3, … per
// aggregate; a fresh restore must equal the live state.

func TestGroupKillPartitionLeaderMidTransaction(t *testing.T) {
	groupFault(t, faultKill, targetLeader)
}

func TestGroupKillCoordinatorMidTransaction(t *testing.T) {
	groupFault(t, faultKill, targetCoordinators)
}

func TestGroupPausePartitionLeaderMidTransaction(t *testing.T) {
	groupFault(t, faultPause, targetLeader)
}

func TestGroupPauseCoordinatorMidTransaction(t *testing.T) {
	groupFault(t, faultPause, targetCoordinators)
}

type fault int

const (
	faultKill  fault = iota // kill-broker, then start-broker
	faultPause              // pause-broker, then resume-broker
)

type target int

const (
	// targetLeader is the leader of the partition with the most
	// acknowledged commands among those the coordinators' broker does not
	// lead.
	targetLeader target = iota
	// targetCoordinators is the broker coordinating the group and the
	// member's transactions (the test picks a group name for which one
	// broker does both); it leads some partitions too.
	targetCoordinators
)

const (
	groupPartitions = 6
	groupAccounts   = 48
	groupWorkers    = 16
	// progress is how many commands must be acknowledged before the fault,
	// while the broker is down, and after it is back.
	progress = 300
	// commandID is the metadata key carrying a command's id in each of its
	// events.
	commandID = "command"
)

type outcome int

const (
	acked      outcome = iota
	unknown            // provider.ErrOutcomeUnknown: all of it may be in the log, or none
	failed             // any other error: none of it is in the log
	unresolved         // repository.ErrUnresolved: an earlier unknown outcome was not resolved; this command appended nothing
)

func (o outcome) String() string {
	return [...]string{"acknowledged", "unknown", "failed", "unresolved"}[o]
}

// command is one three-event deposit and what became of it.
type command struct {
	id        string
	account   string
	amounts   []int64
	outcome   outcome
	version   uint64 // acknowledged: the aggregate's version after it
	positions []provider.Position
	err       error
	start     time.Time // when Execute was called
	done      time.Time // when Execute returned
	writer    string    // the writer that executed it (runOn's pick)
}

// journal records every command the workers ran.
type journal struct {
	mu       sync.Mutex
	commands map[string]*command
	counts   [4]atomic.Int64
	kinds    map[outcome]map[string]int // errors of each outcome, by kind, for the log
}

// kindOf is an error with what varies between commands (aggregate,
// version, partition, names) left out.
var variable = regexp.MustCompile(`acct-\d+|\b(version|partition|record) \d+|faults-\S+?:|\d+(\.\d+)?(ms|s)\b`)

func kindOf(err error) string { return variable.ReplaceAllString(err.Error(), "…") }

func (j *journal) record(c *command) {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.commands == nil {
		j.commands = map[string]*command{}
		j.kinds = map[outcome]map[string]int{}
	}
	j.commands[c.id] = c
	if c.err != nil {
		if j.kinds[c.outcome] == nil {
			j.kinds[c.outcome] = map[string]int{}
		}
		j.kinds[c.outcome][kindOf(c.err)]++
	}
	j.counts[c.outcome].Add(1)
}

// busiest returns the partition with the most acknowledged commands among
// those ok accepts.
func (j *journal) busiest(ok func(int32) bool) (int32, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	n := map[int32]int{}
	for _, c := range j.commands {
		if p := c.positions; c.outcome == acked && ok(p[0].Partition) {
			n[p[0].Partition]++
		}
	}
	best, found := int32(0), false
	for p, k := range n {
		if !found || k > n[best] {
			best, found = p, true
		}
	}
	return best, found
}

// longestStall is the longest time after from without a command
// acknowledged.
func (j *journal) longestStall(from time.Time) time.Duration {
	j.mu.Lock()
	defer j.mu.Unlock()
	var at []time.Time
	for _, c := range j.commands {
		if c.outcome == acked && c.done.After(from) {
			at = append(at, c.done)
		}
	}
	slices.SortFunc(at, time.Time.Compare)
	var longest time.Duration
	last := from
	for _, a := range at {
		longest = max(longest, a.Sub(last))
		last = a
	}
	return longest
}

func classifyOutcome(err error) outcome {
	switch {
	case err == nil:
		return acked
	case errors.Is(err, repository.ErrUnresolved):
		// Checked first: the fence of the earlier append may have failed
		// with ErrOutcomeUnknown, but this command appended nothing.
		return unresolved
	case errors.Is(err, provider.ErrOutcomeUnknown):
		return unknown
	}
	return failed
}

// run executes three-event deposits with unique amounts on random accounts
// from workers goroutines until ctx ends. A command's own context is not
// ctx: those in flight when the load stops run to their end.
func (j *journal) run(ctx context.Context, r *repository.Repository[rt.Account], ids []string) *sync.WaitGroup {
	return j.runOn(ctx, func(string) (string, *repository.Repository[rt.Account]) { return "", r }, ids)
}

// runOn is run on several writers: pick names the writer of each
// command's account and returns it.
func (j *journal) runOn(ctx context.Context, pick func(account string) (string, *repository.Repository[rt.Account]), ids []string) *sync.WaitGroup {
	var seq atomic.Int64
	var wg sync.WaitGroup
	for w := range groupWorkers {
		rng := rand.New(rand.NewPCG(uint64(w), uint64(time.Now().UnixNano())))
		wg.Go(func() {
			for ctx.Err() == nil {
				n := seq.Add(1)
				c := &command{
					id:      fmt.Sprintf("cmd-%06d", n),
					account: ids[rng.IntN(len(ids))],
					amounts: []int64{3*n - 2, 3*n - 1, 3 * n},
				}
				var r *repository.Repository[rt.Account]
				c.writer, r = pick(c.account)
				c.start = time.Now()
				cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				res, err := r.Execute(cctx, c.account, rt.Deposit(c.amounts...),
					repository.WithMetadata(map[string]string{commandID: c.id}))
				cancel()
				c.outcome, c.err, c.done = classifyOutcome(err), err, time.Now()
				c.version, c.positions = res.Version, res.Positions
				j.record(c)
				if err != nil {
					// A client backs off before it tries again: refusals
					// (a partition not owned, not ready) come at once.
					time.Sleep(20 * time.Millisecond)
				}
			}
		})
	}
	return &wg
}

func (j *journal) acked() int64 { return j.counts[acked].Load() }

// logOnFailure logs the journal's counts and errors if t failed.
func (j *journal) logOnFailure(t *testing.T) {
	if !t.Failed() {
		return
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	t.Logf("journal when the test failed: acknowledged=%d unknown=%d failed=%d unresolved=%d",
		j.counts[acked].Load(), j.counts[unknown].Load(), j.counts[failed].Load(), j.counts[unresolved].Load())
	for o, kinds := range j.kinds {
		for k, n := range kinds {
			t.Logf("  %s ×%d: %s", o, n, k)
		}
	}
}

func groupFault(t *testing.T, f fault, tg target) {
	c := newCluster(t)
	cfg := c.topic(groupPartitions, 10*time.Second)
	cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("test", t.Name())
	const instance = "a"
	// One broker coordinates both the group and the member's only producer
	// (GroupProducers 1: every transaction goes through it).
	cfg.GroupProducers = 1
	group, coordinators := c.groupCoordinatedBy(fmt.Sprintf("faults-%s-%d", t.Name(), time.Now().UnixNano()), instance)
	txid := group + "-" + instance + "-0"
	live := rt.NewRepository(t, open(t, cfg),
		repository.WithGroup(repository.Group{Name: group, Instance: instance}),
		repository.WithLogger(cfg.Logger))
	rctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	_, err := live.Restore(rctx)
	cancel()
	require.NoError(t, err, "join the group")
	t.Cleanup(func() { _ = live.Close() })
	waitFor(t, "the member to serve every partition", time.Minute, func() bool {
		return len(live.Owned()) == groupPartitions
	})
	var l rt.Ledger
	ids := createAccounts(t, live, groupAccounts, &l)

	var j journal
	defer j.logOnFailure(t)
	ctx, stopLoad := context.WithCancel(t.Context())
	defer stopLoad()
	wg := j.run(ctx, live, ids)
	waitFor(t, "a first burst", time.Minute, func() bool { return j.acked() >= progress })

	var node int
	var why string
	switch tg {
	case targetLeader:
		leaders := c.leaders(cfg.Topic)
		p, ok := j.busiest(func(p int32) bool { return leaders[p] != coordinators })
		require.True(t, ok, "a partition led by another broker than the coordinators' (%v)", leaders)
		node, why = leaders[p], fmt.Sprintf("leader of partition %d, the busiest not led by the coordinators' broker", p)
	case targetCoordinators:
		node, why = coordinators, "coordinator of the group and of "+txid
	}
	roles := c.roles(node, cfg.Topic, group, txid)
	t.Logf("%s node %d: %s (%s)", map[fault]string{faultKill: "killing", faultPause: "pausing"}[f], node, why, roles)

	before := j.acked()
	if f == faultKill {
		c.kill(node)
	} else {
		c.pause(node)
	}
	downAt := time.Now()
	// Generous: when the paused broker coordinated the group, the member
	// loses its partitions (its session times out) and its takeover then
	// waits about 60 s (librdkafka's socket.timeout.ms, not
	// Config.Timeout) for a ListOffsets request stuck on the paused
	// broker. The RESULT line reports the longest stall.
	waitFor(t, "commands to be acknowledged without the broker", 2*time.Minute, func() bool {
		return j.acked() >= before+progress
	})
	down := time.Since(downAt)
	if f == faultKill {
		c.start(node)
	} else {
		c.resume(node)
	}
	after := j.acked()
	waitFor(t, "commands to be acknowledged after the broker returned", 90*time.Second, func() bool {
		return j.acked() >= after+progress
	})
	stopLoad()
	wg.Wait()
	t.Logf("RESULT %s: node %d (%s) down %v, longest stall without an acknowledgement %v; acknowledged=%d unknown=%d failed=%d unresolved=%d",
		t.Name(), node, roles, down.Round(time.Millisecond), j.longestStall(downAt).Round(time.Millisecond),
		j.counts[acked].Load(), j.counts[unknown].Load(), j.counts[failed].Load(), j.counts[unresolved].Load())
	for _, o := range []outcome{unknown, failed, unresolved} {
		for k, n := range j.kinds[o] {
			t.Logf("RESULT   %s ×%d: %s", o, n, k)
		}
	}

	verifyGroup(t, cfg, live, ids, &j, &l)
}

// verifyGroup resolves the live repository's unknown outcomes, reads the
// log read_committed and checks it against the journal and the live state,
// and both states against the ledger of the accounts' openings and the
// journal's commands.
func verifyGroup(t *testing.T, cfg kafka.Config, live *repository.Repository[rt.Account], ids []string, j *journal, l *rt.Ledger) {
	waitFor(t, "the member to serve every partition again", time.Minute, func() bool {
		return len(live.Owned()) == groupPartitions
	})
	deadline := time.Now().Add(time.Minute)
	for _, id := range ids {
		// A command raising nothing resolves a pending unknown outcome
		// first. It may be refused while the group settles; not for long.
		for {
			_, err := live.Execute(t.Context(), id, func(rt.Account) ([]any, error) { return nil, nil })
			if err == nil {
				break
			}
			require.True(t, time.Now().Before(deadline), "resolving %s: %v", id, err)
			t.Logf("resolving %s: %v (again)", id, err)
			time.Sleep(200 * time.Millisecond) // polling, bounded by the deadline
		}
	}

	// The log, read_committed, in offset order per partition.
	type logged struct {
		account string
		version uint64
		amount  int64
		pos     provider.Position
	}
	p := open(t, cfg)
	// An acknowledgement follows the commit, but the brokers write the
	// commit markers that make a transaction visible to read_committed
	// readers just after: the last acknowledged commands may not be below
	// the last stable offsets yet.
	ends := map[int32]int64{} // partition → the end of its acknowledged records
	j.mu.Lock()
	for _, c := range j.commands {
		for _, pos := range c.positions {
			ends[pos.Partition] = max(ends[pos.Partition], pos.Offset+1)
		}
	}
	j.mu.Unlock()
	visible := time.Now()
	waitFor(t, "the last stable offsets to reach every acknowledged record", 30*time.Second, func() bool {
		ps, err := p.Partitions(t.Context())
		if err != nil {
			return false
		}
		for _, part := range ps {
			if part.High < ends[part.ID] {
				return false
			}
		}
		return true
	})
	t.Logf("every acknowledged record below the last stable offsets after %v", time.Since(visible))
	byCommand := map[string][]logged{}
	versions := map[string][]uint64{} // by account, in offset order
	fences := 0
	require.NoError(t, consume.Stream(t.Context(), p, consume.Replay, consume.StreamOptions{}, func(b provider.Batch) error {
		for _, rec := range b.Records {
			if event.IsControl(rec) {
				fences++ // an unknown outcome's resolution
				continue
			}
			env, err := event.ParseRecord(rec)
			if err != nil {
				return err
			}
			versions[env.AggregateID] = append(versions[env.AggregateID], env.Version)
			cid := env.Metadata[commandID]
			if cid == "" {
				continue // an account's opening
			}
			var d rt.Deposited
			if err := json.Unmarshal(env.Payload, &d); err != nil {
				return fmt.Errorf("%s: %w", cid, err)
			}
			byCommand[cid] = append(byCommand[cid], logged{env.AggregateID, env.Version, d.Amount, provider.Position{Partition: b.Partition, Offset: rec.Offset}})
		}
		return nil
	}))

	// Versions run 1, 2, 3, … per aggregate, in offset order.
	for id, vs := range versions {
		for i, v := range vs {
			if v != uint64(i+1) {
				t.Errorf("%s: versions in offset order %v: position %d holds version %d", id, head(vs, i), i, v)
				break
			}
		}
	}

	j.mu.Lock()
	defer j.mu.Unlock()
	var found [4]int
	for cid, evs := range byCommand {
		c := j.commands[cid]
		if !assert.NotNil(t, c, "%s is in the log but no worker ran it", cid) {
			continue
		}
		found[c.outcome]++
		// Whole: every event, once, in order, consecutive versions.
		if !assert.Len(t, evs, len(c.amounts), "%s (%s) is in the log in part or twice: %+v", cid, c.outcome, evs) {
			continue
		}
		for i, e := range evs {
			assert.Equal(t, c.account, e.account, "%s event %d", cid, i)
			assert.Equal(t, c.amounts[i], e.amount, "%s event %d", cid, i)
			assert.Equal(t, evs[0].version+uint64(i), e.version, "%s event %d", cid, i)
		}
		switch c.outcome {
		case acked:
			assert.Equal(t, c.version, evs[len(evs)-1].version, "%s was acknowledged at another version", cid)
			got := make([]provider.Position, len(evs))
			for i, e := range evs {
				got[i] = e.pos
			}
			assert.Equal(t, c.positions, got, "%s was acknowledged at other positions", cid)
		case failed, unresolved:
			t.Errorf("%s failed with a known outcome but is in the log: %v", cid, c.err)
		}
	}
	missing := 0
	for cid, c := range j.commands {
		if c.outcome == acked && byCommand[cid] == nil {
			missing++
			t.Errorf("acknowledged %s (%s at version %d) is not in the log", cid, c.account, c.version)
		}
	}
	t.Logf("RESULT log: %d commands acknowledged and found whole at their positions (%d missing); of %d unknown outcomes %d committed, %d not; %d fences",
		found[acked], missing, j.counts[unknown].Load(), found[unknown], int(j.counts[unknown].Load())-found[unknown], fences)

	restored := rt.Restored(t, p)
	assert.Zero(t, restored.Stats().Duplicates, "no version was appended twice")
	assert.Equal(t, snapshot(t, live, ids), snapshot(t, restored, ids), "restore(log) == the live state")
	for _, c := range j.commands {
		events := make([]any, len(c.amounts))
		for i, a := range c.amounts {
			events[i] = rt.Deposited{Amount: a}
		}
		l.Record(c.account, events, repository.Result{Version: c.version}, c.err)
	}
	l.Check(t, live)
	l.Check(t, restored)
}

func head(vs []uint64, i int) []uint64 { return vs[max(0, i-3):min(len(vs), i+3)] }

type state struct {
	account rt.Account
	version uint64
}

func snapshot(t *testing.T, r *repository.Repository[rt.Account], ids []string) map[string]state {
	s := make(map[string]state, len(ids))
	for _, id := range ids {
		a, v, err := r.Get(id)
		require.NoError(t, err, id)
		s[id] = state{a, v}
	}
	return s
}

// transactionCoordinator returns the node coordinating txid's transactions:
// the leader of its partition of __transaction_state, found as the broker
// finds it (coordinatorPartition).
func (c *cluster) transactionCoordinator(txid string) int {
	return c.coordinator("__transaction_state", txid)
}

// groupCoordinator is transactionCoordinator for a consumer group and
// __consumer_offsets.
func (c *cluster) groupCoordinator(group string) int {
	return c.coordinator("__consumer_offsets", group)
}

func (c *cluster) coordinator(internal, key string) int {
	leaders := c.leaders(internal)
	return leaders[coordinatorPartition(key, len(leaders))]
}

// groupCoordinatedBy returns a group name starting with base for which one
// broker coordinates both the group and the transactions of its member
// instance's first producer, and that broker.
func (c *cluster) groupCoordinatedBy(base, instance string) (group string, node int) {
	c.ensureCoordinators()
	groups, txns := c.leaders("__consumer_offsets"), c.leaders("__transaction_state")
	for i := range 1000 {
		group = fmt.Sprintf("%s-%d", base, i)
		node = groups[coordinatorPartition(group, len(groups))]
		txid := group + "-" + instance + "-0"
		if txns[coordinatorPartition(txid, len(txns))] == node {
			// The victim is picked with a copy of Kafka's hash: the brokers
			// must agree, or the test would crash another broker than it
			// says.
			c.confirmCoordinator(coordinatorGroup, group, node)
			c.confirmCoordinator(coordinatorTransaction, txid, node)
			return group, node
		}
	}
	c.t.Fatalf("no group name %s-N has its group and transactions coordinated by one broker", base)
	return "", 0
}

// FindCoordinator's key types.
const (
	coordinatorGroup       int8 = 0
	coordinatorTransaction int8 = 1
)

// confirmCoordinator fails the test unless the cluster, asked with a
// FindCoordinator request, names node as the coordinator of key (a group
// or a transactional id). The coordinators' topics may still be electing
// leaders: COORDINATOR_NOT_AVAILABLE is asked again, within a deadline.
func (c *cluster) confirmCoordinator(keyType int8, key string, node int) {
	c.t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(c.brokers, ",")...))
	require.NoError(c.t, err)
	defer cl.Close()
	deadline := time.Now().Add(time.Minute)
	for {
		ctx, cancel := context.WithTimeout(c.t.Context(), 10*time.Second)
		req := kmsg.NewPtrFindCoordinatorRequest()
		req.CoordinatorType = keyType
		req.CoordinatorKey = key            // v0-v3
		req.CoordinatorKeys = []string{key} // v4+
		resp, err := req.RequestWith(ctx, cl)
		cancel()
		var got int32
		var code int16
		if err == nil {
			got, code = resp.NodeID, resp.ErrorCode
			if len(resp.Coordinators) > 0 {
				got, code = resp.Coordinators[0].NodeID, resp.Coordinators[0].ErrorCode
			}
			err = kerr.ErrorForCode(code)
		}
		if err == nil {
			require.Equal(c.t, node, int(got),
				"FindCoordinator(%q, type %d) names node %d, the test's copy of Kafka's hash node %d", key, keyType, got, node)
			c.t.Logf("FindCoordinator(%q, type %d): node %d, as the test computed", key, keyType, got)
			return
		}
		require.True(c.t, time.Now().Before(deadline), "FindCoordinator(%q, type %d): %v", key, keyType, err)
		time.Sleep(200 * time.Millisecond) // a coordinator being elected; polling, bounded by the deadline
	}
}

// ensureCoordinators creates the internal topics of groups and
// transactions, if the cluster has none yet, by joining a group: the
// member's producer initialises transactions, its consumer finds its
// coordinator. It waits until every partition of both has a leader.
func (c *cluster) ensureCoordinators() {
	ready := func() bool {
		for _, topic := range []string{"__consumer_offsets", "__transaction_state"} {
			leaders, err := c.tryLeaders(topic)
			if err != nil || len(leaders) == 0 || slices.Contains(slices.Collect(maps.Values(leaders)), -1) {
				return false
			}
		}
		return true
	}
	if ready() {
		return
	}
	cfg := c.topic(1, 10*time.Second)
	p := open(c.t, cfg)
	// On a fresh cluster the brokers may not all know the new topic yet.
	var m provider.Member
	waitFor(c.t, "a member of a group, to create the coordinators' topics", time.Minute, func() bool {
		var err error
		m, err = p.JoinGroup(c.t.Context(), provider.GroupConfig{Group: cfg.Topic})
		if err != nil {
			c.t.Logf("join a group to create the coordinators' topics: %v (again)", err)
		}
		return err == nil
	})
	require.NoError(c.t, m.Close())
	waitFor(c.t, "the coordinators' topics", time.Minute, ready)
}

// leaders returns the leader of each partition of topic.
func (c *cluster) leaders(topic string) map[int32]int {
	leaders, err := c.tryLeaders(topic)
	require.NoError(c.t, err)
	require.NotEmpty(c.t, leaders, "partitions of %s", topic)
	return leaders
}

func (c *cluster) tryLeaders(topic string) (map[int32]int, error) {
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(c.brokers, ",")...))
	if err != nil {
		return nil, err
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(c.t.Context(), 10*time.Second)
	defer cancel()
	md, err := kadm.NewClient(cl).Metadata(ctx, topic)
	if err != nil {
		return nil, err
	}
	t, ok := md.Topics[topic]
	if !ok {
		return nil, fmt.Errorf("no metadata of %s", topic)
	}
	if t.Err != nil {
		return nil, t.Err
	}
	leaders := make(map[int32]int, len(t.Partitions))
	for _, p := range t.Partitions {
		leaders[p.Partition] = int(p.Leader)
	}
	return leaders, nil
}

// coordinatorPartition is Kafka's Utils.abs(key.hashCode()) % partitions.
func coordinatorPartition(key string, partitions int) int32 {
	var h int32
	for _, u := range utf16.Encode([]rune(key)) {
		h = 31*h + int32(u)
	}
	if h == math.MinInt32 {
		h = 0
	} else if h < 0 {
		h = -h
	}
	return h % int32(partitions)
}

// roles says what node is to the test: the partitions of topic it leads,
// and whether it coordinates the group and the transactions.
func (c *cluster) roles(node int, topic, group, txid string) string {
	var led []string
	leaders := c.leaders(topic)
	for p := range int32(len(leaders)) {
		if leaders[p] == node {
			led = append(led, fmt.Sprint(p))
		}
	}
	var r []string
	if len(led) > 0 {
		r = append(r, "leader of "+strings.Join(led, ","))
	}
	if c.transactionCoordinator(txid) == node {
		r = append(r, "transaction coordinator")
	}
	if c.groupCoordinator(group) == node {
		r = append(r, "group coordinator")
	}
	if len(r) == 0 {
		return "no role"
	}
	return strings.Join(r, ", ")
}
