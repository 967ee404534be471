package repositorytest

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/rehydrate/rehydrate/provider"
	"github.com/rehydrate/rehydrate/repository"
)

// The ledger's check, on states made by hand: what it must accept and
// what it must refuse.
func TestLedgerCheck(t *testing.T) {
	unknown := fmt.Errorf("timeout: %w", provider.ErrOutcomeUnknown)
	refused := fmt.Errorf("refused: %w", provider.ErrUnavailable)
	var l Ledger
	l.Record("a", []any{Opened{Owner: "ada"}}, repository.Result{Version: 1}, nil)
	l.Record("a", []any{Deposited{Amount: 10}, Deposited{Amount: 11}}, repository.Result{Version: 3}, nil)
	l.Record("a", []any{Deposited{Amount: 20}, Deposited{Amount: 21}}, repository.Result{}, unknown)
	l.Record("a", []any{Deposited{Amount: 30}}, repository.Result{}, refused)
	l.Record("a", []any{Deposited{Amount: 40}}, repository.Result{}, fmt.Errorf("%w: %w", repository.ErrUnresolved, unknown))
	l.Record("b", []any{Opened{Owner: "bob"}}, repository.Result{Version: 1}, nil)
	l.Record("b", []any{Closed{}}, repository.Result{Version: 2}, nil)
	assert.Equal(t, 4, l.Acknowledged())
	assert.Equal(t, 1, l.Unknown())
	assert.Equal(t, 2, l.Failed(), "the refused one and the unresolved one")

	a, b := l.accounts["a"], l.accounts["b"]
	acct := func(history ...int64) Account {
		var sum int64
		for _, h := range history {
			sum += h
		}
		return Account{Owner: "ada", Balance: sum, History: history}
	}
	for _, tc := range []struct {
		name    string
		state   Account
		version uint64
		err     error
		problem string // "" for a state the ledger accepts
	}{
		{"the unknown command not written", acct(10, 11), 3, nil, ""},
		{"the unknown command written", acct(10, 11, 20, 21), 5, nil, ""},
		{"an acknowledged event lost", acct(10), 2, nil, "acknowledged up to version 3"},
		{"acknowledged events swapped", acct(11, 10), 3, nil, "version 2 holds deposit 11, acknowledged 10"},
		{"an acknowledged deposit changed", acct(10, 12), 3, nil, "version 3 holds deposit 12, acknowledged 11"},
		{"the unknown command in part", acct(10, 11, 21), 4, nil, "applied in part"},
		{"the unknown command out of order", acct(10, 11, 21, 20), 5, nil, "not applied whole and in order"},
		{"a failed command applied", acct(10, 11, 30), 4, nil, "deposit 30 of a failed command was applied"},
		{"a wrong balance", Account{Owner: "ada", Balance: 99, History: []int64{10, 11}}, 3, nil, "the model"},
		{"a wrong owner", Account{Owner: "eve", Balance: 21, History: []int64{10, 11}}, 3, nil, "the model"},
		{"gone", Account{}, 0, repository.ErrNotFound, "Get fails"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			problem := a.check(tc.state, tc.version, tc.err)
			if tc.problem == "" {
				assert.Empty(t, problem)
				return
			}
			assert.Contains(t, problem, tc.problem)
		})
	}
	assert.Empty(t, b.check(Account{}, 0, repository.ErrNotFound), "closed: gone")
	assert.Contains(t, b.check(Account{Owner: "bob"}, 1, nil), "want it gone")
}
