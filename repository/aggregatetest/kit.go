package aggregatetest

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/provider/memory"
	"github.com/rehydrate/rehydrate/repository"
)

// Kit tests an aggregate's commands as scenarios: given the events an
// aggregate already has, when a command runs, then these events (or this
// error, or none). Each scenario runs on its own memory provider: the given
// events are appended and restored, as a restart would, then the command
// runs through Execute (When) or Create (WhenCreate), so the handlers, the
// codec and validation all take part.
//
//	kit := aggregatetest.NewKit[User](t, reg, handlers...)
//	kit.Given("ada").WhenCreate(create("Ada")).Then(UserCreated{First: "Ada"})
//	kit.Given("ada", UserCreated{First: "Ada"}).
//		When(rename("Augusta")).
//		Then(UserRenamed{First: "Augusta"})
type Kit[A any] struct {
	t    testing.TB
	reg  *event.Registry
	opts []repository.Option
}

// NewKit returns a kit for aggregates of type A decoded with reg and
// configured by opts (the handlers, as given to repository.New).
func NewKit[A any](t testing.TB, reg *event.Registry, opts ...repository.Option) *Kit[A] {
	return &Kit[A]{t: t, reg: reg, opts: opts}
}

// Scenario is one given/when/then; see Kit.
type Scenario[A any] struct {
	kit    *Kit[A]
	id     string
	given  []any
	when   repository.Command[A]
	create bool // run with Create, not Execute
	opts   []repository.ExecOption
}

// Given starts a scenario for aggregate id with the events it already has,
// in order (none: the aggregate does not exist yet).
func (k *Kit[A]) Given(id string, events ...any) *Scenario[A] {
	return &Scenario[A]{kit: k, id: id, given: events}
}

// When runs the command under test with Execute, with its options.
func (s *Scenario[A]) When(cmd repository.Command[A], opts ...repository.ExecOption) *Scenario[A] {
	s.when, s.opts = cmd, opts
	return s
}

// WhenCreate runs the command under test with Create, with its options.
func (s *Scenario[A]) WhenCreate(cmd repository.Command[A], opts ...repository.ExecOption) *Scenario[A] {
	s.when, s.opts, s.create = cmd, opts, true
	return s
}

// Then expects the command to succeed and append exactly events, in order,
// compared as values.
func (s *Scenario[A]) Then(events ...any) {
	s.kit.t.Helper()
	res, err := s.run()
	if err != nil {
		s.fail("want events:\n%s\ngot error: %v", list(events), err)
		return
	}
	got, err := s.decode(res.Events)
	if err != nil {
		s.fail("decode the appended events: %v", err)
		return
	}
	if !reflect.DeepEqual(normalize(events), normalize(got)) {
		s.fail("want events:\n%s\ngot:\n%s", list(events), list(got))
	}
}

// ThenNoEvents expects the command to succeed and append nothing.
func (s *Scenario[A]) ThenNoEvents() { s.kit.t.Helper(); s.Then() }

// ThenError expects the command to fail with an error that errors.Is
// target, appending nothing.
func (s *Scenario[A]) ThenError(target error) {
	s.kit.t.Helper()
	res, err := s.run()
	switch {
	case err == nil:
		got, _ := s.decode(res.Events)
		s.fail("want error %v\ngot events:\n%s", target, list(got))
	case !errors.Is(err, target):
		s.fail("want error %v\ngot error: %v", target, err)
	}
}

// run appends the given events, restores a repository from them and runs
// the command.
func (s *Scenario[A]) run() (repository.Result, error) {
	t := s.kit.t
	t.Helper()
	if s.when == nil {
		t.Fatalf("scenario %s: no When", s.id)
	}
	ctx := context.Background()
	p, err := memory.New(1)
	if err != nil {
		t.Fatalf("scenario %s: %v", s.id, err)
	}
	t.Cleanup(func() { _ = p.Close() })
	if len(s.given) > 0 {
		seed := s.newRepository(p)
		if _, err := seed.Create(ctx, s.id, func(A) ([]any, error) { return s.given, nil }); err != nil {
			t.Fatalf("scenario %s: given %s: %v", s.id, names(s.given), err)
		}
	}
	r := s.newRepository(p)
	if s.create {
		return r.Create(ctx, s.id, s.when, s.opts...)
	}
	return r.Execute(ctx, s.id, s.when, s.opts...)
}

func (s *Scenario[A]) newRepository(p *memory.Provider) *repository.Repository[A] {
	t := s.kit.t
	t.Helper()
	r, err := repository.New[A](p, s.kit.reg, s.kit.opts...)
	if err != nil {
		t.Fatalf("scenario %s: repository.New: %v", s.id, err)
	}
	if _, err := r.Restore(context.Background()); err != nil {
		t.Fatalf("scenario %s: restore the given events: %v", s.id, err)
	}
	return r
}

func (s *Scenario[A]) decode(envs []event.Envelope) ([]any, error) {
	out := make([]any, len(envs))
	for i := range envs {
		v, err := s.kit.reg.Decode(&envs[i])
		if err != nil {
			return nil, fmt.Errorf("event %d (%s): %w", i+1, envs[i].Type, err)
		}
		out[i] = v
	}
	return out, nil
}

func (s *Scenario[A]) fail(format string, args ...any) {
	s.kit.t.Helper()
	s.kit.t.Errorf("scenario %s: given %s: "+format, append([]any{s.id, names(s.given)}, args...)...)
}

// normalize turns pointers to payloads (what the registry decodes to) into
// the values, so that events given as values compare equal.
func normalize(events []any) []any {
	out := make([]any, len(events))
	for i, e := range events {
		if v := reflect.ValueOf(e); v.Kind() == reflect.Pointer && !v.IsNil() {
			e = v.Elem().Interface()
		}
		out[i] = e
	}
	return out
}

// list renders events one per line, numbered: "  1. UserRenamed{First:Ada}".
func list(events []any) string {
	if len(events) == 0 {
		return "  (none)"
	}
	var b strings.Builder
	for i, e := range normalize(events) {
		fmt.Fprintf(&b, "  %d. %s%+v\n", i+1, reflect.TypeOf(e).Name(), e)
	}
	return strings.TrimSuffix(b.String(), "\n")
}

// names lists the given events' types: "[UserCreated UserRenamed]".
func names(events []any) string {
	out := make([]string, len(events))
	for i, e := range normalize(events) {
		out[i] = reflect.TypeOf(e).Name()
	}
	return "[" + strings.Join(out, " ") + "]"
}
