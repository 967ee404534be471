package franz_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/internal/kafkatest"
	"github.com/rehydrate/rehydrate/provider"
	"github.com/rehydrate/rehydrate/provider/franz"
	"github.com/rehydrate/rehydrate/provider/providertest"
	"github.com/rehydrate/rehydrate/repository/repositorytest"
)

func TestGroupConformance(t *testing.T) {
	providertest.RunGroup(t, providertest.GroupHarness{
		New: func(t *testing.T, partitions int) (provider.Provider, func() provider.Provider) {
			cfg := kafkatest.Config(t, partitions, nil)
			cfg.GroupProducers = 3 // several producers, so appends of one member run in parallel transactions
			open := func() provider.Provider {
				p, err := franz.New(cfg)
				require.NoError(t, err)
				return p
			}
			return open(), open
		},
		Expel: expel,
		Fence: func(t *testing.T, p provider.Provider, group, instance string) func() {
			return kafkatest.FenceStatic(t, group, p.(*franz.Provider).Topic(), instance)
		},
		Static:     true,
		Generation: generation,
		Topic:      func(p provider.Provider) string { return p.(*franz.Provider).Topic() },
		// Above the client's default limits (librdkafka's message.max.bytes,
		// franz-go's ProducerBatchMaxBytes) and the broker's.
		TooLarge: 2 << 20,
	})
}

// generation is GroupHarness.Generation against a real broker.
var generation = func() func(provider.Member) int32 {
	if !kafkatest.Real() {
		return nil // kfake rebalances at a static rejoin
	}
	return func(m provider.Member) int32 {
		gen, _ := franz.GroupMetadata(m)
		return gen
	}
}()

// expel has the group coordinator remove m (LeaveGroup naming its member
// id, as an administrator would), which the member learns at its next
// heartbeat as a member dropped after its session timeout does, and waits
// until the group has moved on without it.
func expel(t *testing.T, p provider.Provider, m provider.Member) {
	t.Helper()
	_, id := franz.GroupMetadata(m)
	require.NotEmpty(t, id)
	group := groupOf(t, id)
	franz.StayOut(m)
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(kafkatest.Brokers(t), ",")...))
	require.NoError(t, err)
	defer cl.Close()
	req := kmsg.NewPtrLeaveGroupRequest()
	req.Group = group
	mi := kmsg.NewLeaveGroupRequestMember()
	mi.MemberID = id
	req.Members = append(req.Members, mi)
	resp, err := req.RequestWith(t.Context(), cl)
	require.NoError(t, err)
	require.NoError(t, kerr.ErrorForCode(resp.ErrorCode))
	admin := kadm.NewClient(cl)
	deadline := time.Now().Add(60 * time.Second)
	for {
		require.True(t, time.Now().Before(deadline), "the group did not drop the member in time")
		gs, err := admin.DescribeGroups(t.Context(), group)
		if err == nil {
			g := gs[group]
			if (g.State == "Stable" || g.State == "Empty") && !slices.ContainsFunc(g.Members, func(d kadm.DescribedGroupMember) bool { return d.MemberID == id }) {
				return
			}
		}
		time.Sleep(10 * time.Millisecond) // polling the coordinator, with a deadline
	}
}

// groupOf finds the group of a member id among the cluster's groups.
func groupOf(t *testing.T, memberID string) string {
	t.Helper()
	cl, err := kgo.NewClient(kgo.SeedBrokers(strings.Split(kafkatest.Brokers(t), ",")...))
	require.NoError(t, err)
	defer cl.Close()
	admin := kadm.NewClient(cl)
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	listed, err := admin.ListGroups(ctx)
	require.NoError(t, err)
	gs, err := admin.DescribeGroups(ctx, listed.Groups()...)
	require.NoError(t, err)
	for name, g := range gs {
		if slices.ContainsFunc(g.Members, func(d kadm.DescribedGroupMember) bool { return d.MemberID == memberID }) {
			return name
		}
	}
	t.Fatalf("no group has member %s", memberID)
	return ""
}

func TestRepositoryGroupSuite(t *testing.T) {
	repositorytest.RunGroup(t, kafkatest.Topics(franz.New, nil))
}

// TestFence: the group coordinator, not the member's own view, refuses a
// transaction that carries an old generation or another member id, and
// the member refuses to send metadata that names no membership; nothing of
// a refused append becomes visible.
func TestFence(t *testing.T) {
	cfg := kafkatest.Config(t, 2, nil)
	p, err := franz.New(cfg)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
	defer cancel()
	m, err := p.JoinGroup(ctx, provider.GroupConfig{Group: "fence-" + cfg.Topic, Instance: "a"})
	require.NoError(t, err)
	for len(m.Owned()) < 2 {
		require.NoError(t, ctx.Err(), "the sole member owns both partitions")
		time.Sleep(10 * time.Millisecond) // polling the assignment, bounded by ctx
	}
	gen, id := franz.GroupMetadata(m)
	rec := func(v string) []event.Record { return []event.Record{{Key: []byte("k"), Value: []byte(v)}} }
	_, err = m.Append(ctx, rec("own"))
	require.NoError(t, err)

	for _, tc := range []struct {
		name string
		gen  int32
		id   string
	}{
		{"old generation", gen - 1, id},
		{"unknown member", gen, "not-" + id},
		{"no generation", -1, ""},
	} {
		franz.UseGroupMetadata(m, tc.gen, tc.id)
		_, err := m.Append(ctx, rec(tc.name))
		require.ErrorIs(t, err, provider.ErrNotOwner, tc.name)
		require.NotErrorIs(t, err, provider.ErrOutcomeUnknown, tc.name)
	}
	franz.UseGroupMetadata(m, gen, id)
	again, err := m.Append(ctx, rec("own again"))
	require.NoError(t, err, "the producer stays usable after refusals")

	// The last stable offset passes the acknowledged transaction once the
	// coordinator has written its commit markers, a moment after EndTxn.
	var ps []provider.Partition
	for {
		ps, err = p.Partitions(ctx)
		require.NoError(t, err)
		i := slices.IndexFunc(ps, func(x provider.Partition) bool { return x.ID == again[0].Partition })
		if ps[i].High > again[0].Offset {
			break
		}
		require.NoError(t, ctx.Err(), "the acknowledged append below the last stable offset")
		time.Sleep(10 * time.Millisecond) // polling, bounded by ctx
	}
	var got []string
	require.NoError(t, p.Read(ctx, provider.Ranges(ps), 0, func(b provider.Batch) error {
		for _, r := range b.Records {
			got = append(got, string(r.Value))
		}
		return nil
	}))
	require.Equal(t, []string{"own", "own again"}, got)
}
