package franz

import (
	"context"
	"errors"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// leave removes the closed member from its group so that the others take
// its partitions over at once, unless it stays (GroupConfig.StayOnClose). A
// static member's group client sends no LeaveGroup when it closes (KIP-345:
// the group keeps its assignment for its return), so leave sends the one
// the admin's "remove members" sends: LeaveGroup v3+ naming the instance,
// and the member id it had, so that a newer incarnation that already took
// the name over (and with it the member id) is not removed: the
// coordinator answers FENCED_INSTANCE_ID instead.
//
// A failed leave costs time, not safety: the group moves the partitions
// once the session times out, as after a crash.
func (m *member) leave(memberID string) {
	if m.cfg.StayOnClose || memberID == "" {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), m.p.cfg.Timeout)
	defer cancel()
	req := kmsg.NewPtrLeaveGroupRequest()
	req.Group = m.cfg.Group
	req.MemberID = memberID // v0-2, which name one member by its id
	mem := kmsg.NewLeaveGroupRequestMember()
	mem.MemberID = memberID
	mem.InstanceID = &m.cfg.Instance
	mem.Reason = kmsg.StringPtr("rehydrate: the instance stops")
	req.Members = append(req.Members, mem)
	resp, err := req.RequestWith(ctx, m.p.cl)
	if err == nil {
		err = kerr.ErrorForCode(resp.ErrorCode)
		for _, r := range resp.Members {
			err = errors.Join(err, kerr.ErrorForCode(r.ErrorCode))
		}
	}
	switch {
	case err == nil:
		m.log.Debug("franz: left the group", "member", memberID)
	case errors.Is(err, kerr.UnknownMemberID), errors.Is(err, kerr.FencedInstanceID):
		// Gone already (kgo left itself, or the session timed out), or a
		// newer incarnation holds the name: nothing of ours to remove.
		m.log.Debug("franz: leave group: not a member any more", "member", memberID, "err", err)
	default:
		m.log.Warn("franz: leave group failed: the others take the partitions over when the session times out", "member", memberID, "err", err)
	}
}
