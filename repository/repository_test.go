package repository_test

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/provider"
	"github.com/rehydrate/rehydrate/provider/memory"
	"github.com/rehydrate/rehydrate/repository"
	rt "github.com/rehydrate/rehydrate/repository/repositorytest"
)

func newMemory(t *testing.T, partitions int) *memory.Provider {
	t.Helper()
	p, err := memory.New(partitions)
	require.NoError(t, err)
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// sharedMemory is the suite's adapter: every instance of a test shares one
// in-process log, as processes share a topic.
func sharedMemory(t *testing.T, partitions int) (provider.Provider, func() provider.Provider) {
	p := newMemory(t, partitions)
	return p, func() provider.Provider { return p }
}

func TestSuiteOnMemory(t *testing.T) { rt.Run(t, sharedMemory) }

func TestGroupSuiteOnMemory(t *testing.T) { rt.RunGroup(t, sharedMemory) }

func TestSnapshotSuiteOnMemory(t *testing.T) { rt.RunSnapshots(t, sharedMemory, sharedMemory) }

// endOffsets returns the log's end offsets, to show that nothing was appended.
func endOffsets(t *testing.T, p provider.Provider) []provider.Partition {
	t.Helper()
	ps, err := p.Partitions(context.Background())
	require.NoError(t, err)
	return ps
}

func TestCommandsAndTheirErrors(t *testing.T) {
	p := newMemory(t, 3)
	r := rt.Restored(t, p)
	ctx := t.Context()

	res, err := r.Create(ctx, "a", rt.Open("ada"))
	require.NoError(t, err)
	assert.Equal(t, uint64(1), res.Version)
	res, err = r.Execute(ctx, "a", rt.Deposit(10, 5), repository.WithMetadata(map[string]string{"correlation-id": "c1"}))
	require.NoError(t, err)
	assert.Equal(t, uint64(3), res.Version)
	require.Len(t, res.Positions, 2)
	require.Len(t, res.Events, 2, "the result carries the appended events")
	for i, env := range res.Events {
		assert.Equal(t, "a", env.AggregateID)
		assert.Equal(t, uint64(2+i), env.Version)
		assert.Equal(t, "Deposited", env.Type)
		assert.Equal(t, "c1", env.Metadata["correlation-id"])
		assert.Equal(t, res.Positions[i], provider.Position{Partition: env.Partition, Offset: env.Offset})
		payload, err := rt.Registry(t).Decode(&env)
		require.NoError(t, err)
		assert.Equal(t, rt.Deposited{Amount: []int64{10, 5}[i]}, *payload.(*rt.Deposited))
	}

	acct, v, err := r.Get("a")
	require.NoError(t, err)
	assert.Equal(t, uint64(3), v)
	assert.Equal(t, rt.Account{Owner: "ada", Balance: 15, History: []int64{10, 5}}, acct)

	before := endOffsets(t, p)
	for _, tc := range []struct {
		name string
		run  func() error
		is   error
		has  string // in the message, where no sentinel says it
	}{
		{"create existing", func() error { _, err := r.Create(ctx, "a", rt.Open("x")); return err }, repository.ErrExists, ""},
		{"change missing", func() error { _, err := r.Execute(ctx, "nobody", rt.Deposit(1)); return err }, repository.ErrNotFound, ""},
		{"expected version", func() error {
			_, err := r.Execute(ctx, "a", rt.Deposit(1), repository.ExpectVersion(2))
			return err
		}, repository.ErrConcurrency, ""},
		{"invalid event", func() error { _, err := r.Execute(ctx, "a", rt.Deposit(0)); return err }, event.ErrInvalid, ""},
		{"unregistered event", func() error {
			_, err := r.Execute(ctx, "a", func(rt.Account) ([]any, error) { return []any{struct{ X int }{}}, nil })
			return err
		}, event.ErrUnknownType, ""},
		{"command error", func() error {
			_, err := r.Execute(ctx, "a", func(rt.Account) ([]any, error) { return nil, errTest })
			return err
		}, errTest, ""},
		{"empty id", func() error { _, err := r.Create(ctx, "", rt.Open("x")); return err }, nil, "repository: empty aggregate id"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.run()
			require.Error(t, err)
			require.True(t, tc.is != nil || tc.has != "", "the case names the error it expects")
			if tc.is != nil {
				assert.ErrorIs(t, err, tc.is)
			}
			assert.ErrorContains(t, err, tc.has)
		})
	}
	assert.Equal(t, before, endOffsets(t, p), "refused commands append nothing")
	acct2, v2, err := r.Get("a")
	require.NoError(t, err)
	assert.Equal(t, acct, acct2)
	assert.Equal(t, v, v2)

	var ce *repository.ConcurrencyError
	_, err = r.Execute(ctx, "a", rt.Deposit(1), repository.ExpectVersion(7))
	require.ErrorAs(t, err, &ce)
	assert.Equal(t, repository.ConcurrencyError{AggregateID: "a", Expected: 7, Actual: 3}, *ce)

	res, err = r.Execute(ctx, "a", func(rt.Account) ([]any, error) { return nil, nil })
	require.NoError(t, err, "a command that raises nothing")
	assert.Equal(t, uint64(3), res.Version)

	_, err = r.Execute(ctx, "a", rt.Close())
	require.NoError(t, err)
	_, _, err = r.Get("a")
	assert.ErrorIs(t, err, repository.ErrNotFound)
	_, err = r.Execute(ctx, "a", rt.Deposit(1))
	assert.ErrorIs(t, err, repository.ErrNotFound, "a deleted aggregate takes no command")
	_, err = r.Create(ctx, "a", rt.Open("again"))
	assert.ErrorIs(t, err, repository.ErrExists, "a deleted id is not created again")
	assert.Equal(t, 0, r.Len())
}

var errTest = errors.New("refused by the command")

func TestGetReturnsACopy(t *testing.T) {
	r := rt.Restored(t, newMemory(t, 1))
	ctx := t.Context()
	_, err := r.Create(ctx, "a", rt.Open("ada"))
	require.NoError(t, err)
	_, err = r.Execute(ctx, "a", rt.Deposit(1))
	require.NoError(t, err)
	acct, _, err := r.Get("a")
	require.NoError(t, err)
	acct.History[0] = 999
	again, _, err := r.Get("a")
	require.NoError(t, err)
	assert.Equal(t, []int64{1}, again.History)
}

func TestNothingServedBeforeRestore(t *testing.T) {
	r := rt.NewRepository(t, newMemory(t, 1))
	_, _, err := r.Get("a")
	assert.ErrorIs(t, err, repository.ErrNotReady)
	_, err = r.Create(t.Context(), "a", rt.Open("x"))
	assert.ErrorIs(t, err, repository.ErrNotReady)
	select {
	case <-r.Ready():
		t.Fatal("ready before restore")
	default:
	}
}

// appendRaw writes records as another writer (or a broken one) would.
func appendRaw(t *testing.T, p provider.Provider, envs ...event.Envelope) {
	t.Helper()
	recs := make([]event.Record, len(envs))
	for i := range envs {
		recs[i] = envs[i].Record()
	}
	_, err := p.Append(context.Background(), recs)
	require.NoError(t, err)
}

func rawEvent(t *testing.T, id string, version uint64, payload any) event.Envelope {
	t.Helper()
	env, err := rt.Registry(t).NewEnvelope(id, version, payload)
	require.NoError(t, err)
	return env
}

func TestRestoreRefusesWhatItCannotApply(t *testing.T) {
	unknown := rawEvent(t, "a", 2, rt.Deposited{Amount: 1})
	unknown.Type = "Withdrawn"
	garbage := rawEvent(t, "a", 2, rt.Deposited{Amount: 1})
	garbage.Payload = []byte("{not json")
	for _, tc := range []struct {
		name  string
		after event.Envelope
		is    error
		has   string // in the message, where no sentinel says it
	}{
		{"unknown type", unknown, event.ErrUnknownType, `"Withdrawn"`},
		{"undecodable payload", garbage, event.ErrMalformed, "aggregate a"},
		{"version gap", rawEvent(t, "a", 3, rt.Deposited{Amount: 1}), nil, "aggregate a: version gap: event version 3 after version 1"},
		{"event after deletion", rawEvent(t, "a", 3, rt.Deposited{Amount: 1}), nil, "aggregate a: event Deposited (version 3) after the aggregate was deleted"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newMemory(t, 2)
			envs := []event.Envelope{rawEvent(t, "a", 1, rt.Opened{Owner: "x"})}
			if tc.name == "event after deletion" {
				envs = append(envs, rawEvent(t, "a", 2, rt.Closed{}))
			}
			appendRaw(t, p, append(envs, tc.after)...)
			r := rt.NewRepository(t, p)
			_, err := r.Restore(t.Context())
			require.Error(t, err)
			if tc.is != nil {
				assert.ErrorIs(t, err, tc.is)
			}
			assert.ErrorContains(t, err, tc.has)
			var re *event.RecordError
			require.ErrorAs(t, err, &re)
			assert.Equal(t, provider.PartitionFor([]byte("a"), 2), re.Partition)
			assert.Equal(t, int64(len(envs)), re.Offset)
			assert.Contains(t, err.Error(), fmt.Sprintf("partition %d offset %d", re.Partition, re.Offset))
			_, _, err = r.Get("a")
			assert.ErrorIs(t, err, repository.ErrNotReady, "no half state is served")
		})
	}
}

func TestRestoreSkipsUnknownTypesOnlyWhenAsked(t *testing.T) {
	p := newMemory(t, 1)
	other := rawEvent(t, "a", 2, rt.Deposited{Amount: 1})
	other.Type = "SomethingElse"
	appendRaw(t, p, rawEvent(t, "a", 1, rt.Opened{Owner: "x"}), other)
	r := rt.NewRepository(t, p, repository.WithSkipUnknownTypes())
	stats, err := r.Restore(t.Context())
	require.NoError(t, err)
	assert.Equal(t, int64(1), stats.Skipped)
	assert.Equal(t, int64(1), stats.Events)
}

func TestRestoreSkipsDuplicatesAndCountsThem(t *testing.T) {
	p := newMemory(t, 1)
	appendRaw(t, p,
		rawEvent(t, "a", 1, rt.Opened{Owner: "x"}),
		rawEvent(t, "a", 2, rt.Deposited{Amount: 5}),
		rawEvent(t, "a", 2, rt.Deposited{Amount: 7}), // a duplicate version: skipped
		rawEvent(t, "a", 3, rt.Deposited{Amount: 1}))
	var last repository.Progress
	r := rt.NewRepository(t, p, repository.WithProgress(0, func(pr repository.Progress) { last = pr }))
	stats, err := r.Restore(t.Context())
	require.NoError(t, err)
	assert.Equal(t, int64(3), stats.Events)
	assert.Equal(t, int64(1), stats.Duplicates)
	assert.Equal(t, 1, stats.Aggregates)
	acct, v, err := r.Get("a")
	require.NoError(t, err)
	assert.Equal(t, uint64(3), v)
	assert.Equal(t, int64(6), acct.Balance)
	assert.Equal(t, int64(4), last.Done)
	assert.Equal(t, int64(4), last.Total)
}

func TestRestoreRefusesARecordInTheWrongPartition(t *testing.T) {
	p := newMemory(t, 2)
	// A key that murmur2 puts in partition 1, written as if to partition 0
	// by a writer with another partitioner.
	key := "k1"
	for provider.PartitionFor([]byte(key), 2) != 1 {
		key += "x"
	}
	env := rawEvent(t, key, 1, rt.Opened{Owner: "x"})
	rec := env.Record()
	rec.Partition = 0
	r := rt.NewRepository(t, &misroutingProvider{Provider: p, rec: rec})
	_, err := r.Restore(t.Context())
	require.ErrorContains(t, err, "partitioner")
}

// misroutingProvider serves one record in partition 0 whatever its key.
type misroutingProvider struct {
	provider.Provider
	rec event.Record
}

func (m *misroutingProvider) Partitions(context.Context) ([]provider.Partition, error) {
	return []provider.Partition{{ID: 0, High: 1}, {ID: 1}}, nil
}

func (m *misroutingProvider) Read(_ context.Context, _ []provider.Range, _ int, fn func(provider.Batch) error) error {
	return fn(provider.Batch{Partition: 0, Records: []event.Record{m.rec}, Next: 1})
}

func TestConflictingWriterIsDetectedByFollow(t *testing.T) {
	p := newMemory(t, 1)
	a := rt.Restored(t, p)
	b := rt.Restored(t, p)
	ctx := t.Context()
	_, err := a.Create(ctx, "x", rt.Open("a"))
	require.NoError(t, err)
	followCtx, stop := context.WithCancel(ctx)
	defer stop()
	done := make(chan error, 1)
	go func() { done <- a.Follow(followCtx) }()
	// b has not seen x: it creates it again, at version 1.
	_, err = b.Create(ctx, "x", rt.Open("b"))
	require.NoError(t, err)
	err = <-done
	assert.ErrorIs(t, err, repository.ErrConflictingWriter)
}

func TestRestoreTwiceIsRefused(t *testing.T) {
	r := rt.Restored(t, newMemory(t, 1))
	_, err := r.Restore(t.Context())
	assert.EqualError(t, err, "repository: Restore called twice")
}

func TestNewRefusesBadHandlers(t *testing.T) {
	p := newMemory(t, 1)
	_, err := repository.New[rt.Account](p, rt.Registry(t),
		repository.On(func(a *rt.Account, e struct{ Unregistered int }) {}))
	assert.ErrorIs(t, err, event.ErrUnknownType)
	_, err = repository.New[rt.Account](p, rt.Registry(t),
		repository.On(func(a *struct{}, e rt.Opened) {}))
	assert.ErrorContains(t, err, "aggregate type")
	_, err = repository.New[rt.Account](nil, rt.Registry(t))
	assert.EqualError(t, err, "repository: nil provider or registry")
	_, err = repository.New[rt.Account](p, nil)
	assert.EqualError(t, err, "repository: nil provider or registry")
}

// Handlers registered with OnEnvelope see the event's envelope, in a
// command as in a restore.
func TestOnEnvelopeSeesTheEnvelope(t *testing.T) {
	type seen struct {
		Versions     []uint64
		Correlations []string
		Offsets      []int64
	}
	p := newMemory(t, 1)
	newRepo := func() *repository.Repository[seen] {
		r, err := repository.New[seen](p, rt.Registry(t),
			repository.OnEnvelope(func(s *seen, env *event.Envelope, _ rt.Opened) {
				s.Versions = append(s.Versions, env.Version)
				s.Correlations = append(s.Correlations, env.Metadata["correlation-id"])
				s.Offsets = append(s.Offsets, env.Offset)
			}),
			repository.On(func(s *seen, e rt.Deposited) {}),
			repository.Deletes[rt.Closed]())
		require.NoError(t, err)
		_, err = r.Restore(t.Context())
		require.NoError(t, err)
		return r
	}
	live := newRepo()
	open := func(seen) ([]any, error) { return []any{rt.Opened{Owner: "ada"}}, nil }
	_, err := live.Create(t.Context(), "a", open, repository.WithMetadata(map[string]string{"correlation-id": "c7"}))
	require.NoError(t, err)
	got, _, err := live.Get("a")
	require.NoError(t, err)
	want := seen{Versions: []uint64{1}, Correlations: []string{"c7"}, Offsets: []int64{0}}
	assert.Equal(t, want, got)
	restored, _, err := newRepo().Get("a")
	require.NoError(t, err)
	assert.Equal(t, want, restored)
}
