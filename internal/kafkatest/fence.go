package kafkatest

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// FenceStatic joins group, a consumer group of topic, as another client
// under the static instance id instance: the group coordinator gives the
// instance a new member id, so that the member that held it is refused
// from then on (FENCED_INSTANCE_ID). leave removes the instance from the
// group (within the 10 s session this client asked for, after which the
// coordinator drops it by itself): the member then finds itself fenced
// with nobody holding its name, as a client does that sent another member
// id than the coordinator gave it (a JoinGroup answer lost, librdkafka
// forgetting its id at its own session timeout). It is the same for both
// clients' members: one JoinGroup and one LeaveGroup through franz-go's
// protocol package.
func FenceStatic(t testing.TB, group, topic, instance string) (leave func()) {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(Brokers(t), ",")...))
	if err != nil {
		t.Fatalf("fence %s: client: %v", instance, err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()

	meta := kmsg.NewConsumerMemberMetadata()
	meta.Topics = []string{topic}
	join := kmsg.NewPtrJoinGroupRequest()
	join.Group = group
	join.InstanceID = &instance
	join.ProtocolType = "consumer"
	join.SessionTimeoutMillis = 10_000
	join.RebalanceTimeoutMillis = 10_000
	proto := kmsg.NewJoinGroupRequestProtocol()
	proto.Name = "cooperative-sticky" // the members' protocol: another is refused
	proto.Metadata = meta.AppendTo(nil)
	join.Protocols = append(join.Protocols, proto)
	joined, err := join.RequestWith(ctx, cl)
	if err == nil {
		err = kerr.ErrorForCode(joined.ErrorCode)
	}
	if err != nil {
		cl.Close()
		t.Fatalf("fence %s: join group %s: %v", instance, group, err)
	}
	return func() {
		t.Helper()
		defer cl.Close()
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		leaveGroup(ctx, t, cl, group, instance, joined.MemberID)
	}
}

func leaveGroup(ctx context.Context, t testing.TB, cl *kgo.Client, group, instance, memberID string) {
	t.Helper()
	leave := kmsg.NewPtrLeaveGroupRequest()
	leave.Group = group
	mem := kmsg.NewLeaveGroupRequestMember()
	mem.MemberID = memberID
	mem.InstanceID = &instance
	leave.Members = append(leave.Members, mem)
	left, err := leave.RequestWith(ctx, cl)
	if err == nil {
		err = kerr.ErrorForCode(left.ErrorCode)
		for _, r := range left.Members {
			if err == nil {
				err = kerr.ErrorForCode(r.ErrorCode)
			}
		}
	}
	if err != nil {
		t.Fatalf("fence %s: leave group %s: %v", instance, group, err)
	}
}
