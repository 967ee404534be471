// Package repository keeps a service's aggregates in memory, restored from an
// event log at start-up and changed by commands whose events are appended to
// the log, and acknowledged, before memory changes.
//
// An aggregate is a plain Go type; each event type's effect on it is a typed
// handler:
//
//	type User struct{ FirstName, LastName string }
//
//	reg := event.NewRegistry()
//	_ = event.Register[UserCreated](reg, "UserCreated")
//	_ = event.Register[UserDeleted](reg, "UserDeleted")
//
//	users, err := repository.New[User](p, reg,
//		repository.On(func(u *User, e UserCreated) { u.FirstName, u.LastName = e.FirstName, e.LastName }),
//		repository.Deletes[UserDeleted](),
//	)
//	stats, err := users.Restore(ctx) // every partition, up to the end offsets at start
//	res, err := users.Create(ctx, id, func(User) ([]any, error) {
//		return []any{UserCreated{FirstName: "Ada", LastName: "Lovelace"}}, nil
//	})
//
// # Guarantees
//
//   - Restore reads every partition up to the end offsets captured when it
//     starts, applying partitions in parallel and each in offset order. It
//     fails, naming partition and offset, on an undecodable record, an
//     unregistered type (unless WithSkipUnknownTypes), a version gap or a read
//     error; until it succeeds nothing is served (ErrNotReady).
//   - Commands for one aggregate run one at a time; different aggregates run
//     in parallel. A command's events are validated, versioned (previous + 1),
//     encoded, appended, and applied only after the log acknowledged all of
//     them. On any error memory is unchanged; provider.ErrOutcomeUnknown says
//     the events may have been written, and the aggregate then takes no
//     command until the repository has read its partition to find out.
//   - Restore and Follow skip an event whose version is not newer than its
//     aggregate's (a duplicate), and count it.
//
// # One writer per topic
//
// A Repository assumes it is the only writer of its topic's aggregates. A
// second instance may Restore and Follow to stay current as a standby, but
// must not execute commands while the first does; Follow reports the obvious
// misuse with ErrConflictingWriter.
package repository
