package kafkagroup

import (
	"errors"
	"testing"
	"time"
)

// TestFinishAll: a refused record spoils its whole transaction; who was at
// fault is certain only in a transaction of one, so every append of a
// larger one runs again alone, once; a lane that must replace its producer
// first runs nothing again.
func TestFinishAll(t *testing.T) {
	refused, spoiled := errors.New("refused"), errors.New("transaction aborted")
	batch := func(n int) []*Append {
		b := make([]*Append, n)
		for i := range b {
			b[i] = &Append{done: make(chan result, 1)}
		}
		return b
	}
	outcome := Outcome{Err: spoiled, Culprits: map[int]error{1: refused}}
	errOf := func(a *Append) error {
		select {
		case r := <-a.done:
			return r.err
		default:
			return nil // not finished
		}
	}
	tab := New("test", 1, time.Second)

	three := batch(3)
	again := tab.finishAll(three, outcome, true)
	if len(again) != 3 {
		t.Fatalf("a transaction of three with a culprit: %d to run again, want 3 (the culprit is not certain)", len(again))
	}
	for i, a := range three {
		if err := errOf(a); err != nil || !a.Retried {
			t.Errorf("append %d: finished with %v, retried %v; want held for a re-run", i, err, a.Retried)
		}
	}

	one := batch(1)
	if again := tab.finishAll(one, Outcome{Err: spoiled, Culprits: map[int]error{0: refused}}, true); len(again) != 0 || errOf(one[0]) != refused {
		t.Errorf("alone, the culprit is certain: want it finished with its refusal")
	}
	if again := tab.finishAll(three[1:2], Outcome{Err: spoiled, Culprits: map[int]error{0: refused}}, true); len(again) != 0 || errOf(three[1]) != refused {
		t.Errorf("re-run alone: want the culprit finished with its refusal")
	}

	broken := batch(3)
	if again := tab.finishAll(broken, outcome, false); len(again) != 0 {
		t.Fatalf("rerun false: %d to run again, want 0", len(again))
	}
	for i, want := range []error{spoiled, refused, spoiled} {
		if got := errOf(broken[i]); got != want {
			t.Errorf("rerun false, append %d: %v, want %v", i, got, want)
		}
	}
}
