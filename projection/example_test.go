package projection_test

import (
	"context"
	"fmt"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/projection"
	"github.com/rehydrate/rehydrate/provider/memory"
)

type UserCreated struct {
	Name string `msgpack:"name"`
}

// A projection of users into a MemoryStore: each batch's rows and its
// checkpoint commit together, and a second run resumes at the checkpoint.
func ExampleRunner() {
	ctx := context.Background()
	reg := event.NewRegistry()
	_ = event.Register[UserCreated](reg, "UserCreated")
	topic, _ := memory.New(2)
	for i, name := range []string{"ada", "grace", "edsger"} {
		env, _ := reg.NewEnvelope(fmt.Sprint("u", i), 1, UserCreated{Name: name})
		_, _ = topic.Append(ctx, []event.Record{env.Record()})
	}

	store := projection.NewMemoryStore[string]()
	h := event.NewHandlersWith[*projection.MemoryTx[string]](reg)
	_ = event.AddHandlerWith(h, func(_ context.Context, tx *projection.MemoryTx[string], env *event.Envelope, e UserCreated) error {
		tx.Put(env.AggregateID, e.Name)
		return nil
	})
	r, err := projection.New(projection.Config[*projection.MemoryTx[string]]{
		Name: "users", Provider: topic, Store: store, Handler: h, // Mode: consume.Replay
	})
	if err != nil {
		panic(err)
	}
	if err := r.Run(ctx); err != nil {
		panic(err)
	}
	fmt.Println(store.Rows())
	// Output: map[u0:ada u1:grace u2:edsger]
}
