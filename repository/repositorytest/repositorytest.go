// Package repositorytest runs the repository's behavioural tests on any
// provider: the memory provider runs them in package repository, the Kafka
// provider against kfake or a real broker. Its audience is a provider's
// implementer and this repository's suites (the fixtures: Account, Ledger,
// Registry, …); a service testing its own commands uses package
// aggregatetest.
package repositorytest

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/provider"
	"github.com/rehydrate/rehydrate/repository"
)

// NewProvider returns a provider on a new, empty topic of the given
// partitions, and a function that returns another provider on the same topic
// (a second service instance). The caller closes them when the test ends.
type NewProvider func(t *testing.T, partitions int) (p provider.Provider, reopen func() provider.Provider)

// Account is the aggregate the suite uses.
type Account struct {
	Owner   string
	Balance int64
	History []int64 // every deposit, to make order matter
}

// Clone copies History so callers never share it with the repository.
func (a Account) Clone() Account {
	a.History = append([]int64(nil), a.History...)
	return a
}

// Opened, Deposited and Closed are the suite's events.
type (
	Opened    struct{ Owner string }
	Deposited struct{ Amount int64 }
	Closed    struct{}
)

// Validate refuses empty deposits.
func (d Deposited) Validate() error {
	if d.Amount == 0 {
		return errors.New("amount must not be zero")
	}
	return nil
}

// Registry returns the suite's event registry.
func Registry(t testing.TB) *event.Registry {
	reg := event.NewRegistry()
	require.NoError(t, event.Register[Opened](reg, "Opened"))
	require.NoError(t, event.Register[Deposited](reg, "Deposited", event.WithTypeCodec(event.JSON)))
	require.NoError(t, event.Register[Closed](reg, "Closed"))
	return reg
}

// NewRepository returns a repository of accounts on p, not yet restored.
func NewRepository(t testing.TB, p provider.Provider, opts ...repository.Option) *repository.Repository[Account] {
	opts = append([]repository.Option{
		repository.On(func(a *Account, e Opened) { a.Owner = e.Owner }),
		repository.On(func(a *Account, e Deposited) {
			a.Balance += e.Amount
			a.History = append(a.History[:len(a.History):len(a.History)], e.Amount)
		}),
		repository.Deletes[Closed](),
	}, opts...)
	r, err := repository.New[Account](p, Registry(t), opts...)
	require.NoError(t, err)
	return r
}

// Restored returns a restored repository of accounts on p.
func Restored(t testing.TB, p provider.Provider, opts ...repository.Option) *repository.Repository[Account] {
	r := NewRepository(t, p, opts...)
	_, err := r.Restore(context.Background())
	require.NoError(t, err)
	return r
}

// Open, Deposit and Close are the suite's commands.
func Open(owner string) repository.Command[Account] {
	return func(Account) ([]any, error) { return []any{Opened{Owner: owner}}, nil }
}

// Deposit deposits each amount as one event.
func Deposit(amounts ...int64) repository.Command[Account] {
	return func(Account) ([]any, error) {
		out := make([]any, len(amounts))
		for i, a := range amounts {
			out[i] = Deposited{Amount: a}
		}
		return out, nil
	}
}

// Close closes the account.
func Close() repository.Command[Account] {
	return func(Account) ([]any, error) { return []any{Closed{}}, nil }
}

// Run runs the suite.
func Run(t *testing.T, newProvider NewProvider) {
	t.Run("RestoredEqualsLive", func(t *testing.T) { testRestoredEqualsLive(t, newProvider) })
	t.Run("OneOfRacingExpectedVersionsWins", func(t *testing.T) { testRacingExpectedVersions(t, newProvider) })
	t.Run("FollowerConverges", func(t *testing.T) { testFollowerConverges(t, newProvider) })
	t.Run("SeveralAggregateTypesShareATopic", func(t *testing.T) { testSeveralTypes(t, newProvider) })
}

const pollEvery = 20 * time.Millisecond

func timeout(t *testing.T) time.Duration {
	if d, ok := t.Deadline(); ok {
		return min(time.Until(d)/2, time.Minute)
	}
	return time.Minute
}

type states map[string]struct {
	state   Account
	version uint64
}

func stateOf(r *repository.Repository[Account]) states {
	s := states{}
	r.Range(func(id string, a Account, v uint64) bool {
		s[id] = struct {
			state   Account
			version uint64
		}{a, v}
		return true
	})
	return s
}

// testRestoredEqualsLive is the property the repository exists for: random
// commands from many goroutines, then the live repository, the log and a
// fresh repository restored from it hold what was acknowledged (a Ledger,
// which folds the acknowledged events itself), and the restore equals the
// live one, aggregate by aggregate.
func testRestoredEqualsLive(t *testing.T, newProvider NewProvider) {
	for _, seed := range []uint64{1, 2, 3} {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			p, reopen := newProvider(t, 4)
			live := Restored(t, p)
			var wg sync.WaitGroup
			var l Ledger
			ok := runCommands(t, live, seed, 8, 40, &wg, &l)
			wg.Wait()
			require.Positive(t, ok.Load())

			l.Check(t, live)
			l.CheckLog(t, reopen())
			restored := Restored(t, reopen())
			l.Check(t, restored)
			assert.Equal(t, stateOf(live), stateOf(restored))
			assert.Equal(t, live.Len(), restored.Len())
		})
	}
}

// runCommands starts random commands on r: workers goroutines run
// commandsEach each, on 30 accounts, with deposits of distinct amounts
// (some invalid), recording each in l. It returns the count of those that
// succeeded, final once wg is done.
func runCommands(t *testing.T, r *repository.Repository[Account], seed uint64, workers, commandsEach int, wg *sync.WaitGroup, l *Ledger) *atomic.Int64 {
	const accounts = 30
	var ok atomic.Int64
	for w := range workers {
		rng := rand.New(rand.NewPCG(seed, uint64(w)))
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), timeout(t))
			defer cancel()
			for range commandsEach {
				id := fmt.Sprintf("acct-%d", rng.IntN(accounts))
				var events []any
				var res repository.Result
				var err error
				switch n := rng.IntN(10); {
				case n < 2:
					events = []any{Opened{Owner: "owner-" + id}}
					res, err = r.Create(ctx, id, Open("owner-"+id))
				case n < 9:
					amounts := l.Amounts(1 + rng.IntN(3))
					if rng.IntN(20) == 0 {
						amounts[rng.IntN(len(amounts))] = 0 // invalid: the whole command is refused
					}
					for _, a := range amounts {
						events = append(events, Deposited{Amount: a})
					}
					res, err = r.Execute(ctx, id, Deposit(amounts...))
				default:
					events = []any{Closed{}}
					res, err = r.Execute(ctx, id, Close())
				}
				l.Record(id, events, res, err)
				switch {
				case err == nil:
					ok.Add(1)
				case errors.Is(err, repository.ErrNotFound), errors.Is(err, repository.ErrExists), errors.Is(err, event.ErrInvalid):
				default:
					t.Errorf("command on %s: %v", id, err)
				}
			}
		})
	}
	return &ok
}

func testRacingExpectedVersions(t *testing.T, newProvider NewProvider) {
	p, _ := newProvider(t, 2)
	r := Restored(t, p)
	ctx := t.Context()
	_, err := r.Create(ctx, "acct", Open("ada"))
	require.NoError(t, err)
	const racers = 16
	var wins, conflicts atomic.Int64
	var wg sync.WaitGroup
	for range racers {
		wg.Go(func() {
			_, err := r.Execute(ctx, "acct", Deposit(1), repository.ExpectVersion(1))
			var ce *repository.ConcurrencyError
			switch {
			case err == nil:
				wins.Add(1)
			case errors.As(err, &ce) && errors.Is(err, repository.ErrConcurrency):
				assert.Equal(t, uint64(1), ce.Expected)
				assert.Equal(t, uint64(2), ce.Actual)
				conflicts.Add(1)
			default:
				t.Errorf("unexpected error: %v", err)
			}
		})
	}
	wg.Wait()
	assert.EqualValues(t, 1, wins.Load())
	assert.EqualValues(t, racers-1, conflicts.Load())
	a, v, err := r.Get("acct")
	require.NoError(t, err)
	assert.Equal(t, uint64(2), v)
	assert.Equal(t, int64(1), a.Balance)
}

func testFollowerConverges(t *testing.T, newProvider NewProvider) {
	p, reopen := newProvider(t, 3)
	writer := Restored(t, p)
	ctx := t.Context()
	_, err := writer.Create(ctx, "before", Open("a"))
	require.NoError(t, err)

	follower := Restored(t, reopen())
	followCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- follower.Follow(followCtx) }()

	for i := range 20 {
		id := fmt.Sprintf("after-%d", i)
		_, err := writer.Create(ctx, id, Open(id))
		require.NoError(t, err)
		_, err = writer.Execute(ctx, id, Deposit(int64(i+1)))
		require.NoError(t, err)
	}
	_, err = writer.Execute(ctx, "before", Close())
	require.NoError(t, err)

	want := stateOf(writer)
	require.Eventually(t, func() bool {
		got := stateOf(follower)
		return len(got) == len(want) && fmt.Sprint(got) == fmt.Sprint(want)
	}, timeout(t), pollEvery, "the follower converges on the writer's state")
	_, _, err = follower.Get("before")
	assert.ErrorIs(t, err, repository.ErrNotFound, "follow applies deletions")
	stop()
	err = <-done
	assert.True(t, errors.Is(err, context.Canceled), "follow ends with the context: %v", err)
	assert.False(t, strings.Contains(fmt.Sprint(err), "conflict"))
}
