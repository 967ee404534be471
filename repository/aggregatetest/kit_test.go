package aggregatetest_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/repository"
	"github.com/rehydrate/rehydrate/repository/aggregatetest"
	rt "github.com/rehydrate/rehydrate/repository/repositorytest"
)

func accounts(t testing.TB) *aggregatetest.Kit[rt.Account] {
	return aggregatetest.NewKit[rt.Account](t, rt.Registry(t),
		repository.On(func(a *rt.Account, e rt.Opened) { a.Owner = e.Owner }),
		repository.On(func(a *rt.Account, e rt.Deposited) { a.Balance += e.Amount }),
		repository.Deletes[rt.Closed]())
}

func nothing(rt.Account) ([]any, error) { return nil, nil }

func TestKitScenarios(t *testing.T) {
	kit := accounts(t)
	kit.Given("a", rt.Opened{Owner: "ada"}).When(rt.Deposit(5, 7)).Then(rt.Deposited{Amount: 5}, rt.Deposited{Amount: 7})
	kit.Given("new").WhenCreate(rt.Open("bob")).Then(rt.Opened{Owner: "bob"})
	kit.Given("a", rt.Opened{Owner: "ada"}, rt.Closed{}).When(rt.Deposit(1)).ThenError(repository.ErrNotFound)
	kit.Given("a", rt.Opened{Owner: "ada"}).When(rt.Deposit(0)).ThenError(event.ErrInvalid)
	kit.Given("a", rt.Opened{Owner: "ada"}).When(nothing).ThenNoEvents()
	kit.Given("a", rt.Opened{Owner: "ada"}).WhenCreate(rt.Open("again")).ThenError(repository.ErrExists)
	kit.Given("none").When(rt.Deposit(1)).ThenError(repository.ErrNotFound)
	kit.Given("a", rt.Opened{Owner: "ada"}).When(rt.Deposit(1), repository.ExpectVersion(3)).ThenError(repository.ErrConcurrency)
}

// recorder is a testing.TB that keeps what a failing expectation says.
type recorder struct {
	testing.TB
	errors []string
}

func (r *recorder) Helper() {}
func (r *recorder) Errorf(format string, args ...any) {
	r.errors = append(r.errors, fmt.Sprintf(format, args...))
}

func TestKitFailureMessages(t *testing.T) {
	for _, tc := range []struct {
		name string
		run  func(*aggregatetest.Kit[rt.Account])
		want string
	}{
		{"other events", func(k *aggregatetest.Kit[rt.Account]) {
			k.Given("a", rt.Opened{Owner: "ada"}).When(rt.Deposit(5)).Then(rt.Deposited{Amount: 6})
		}, "scenario a: given [Opened]: want events:\n  1. Deposited{Amount:6}\ngot:\n  1. Deposited{Amount:5}"},
		{"events where none", func(k *aggregatetest.Kit[rt.Account]) {
			k.Given("a", rt.Opened{Owner: "ada"}).When(rt.Deposit(5)).ThenNoEvents()
		}, "want events:\n  (none)\ngot:\n  1. Deposited{Amount:5}"},
		{"error where events", func(k *aggregatetest.Kit[rt.Account]) {
			k.Given("a", rt.Opened{Owner: "ada"}, rt.Closed{}).When(rt.Deposit(5)).Then(rt.Deposited{Amount: 5})
		}, "given [Opened Closed]: want events:\n  1. Deposited{Amount:5}\ngot error: repository: aggregate not found: a was deleted at version 2"},
		{"events where an error", func(k *aggregatetest.Kit[rt.Account]) {
			k.Given("a", rt.Opened{Owner: "ada"}).When(rt.Deposit(5)).ThenError(repository.ErrNotFound)
		}, "want error repository: aggregate not found\ngot events:\n  1. Deposited{Amount:5}"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := &recorder{TB: t}
			tc.run(accounts(rec))
			if assert.Len(t, rec.errors, 1) {
				assert.Contains(t, rec.errors[0], tc.want)
				t.Logf("the kit says:\n%s", rec.errors[0])
			}
		})
	}
}
