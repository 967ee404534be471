package kafkagroup

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"
)

func TestParseTxID(t *testing.T) {
	for _, inst := range []string{"pod-1", "a", "writer-7-b", "0"} {
		for lane, txid := range TxIDs("orders-writers", inst, 3) {
			gotInst, gotLane, ok := parseTxID("orders-writers", txid)
			if !ok || gotInst != inst || gotLane != lane {
				t.Errorf("%q: parsed %q, %d, %v; want %q, %d", txid, gotInst, gotLane, ok, inst, lane)
			}
		}
	}
	for _, txid := range []string{"", "orders-writers", "orders-writers-", "orders-writers--1", "orders-writers-pod",
		"orders-writers-pod-", "orders-writers-pod-x", "orders-writers-pod-01", "other-pod-1", "orders-pod-1"} {
		if inst, lane, ok := parseTxID("orders-writers", txid); ok {
			t.Errorf("%q parsed as %q, %d", txid, inst, lane)
		}
	}
}

func TestStaleTxIDs(t *testing.T) {
	const g = "g"
	for _, tc := range []struct {
		name      string
		lanes     int
		committed map[int32]string
		members   []Assignment
		want      []string
	}{
		{name: "a dead instance: every lane of it", lanes: 2,
			committed: map[int32]string{0: "g-dead-1", 1: "g-self-0"},
			members:   []Assignment{{InstanceID: "self"}},
			want:      []string{"g-dead-0", "g-dead-1"}},
		{name: "a lane above ours: up to it", lanes: 1,
			committed: map[int32]string{0: "g-dead-3"},
			want:      []string{"g-dead-0", "g-dead-1", "g-dead-2", "g-dead-3"}},
		{name: "self is never fenced, member or not", lanes: 2,
			committed: map[int32]string{0: "g-self-0", 1: "g-self-1"}},
		{name: "a static member is live", lanes: 1,
			committed: map[int32]string{0: "g-b-0"},
			members:   []Assignment{{InstanceID: "b"}}},
		{name: "a dynamic member is live by its client id", lanes: 1,
			committed: map[int32]string{0: "g-b-0"},
			members:   []Assignment{{ClientID: ClientID("rehydrate", "b", "http://b:4000")}}},
		{name: "another group's, a plain commit's, a lane beyond the bound: ignored", lanes: 1,
			committed: map[int32]string{0: "h-dead-0", 1: "", 2: "some consumer's metadata", 3: "g-dead-64"}},
		{name: "several, sorted", lanes: 1,
			committed: map[int32]string{0: "g-z-0", 1: "g-a-0", 2: "g-m-0", 3: "g-a-0"},
			members:   []Assignment{{InstanceID: "m"}},
			want:      []string{"g-a-0", "g-z-0"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := StaleTxIDs(g, "self", tc.lanes, tc.committed, tc.members)
			if !slices.Equal(got, tc.want) {
				t.Errorf("got %q, want %q", got, tc.want)
			}
		})
	}
}

// initClient is a Client that records the transactional ids it initialises
// and fails those in refuse.
type initClient struct {
	*fakeClient
	mu     sync.Mutex
	inits  []string
	refuse map[string]bool
}

var errInit = errors.New("CONCURRENT_TRANSACTIONS")

func (c *initClient) NewProducer(ctx context.Context, txid string) (Producer, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.inits = append(c.inits, txid)
	if c.refuse[txid] {
		return nil, errInit
	}
	return c.fakeClient.NewProducer(ctx, txid)
}

func (c *initClient) initialised() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.inits)
}

func testLeavers(c Client, committed map[int32]string, members []Assignment) *Leavers {
	return &Leavers{Group: "g", Instance: "self", Lanes: 2, Client: c,
		Committed: func(context.Context, []int32) (map[int32]string, error) { return committed, nil },
		Members:   func(context.Context) ([]Assignment, error) { return members, nil },
		Log:       slog.New(slog.NewTextHandler(io.Discard, nil))}
}

// TestLeaversFence: every stale transactional id is initialised, one that
// fails does not stop the others, and the error names it.
func TestLeaversFence(t *testing.T) {
	c := &initClient{fakeClient: newFakeClient(), refuse: map[string]bool{"g-a-0": true}}
	lv := testLeavers(c, map[int32]string{0: "g-a-1", 1: "g-b-0", 2: "g-live-0"}, []Assignment{{InstanceID: "live"}})
	fenced, err := lv.Fence(t.Context(), []int32{0, 1, 2})
	if !errors.Is(err, errInit) {
		t.Fatalf("error %v, want one wrapping %v", err, errInit)
	}
	if want := []string{"g-a-1", "g-b-0", "g-b-1"}; !slices.Equal(fenced, want) {
		t.Errorf("fenced %q, want %q", fenced, want)
	}
	if want := []string{"g-a-0", "g-a-1", "g-b-0", "g-b-1"}; !slices.Equal(c.initialised(), want) {
		t.Errorf("initialised %q, want %q", c.initialised(), want)
	}
}

// TestAwaitStableFencesTheLeavers: partitions that stay unstable (a dead
// instance's transaction is open) become stable once AwaitStable has
// fenced that instance, after FenceAfter, with every partition's metadata
// read; without leavers it waits on.
func TestAwaitStableFencesTheLeavers(t *testing.T) {
	c := &initClient{fakeClient: newFakeClient()}
	lv := testLeavers(c, map[int32]string{3: "g-dead-0"}, nil)
	var asked []int32
	committed := lv.Committed
	lv.Committed = func(ctx context.Context, ids []int32) (map[int32]string, error) {
		asked = ids
		return committed(ctx, ids)
	}
	stable := func(context.Context) (bool, error) { return len(c.initialised()) > 0, nil }
	own := New("test", 4, time.Second)
	own.Assign([]int32{0})

	start := time.Now()
	if err := own.AwaitStable(t.Context(), []int32{0}, stable, lv); err != nil {
		t.Fatal(err)
	}
	if waited := time.Since(start); waited < FenceAfter {
		t.Errorf("fenced after %v, before FenceAfter (%v)", waited, FenceAfter)
	}
	if want := []string{"g-dead-0", "g-dead-1"}; !slices.Equal(c.initialised(), want) {
		t.Errorf("initialised %q, want %q", c.initialised(), want)
	}
	if want := []int32{0, 1, 2, 3}; !slices.Equal(asked, want) {
		t.Errorf("read the metadata of %v, want every partition %v", asked, want)
	}

	ctx, cancel := context.WithTimeout(t.Context(), 2*FenceAfter)
	defer cancel()
	if err := own.AwaitStable(ctx, []int32{0}, func(context.Context) (bool, error) { return false, nil }, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("without leavers: %v, want the deadline", err)
	}
}
