package kafkagroup

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/rehydrate/rehydrate/provider"
	"github.com/rehydrate/rehydrate/provider/kafkaconfig"
)

// The parts of a member's membership that do not depend on the client: a
// provider's JoinGroup, rebalance callbacks, AwaitStable and Owners call
// these around their client's own calls.

// PrepareJoin checks a JoinGroup's arguments, and names an instance that
// has no name: a random name, so that its transactional ids (TxIDs) are its
// own and fence nothing of another instance. prefix starts errors.
func PrepareJoin(ctx context.Context, prefix string, gc provider.GroupConfig) (provider.GroupConfig, error) {
	if err := gc.Validate(); err != nil {
		return gc, fmt.Errorf("%s: join group: %w", prefix, err)
	}
	if err := ctx.Err(); err != nil {
		return gc, err
	}
	if gc.Instance == "" {
		gc.Instance = rand.Text()
	}
	return gc, nil
}

// MemberLanes returns the lanes of a member of gc (GroupConfig.Instance set)
// on topic with the provider's settings: cfg.GroupProducers lanes, each
// producer initialised within cfg.Timeout, a transaction's records waited
// for within the delivery timeout the producers get
// (min(Timeout, TransactionTimeout)) and a margin for their last request.
func MemberLanes(own *Table, c Client, topic string, gc provider.GroupConfig, cfg kafkaconfig.Config, log *slog.Logger) *Lanes {
	return NewLanes(own, c, LanesConfig{
		Name:          own.name,
		Topic:         topic,
		TxIDs:         TxIDs(gc.Group, gc.Instance, cfg.GroupProducers),
		Timeout:       cfg.Timeout,
		DeliveryBound: min(cfg.Timeout, cfg.TransactionTimeout) + 5*time.Second,
		Log:           log,
	})
}

// MemberLeavers returns the Leavers of a member of gc (GroupConfig.Instance
// set) with the provider's settings, on client c, with the client's reads
// of the committed offsets' metadata and of the group's members.
func MemberLeavers(c Client, gc provider.GroupConfig, cfg kafkaconfig.Config, committed func(context.Context, []int32) (map[int32]string, error), members func(context.Context) ([]Assignment, error), log *slog.Logger) *Leavers {
	return &Leavers{Group: gc.Group, Instance: gc.Instance, Lanes: cfg.GroupProducers, Committed: committed, Members: members, Client: c, Log: log}
}

// Assigned makes ids owned, and tells gc.OnAssigned: a member's assignment
// callback, once the client has taken them.
func (t *Table) Assigned(ids []int32, gc provider.GroupConfig, log *slog.Logger) {
	t.Assign(ids)
	log.Debug(t.name+": partitions assigned", "partitions", ids)
	if gc.OnAssigned != nil {
		gc.OnAssigned(ids)
	}
}

// Revoked makes ids not owned (appends to them fail from now on), waits for
// the appends in flight on them, and tells gc.OnRevoked of those it was
// told of: a member's revocation callback, before the client lets the group
// move them.
func (t *Table) Revoked(ids []int32, lost bool, gc provider.GroupConfig, log *slog.Logger) {
	told := t.Revoke(ids)
	log.Debug(t.name+": partitions revoked", "partitions", ids, "lost", lost)
	if len(told) > 0 && gc.OnRevoked != nil {
		gc.OnRevoked(told, lost)
	}
}

// Offsets returns an offset of each of ids (a last stable offset, an end
// offset), as a client lists them.
type Offsets func(ctx context.Context, ids []int32) (map[int32]int64, error)

// Stable is the test AwaitStable repeats once the group's committed offsets
// of the partitions ids (read with require_stable, which the coordinator
// answers only once no transaction has offsets pending for them) are known:
// whether no transaction is open on them any more and their last stable
// offsets reach the committed offsets. The coordinator writes the commit
// markers of the offsets and of the records separately, so a partition is
// stable only once its last stable offset is past the end of the last
// transaction. A transaction still open, one whose producer died before
// it sent its offsets among them, holds the last stable offset below the
// end of the partition: the takeover waits for it to end (or fences it:
// Leavers), rather than serve while every read_committed reader of the
// partition, and the next restore of it, is stuck behind it. A committed
// offset beyond the end of its partition (end) was not written by a
// member, whose offsets are the end of what it wrote: it is ignored, with
// a warning.
func (t *Table) Stable(ctx context.Context, ids []int32, committed map[int32]int64, stable, end Offsets, log *slog.Logger) (bool, error) {
	if len(ids) == 0 {
		return true, nil
	}
	ids = slices.Sorted(slices.Values(ids))
	// The end first: a transaction that ends in between makes the last
	// stable offset reach it; the other order could miss one that starts.
	hw, err := end(ctx, ids)
	if err != nil {
		return false, err
	}
	lso, err := stable(ctx, ids)
	if err != nil {
		return false, err
	}
	for _, id := range ids {
		c, ok := committed[id]
		if ok && c > hw[id] {
			log.Warn(t.name+": await stable: committed offset beyond the end of the partition, ignored", "partition", id, "committed", c, "end", hw[id])
			ok = false
		}
		if ok && lso[id] < c {
			return false, fmt.Errorf("partition %d: last stable offset %d below the committed offset %d", id, lso[id], c)
		}
		if lso[id] < hw[id] {
			return false, fmt.Errorf("partition %d: a transaction is open from offset %d (end %d)", id, lso[id], hw[id])
		}
	}
	return true, nil
}

// Assignment is one member of a group as its description tells it.
type Assignment struct {
	MemberID   string
	InstanceID string  // its group.instance.id, empty for a dynamic member
	ClientID   string  // carries the member's address (ClientID)
	Partitions []int32 // of the member's topic
	// Topics are the topics the member subscribes or was assigned, all of
	// them, as far as the client's description tells (Shared).
	Topics []string
}

// MayRejoin reports whether a static member whose group client was fenced
// (FENCED_INSTANCE_ID: the coordinator holds its Instance under another
// member id than the one the client sent) may join again with a new group
// client under the same Instance, given the group's members now (describe)
// and last, the member id it had at its last assignment.
//
// It may when the coordinator holds the Instance under last, or not at
// all: then the fence came from the client itself, which sent another id
// than the coordinator gave it (librdkafka forgets its member id when its
// own session timer runs out while the coordinator, having moved, still
// keeps the member, and its next heartbeat fences it; such a fence is fatal
// to a librdkafka consumer for good), and nobody else holds the name. It
// may not when the Instance is held under another id: another process
// joined under the same name (a restarted instance while this one was
// paused), and rejoining would only fence it in turn, back and forth.
//
// Either way nothing of the fenced client can write: the coordinator
// refuses its member id, and the new client's join replaces the id the
// coordinator holds, so that the old one is refused from then on.
func MayRejoin(members []Assignment, instance, last string) bool {
	for _, mem := range members {
		if mem.InstanceID == instance {
			return last != "" && mem.MemberID == last
		}
	}
	return true
}

// Owners is a member's Owners: the address of each partition's owner, from
// the group's description (describe) for the others, from the table for
// the member itself (self, its member id now, and address), which is
// fresher.
func (t *Table) Owners(ctx context.Context, self, address string, describe func(context.Context) ([]Assignment, error)) (map[int32]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// Also after Close (a member that left: nothing owned, no self among
	// the members), so that an instance that left can forward what still
	// reaches it.
	members, err := describe(ctx)
	if err != nil {
		return nil, err
	}
	owners := make(map[int32]string)
	for _, mem := range members {
		if mem.MemberID == self {
			continue
		}
		addr, _ := ParseClientID(mem.ClientID)
		for _, id := range t.Mine(mem.Partitions) {
			owners[id] = addr
		}
	}
	for _, id := range t.Owned() {
		owners[id] = address
	}
	return owners, nil
}
