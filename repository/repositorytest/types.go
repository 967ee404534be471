package repositorytest

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/provider"
	"github.com/rehydrate/rehydrate/repository"
)

// Profile is a second aggregate type, sharing the suite's topic and
// registry with Account.
type Profile struct{ Name string }

// ProfileNamed is Profile's event.
type ProfileNamed struct{ Name string }

func twoTypes(t *testing.T) *event.Registry {
	reg := Registry(t)
	require.NoError(t, event.Register[ProfileNamed](reg, "ProfileNamed"))
	return reg
}

func accountsOf(t *testing.T, p provider.Provider, reg *event.Registry) *repository.Repository[Account] {
	r, err := repository.New[Account](p, reg,
		repository.On(func(a *Account, e Opened) { a.Owner = e.Owner }),
		repository.On(func(a *Account, e Deposited) { a.Balance += e.Amount }),
		repository.Deletes[Closed](),
		repository.WithAggregateType("account"))
	require.NoError(t, err)
	_, err = r.Restore(context.Background())
	require.NoError(t, err)
	return r
}

func profilesOf(t *testing.T, p provider.Provider, reg *event.Registry) *repository.Repository[Profile] {
	r, err := repository.New[Profile](p, reg,
		repository.On(func(pr *Profile, e ProfileNamed) { pr.Name = e.Name }),
		repository.WithAggregateType("profile"))
	require.NoError(t, err)
	_, err = r.Restore(context.Background())
	require.NoError(t, err)
	return r
}

// testSeveralTypes: two aggregate types on one topic and one registry each
// restore only their own events; an id of one type cannot be created by the
// other; events written without a type (before types) stay readable.
func testSeveralTypes(t *testing.T, newProvider NewProvider) {
	p, reopen := newProvider(t, 2)
	reg := twoTypes(t)
	ctx := t.Context()

	// Written before aggregate types: no aggregate-type header.
	legacy := NewRepository(t, p)
	_, err := legacy.Restore(ctx)
	require.NoError(t, err)
	_, err = legacy.Create(ctx, "old", Open("ada"))
	require.NoError(t, err)

	accounts := accountsOf(t, reopen(), reg)
	profiles := profilesOf(t, reopen(), reg)
	_, err = accounts.Create(ctx, "acct-1", Open("bob"))
	require.NoError(t, err)
	_, err = accounts.Execute(ctx, "acct-1", Deposit(5))
	require.NoError(t, err)
	_, err = profiles.Create(ctx, "prof-1", func(Profile) ([]any, error) { return []any{ProfileNamed{Name: "Bob"}}, nil })
	require.NoError(t, err)

	// Restarted: each restores its own.
	accounts, profiles = accountsOf(t, reopen(), reg), profilesOf(t, reopen(), reg)
	acct, v, err := accounts.Get("acct-1")
	require.NoError(t, err)
	assert.Equal(t, uint64(2), v)
	assert.Equal(t, int64(5), acct.Balance)
	old, _, err := accounts.Get("old")
	require.NoError(t, err, "an event without a type is the typed repository's")
	assert.Equal(t, "ada", old.Owner)
	assert.EqualValues(t, 1, accounts.Stats().Skipped, "the profile's event")
	assert.EqualValues(t, 3, profiles.Stats().Skipped, "the accounts' events, the untyped one included")
	prof, _, err := profiles.Get("prof-1")
	require.NoError(t, err)
	assert.Equal(t, "Bob", prof.Name)
	_, _, err = profiles.Get("acct-1")
	assert.ErrorIs(t, err, repository.ErrNotFound)

	// An id is one type's: the other type cannot create it.
	_, err = profiles.Create(ctx, "acct-1", func(Profile) ([]any, error) { return []any{ProfileNamed{Name: "x"}}, nil })
	require.ErrorIs(t, err, repository.ErrExists)
	assert.ErrorContains(t, err, "type account")
	_, err = accounts.Create(ctx, "prof-1", Open("x"))
	require.ErrorIs(t, err, repository.ErrExists)
	assert.ErrorContains(t, err, "type profile")
	assert.Equal(t, 2, accounts.Len(), "old and acct-1, not the profile's id")
}
