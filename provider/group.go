package provider

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/rehydrate/rehydrate/event"
)

// ErrNotOwner means an append was for a partition the member does not own:
// not yet, not any more, or the log itself refused the member because the
// group moved on (a stale generation, a member the group no longer knows).
// Nothing of the append was written.
var ErrNotOwner = errors.New("provider: partition not owned by this member")

// ErrGroupShared means a member refused to join a group because live
// members of the group subscribe other topics than its own: the group's
// name is used by another service (a copied configuration), and sharing its
// assignment and committed offsets would break both. Nothing was joined.
// The error is a *GroupSharedError.
var ErrGroupShared = errors.New("provider: group used by another topic")

// GroupSharedError is the refusal of [ErrGroupShared]: the group, the topic
// the refused member is for, and the topics the group's members subscribe
// that are not that one.
type GroupSharedError struct {
	Group  string
	Topic  string
	Others []string // sorted, without Topic
}

func (e *GroupSharedError) Error() string {
	return fmt.Sprintf("provider: group %s has live members on topic %s, not %s: give each service a group of its own",
		e.Group, strings.Join(e.Others, ", "), e.Topic)
}

// Unwrap makes errors.Is(err, ErrGroupShared) true.
func (e *GroupSharedError) Unwrap() error { return ErrGroupShared }

// Grouper is an optional capability of a [Provider]: the instances of a
// service share the topic's partitions through a group, each partition owned
// by one member at a time, and the log itself refuses appends from a member
// that no longer owns their partition. The repository finds it by type
// assertion, as database/sql finds driver.Pinger.
type Grouper interface {
	// JoinGroup makes this process a member of cfg.Group on the provider's
	// topic. It returns once the member is registered with the group;
	// partitions arrive through cfg.OnAssigned, whose calls may run
	// concurrently with the caller's code (even before JoinGroup has
	// returned, for some providers). The member lives until Close (ctx
	// bounds only the join).
	JoinGroup(ctx context.Context, cfg GroupConfig) (Member, error)
}

// GroupConfig describes a member.
type GroupConfig struct {
	// Group names the group; every writer instance of one service uses the
	// same name. Required.
	Group string
	// Instance identifies this instance among the group's members, and is
	// its static membership (Kafka's group.instance.id, KIP-345). Give a
	// name that is stable across restarts (a pod name of a StatefulSet): a
	// restarted instance then takes its partitions back at once, without
	// waiting for the group to give up on its predecessor, and settles the
	// transaction its predecessor left open at once, instead of after the
	// provider's transaction timeout. Two live processes must never share
	// one: the later one fences the earlier one's membership and appends
	// (safe, but the earlier one can append no more). Empty means a random
	// name: a restart is then a new member, and the predecessor's
	// partitions wait for its session to time out.
	Instance string
	// StayOnClose keeps the member's partitions assigned to it when it
	// closes, for an instance that restarts under the same Instance at
	// once (a StatefulSet's rolling restart): its partitions then move
	// nowhere, but nobody serves them until it is back or its session
	// timed out. By default Close leaves the group, and the others take
	// the partitions over at once (and give them back when it returns).
	// It needs an Instance.
	StayOnClose bool
	// Address is how other members reach this one (e.g. the URL of its
	// HTTP API); [Member.Owners] reports it. Optional, opaque.
	Address string
	// OnAssigned is called with partitions this member now owns. Appends to
	// them are accepted at the latest from the moment it is called. It is called after
	// every rebalance the member takes part in, the first included, with an
	// empty list when nothing new is assigned, so a member that owns
	// nothing learns that it has joined. It must return promptly (start a
	// restore in the background).
	OnAssigned func(partitions []int32)
	// OnRevoked is called with partitions this member no longer owns, after
	// every append to them has returned (one that returned
	// ErrOutcomeUnknown may still commit: the next owner's AwaitStable
	// waits for it) and, unless lost is set, before any
	// other member can own them; appends to them fail with ErrNotOwner from
	// the moment the revocation starts. lost means the member was dropped
	// from the group (it stopped answering): another member may already own
	// them, and the log refuses every append the member had in flight.
	// It must return promptly.
	//
	// A member's OnAssigned and OnRevoked are called from one goroutine,
	// one at a time, never after its Close returned. They must not call
	// the member's Close or the provider's Close.
	OnRevoked func(partitions []int32, lost bool)
}

// Validate reports every problem of the configuration at once.
func (c GroupConfig) Validate() error {
	var errs []error
	if c.Group == "" {
		errs = append(errs, errors.New("no group name"))
	}
	if c.StayOnClose && c.Instance == "" {
		errs = append(errs, errors.New("StayOnClose needs an Instance: a random name never comes back for its partitions"))
	}
	return errors.Join(errs...)
}

// Member is one instance's membership of a group. It is safe for concurrent
// use.
type Member interface {
	// Partitions returns the number of partitions of the topic, which is
	// what keys are partitioned by ([PartitionFor]).
	Partitions() int

	// Owned returns the partitions the member owns now, ascending; a
	// partition being revoked is not owned.
	Owned() []int32

	// AwaitStable returns once no append of an earlier owner of the
	// partitions can still change them: every transaction of an earlier
	// owner that could still commit has ended, and its records are below
	// the last stable offset. Only then is [Provider.Partitions]' High the
	// end a new owner restores to. (A stale owner's transaction that can
	// only abort may still be open and hold readers back; it changes
	// nothing.)
	AwaitStable(ctx context.Context, partitions []int32) error

	// Append writes records atomically, fenced by the member's ownership:
	// all of them become visible to read-committed readers, or none does.
	// Every record's key must map to a partition the member owns, else the
	// append fails with ErrNotOwner and nothing is written; the log refuses
	// it too once the group has moved the partition on, whatever this
	// member believes. Concurrent appends may share one transaction.
	//
	// It returns once the records are committed, with their positions in
	// the order given. On error, errors.Is(err, ErrOutcomeUnknown) says
	// they may have been committed; any other error says none was. Appends
	// of one partition are ordered: an append that returns after another
	// returned (whatever its outcome) lands after it, if at all.
	Append(ctx context.Context, records []event.Record) ([]Position, error)

	// Owners returns, for each partition with a known owner, the Address
	// that owner gave in its GroupConfig ("" when it gave none). Partitions
	// without a current owner are missing, and so may be others' while the
	// group rebalances. Unlike the other methods, it still answers after
	// Close, as long as the provider is open: a member that has left learns
	// where its partitions went, to forward what still reaches it.
	Owners(ctx context.Context) (map[int32]string, error)

	// Close revokes every partition (calling OnRevoked), leaves the group
	// so that the others take the partitions over at once (unless
	// GroupConfig.StayOnClose), and releases the member. Later calls of
	// the other methods but Owners return ErrClosed; Close may be called
	// again and then returns nil. Closing the provider closes its members.
	Close() error
}
