package repositorytest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rehydrate/rehydrate/provider"
	"github.com/rehydrate/rehydrate/repository"
)

// RunGroup runs the suite of repositories sharing a topic through a group
// (repository.WithGroup). newProvider's providers must implement
// provider.Grouper; each instance gets its own, as processes would.
func RunGroup(t *testing.T, newProvider NewProvider) {
	t.Run("ScaleOutAndInUnderLoad", func(t *testing.T) { testScaleOutAndIn(t, newProvider, false) })
	t.Run("ScaleOutAndInUnderLoadWithSnapshots", func(t *testing.T) { testScaleOutAndIn(t, newProvider, true) })
	t.Run("NonOwnerRefusesAndNamesPartition", func(t *testing.T) { testNonOwnerRefuses(t, newProvider) })
}

var groupSeq atomic.Int64

// groupName is unique per test, so that tests never share a group.
func groupName(t *testing.T) string {
	return fmt.Sprintf("rt-%s-%d-%d", sanitize(t.Name()), time.Now().UnixNano(), groupSeq.Add(1))
}

func sanitize(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-') {
			b[i] = '-'
		}
	}
	return string(b)
}

// instance is one member of the group under test.
type instance struct {
	name string
	repo *repository.Repository[Account]
}

func joinGroup(t *testing.T, p provider.Provider, group, name string, opts ...repository.Option) *instance {
	t.Helper()
	opts = append(opts, repository.WithGroup(repository.Group{Name: group, Instance: name, Address: "addr-" + name}))
	r := NewRepository(t, p, opts...)
	ctx, cancel := context.WithTimeout(t.Context(), timeout(t))
	defer cancel()
	_, err := r.Restore(ctx)
	require.NoError(t, err, "instance %s joins", name)
	t.Cleanup(func() { _ = r.Close() })
	return &instance{name: name, repo: r}
}

// fleet routes commands to whichever instance serves the aggregate now, as
// the example writer's forwarding does, retrying while partitions move.
type fleet struct {
	mu        sync.Mutex
	instances []*instance
}

func (f *fleet) add(i *instance) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.instances = append(f.instances, i)
}

func (f *fleet) remove(i *instance) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.instances = slices.DeleteFunc(f.instances, func(x *instance) bool { return x == i })
}

// execute runs cmd on the instance that serves id. It retries, until ctx
// ends, while no instance serves id; any other error is returned.
func (f *fleet) execute(ctx context.Context, id string, create bool, cmd repository.Command[Account]) (repository.Result, error) {
	for {
		f.mu.Lock()
		instances := slices.Clone(f.instances)
		f.mu.Unlock()
		for _, in := range instances {
			var res repository.Result
			var err error
			if create {
				res, err = in.repo.Create(ctx, id, cmd)
			} else {
				res, err = in.repo.Execute(ctx, id, cmd)
			}
			if !retryable(err) {
				return res, err
			}
		}
		select {
		case <-ctx.Done():
			return repository.Result{}, ctx.Err()
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// retryable reports an error that says "not here, not now", and that
// nothing was written: the partition is owned elsewhere, being taken over,
// was just taken away (its instance closing), or the log was briefly
// unavailable (a rebalance).
func retryable(err error) bool {
	var pe *repository.PartitionError
	if errors.Is(err, provider.ErrOutcomeUnknown) {
		return false
	}
	return errors.As(err, &pe) || errors.Is(err, provider.ErrNotOwner) || errors.Is(err, repository.ErrNotReady) ||
		errors.Is(err, provider.ErrUnavailable) || errors.Is(err, provider.ErrClosed)
}

// testScaleOutAndIn is the fleet's property: one instance, then three, then
// one again, under load the whole time; every acknowledged deposit is in the
// log at the version it was acknowledged with, no version is written twice,
// and a restore of the log equals the last instance's live state.
// testScaleOutAndIn: instances join and leave under load; every deposit
// acknowledged is in the log at its version, and restore(log) equals the
// last instance's state. withSnapshots has the instances snapshot often, so
// that takeovers restore from the snapshots of the partition's previous
// owners.
func testScaleOutAndIn(t *testing.T, newProvider NewProvider, withSnapshots bool) {
	const partitions, accounts, workers = 6, 24, 6
	p, reopen := newProvider(t, partitions)
	var opts func() []repository.Option
	if withSnapshots {
		_, sreopen := newProvider(t, partitions)
		opts = func() []repository.Option {
			return []repository.Option{repository.WithSnapshots(Store(t, sreopen()),
				repository.Snapshots{StateVersion: 1, Events: 5, Interval: 100 * time.Millisecond})}
		}
	} else {
		opts = func() []repository.Option { return nil }
	}
	group := groupName(t)
	f := &fleet{}
	a := joinGroup(t, p, group, "a", opts()...)
	f.add(a)
	ctx := t.Context()
	for i := range accounts {
		_, err := f.execute(ctx, fmt.Sprintf("acct-%d", i), true, Open("o"))
		require.NoError(t, err)
	}

	// acked[id][version] is the amount a deposit acknowledged at version had.
	var mu sync.Mutex
	acked := make(map[string]map[uint64]int64)
	var amount atomic.Int64 // every deposit's amount is unique
	var unknown, done atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range workers {
		rng := rand.New(rand.NewPCG(uint64(w), 7))
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				id := fmt.Sprintf("acct-%d", rng.IntN(accounts))
				amt := amount.Add(1)
				cctx, cancel := context.WithTimeout(ctx, timeout(t))
				res, err := f.execute(cctx, id, false, Deposit(amt))
				cancel()
				switch {
				case err == nil:
					done.Add(1)
					mu.Lock()
					if acked[id] == nil {
						acked[id] = make(map[uint64]int64)
					}
					acked[id][res.Version] = amt
					mu.Unlock()
				case errors.Is(err, provider.ErrOutcomeUnknown), errors.Is(err, repository.ErrUnresolved):
					unknown.Add(1)
				case ctx.Err() != nil:
					return
				default:
					t.Errorf("deposit on %s: %v", id, err)
					return
				}
			}
		})
	}
	// waitServed waits until the instances together serve every partition,
	// each partition once.
	waitServed := func(ins ...*instance) {
		t.Helper()
		require.Eventually(t, func() bool {
			var all []int32
			for _, in := range ins {
				all = append(all, in.repo.Owned()...)
			}
			slices.Sort(all)
			return len(all) == partitions && len(slices.Compact(all)) == partitions
		}, timeout(t), pollEvery, "every partition served once")
	}
	progressed := func(what string) {
		t.Helper()
		from := done.Load()
		require.Eventually(t, func() bool { return done.Load() > from+20 }, timeout(t), pollEvery, "load continues %s", what)
	}

	progressed("with one instance")
	b := joinGroup(t, reopen(), group, "b", opts()...)
	f.add(b)
	c := joinGroup(t, reopen(), group, "c", opts()...)
	f.add(c)
	waitServed(a, b, c)
	progressed("with three instances")
	for _, in := range []*instance{a, b} {
		f.remove(in)
		require.NoError(t, in.repo.Close())
	}
	waitServed(c)
	progressed("with one instance again")
	close(stop)
	wg.Wait()

	restored := Restored(t, reopen())
	assert.Zero(t, restored.Stats().Duplicates, "no version was appended twice")
	assert.Equal(t, stateOf(c.repo), stateOf(restored), "restore(log) == the live state")
	mu.Lock()
	defer mu.Unlock()
	n := 0
	for id, versions := range acked {
		acct, _, err := restored.Get(id)
		require.NoError(t, err)
		for v, amt := range versions {
			n++
			if assert.Greater(t, len(acct.History), int(v-2), "%s: deposit acknowledged at version %d is in the log", id, v) {
				assert.Equal(t, amt, acct.History[v-2], "%s: version %d holds the acknowledged deposit", id, v)
			}
		}
	}
	t.Logf("%d deposits acknowledged and found at their versions; %d of unknown outcome", n, unknown.Load())
	if withSnapshots {
		from := 0
		for _, ps := range c.repo.Stats().Partitions {
			if ps.Snapshot >= 0 {
				from++
			}
		}
		t.Logf("c's last takeovers: %d of %d partitions from a snapshot", from, partitions)
	}
}

func testNonOwnerRefuses(t *testing.T, newProvider NewProvider) {
	p, reopen := newProvider(t, 4)
	group := groupName(t)
	a := joinGroup(t, p, group, "a")
	b := joinGroup(t, reopen(), group, "b")
	require.Eventually(t, func() bool {
		return len(a.repo.Owned()) > 0 && len(b.repo.Owned()) > 0 && len(a.repo.Owned())+len(b.repo.Owned()) == 4
	}, timeout(t), pollEvery, "both instances serve partitions")

	// An id that b serves.
	var id string
	for i := 0; ; i++ {
		id = fmt.Sprintf("acct-%d", i)
		if slices.Contains(b.repo.Owned(), b.repo.PartitionOf(id)) {
			break
		}
	}
	_, err := a.repo.Create(t.Context(), id, Open("o"))
	var pe *repository.PartitionError
	require.ErrorAs(t, err, &pe)
	assert.ErrorIs(t, err, provider.ErrNotOwner)
	assert.Equal(t, id, pe.AggregateID)
	assert.Equal(t, b.repo.PartitionOf(id), pe.Partition)
	_, _, err = a.repo.Get(id)
	assert.ErrorIs(t, err, provider.ErrNotOwner)

	res, err := b.repo.Create(t.Context(), id, Open("o"))
	require.NoError(t, err)
	assert.Equal(t, uint64(1), res.Version)

	owners, err := a.repo.Owners(t.Context())
	require.NoError(t, err)
	assert.Equal(t, "addr-b", owners[pe.Partition])
	for _, part := range a.repo.Owned() {
		assert.Equal(t, "addr-a", owners[part])
	}
}
