package franz

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/provider"
	"github.com/rehydrate/rehydrate/provider/kafkagroup"
)

var _ provider.Grouper = (*Provider)(nil)

// The argument for why a member that lost a partition cannot write to it is
// in the package documentation ("Groups and fenced appends"). This file holds
// its membership half: the group client that never fetches and whose
// callbacks move ownership, the metadata refused before it is sent, and the
// takeover wait (AwaitStable). txn.go holds the transaction half.

// JoinGroup implements provider.Grouper. It initialises the member's
// transactional producers (ending transactions a previous incarnation of
// the same Instance left open), joins the group, and returns once the group
// has assigned the member its first share, possibly none; the callbacks
// start after it returned. ctx bounds all of that.
func (p *Provider) JoinGroup(ctx context.Context, gc provider.GroupConfig) (provider.Member, error) {
	gc, err := kafkagroup.PrepareJoin(ctx, "franz", gc)
	if err != nil {
		return nil, err
	}
	n, topicID, err := p.partitionCount(ctx)
	if err != nil {
		return nil, fmt.Errorf("franz: join group %s: %w", gc.Group, err)
	}
	m := &member{
		p:       p,
		cfg:     gc,
		topic:   p.cfg.Topic,
		topicID: topicID,
		own:     kafkagroup.New("franz: group "+gc.Group, n, p.cfg.Timeout),
		log:     p.log.With("group", gc.Group, "instance", gc.Instance),
		join:    kafkagroup.NewJoin(),
		closed:  make(chan struct{}),
	}
	if p.isClosed() {
		return nil, provider.ErrClosed
	}
	if err := p.members.Add(m); err != nil {
		return nil, err
	}
	fail := func(err error) (provider.Member, error) {
		_ = m.Close()
		return nil, fmt.Errorf("franz: join group %s as %s: %w", gc.Group, gc.Instance, err)
	}
	shared := func(ctx context.Context) error {
		return kafkagroup.CheckShared(ctx, gc.Group, m.topic, p.cfg.Timeout, m.describe)
	}
	lanes := kafkagroup.MemberLanes(m.own, lanesClient{m}, m.topic, gc, p.cfg, m.log)
	if err := m.join.Prepare(ctx, shared, lanes, &m.mu, func(l *kafkagroup.Lanes) { m.lanes = l }); err != nil {
		return fail(err)
	}
	opts, err := clientOpts(p.cfg, m.log)
	if err != nil {
		return fail(err)
	}
	opts = append(opts,
		kgo.ConsumerGroup(gc.Group),
		// Static membership: a restart under the same Instance takes
		// the partitions back at once (leave.go).
		kgo.InstanceID(gc.Instance),
		kgo.ConsumeTopics(m.topic),
		// Classic protocol, cooperative: a partition moves only after
		// its owner gave it up (OnPartitionsRevoked returned).
		kgo.Balancers(kgo.CooperativeStickyBalancer()),
		kgo.SessionTimeout(p.cfg.SessionTimeout),
		// A member learns that the group rebalances from its next
		// heartbeat: a partition given up waits that long before the next
		// owner gets it. Heartbeats are tiny.
		kgo.HeartbeatInterval(min(max(p.cfg.SessionTimeout/20, 100*time.Millisecond), 500*time.Millisecond)),
		kgo.DisableAutoCommit(),
		kgo.FetchIsolationLevel(kgo.ReadCommitted()),
		kgo.ClientID(kafkagroup.ClientID(cmp.Or(p.cfg.ClientID, "rehydrate"), gc.Instance, gc.Address)),
		kgo.OnPartitionsAssigned(m.assigned),
		kgo.OnPartitionsRevoked(func(_ context.Context, _ *kgo.Client, tps map[string][]int32) { m.revoked(tps, false) }),
		kgo.OnPartitionsLost(func(_ context.Context, _ *kgo.Client, tps map[string][]int32) { m.revoked(tps, true) }),
	)
	gcl, err := kgo.NewClient(opts...)
	if err != nil {
		return fail(fmt.Errorf("group client: %w", err))
	}
	// The member never fetches: its topic is paused before anything is
	// assigned, and stays paused across rebalances.
	gcl.PauseFetchTopics(m.topic)
	m.mu.Lock()
	if m.own.Closing() { // Provider.Close came first
		m.mu.Unlock()
		gcl.Close()
		return fail(provider.ErrClosed)
	}
	m.gcl = gcl
	m.mu.Unlock()

	if err := m.join.Await(ctx, shared, nil); err != nil {
		return fail(err)
	}
	return m, nil
}

// member is a provider.Member on franz-go.
type member struct {
	p       *Provider
	cfg     provider.GroupConfig // Instance filled in
	topic   string
	topicID [16]byte // newer TxnOffsetCommit versions name topics by id
	log     *slog.Logger
	own     *kafkagroup.Table

	mu    sync.Mutex
	gcl   *kgo.Client       // the group client, set under mu at join
	lanes *kafkagroup.Lanes // set under mu at join

	// callbacks is held while ownership moves and the GroupConfig
	// callbacks run: kgo's goroutine and Close's revocation take turns, so
	// that OnAssigned and OnRevoked are called one at a time.
	callbacks sync.Mutex

	join   *kafkagroup.Join // Close stops it
	closed chan struct{}    // closed when Close has finished
}

var _ provider.Member = (*member)(nil)

// ours returns the partitions of the member's topic among tps.
func (m *member) ours(tps map[string][]int32) []int32 {
	ids := m.own.Mine(tps[m.topic])
	if len(ids) < len(tps[m.topic]) {
		m.log.Warn("franz: the topic has more partitions than at join; rejoin to use them", "assigned", tps[m.topic], "at_join", m.own.Len())
	}
	return ids
}

// assigned is kgo's OnPartitionsAssigned, called after every rebalance, the
// first included, also with nothing new. The first call registers the
// member: JoinGroup returns, and only then are the callbacks called.
func (m *member) assigned(_ context.Context, _ *kgo.Client, tps map[string][]int32) {
	if !m.join.Assigned() {
		return // assigned during Close: not ours to serve
	}
	m.callbacks.Lock()
	defer m.callbacks.Unlock()
	if m.join.Stopping() {
		return // Close revoked everything meanwhile
	}
	m.own.Assigned(m.ours(tps), m.cfg, m.log)
}

// revoked is kgo's OnPartitionsRevoked and OnPartitionsLost: appends to the
// partitions fail from now on, those in flight end, OnRevoked is told, and
// only then does kgo let the group move them (cooperative: the member
// rejoins after the callback returned).
func (m *member) revoked(tps map[string][]int32, lost bool) {
	m.revoke(m.ours(tps), lost)
	if lost && seamStayOut != nil && seamStayOut(m) {
		m.mu.Lock()
		gcl := m.gcl
		m.mu.Unlock()
		// A nil context triggers the leave without waiting for the
		// callback that runs it (kgo's documented way).
		//lint:ignore SA1012 a nil context is what kgo documents here
		go gcl.LeaveGroupContext(nil)
	}
}

func (m *member) revoke(ids []int32, lost bool) {
	m.callbacks.Lock()
	defer m.callbacks.Unlock()
	m.own.Revoked(ids, lost, m.cfg, m.log)
}

// Close implements provider.Member: it revokes every partition, leaves the
// group (unless StayOnClose: leave.go), and closes the producers.
func (m *member) Close() error {
	if m.own.Close() {
		<-m.closed
		return nil
	}
	m.join.Stop()
	m.mu.Lock()
	gcl, lanes := m.gcl, m.lanes
	m.mu.Unlock()
	if gcl != nil {
		// A callback under way assigns nothing once it sees stop closed:
		// after this barrier the partitions held are final.
		m.callbacks.Lock()
		//lint:ignore SA2001 an empty critical section, as a barrier
		m.callbacks.Unlock()
		m.revoke(m.own.Held(), false)
		memberID, _ := gcl.GroupMetadata()
		// kgo calls OnPartitionsRevoked as it closes: nothing is left to
		// revoke by then. A static member's Close does not leave the
		// group; leave does, after it, unless StayOnClose.
		gcl.Close()
		m.leave(memberID)
	}
	if lanes != nil {
		lanes.Close()
	}
	m.p.members.Remove(m)
	close(m.closed)
	return nil
}

// Partitions implements provider.Member.
func (m *member) Partitions() int { return m.own.Len() }

// Owned implements provider.Member. A partition being revoked is not owned.
func (m *member) Owned() []int32 { return m.own.Owned() }

// Append implements provider.Member; see txn.go for the transaction.
func (m *member) Append(ctx context.Context, records []event.Record) ([]provider.Position, error) {
	return m.lanes.Append(ctx, "franz", records)
}

// metadata returns the member's group metadata now (kafkagroup.Lanes
// refuses metadata that names no membership).
func (m *member) metadata() (kafkagroup.Metadata, error) {
	m.mu.Lock()
	gcl := m.gcl
	m.mu.Unlock()
	if gcl == nil || m.own.Closing() {
		return kafkagroup.Metadata{}, fmt.Errorf("franz: group %s: the member left the group: %w", m.cfg.Group, provider.ErrNotOwner)
	}
	id, gen := gcl.GroupMetadata()
	if seamMetadata != nil {
		if o := seamMetadata(m); o != nil {
			return *o, nil
		}
	}
	return kafkagroup.Metadata{Generation: gen, MemberID: id}, nil
}

// AwaitStable implements provider.Member: committed offsets read with
// require_stable, which the coordinator answers only once no transaction
// has offsets pending for the partitions, then last stable offsets that
// reach them (the coordinator writes the commit markers of the offsets and
// of the records separately).
func (m *member) AwaitStable(ctx context.Context, partitions []int32) error {
	return m.own.AwaitStable(ctx, partitions, func(ctx context.Context) (bool, error) { return m.stable(ctx, partitions) },
		kafkagroup.MemberLeavers(lanesClient{m}, m.cfg, m.p.cfg, m.committedBy, m.describe, m.log))
}

// committedBy returns the metadata of the group's last committed offsets of
// ids, read without require_stable: the transactional id of the client
// that committed each (txnClient.sendOffsets), for kafkagroup.Leavers.
func (m *member) committedBy(ctx context.Context, ids []int32) (map[int32]string, error) {
	ctx, cancel := context.WithTimeout(ctx, m.p.cfg.Timeout)
	defer cancel()
	resp, err := m.fetchOffsets(ctx, ids, false)
	if err != nil {
		return nil, err
	}
	by := make(map[int32]string)
	for _, rt := range resp.Topics {
		for _, rp := range rt.Partitions {
			if err := kerr.ErrorForCode(rp.ErrorCode); err != nil {
				return nil, fmt.Errorf("partition %d: %w", rp.Partition, err)
			}
			if rp.Metadata != nil && *rp.Metadata != "" {
				by[rp.Partition] = *rp.Metadata
			}
		}
	}
	return by, nil
}

// fetchOffsets sends OffsetFetch of ids for the member's group (with
// require_stable: stable).
func (m *member) fetchOffsets(ctx context.Context, ids []int32, stable bool) (*kmsg.OffsetFetchResponse, error) {
	req := kmsg.NewPtrOffsetFetchRequest()
	req.Group = m.cfg.Group
	req.RequireStable = stable
	t := kmsg.NewOffsetFetchRequestTopic()
	t.Topic = m.topic
	t.Partitions = ids
	req.Topics = append(req.Topics, t)
	resp, err := req.RequestWith(ctx, m.p.cl)
	if err != nil {
		return nil, err
	}
	if err := kerr.ErrorForCode(resp.ErrorCode); err != nil {
		return nil, err // UNSTABLE_OFFSET_COMMIT among others
	}
	return resp, nil
}

// stable reports whether partitions are stable now.
func (m *member) stable(ctx context.Context, partitions []int32) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, m.p.cfg.Timeout)
	defer cancel()
	resp, err := m.fetchOffsets(ctx, partitions, true)
	if err != nil {
		return false, err // UNSTABLE_OFFSET_COMMIT among others: ask again
	}
	committed := make(map[int32]int64)
	for _, rt := range resp.Topics {
		for _, rp := range rt.Partitions {
			if err := kerr.ErrorForCode(rp.ErrorCode); err != nil {
				return false, fmt.Errorf("partition %d: %w", rp.Partition, err)
			}
			if rp.Offset >= 0 {
				committed[rp.Partition] = rp.Offset
			}
		}
	}
	return m.own.Stable(ctx, partitions, committed, m.offsets(m.p.admin.ListCommittedOffsets), m.offsets(m.p.admin.ListEndOffsets), m.log)
}

// offsets adapts one of kadm's listings of the topic's offsets.
func (m *member) offsets(list func(context.Context, ...string) (kadm.ListedOffsets, error)) kafkagroup.Offsets {
	return func(ctx context.Context, _ []int32) (map[int32]int64, error) {
		listed, err := list(ctx, m.topic)
		if err == nil {
			err = listed.Error()
		}
		if err != nil {
			return nil, err
		}
		out := make(map[int32]int64)
		for id, o := range listed[m.topic] {
			out[id] = o.Offset
		}
		return out, nil
	}
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
	groups, err := m.p.admin.DescribeGroups(ctx, m.cfg.Group)
	if err == nil {
		err = groups.Error()
	}
	if errors.Is(err, kerr.GroupIDNotFound) {
		// DescribeGroups v6 (KIP-1043) and kfake: a group nobody has
		// joined, or whose last member left without a commit.
		return nil, nil
	}
	if err != nil {
		return nil, m.p.brokerError("describe group "+m.cfg.Group, err)
	}
	var members []kafkagroup.Assignment
	for _, g := range groups {
		for _, mem := range g.Members {
			a := kafkagroup.Assignment{MemberID: mem.MemberID, ClientID: mem.ClientID}
			if mem.InstanceID != nil {
				a.InstanceID = *mem.InstanceID
			}
			// The subscription is known from the member's join, also while
			// the group rebalances and assignments are empty.
			if joined, ok := mem.Join.AsConsumer(); ok {
				a.Topics = append(a.Topics, joined.Topics...)
			}
			if assigned, ok := mem.Assigned.AsConsumer(); ok {
				for _, t := range assigned.Topics {
					a.Topics = append(a.Topics, t.Topic)
					if t.Topic == m.topic {
						a.Partitions = append(a.Partitions, t.Partitions...)
					}
				}
			}
			members = append(members, a)
		}
	}
	return members, nil
}
