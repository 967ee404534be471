package repository_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/provider"
	"github.com/rehydrate/rehydrate/provider/memory"
	"github.com/rehydrate/rehydrate/repository"
	"github.com/rehydrate/rehydrate/snapshot"
)

type User struct {
	FirstName, LastName string
}

type UserCreated struct {
	FirstName string `json:"first_name"`
	LastName  string `json:"last_name"`
}

type UserRenamed struct {
	FirstName string `json:"first_name"`
}

type UserDeleted struct{}

func usersRegistry() *event.Registry {
	reg := event.NewRegistry()
	for _, err := range []error{
		event.Register[UserCreated](reg, "UserCreated"),
		event.Register[UserRenamed](reg, "UserRenamed"),
		event.Register[UserDeleted](reg, "UserDeleted"),
	} {
		if err != nil {
			panic(err)
		}
	}
	return reg
}

func newUsers(p *memory.Provider, opts ...repository.Option) *repository.Repository[User] {
	users, err := repository.New[User](p, usersRegistry(), append([]repository.Option{
		repository.On(func(u *User, e UserCreated) { u.FirstName, u.LastName = e.FirstName, e.LastName }),
		repository.On(func(u *User, e UserRenamed) { u.FirstName = e.FirstName }),
		repository.Deletes[UserDeleted](),
	}, opts...)...)
	if err != nil {
		panic(err)
	}
	return users
}

func ExampleRepository_Execute() {
	ctx := context.Background()
	log, _ := memory.New(6)
	users := newUsers(log)
	if _, err := users.Restore(ctx); err != nil {
		panic(err)
	}

	_, err := users.Create(ctx, "ada", func(User) ([]any, error) {
		return []any{UserCreated{FirstName: "Ada", LastName: "Byron"}}, nil
	})
	fmt.Println("create:", err)

	rename := func(u User) ([]any, error) {
		if u.FirstName == "Augusta" {
			return nil, nil // nothing changes, nothing is appended
		}
		return []any{UserRenamed{FirstName: "Augusta"}}, nil
	}
	res, err := users.Execute(ctx, "ada", rename, repository.ExpectVersion(1))
	fmt.Println("rename: version", res.Version, err)

	_, err = users.Execute(ctx, "ada", rename, repository.ExpectVersion(1))
	var conflict *repository.ConcurrencyError
	fmt.Println("stale rename:", errors.As(err, &conflict), conflict.Actual)

	u, version, _ := users.Get("ada")
	fmt.Printf("%s %s at version %d\n", u.FirstName, u.LastName, version)
	// Output:
	// create: <nil>
	// rename: version 2 <nil>
	// stale rename: true 2
	// Augusta Byron at version 2
}

func ExampleRepository_Restore() {
	ctx := context.Background()
	log, _ := memory.New(6)
	writer := newUsers(log)
	_, _ = writer.Restore(ctx)
	for _, id := range []string{"ada", "grace", "edsger"} {
		_, _ = writer.Create(ctx, id, func(User) ([]any, error) {
			return []any{UserCreated{FirstName: id}}, nil
		})
	}
	_, _ = writer.Execute(ctx, "edsger", func(User) ([]any, error) { return []any{UserDeleted{}}, nil })

	// A new instance rebuilds the same state from the log.
	restarted := newUsers(log)
	stats, err := restarted.Restore(ctx)
	fmt.Println(stats.Events, "events,", restarted.Len(), "users,", err)
	_, _, err = restarted.Get("edsger")
	fmt.Println(errors.Is(err, repository.ErrNotFound))
	// Output:
	// 4 events, 2 users, <nil>
	// true
}

func ExampleWithGroup() {
	ctx := context.Background()
	log, _ := memory.New(6)
	join := func(name string) *repository.Repository[User] {
		users := newUsers(log, repository.WithGroup(repository.Group{
			Name: "users-writer", Instance: name, Address: "http://" + name + ":4000",
		}))
		if _, err := users.Restore(ctx); err != nil { // joins, restores its partitions
			panic(err)
		}
		return users
	}
	a := join("a")
	fmt.Println("a alone serves", len(a.Owned()), "partitions")
	_, _ = a.Create(ctx, "ada", func(User) ([]any, error) { return []any{UserCreated{FirstName: "Ada"}}, nil })

	b := join("b") // the group moves some partitions from a to b
	for len(b.Owned()) < 3 {
		time.Sleep(time.Millisecond) // a gives them up first, then b restores them
	}
	fmt.Println("a and b serve", len(a.Owned()), "and", len(b.Owned()))

	// The instance that does not own ada's partition refuses, and says who does.
	serving, other := a, b
	if _, _, err := a.Get("ada"); errors.Is(err, provider.ErrNotOwner) {
		serving, other = b, a
	}
	_, _, err := other.Get("ada")
	owners, _ := other.Owners(ctx)
	fmt.Println(errors.Is(err, provider.ErrNotOwner), owners[other.PartitionOf("ada")] != "")
	u, v, _ := serving.Get("ada") // restored by whichever owns it
	fmt.Println(u.FirstName, "at version", v)

	_ = serving.Close() // leaves the group: the other takes everything over
	for len(other.Owned()) < 6 {
		time.Sleep(time.Millisecond) // the takeover restores in the background
	}
	fmt.Println("the other serves", len(other.Owned()), "partitions")
	// Output:
	// a alone serves 6 partitions
	// a and b serve 3 and 3
	// true true
	// Ada at version 1
	// the other serves 6 partitions
}

// A restart with snapshots reads the snapshot of each partition and only the
// events after it.
func ExampleWithSnapshots() {
	ctx := context.Background()
	log, _ := memory.New(2)
	snapshots, _ := memory.New(2) // on Kafka: a compacted topic, snapshot.TopicName(topic)
	store, err := snapshot.NewStore(snapshots)
	if err != nil {
		panic(err)
	}
	withSnapshots := repository.WithSnapshots(store, repository.Snapshots{StateVersion: 1})

	users := newUsers(log, withSnapshots)
	if _, err := users.Restore(ctx); err != nil {
		panic(err)
	}
	for _, id := range []string{"ada", "alan", "grace"} {
		if _, err := users.Create(ctx, id, func(User) ([]any, error) {
			return []any{UserCreated{FirstName: id}}, nil
		}); err != nil {
			panic(err)
		}
	}
	if err := users.Snapshot(ctx); err != nil { // as on SIGTERM
		panic(err)
	}
	_, _ = users.Execute(ctx, "ada", func(User) ([]any, error) {
		return []any{UserRenamed{FirstName: "Augusta Ada"}}, nil
	})

	restarted := newUsers(log, withSnapshots)
	stats, err := restarted.Restore(ctx)
	if err != nil {
		panic(err)
	}
	ada, version, _ := restarted.Get("ada")
	fmt.Println(ada.FirstName, version)
	fmt.Println("events read:", stats.Events)
	for _, p := range stats.Partitions {
		fmt.Printf("partition %d from the snapshot at offset %d\n", p.Partition, p.Snapshot)
	}
	// Output:
	// Augusta Ada 2
	// events read: 1
	// partition 0 from the snapshot at offset 2
	// partition 1 from the snapshot at offset 1
}

// A reader (a projection) starts from the writer's snapshots: it gets the
// aggregates they hold and reads each partition's events from Start.
func ExampleReadSnapshots() {
	ctx := context.Background()
	log, _ := memory.New(2)
	snapshots, _ := memory.New(2)
	store, err := snapshot.NewStore(snapshots)
	if err != nil {
		panic(err)
	}
	cfg := repository.Snapshots{StateVersion: 1}
	writer := newUsers(log, repository.WithSnapshots(store, cfg))
	if _, err := writer.Restore(ctx); err != nil {
		panic(err)
	}
	for _, id := range []string{"ada", "alan", "grace"} {
		if _, err := writer.Create(ctx, id, func(User) ([]any, error) {
			return []any{UserCreated{FirstName: id}}, nil
		}); err != nil {
			panic(err)
		}
	}
	if err := writer.Snapshot(ctx); err != nil {
		panic(err)
	}

	ps, err := log.Partitions(ctx)
	if err != nil {
		panic(err)
	}
	stats, err := repository.ReadSnapshots(ctx, log, usersRegistry(), store, cfg, ps,
		func(partition int32, u repository.SnapshotEntry[User]) error {
			fmt.Printf("partition %d: %s v%d %s\n", partition, u.ID, u.Version, u.State.FirstName)
			return nil
		})
	if err != nil {
		panic(err)
	}
	for _, p := range stats {
		fmt.Printf("partition %d: read from offset %d\n", p.Partition, p.Start)
	}
	// Output:
	// partition 0: alan v1 alan
	// partition 0: grace v1 grace
	// partition 1: ada v1 ada
	// partition 0: read from offset 2
	// partition 1: read from offset 1
}
