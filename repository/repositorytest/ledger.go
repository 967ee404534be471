package repositorytest

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"reflect"
	"slices"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/provider"
	"github.com/rehydrate/rehydrate/repository"
)

// Ledger is an independent model of a repository of accounts: it records
// what became of each command (acknowledged, unknown outcome, failed) and
// checks a repository, or the log, against it. It folds the acknowledged
// events itself, without the repository's code, so a bug the live
// repository and a restore share (both lose an event, both apply a
// command's events out of order) is found, where comparing a restore with
// the live state finds nothing. Amounts hands out deposits that are
// distinct across the ledger, so that where an event lands is checked, not
// only a balance.
//
// The model is the suite's Account: Opened at version 1, Deposited after
// it (each deposit one event, History in version order), Closed last. A
// Ledger is safe for concurrent use.
type Ledger struct {
	next atomic.Int64 // the last amount handed out

	mu       sync.Mutex
	accounts map[string]*ledgerAccount
	acked    int
	unknown  int
	failed   int
}

type ledgerAccount struct {
	acked   map[uint64]any // version → the event acknowledged there
	unknown [][]any        // the events of each command of unknown outcome: all of them are in the log, or none
	failed  [][]any        // the events of each command that failed with a known outcome: none is in the log
}

// Amounts returns n amounts for deposits, distinct from every other the
// ledger handed out.
func (l *Ledger) Amounts(n int) []int64 {
	last := l.next.Add(int64(n))
	out := make([]int64, n)
	for i := range out {
		out[i] = last - int64(n) + 1 + int64(i)
	}
	return out
}

// Record records what became of a command on account id that raised
// events (Opened, Deposited or Closed values), from what Create or Execute
// returned: with no error, the events are acknowledged at the versions
// ending at res.Version; with provider.ErrOutcomeUnknown (and not
// repository.ErrUnresolved, whose command appended nothing) they are all
// in the log or none is; with any other error none is.
func (l *Ledger) Record(id string, events []any, res repository.Result, err error) {
	if len(events) == 0 {
		return // changes nothing, whatever its outcome
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.accounts == nil {
		l.accounts = map[string]*ledgerAccount{}
	}
	a := l.accounts[id]
	if a == nil {
		a = &ledgerAccount{acked: map[uint64]any{}}
		l.accounts[id] = a
	}
	switch {
	case err == nil:
		for i, e := range events {
			a.acked[res.Version-uint64(len(events)-1-i)] = e
		}
		l.acked++
	case errors.Is(err, provider.ErrOutcomeUnknown) && !errors.Is(err, repository.ErrUnresolved):
		a.unknown = append(a.unknown, events)
		l.unknown++
	default:
		a.failed = append(a.failed, events)
		l.failed++
	}
}

// Acknowledged, Unknown and Failed count the commands recorded with each
// outcome.
func (l *Ledger) Acknowledged() int { l.mu.Lock(); defer l.mu.Unlock(); return l.acked }

// Unknown counts the commands recorded with an unknown outcome.
func (l *Ledger) Unknown() int { l.mu.Lock(); defer l.mu.Unlock(); return l.unknown }

// Failed counts the commands recorded as failed with a known outcome.
func (l *Ledger) Failed() int { l.mu.Lock(); defer l.mu.Unlock(); return l.failed }

// Check fails t unless r holds what the ledger says, account by account:
// every acknowledged event applied at its version, the events of a command
// of unknown outcome all applied (consecutively) or none, none of a failed
// command, no account the ledger never heard of; and, for an account
// without unknown outcomes, exactly the fold of its acknowledged events.
func (l *Ledger) Check(t testing.TB, r *repository.Repository[Account]) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	r.Range(func(id string, _ Account, _ uint64) bool {
		if l.accounts[id] == nil {
			t.Errorf("ledger: the repository holds %s, which no recorded command touched", id)
		}
		return true
	})
	for _, id := range slices.Sorted(maps.Keys(l.accounts)) {
		a := l.accounts[id]
		got, version, err := r.Get(id)
		if problem := a.check(got, version, err); problem != "" {
			t.Errorf("ledger: account %s: %s", id, problem)
		}
	}
}

// check returns what is wrong with an account's state (got at version,
// or err from Get), or "".
func (a *ledgerAccount) check(got Account, version uint64, err error) string {
	last := uint64(0)
	for v := range a.acked {
		last = max(last, v)
	}
	_, closed := a.acked[last].(Closed)
	for _, cmd := range a.unknown {
		if _, ok := cmd[len(cmd)-1].(Closed); ok && errors.Is(err, repository.ErrNotFound) {
			closed = true // a Close of unknown outcome that was written
		}
	}
	switch {
	case closed || len(a.acked) == 0 && errors.Is(err, repository.ErrNotFound):
		// Closed, or only ever refused (or of unknown outcome): gone.
		if !errors.Is(err, repository.ErrNotFound) {
			return fmt.Sprintf("want it gone (closed at version %d, or never opened), Get says version %d, %v", last, version, err)
		}
		return ""
	case err != nil:
		return fmt.Sprintf("acknowledged up to version %d, Get fails: %v", last, err)
	case version < last:
		return fmt.Sprintf("acknowledged up to version %d, the repository is at version %d", last, version)
	}
	// The events at versions 1..version, as the model knows them: an
	// acknowledged one, or one of a command of unknown outcome.
	want := Account{}
	var history []int64
	for v := uint64(1); v <= version; v++ {
		switch e := a.acked[v].(type) {
		case Opened:
			want.Owner = e.Owner
		case Deposited:
			history = append(history, e.Amount)
		case nil:
			switch {
			case len(a.unknown) == 0:
				return fmt.Sprintf("at version %d, but nothing was acknowledged at version %d and no outcome is unknown", version, v)
			case v == 1:
				want.Owner = got.Owner // an Open of unknown outcome that was written
			default:
				history = append(history, -1) // taken from the state below, then checked
			}
		default:
			return fmt.Sprintf("version %d: unexpected event %T", v, e)
		}
	}
	if len(got.History) != len(history) {
		return fmt.Sprintf("at version %d with %d deposits, the model has %d: %v", version, len(got.History), len(history), got.History)
	}
	for i, amount := range history {
		if amount == -1 {
			history[i] = got.History[i]
		} else if got.History[i] != amount {
			return fmt.Sprintf("version %d holds deposit %d, acknowledged %d", i+2, got.History[i], amount)
		}
	}
	// What is not acknowledged is a whole command of unknown outcome.
	for _, cmd := range a.unknown {
		if problem := wholeOrAbsent(got.History, cmd); problem != "" {
			return problem
		}
	}
	for _, cmd := range a.failed {
		for _, e := range cmd {
			if d, ok := e.(Deposited); ok && slices.Contains(got.History, d.Amount) {
				return fmt.Sprintf("deposit %d of a failed command was applied", d.Amount)
			}
		}
	}
	for _, amount := range history {
		want.Balance += amount
	}
	if len(history) > 0 {
		want.History = history
	}
	if !reflect.DeepEqual(want, got) {
		return fmt.Sprintf("the repository holds %+v, the model %+v", got, want)
	}
	return ""
}

// wholeOrAbsent says what is wrong when the deposits of one command are in
// history in part, or out of order.
func wholeOrAbsent(history []int64, cmd []any) string {
	var amounts []int64
	for _, e := range cmd {
		if d, ok := e.(Deposited); ok {
			amounts = append(amounts, d.Amount)
		}
	}
	if len(amounts) == 0 {
		return ""
	}
	at := slices.Index(history, amounts[0])
	if at < 0 {
		for _, x := range amounts {
			if slices.Contains(history, x) {
				return fmt.Sprintf("the command of unknown outcome depositing %v is applied in part: %v", amounts, history)
			}
		}
		return ""
	}
	if at+len(amounts) > len(history) || !slices.Equal(history[at:at+len(amounts)], amounts) {
		return fmt.Sprintf("the command of unknown outcome depositing %v is not applied whole and in order: %v", amounts, history)
	}
	return ""
}

// CheckLog fails t unless the log of p holds every acknowledged event
// exactly once, at its aggregate's version, with its payload; no event of
// a failed command; and no aggregate version twice. It reads every
// partition up to its end offset (read_committed on a Kafka provider: the
// caller waits for the last acknowledged transactions to be visible). It
// returns how many acknowledged events the log lacks (or holds another
// payload for).
func (l *Ledger) CheckLog(t testing.TB, p provider.Provider) (lost int) {
	t.Helper()
	ctx := context.Background()
	ps, err := p.Partitions(ctx)
	if err != nil {
		t.Errorf("ledger: partitions: %v", err)
		return 0
	}
	type key struct {
		id      string
		version uint64
	}
	logged := map[key][]any{}
	reg := Registry(t)
	err = p.Read(ctx, provider.Ranges(ps), 0, func(b provider.Batch) error {
		for _, rec := range b.Records {
			if event.IsControl(rec) {
				continue // a fence left by an unknown outcome's resolution
			}
			env, err := event.ParseRecord(rec)
			if err != nil {
				return err
			}
			payload, err := reg.Decode(&env)
			if err != nil {
				return fmt.Errorf("%s version %d: %w", env.AggregateID, env.Version, err)
			}
			k := key{env.AggregateID, env.Version}
			logged[k] = append(logged[k], reflect.ValueOf(payload).Elem().Interface())
		}
		return nil
	})
	if err != nil {
		t.Errorf("ledger: read the log: %v", err)
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	failed := map[int64]bool{}
	for _, a := range l.accounts {
		for _, cmd := range a.failed {
			for _, e := range cmd {
				if d, ok := e.(Deposited); ok {
					failed[d.Amount] = true
				}
			}
		}
	}
	for k, events := range logged {
		if len(events) > 1 {
			t.Errorf("ledger: %s version %d is in the log %d times: %v", k.id, k.version, len(events), events)
		}
		for _, e := range events {
			if d, ok := e.(Deposited); ok && failed[d.Amount] {
				t.Errorf("ledger: %s version %d: deposit %d of a failed command is in the log", k.id, k.version, d.Amount)
			}
		}
	}
	for _, id := range slices.Sorted(maps.Keys(l.accounts)) {
		for v, want := range l.accounts[id].acked {
			got := logged[key{id, v}]
			if len(got) == 0 || !reflect.DeepEqual(got[0], want) {
				lost++
				t.Errorf("ledger: acknowledged %s version %d %+v, the log holds %v there", id, v, want, got)
			}
		}
	}
	return lost
}
