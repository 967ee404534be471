package kafkagroup

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/rehydrate/rehydrate/provider"
)

// Shared is the check a member of topic makes before it joins group, and
// again once it is in it, before it serves: it returns a
// *provider.GroupSharedError (errors.Is provider.ErrGroupShared) when members
// of the group, as its description tells them (members), are on other topics
// than topic, and nil otherwise. A member on no topic at all (one whose
// subscription the description leaves out and whose assignment is still
// empty) tells nothing and is passed over; so are the members on topic,
// whoever they are.
//
// Why: a group id names one group of the cluster, whatever its members'
// topics. A second service pointed at a service's group by mistake (a copied
// configuration) would share its rebalances and its committed offsets, and
// its transactional ids, which are the group's and the instance's (TxIDs):
// an instance of the same name would fence the other service's producers.
// Refused before its join, the newcomer touches nothing of the group: its
// producers are initialised after the check.
//
// What it covers, and what not. The check before the join is a check, not
// a fence: two members of different topics that describe the group at the
// same moment both find it free. The second check, once the member's first
// assignment has come, closes most of that window: of two such members, the
// one assigned last sees the other (franz-go describes a member's
// subscription as soon as it has joined; librdkafka describes assignments
// only, so a member is seen once its first assignment is in the
// description), and refuses; both may refuse. Neither has served by then
// (callbacks start after JoinGroup returns). A member already serving
// never checks again: it is the one the group was first used by. A member
// of another service that joins without this check (another client, an
// older version) is not refused by anything.
//
// Kafka could enforce it through the classic protocol's assignor names: the
// coordinator refuses a joining member none of whose protocols the group's
// members all support (INCONSISTENT_GROUP_PROTOCOL), so an assignor named
// after the topic would fence each service into a group of its own. The
// providers do not do it: librdkafka accepts only its built-in assignor
// names (partition.assignment.strategy), and members of both clients, and
// of earlier versions, share a group during a rolling change, which they
// can only while they name the same assignor (cooperative-sticky).
func Shared(group, topic string, members []Assignment) error {
	var others []string
	for _, mem := range members {
		for _, t := range mem.Topics {
			if t != topic && !slices.Contains(others, t) {
				others = append(others, t)
			}
		}
	}
	if len(others) == 0 {
		return nil
	}
	slices.Sort(others)
	return &provider.GroupSharedError{Group: group, Topic: topic, Others: others}
}

// CheckShared describes the group (describe, the client's) and refuses it
// as Shared does: what a provider's JoinGroup calls before its member
// touches the group and once it is in it. A description refused with
// provider.ErrUnavailable is tried again for up to timeout (the provider's
// Config.Timeout): the first member of a group on a fresh cluster meets
// COORDINATOR_NOT_AVAILABLE while __consumer_offsets is created and
// loaded, and must wait for it, not fail its start. Any other failure, or
// one still there after timeout, refuses the join.
func CheckShared(ctx context.Context, group, topic string, timeout time.Duration, describe func(context.Context) ([]Assignment, error)) error {
	var members []Assignment
	err := untilAvailable(ctx, timeout, func() (err error) {
		members, err = describe(ctx)
		return err
	})
	if err != nil {
		return fmt.Errorf("describe the group: %w", err)
	}
	return Shared(group, topic, members)
}
