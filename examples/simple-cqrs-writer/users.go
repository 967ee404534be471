package main

import (
	"log/slog"
	"time"

	"github.com/rehydrate/rehydrate/examples/users"
	"github.com/rehydrate/rehydrate/provider"
	"github.com/rehydrate/rehydrate/repository"
)

// newRepository wires the users aggregate to the event log: one handler per
// event type, UserDeleted deleting.
// With group set, the repository shares the topic with the group's other
// instances.
func newRepository(p provider.Provider, log *slog.Logger, group *repository.Group, progress func(repository.Progress), extra ...repository.Option) (*repository.Repository[users.User], error) {
	reg, err := users.Registry()
	if err != nil {
		return nil, err
	}
	opts := append(userHandlers(),
		repository.WithAggregateType(users.AggregateType),
		repository.WithLogger(log),
	)
	if progress != nil {
		opts = append(opts, repository.WithProgress(time.Second, progress))
	}
	if group != nil {
		opts = append(opts, repository.WithGroup(*group))
	}
	return repository.New[users.User](p, reg, append(opts, extra...)...)
}

// userHandlers is what each event does to a user.
func userHandlers() []repository.Option {
	return []repository.Option{
		repository.On(func(u *users.User, e users.Created) { u.FirstName, u.LastName = e.FirstName, e.LastName }),
		repository.On(func(u *users.User, e users.Modified) { u.FirstName, u.LastName = e.FirstName, e.LastName }),
		repository.Deletes[users.Deleted](),
	}
}

// The commands. Each decides from the current state which events happen;
// the repository validates them (users.ValidateNames, through the payloads'
// Validate methods), appends them and only then applies them.

func createUser(first, last string) repository.Command[users.User] {
	return func(users.User) ([]any, error) {
		return []any{users.Created{FirstName: users.Normalize(first), LastName: users.Normalize(last)}}, nil
	}
}

// updateUser appends nothing when both names are already the ones asked
// for: the command succeeds at the current version, and the log holds only
// changes.
func updateUser(first, last string) repository.Command[users.User] {
	return func(u users.User) ([]any, error) {
		first, last := users.Normalize(first), users.Normalize(last)
		if first == u.FirstName && last == u.LastName {
			return nil, nil
		}
		return []any{users.Modified{FirstName: first, LastName: last}}, nil
	}
}

func deleteUser() repository.Command[users.User] {
	return func(users.User) ([]any, error) { return []any{users.Deleted{}}, nil }
}
