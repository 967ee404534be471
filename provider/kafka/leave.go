//go:build cgo

package kafka

// A member is static (group.instance.id is its Instance, KIP-345): when it
// closes, librdkafka sends no LeaveGroup, and the group keeps its
// partitions for it until its session times out, so that the same instance
// restarting takes them back without a rebalance. Unsubscribe, by
// contrast, sends a LeaveGroup also for a static member (librdkafka's
// rd_kafka_cgrp_leave_maybe skips it only when the consumer terminates; it
// names the member id, which the coordinator removes whether static or
// not: providertest's StaticMemberLeavesOnClose). So a member that leaves
// unsubscribes first (leave), and one that stays (GroupConfig.StayOnClose)
// gives its partitions up locally only (stay). In both cases, every
// partition is given back to librdkafka before shutdown closes the consumer
// (see leave in group.go: librdkafka #4884).

// stay gives the partitions back to librdkafka without telling the group:
// the member stays in it, with its assignment, until its session times out
// or the same Instance joins again.
func (m *member) stay() {
	tps, err := m.consumer.Assignment()
	if err == nil && len(tps) > 0 {
		err = m.consumer.IncrementalUnassign(tps)
	}
	if err != nil {
		m.log.Warn("kafka: unassign before close", "group", m.cfg.Group, "err", err)
	}
}
