//go:build cgo

package kafka

import (
	"context"
	"fmt"
	"time"

	ckafka "github.com/confluentinc/confluent-kafka-go/v2/kafka"

	"github.com/rehydrate/rehydrate/provider/kafkagroup"
)

// A static member's consumer can fence itself: when librdkafka's own
// session timer runs out (no heartbeat answered for session.timeout.ms,
// as while the group coordinator moves to another broker) it forgets its
// member id and revokes everything as lost, but goes on heartbeating, now
// without the id, while the new coordinator still holds the member under
// it; the coordinator answers FENCED_INSTANCE_ID, and librdkafka makes
// that a fatal error: the consumer never joins again, and Close on it
// polls for good. Seen in internal/faults' TestGroupKillCoordinatorMidTransaction:
// the member never served again. So the poll loop replaces a consumer
// that raised a fatal error by a new one under the same Instance, unless
// another process holds the name (kafkagroup.MayRejoin; a group that cannot
// be described for the session timeout does not hold the rejoin back), and
// closes the old one without waiting for it for good (closeConsumer).

// rejoiner is the poll loop's state while its consumer is fatal.
type rejoiner struct {
	cause    ckafka.Error
	tries    int
	next     time.Time
	reported bool      // that another process holds the Instance
	blind    time.Time // since when no description could be had, zero while one could
}

// due reports whether the loop should try to rejoin now.
func (r *rejoiner) due() bool { return !time.Now().Before(r.next) }

// later schedules the next try, backing off from 100 ms to 10 s.
func (r *rejoiner) later() {
	r.tries++
	r.next = time.Now().Add(min(100*time.Millisecond<<min(r.tries, 7), 10*time.Second))
}

// rejoin replaces the fatal consumer by a new one under the same Instance,
// on the loop goroutine, and reports whether it did. Whatever the member
// held is revoked first (librdkafka has revoked it as lost already when
// the fence came with its session timer; revoking again does nothing):
// the new consumer's assignment makes the partitions owned again, from its
// own rebalance callback. The new consumer's JoinGroup, without a member
// id, makes the coordinator replace the id it holds for the Instance, which
// fences the old consumer's metadata; the member's transactions read the
// new consumer's metadata from the swap on (metadata).
func (m *member) rejoin(r *rejoiner) bool {
	m.revoke(m.own.Held(), true)
	ctx, cancel := context.WithTimeout(context.Background(), m.p.cfg.Timeout)
	members, err := m.describe(ctx)
	cancel()
	if err != nil {
		// The description guards against rejoining under a name another
		// process holds, which fencing keeps safe anyway (MayRejoin): past
		// the session timeout without one, the member rejoins without it
		// rather than stay out of the group. Seen in internal/faults'
		// TestGroupPauseCoordinatorMidTransaction: with the old group
		// coordinator's broker paused, librdkafka's admin client sent
		// every description to it, each timed out, and the member served
		// nothing for over two minutes.
		if r.blind.IsZero() {
			r.blind = time.Now()
		}
		if time.Since(r.blind) < m.p.cfg.SessionTimeout {
			m.log.Warn("kafka: the group consumer is fenced; describing the group before it rejoins failed, trying again", "cause", r.cause, "err", err)
			r.later()
			return false
		}
		m.log.Warn("kafka: the group consumer is fenced and the group could not be described for the session timeout; rejoining without a description", "cause", r.cause, "err", err, "since", r.blind)
		members = nil
	} else {
		r.blind = time.Time{}
	}
	last := ""
	if id := m.lastMemberID.Load(); id != nil {
		last = *id
	}
	if !kafkagroup.MayRejoin(members, m.cfg.Instance, last) {
		if !r.reported {
			r.reported = true
			m.log.Error("kafka: another process holds this instance's name in the group; not rejoining while it does", "instance", m.cfg.Instance, "cause", r.cause)
		}
		r.later()
		return false
	}
	c, err := m.subscribe()
	if err != nil {
		m.log.Warn("kafka: a new group consumer after a fence failed, trying again", "err", err)
		r.later()
		return false
	}
	m.mu.Lock()
	m.cmu.Lock()
	old := m.consumer
	m.consumer = c
	m.cur.Store(c)
	m.cmu.Unlock()
	m.mu.Unlock()
	m.log.Warn("kafka: the group consumer was fenced; rejoined with a new one under the same instance", "instance", m.cfg.Instance, "cause", r.cause, "member", last)
	// Its Close runs its rebalance callback, which leaves the table alone
	// (current), and may poll for good: it runs beside the loop.
	go func() {
		if err := m.closeConsumer(old); err != nil {
			m.log.Debug("kafka: close of the fenced group consumer", "err", err)
		}
	}()
	return true
}

// subscribe returns a new group consumer of the member, subscribed to its
// topic.
func (m *member) subscribe() (*ckafka.Consumer, error) {
	c, err := ckafka.NewConsumer(m.consumerConfig())
	if err != nil {
		return nil, fmt.Errorf("consumer: %w", err)
	}
	go forwardLogs(c.Logs(), m.log)
	if err := c.Subscribe(m.topic, m.rebalance); err != nil {
		_ = m.closeConsumer(c)
		return nil, fmt.Errorf("subscribe to %s: %w", m.topic, err)
	}
	return c, nil
}

// current reports whether c is the member's consumer now. Not under cmu:
// shutdown holds it while Close runs the callback.
func (m *member) current(c *ckafka.Consumer) bool { return m.cur.Load() == c }

// closeConsumer closes c, waiting at most the session timeout and
// Config.Timeout: librdkafka's close of a consumer that raised a fatal
// error polls for good (above), and leave (group.go) bounds the other
// known hang. A close that does not end in time is left running, with a
// warning; the member is not in the group any more either way (the
// coordinator drops it at its session timeout at the latest).
func (m *member) closeConsumer(c *ckafka.Consumer) error {
	done := make(chan error, 1)
	go func() { done <- c.Close() }()
	bound := m.p.cfg.SessionTimeout + m.p.cfg.Timeout
	select {
	case err := <-done:
		return err
	case <-time.After(bound):
		m.log.Warn("kafka: closing a group consumer did not end; left behind", "after", bound)
		return nil
	}
}

// memberID returns c's member id now, "" if it has none or it cannot be
// read.
func memberID(c *ckafka.Consumer) string {
	md, err := c.GetConsumerGroupMetadata()
	if err != nil {
		return ""
	}
	b, ok := serializedMetadata(md)
	if !ok {
		return ""
	}
	_, _, id, err := decodeGroupMetadata(b)
	if err != nil {
		return ""
	}
	return id
}
