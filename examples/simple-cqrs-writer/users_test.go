package main

import (
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/examples/users"
	"github.com/rehydrate/rehydrate/repository"
	"github.com/rehydrate/rehydrate/repository/aggregatetest"
)

// The users domain as scenarios: given a user's events, when a command
// runs, then these events.
func TestUserCommands(t *testing.T) {
	reg, err := users.Registry()
	require.NoError(t, err)
	kit := aggregatetest.NewKit[users.User](t, reg, userHandlers()...)
	ada := users.Created{FirstName: "Ada", LastName: "Lovelace"}

	kit.Given("u1").WhenCreate(createUser("  Ada ", "Lovelace")).Then(ada)
	kit.Given("u1", ada).WhenCreate(createUser("Ada", "Lovelace")).ThenError(repository.ErrExists)
	kit.Given("u1", ada).When(updateUser("Augusta Ada", "King")).Then(users.Modified{FirstName: "Augusta Ada", LastName: "King"})
	kit.Given("u1", ada).When(updateUser("Ada", " Lovelace")).ThenNoEvents()
	kit.Given("u1", ada).When(updateUser("", "King")).ThenError(event.ErrInvalid)
	kit.Given("u1", ada).When(deleteUser()).Then(users.Deleted{})
	kit.Given("u1", ada, users.Deleted{}).When(updateUser("Ada", "King")).ThenError(repository.ErrNotFound)
	kit.Given("u1", ada).When(updateUser("Ada", "King"), repository.ExpectVersion(2)).ThenError(repository.ErrConcurrency)
}
