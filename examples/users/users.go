// Package users holds the events of the examples' users aggregate: the
// contract between the writer (examples/simple-cqrs-writer), which appends
// them, and the reader (examples/reader), which projects them. Their payloads
// validate themselves (event.Validator), so that no writer using this
// registry can put an invalid name on the log.
package users

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/rehydrate/rehydrate/event"
)

// Event type names, as written in the event-type header.
const (
	TypeCreated  = "UserCreated"
	TypeModified = "UserModified"
	TypeDeleted  = "UserDeleted"
)

// AggregateType is written in the aggregate-type header of every event.
const AggregateType = "user"

// MaxNameLength is the longest first or last name, in characters.
const MaxNameLength = 100

// User is the aggregate the writer keeps, and the state in its snapshots,
// which the reader loads too. Snapshots store it with the registry's codec:
// bump StateVersion when its fields or what the writer's handlers make of
// the events change, so that older snapshots are ignored instead of
// restoring a state the new code would not have built.
type User struct {
	FirstName string
	LastName  string
}

// StateVersion is the version of User's state in snapshots.
const StateVersion = 1

// Created is the first event of a user.
type Created struct {
	FirstName string `json:"first_name"`
	LastName  string `json:"last_name"`
}

// Modified replaces both names of a user.
type Modified struct {
	FirstName string `json:"first_name"`
	LastName  string `json:"last_name"`
}

// Deleted is the last event of a user.
type Deleted struct{}

// Validate implements event.Validator.
func (e Created) Validate() error { return ValidateNames(e.FirstName, e.LastName) }

// Validate implements event.Validator.
func (e Modified) Validate() error { return ValidateNames(e.FirstName, e.LastName) }

// Registry returns a registry of the three events, encoded with msgpack.
func Registry() (*event.Registry, error) {
	reg := event.NewRegistry()
	err := errors.Join(
		event.Register[Created](reg, TypeCreated),
		event.Register[Modified](reg, TypeModified),
		event.Register[Deleted](reg, TypeDeleted),
	)
	return reg, err
}

// FieldError is one field's problem.
type FieldError struct {
	Field   string `json:"field"`
	Problem string `json:"problem"`
}

// ValidationError lists every problem of a payload; Validate methods return
// it, so callers can report each field.
type ValidationError []FieldError

func (v ValidationError) Error() string {
	parts := make([]string, len(v))
	for i, f := range v {
		parts[i] = f.Field + ": " + f.Problem
	}
	return strings.Join(parts, "; ")
}

// ValidateNames checks both names: required, non-empty after trimming, at
// most MaxNameLength characters, valid UTF-8 without control characters.
// Surrounding spaces are tolerated here and trimmed by Normalize; the
// writer stores normalized names.
func ValidateNames(first, last string) error {
	var v ValidationError
	for _, f := range []struct{ field, value string }{{"first_name", first}, {"last_name", last}} {
		if problem := nameProblem(f.value); problem != "" {
			v = append(v, FieldError{Field: f.field, Problem: problem})
		}
	}
	if len(v) > 0 {
		return v
	}
	return nil
}

func nameProblem(s string) string {
	switch {
	case !utf8.ValidString(s):
		return "must be valid UTF-8"
	case strings.TrimSpace(s) == "":
		return "is required"
	case strings.IndexFunc(s, unicode.IsControl) >= 0:
		return "must not contain control characters"
	case utf8.RuneCountInString(strings.TrimSpace(s)) > MaxNameLength:
		return fmt.Sprintf("must be at most %d characters", MaxNameLength)
	}
	return ""
}

// Normalize trims the spaces around a name.
func Normalize(name string) string { return strings.TrimSpace(name) }
