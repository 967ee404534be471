package faults

import (
	crand "crypto/rand"
	"encoding/base64"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rehydrate/rehydrate/provider"
	kafka "github.com/rehydrate/rehydrate/provider/kafkaclient"
	"github.com/rehydrate/rehydrate/repository"
	rt "github.com/rehydrate/rehydrate/repository/repositorytest"
)

// A record above the topic's max.message.bytes (64 KiB here) but below the
// client's own limit (1 MB by default, both clients), so that only the
// broker refuses it: on a plain repository and on a group member, with
// small commands on other accounts running at the same moment (they may
// share its produce batch, or its transaction). The big command must fail
// with a known outcome (neither ErrOutcomeUnknown nor ErrUnavailable: a
// retry changes nothing) naming the broker's refusal, leave memory as it
// was, and be absent from the log; a small one beside it is acknowledged or
// fails unavailable with nothing written (confluent-kafka-go's group
// member fails some with "Purged in queue": reported in the RESULT line);
// the next command on the account goes on at the next version; the usual
// checks (verify) hold.
func TestOversizeRecordIsRefused(t *testing.T) {
	c := newCluster(t)
	for _, group := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "group"}[group], func(t *testing.T) {
			cfg := kafka.Config{
				Brokers: c.brokers,
				Topic:   fmt.Sprintf("faults-oversize-%v-%d", group, time.Now().UnixNano()),
				Timeout: 10 * time.Second,
			}
			p := open(t, cfg)
			require.NoError(t, p.EnsureTopic(t.Context(), kafka.TopicSpec{
				Partitions: 3, ReplicationFactor: 3,
				Config: map[string]string{"min.insync.replicas": "2", "max.message.bytes": "65536"},
			}))
			r := c.writer(t, cfg, group, 3)
			var l rt.Ledger
			ids := createAccounts(t, r, 16, &l)
			for _, id := range ids {
				_, err := deposit(t.Context(), r, id, &l)
				require.NoError(t, err)
			}
			big := ids[0]
			before, version, err := r.Get(big)
			require.NoError(t, err)

			var wg sync.WaitGroup
			var spurious atomic.Int64
			start := make(chan struct{})
			for _, id := range ids[1:] {
				wg.Go(func() {
					<-start
					_, err := deposit(t.Context(), r, id, &l)
					if err != nil {
						// Known not written (verify checks the log), and
						// worth a retry: not the command's own fault.
						spurious.Add(1)
						t.Logf("a small command beside the oversize one, on %s: %v", id, err)
						assert.ErrorIs(t, err, provider.ErrUnavailable, "%s failed beside the oversize command", id)
						assert.NotErrorIs(t, err, provider.ErrOutcomeUnknown, "%s failed beside the oversize command", id)
					}
				})
			}
			var bigErr error
			wg.Go(func() {
				<-start
				amount := l.Amounts(1)[0]
				// Incompressible: the clients compress batches, and a
				// compressed batch of repeated bytes would pass the limit.
				raw := make([]byte, 150<<10)
				_, _ = crand.Read(raw)
				pad := base64.StdEncoding.EncodeToString(raw) // 200 KiB
				res, err := r.Execute(t.Context(), big, rt.Deposit(amount), repository.WithMetadata(map[string]string{"pad": pad}))
				l.Record(big, []any{rt.Deposited{Amount: amount}}, res, err)
				bigErr = err
			})
			close(start)
			wg.Wait()
			t.Logf("RESULT %s: the oversize command: %v; %d of the %d small commands beside it failed (unavailable, not written)", t.Name(), bigErr, spurious.Load(), len(ids)-1)
			require.Error(t, bigErr, "a record above max.message.bytes was acknowledged")
			assert.NotErrorIs(t, bigErr, provider.ErrOutcomeUnknown, "the broker refused it: the outcome is known")
			assert.NotErrorIs(t, bigErr, provider.ErrUnavailable, "a retry changes nothing: not unavailable")
			assert.Regexp(t, `(?i)too.large|larger than`, bigErr.Error(), "the error names the refusal")
			now, v, err := r.Get(big)
			require.NoError(t, err)
			assert.Equal(t, version, v, "memory unchanged")
			assert.Equal(t, before, now, "memory unchanged")
			// The next command on the account goes on from where it was
			// (retried as a client retries ErrUnavailable).
			var res repository.Result
			attempts := 0
			waitFor(t, "the next command on the account", time.Minute, func() bool {
				attempts++
				res, err = deposit(t.Context(), r, big, &l)
				if err != nil {
					t.Logf("the next command on the account: %v", err)
					assert.ErrorIs(t, err, provider.ErrUnavailable)
				}
				return err == nil
			})
			assert.Equal(t, version+1, res.Version)
			t.Logf("RESULT %s: the next command on the account acknowledged at attempt %d", t.Name(), attempts)
			verify(t, cfg, r, ids, &l)
		})
	}
}
