//go:build cgo

package kafka

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	ckafka "github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/provider"
	"github.com/rehydrate/rehydrate/provider/kafkagroup"
)

var _ provider.Grouper = (*Provider)(nil)

// The argument for why a member that lost a partition cannot write to it is
// in the package documentation ("Groups and fenced appends"). This file holds
// its membership half: the consumer that never fetches and whose rebalance
// callback moves ownership (assigned, revoked) in the member's
// kafkagroup.Table (shared with provider/franz: which partitions it owns,
// the appends in flight on each that a revocation waits for), the metadata
// refused before it is sent (metadata), and the takeover wait
// (AwaitStable). txn.go holds the transaction half.

// JoinGroup implements provider.Grouper. It initialises the member's
// transactional producers (ending transactions a previous incarnation of
// the same Instance left open), subscribes to the topic, and returns once
// the group has assigned the member its first share, possibly none; the
// callbacks start after it returned. ctx bounds all of that.
//
// The member's Close must not be called from its callbacks. Provider.Close
// closes the members still open.
func (p *Provider) JoinGroup(ctx context.Context, gc provider.GroupConfig) (provider.Member, error) {
	gc, err := kafkagroup.PrepareJoin(ctx, "kafka", gc)
	if err != nil {
		return nil, err
	}
	if p.isClosed() {
		return nil, provider.ErrClosed
	}
	idCtx, cancel := context.WithTimeout(ctx, p.cfg.Timeout)
	ids, err := p.partitionIDs(idCtx)
	cancel()
	if err != nil {
		return nil, fmt.Errorf("kafka: join group %s: %w", gc.Group, err)
	}
	m := &member{
		p:      p,
		cfg:    gc,
		topic:  p.cfg.Topic,
		own:    kafkagroup.New("kafka: group "+gc.Group, len(ids), p.cfg.Timeout),
		log:    p.log.With("group", gc.Group, "instance", gc.Instance),
		join:   kafkagroup.NewJoin(),
		done:   make(chan struct{}),
		closed: make(chan struct{}),
	}
	if err := p.members.Add(m); err != nil {
		return nil, err
	}
	fail := func(err error) (provider.Member, error) {
		_ = m.Close()
		return nil, fmt.Errorf("kafka: join group %s as %s: %w", gc.Group, gc.Instance, err)
	}
	shared := func(ctx context.Context) error {
		return kafkagroup.CheckShared(ctx, gc.Group, m.topic, p.cfg.Timeout, m.describe)
	}
	m.txn = &lanesClient{m: m}
	lanes := kafkagroup.MemberLanes(m.own, m.txn, m.topic, gc, p.cfg, m.log)
	if err := m.join.Prepare(ctx, shared, lanes, &m.mu, func(l *kafkagroup.Lanes) { m.lanes = l }); err != nil {
		return fail(err)
	}

	c, err := m.subscribe()
	if err != nil {
		return fail(err)
	}
	m.mu.Lock()
	if m.own.Closing() {
		m.mu.Unlock()
		_ = m.closeConsumer(c)
		return fail(provider.ErrClosed)
	}
	m.consumer = c
	m.cur.Store(c)
	m.mu.Unlock()
	go m.loop()

	lastErr := func() error {
		if last := m.lastErr.Load(); last != nil {
			return *last
		}
		return nil
	}
	if err := m.join.Await(ctx, shared, lastErr); err != nil {
		return fail(err)
	}
	return m, nil
}

// member is a provider.Member on Kafka. See the comment at the top of the
// file.
type member struct {
	p        *Provider
	cfg      provider.GroupConfig // Instance filled in
	topic    string
	log      *slog.Logger
	errLog   logLimiter
	consumer *ckafka.Consumer  // set under mu before the poll loop starts
	lanes    *kafkagroup.Lanes // set under mu at join
	txn      *lanesClient      // the lanes' client, set at join

	// cmu guards the consumer against its Close while other goroutines
	// call it (metadata, committed offsets): librdkafka's handle is freed
	// by Close.
	cmu            sync.RWMutex
	consumerClosed bool

	mu  sync.Mutex // guards consumer and lanes while they are set
	own *kafkagroup.Table

	lastErr      atomic.Pointer[ckafka.Error]    // the consumer's last error, for JoinGroup's
	lastMemberID atomic.Pointer[string]          // the member id at the last assignment (rejoin.go)
	cur          atomic.Pointer[ckafka.Consumer] // consumer, for the callbacks (rejoin.go)
	join         *kafkagroup.Join                // Close stops it: the poll loop revokes everything and ends
	done         chan struct{}                   // closed when the poll loop has ended
	closed       chan struct{}                   // closed when Close has finished
	closeErr     error
}

var _ provider.Member = (*member)(nil)

func (m *member) consumerConfig() *ckafka.ConfigMap {
	cfg := m.p.cfg
	cc := common(cfg)
	for k, v := range map[string]any{
		"session.timeout.ms": int(cfg.SessionTimeout.Milliseconds()),
		// A member learns that the group rebalances from its next
		// heartbeat: a partition given up waits that long before the
		// next owner gets it (with librdkafka's default, 3 s, every move
		// of a rolling deploy took 2.5 s). Heartbeats are tiny.
		"heartbeat.interval.ms": int(min(max(cfg.SessionTimeout/20, 100*time.Millisecond), 500*time.Millisecond).Milliseconds()),
	} {
		if _, set := cfg.Properties[k]; !set {
			cc[k] = v
		}
	}
	// What the fencing argument rests on: not open to Properties. The
	// member is static (leave.go): a restart under the same Instance takes
	// the partitions back at once.
	for k, v := range map[string]any{
		"group.id":                      m.cfg.Group,
		"group.instance.id":             m.cfg.Instance,
		"group.protocol":                "classic",
		"partition.assignment.strategy": "cooperative-sticky",
		"client.id":                     kafkagroup.ClientID(cmp.Or(cfg.ClientID, "rehydrate"), m.cfg.Instance, m.cfg.Address),
		"enable.auto.commit":            false,
		"enable.auto.offset.store":      false,
		// Committed() then asks for stable offsets (AwaitStable).
		"isolation.level": "read_committed",
	} {
		cc[k] = v
	}
	return &cc
}

// loop polls the consumer, which runs the rebalance callbacks and keeps the
// member within max.poll.interval.ms, until Close. A consumer that raised a
// fatal error is replaced (rejoin.go).
func (m *member) loop() {
	defer close(m.done)
	warned := false
	var fatal *rejoiner
	for {
		if m.join.Stopping() {
			m.shutdown()
			return
		}
		if seamHoldPolls != nil && seamHoldPolls(m) {
			time.Sleep(10 * time.Millisecond)
			continue
		}
		if fatal != nil && fatal.due() && m.rejoin(fatal) {
			fatal = nil
		}
		switch e := m.consumer.Poll(int(pollInterval.Milliseconds())).(type) {
		case ckafka.Error:
			m.lastErr.Store(&e)
			if e.IsFatal() {
				m.log.Error("kafka group consumer fatal error", "err", e)
				if fatal == nil {
					fatal = &rejoiner{cause: e}
				}
			} else if m.errLog.allow(e.Code()) {
				m.log.Warn("kafka group consumer error", "err", e)
			}
		case *ckafka.Message:
			if !warned {
				warned = true
				m.log.Error("kafka: group consumer fetched a record from a paused partition", "partition", e.TopicPartition.Partition)
			}
		}
	}
}

// rebalance is the consumer's rebalance callback, run by Poll on the loop
// goroutine.
func (m *member) rebalance(c *ckafka.Consumer, ev ckafka.Event) error {
	if !m.current(c) {
		// A replaced consumer closing (rejoin.go): what it gives up is
		// not the member's any more, and it assigns nothing.
		if e, ok := ev.(ckafka.RevokedPartitions); ok {
			_ = c.IncrementalUnassign(e.Partitions)
		}
		return nil
	}
	switch e := ev.(type) {
	case ckafka.AssignedPartitions:
		m.assigned(c, e.Partitions)
	case ckafka.RevokedPartitions:
		m.revoked(c, e.Partitions, c.AssignmentLost())
	}
	return nil
}

func (m *member) ours(tps []ckafka.TopicPartition) []int32 {
	ids := make([]int32, 0, len(tps))
	for _, tp := range tps {
		if tp.Topic == nil || *tp.Topic != m.topic {
			continue
		}
		if int(tp.Partition) >= m.own.Len() {
			// Keys are partitioned by the count at join: a member cannot
			// append to a partition added since.
			m.log.Warn("kafka: the topic has more partitions than at join; rejoin to use them", "partition", tp.Partition, "at_join", m.own.Len())
			continue
		}
		ids = append(ids, tp.Partition)
	}
	slices.Sort(ids)
	return ids
}

// assigned takes partitions over: it assigns and pauses them (the member
// never fetches), and reports them. The first call registers the member:
// JoinGroup returns, and only then are the callbacks called.
func (m *member) assigned(c *ckafka.Consumer, tps []ckafka.TopicPartition) {
	// Incremental calls: Assign under the cooperative protocol fails and
	// stalls the group.
	if err := c.IncrementalAssign(tps); err != nil {
		m.log.Error("kafka: incremental assign", "err", err)
	}
	if len(tps) > 0 {
		if err := c.Pause(tps); err != nil {
			m.log.Error("kafka: pause", "err", err)
		}
	}
	if id := memberID(c); id != "" {
		m.lastMemberID.Store(&id)
	}
	if !m.join.Assigned() {
		return // assigned during Close: not ours to serve
	}
	m.own.Assigned(m.ours(tps), m.cfg, m.log)
}

// revoked gives partitions up: appends to them fail from now on, those in
// flight end, OnRevoked is told, and only then does the consumer let the
// group move them.
func (m *member) revoked(c *ckafka.Consumer, tps []ckafka.TopicPartition, lost bool) {
	m.revoke(m.ours(tps), lost)
	if err := c.IncrementalUnassign(tps); err != nil {
		m.log.Error("kafka: incremental unassign", "err", err)
	}
	if lost && seamStayOut != nil && seamStayOut(m) {
		if err := c.Unsubscribe(); err != nil {
			m.log.Error("kafka: unsubscribe", "err", err)
		}
	}
}

func (m *member) revoke(ids []int32, lost bool) { m.own.Revoked(ids, lost, m.cfg, m.log) }

// shutdown runs on the loop goroutine at Close: it revokes every partition
// as a rebalance would, leaves the group (unless StayOnClose: leave.go) so
// that the others take the partitions over at once, then closes the
// consumer.
func (m *member) shutdown() {
	m.revoke(m.own.Held(), false)
	if m.cfg.StayOnClose {
		m.stay()
	} else {
		m.leave()
	}
	m.cmu.Lock()
	defer m.cmu.Unlock()
	if err := m.closeConsumer(m.consumer); err != nil {
		m.closeErr = fmt.Errorf("kafka: group %s: close consumer: %w", m.cfg.Group, err)
	}
	m.consumerClosed = true
}

// leave unsubscribes, and polls until librdkafka has taken every partition
// back (the rebalance callback runs here, as at any rebalance, and finds
// nothing left to do), for at most the session timeout. Only then does
// shutdown close the consumer: an IncrementalUnassign called from the
// revocation that Close itself runs can block inside librdkafka for good
// (librdkafka #4884, confluent-kafka-go #1016; seen here as a member's Close
// hung for minutes on kfake).
func (m *member) leave() {
	if err := m.consumer.Unsubscribe(); err != nil {
		m.log.Warn("kafka: unsubscribe before close", "group", m.cfg.Group, "err", err)
		return
	}
	for deadline := time.Now().Add(m.p.cfg.SessionTimeout); time.Now().Before(deadline); {
		if tps, err := m.consumer.Assignment(); err != nil || len(tps) == 0 {
			return
		}
		m.consumer.Poll(int(pollInterval.Milliseconds()))
	}
}

// Close implements provider.Member. It must not be called from a callback.
func (m *member) Close() error {
	if m.own.Close() {
		<-m.closed
		return nil
	}
	m.mu.Lock()
	polling, lanes := m.consumer != nil, m.lanes
	m.mu.Unlock()
	m.join.Stop()
	if polling {
		<-m.done
	}
	if lanes != nil {
		lanes.Close()
		m.txn.waitGivenUp()
	}
	m.p.members.Remove(m)
	close(m.closed)
	return m.closeErr
}

// Partitions implements provider.Member.
func (m *member) Partitions() int { return m.own.Len() }

// Owned implements provider.Member. A partition being revoked is not owned.
func (m *member) Owned() []int32 { return m.own.Owned() }

// Append implements provider.Member; see txn.go for the transaction.
func (m *member) Append(ctx context.Context, records []event.Record) ([]provider.Position, error) {
	return m.lanes.Append(ctx, "kafka", records)
}

// metadata returns the member's consumer group metadata now, refusing
// what it cannot check (kafkagroup.Lanes refuses metadata that names no
// membership).
func (m *member) metadata() (kafkagroup.Metadata, error) {
	m.cmu.RLock()
	defer m.cmu.RUnlock()
	if m.consumerClosed {
		return kafkagroup.Metadata{}, fmt.Errorf("kafka: group %s: the member left the group: %w", m.cfg.Group, provider.ErrNotOwner)
	}
	md, err := m.consumer.GetConsumerGroupMetadata()
	if seamMetadata != nil {
		if o := seamMetadata(m); o != nil {
			md, err = o, nil
		}
	}
	if err != nil {
		return kafkagroup.Metadata{}, fmt.Errorf("kafka: group %s: no group metadata: %w: %w", m.cfg.Group, provider.ErrNotOwner, err)
	}
	b, ok := serializedMetadata(md)
	if !ok {
		return kafkagroup.Metadata{}, fmt.Errorf("kafka: group %s: cannot read confluent-kafka-go's group metadata, refusing to send it unchecked: %w", m.cfg.Group, provider.ErrNotOwner)
	}
	gen, group, member, err := decodeGroupMetadata(b)
	if err != nil {
		return kafkagroup.Metadata{}, fmt.Errorf("kafka: group %s: refusing to send group metadata it cannot check: %v: %w", m.cfg.Group, err, provider.ErrNotOwner)
	}
	if group != m.cfg.Group {
		return kafkagroup.Metadata{}, fmt.Errorf("kafka: group %s: refusing to send the metadata of group %q: %w", m.cfg.Group, group, provider.ErrNotOwner)
	}
	return kafkagroup.Metadata{Generation: gen, MemberID: member, Raw: md}, nil
}

// AwaitStable implements provider.Member: committed offsets read with
// require_stable, then last stable offsets that reach them. See the comment
// at the top of the file.
func (m *member) AwaitStable(ctx context.Context, partitions []int32) error {
	tps := make([]ckafka.TopicPartition, len(partitions))
	for i, part := range partitions {
		tps[i] = ckafka.TopicPartition{Topic: &m.topic, Partition: part}
	}
	return m.own.AwaitStable(ctx, partitions, func(ctx context.Context) (bool, error) { return m.stable(ctx, tps) },
		kafkagroup.MemberLeavers(m.txn, m.cfg, m.p.cfg, m.committedBy, m.describe, m.log))
}

// committedBy returns the metadata of the group's last committed offsets of
// ids, read without require_stable: the transactional id of the producer
// that committed each (txnProducer.SendOffsets), for kafkagroup.Leavers.
func (m *member) committedBy(ctx context.Context, ids []int32) (map[int32]string, error) {
	ctx, cancel := context.WithTimeout(ctx, m.p.cfg.Timeout)
	defer cancel()
	tps := make([]ckafka.TopicPartition, len(ids))
	for i, part := range ids {
		tps[i] = ckafka.TopicPartition{Topic: &m.topic, Partition: part}
	}
	res, err := m.p.admin.ListConsumerGroupOffsets(ctx,
		[]ckafka.ConsumerGroupTopicPartitions{{Group: m.cfg.Group, Partitions: tps}},
		ckafka.SetAdminRequireStableOffsets(false))
	if err != nil {
		return nil, m.p.brokerError("list offsets of group "+m.cfg.Group, err)
	}
	by := make(map[int32]string)
	for _, g := range res.ConsumerGroupsTopicPartitions {
		for _, tp := range g.Partitions {
			if tp.Error != nil {
				return nil, fmt.Errorf("partition %d: %w", tp.Partition, tp.Error)
			}
			if tp.Metadata != nil && *tp.Metadata != "" {
				by[tp.Partition] = *tp.Metadata
			}
		}
	}
	return by, nil
}

// stable reports whether tps are stable now.
func (m *member) stable(ctx context.Context, tps []ckafka.TopicPartition) (bool, error) {
	// librdkafka waits (retrying UNSTABLE_OFFSET_COMMIT) up to the timeout
	// it is given and cannot be interrupted: keep each wait short.
	wait := min(time.Second, m.p.cfg.Timeout)
	if d, ok := ctx.Deadline(); ok {
		wait = min(wait, time.Until(d))
	}
	if wait <= 0 {
		return false, nil
	}
	m.cmu.RLock()
	if m.consumerClosed {
		m.cmu.RUnlock()
		return false, provider.ErrClosed
	}
	res, err := m.consumer.Committed(tps, int(max(wait.Milliseconds(), 1)))
	m.cmu.RUnlock()
	if err != nil {
		return false, err
	}
	committed := make(map[int32]int64)
	for _, tp := range res {
		if tp.Error != nil {
			return false, fmt.Errorf("partition %d: %w", tp.Partition, tp.Error)
		}
		if tp.Offset >= 0 {
			committed[tp.Partition] = int64(tp.Offset)
		}
	}
	ids := make([]int32, len(tps))
	for i, tp := range tps {
		ids[i] = tp.Partition
	}
	lctx, cancel := context.WithTimeout(ctx, m.p.cfg.Timeout)
	defer cancel()
	return m.own.Stable(lctx, ids, committed,
		func(ctx context.Context, ids []int32) (map[int32]int64, error) {
			return m.p.listOffsets(ctx, ids, ckafka.LatestOffsetSpec)
		},
		m.p.listOffsetsUncommitted, m.log)
}

// Owners implements provider.Member from the group's description: each
// member's assignment and client.id, which carries its Address. This
// member's own partitions come from its own state, which is fresher.
func (m *member) Owners(ctx context.Context) (map[int32]string, error) {
	self := ""
	if md, err := m.metadata(); err == nil {
		self = md.MemberID
	}
	return m.own.Owners(ctx, self, m.cfg.Address, m.describe)
}

// describe returns the members of the group as its description tells them.
func (m *member) describe(ctx context.Context) ([]kafkagroup.Assignment, error) {
	ctx, cancel := context.WithTimeout(ctx, m.p.cfg.Timeout)
	defer cancel()
	res, err := m.p.admin.DescribeConsumerGroups(ctx, []string{m.cfg.Group})
	if err != nil {
		return nil, m.p.brokerError("describe group "+m.cfg.Group, err)
	}
	var members []kafkagroup.Assignment
	for _, g := range res.ConsumerGroupDescriptions {
		if g.Error.Code() == ckafka.ErrGroupIDNotFound {
			// DescribeGroups v6 (KIP-1043), ConsumerGroupDescribe: a
			// group nobody has joined, or whose last member left
			// without a commit.
			continue
		}
		if g.Error.Code() != ckafka.ErrNoError {
			if retriable(g.Error) {
				// The group's coordinator is settling (a fresh cluster):
				// CheckShared tries again.
				return nil, fmt.Errorf("kafka: describe group %s of %s: %w: %w", m.cfg.Group, m.p.cfg.Topic, provider.ErrUnavailable, g.Error)
			}
			return nil, m.p.brokerError("describe group "+m.cfg.Group, g.Error)
		}
		for _, mem := range g.Members {
			a := kafkagroup.Assignment{MemberID: mem.ConsumerID, InstanceID: mem.GroupInstanceID, ClientID: mem.ClientID}
			// librdkafka describes assignments, not subscriptions: a
			// member is on the topics it was assigned.
			for _, tp := range mem.Assignment.TopicPartitions {
				if tp.Topic == nil {
					continue
				}
				if !slices.Contains(a.Topics, *tp.Topic) {
					a.Topics = append(a.Topics, *tp.Topic)
				}
				if *tp.Topic == m.topic {
					a.Partitions = append(a.Partitions, tp.Partition)
				}
			}
			members = append(members, a)
		}
	}
	return members, nil
}
