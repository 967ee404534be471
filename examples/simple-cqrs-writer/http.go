package main

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/go-chi/chi/v5"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/examples/serve"
	"github.com/rehydrate/rehydrate/examples/users"
	"github.com/rehydrate/rehydrate/provider"
	"github.com/rehydrate/rehydrate/repository"
)

// maxBody is the largest request body accepted (413 beyond).
const maxBody = 1 << 20

// Command types of POST /, as the seed's clients send them.
const (
	createCommand = "CreateUserCommand"
	updateCommand = "UpdateUserCommand"
	deleteCommand = "DeleteUserCommand"
)

// server is the writer's HTTP API.
type server struct {
	users   *repository.Repository[users.User]
	log     *slog.Logger
	metrics *metrics
	// timeout bounds a command, append included. Commands are detached
	// from the request's context: a client hanging up must not leave an
	// append with an unknown outcome behind.
	timeout time.Duration
	// restoreErr is the last restore failure while the restore retries.
	restoreErr atomic.Pointer[string]
	// router forwards commands for users other instances own; nil when
	// the writer runs without a group.
	router *router
	// handover bounds how long a command for a partition that is moving
	// waits for it to be served again (WRITER_HANDOVER_WAIT).
	handover time.Duration
	// stopping is set at SIGTERM: /readyz says so, and what still
	// arrives is forwarded to the partitions' new owners.
	stopping atomic.Bool
	// tokenSum is the SHA-256 of WRITER_TOKEN, nil when it is unset.
	// Comparing digests rather than the tokens keeps the comparison's time
	// independent of the token's length as well as of its bytes.
	tokenSum *[sha256.Size]byte
}

func (s *server) routes() http.Handler {
	r := serve.NewRouter(s.log)

	r.Get("/healthz", s.healthz)
	r.Get("/readyz", s.readyz)
	r.Method(http.MethodGet, "/metrics", s.metrics.handler())

	// WRITER_TOKEN guards the users' data: every command, and reads too,
	// since names are personal data (the reader is the place to serve them
	// more widely). The probes and the metrics stay open: they hold no
	// user data, and kubelets and scrapers reach them without a secret.
	r.Group(func(r chi.Router) {
		r.Use(s.requireToken)
		r.Post("/", s.postCommand)
		r.Post("/users", s.postUser)
		r.Get("/users/{id}", s.getUser)
		r.Put("/users/{id}", s.putUser)
		r.Delete("/users/{id}", s.deleteUser)
	})
	return r
}

// requireToken answers 401 to a request without Authorization: Bearer
// and the token, when the server has one, before the body is read.
func (s *server) requireToken(next http.Handler) http.Handler {
	if s.tokenSum == nil {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		header := r.Header.Get("Authorization")
		scheme, token, _ := strings.Cut(header, " ")
		sum := sha256.Sum256([]byte(strings.TrimSpace(token)))
		if strings.EqualFold(scheme, "Bearer") && subtle.ConstantTimeCompare(sum[:], s.tokenSum[:]) == 1 {
			next.ServeHTTP(w, r)
			return
		}
		challenge := `Bearer realm="simple-cqrs-writer"`
		if header != "" {
			challenge += `, error="invalid_token"` // RFC 6750: a token was sent, and it is not the one
		}
		w.Header().Set("WWW-Authenticate", challenge)
		writeError(w, http.StatusUnauthorized, "missing or wrong bearer token: send Authorization: Bearer <WRITER_TOKEN>")
	})
}

// command is a decoded command, whichever route it came from.
type command struct {
	kind        string // create, update or delete: the metrics label
	id          string
	first, last string
	expected    *uint64
	body        []byte // as received, to forward
}

// name is a JSON string that keeps invalid UTF-8 as sent, for the event's
// Validate to refuse with 422: encoding/json would silently replace it with
// U+FFFD.
type name string

func (n *name) UnmarshalJSON(b []byte) error {
	if len(b) == 0 || b[0] != '"' {
		return &json.UnmarshalTypeError{Value: "non-string", Type: reflect.TypeFor[string]()}
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return err
	}
	if !utf8.Valid(b) {
		s = string(b[1 : len(b)-1])
	}
	*n = name(s)
	return nil
}

func (n *name) value() string {
	if n == nil {
		return "" // missing or null: the event's validation says it is required
	}
	return string(*n)
}

// commandRequest is the body of POST /: the seed's JSON.
type commandRequest struct {
	Type            *string `json:"type"`
	ID              *string `json:"id"`
	FirstName       *name   `json:"first_name"`
	LastName        *name   `json:"last_name"`
	ExpectedVersion *uint64 `json:"expected_version"`
}

// userRequest is the body of POST /users and PUT /users/{id}.
type userRequest struct {
	FirstName       *name   `json:"first_name"`
	LastName        *name   `json:"last_name"`
	ExpectedVersion *uint64 `json:"expected_version"`
}

// badRequest is a request refused before it runs: 400, or 413 for a body
// over maxBody.
type badRequest struct {
	status int
	msg    string
}

func refuse(msg string) *badRequest { return &badRequest{status: http.StatusBadRequest, msg: msg} }

// result is the metrics label.
func (b *badRequest) result() string {
	if b.status == http.StatusRequestEntityTooLarge {
		return "too_large"
	}
	return "bad_request"
}

func (s *server) postCommand(w http.ResponseWriter, r *http.Request) {
	s.serveBody(w, r, decodePostCommand)
}

func (s *server) postUser(w http.ResponseWriter, r *http.Request) {
	s.serveBody(w, r, decodePostUser)
}

func (s *server) putUser(w http.ResponseWriter, r *http.Request) {
	s.serveBody(w, r, func(body io.Reader) (command, *badRequest) {
		return decodePutUser(chi.URLParam(r, "id"), r.Header.Get("If-Match"), body)
	})
}

// serveBody serves the command decode makes of the request's body (within
// the size limit), which it keeps to forward to the partition's owner.
func (s *server) serveBody(w http.ResponseWriter, r *http.Request, decode func(io.Reader) (command, *badRequest)) {
	var raw bytes.Buffer
	c, bad := decode(io.TeeReader(limitBody(w, r), &raw))
	c.body = raw.Bytes()
	s.serve(w, r, c, bad)
}

func (s *server) deleteUser(w http.ResponseWriter, r *http.Request) {
	c, bad := decodeDeleteUser(chi.URLParam(r, "id"), r.Header.Get("If-Match"))
	s.serve(w, r, c, bad)
}

// serve runs a decoded command, or answers why it was refused.
func (s *server) serve(w http.ResponseWriter, r *http.Request, c command, bad *badRequest) {
	if bad != nil {
		if bad.status == http.StatusRequestEntityTooLarge {
			// Close the connection rather than let net/http read the rest
			// of the body (up to 256 KiB more) to reuse it. MaxBytesReader
			// would say so itself, but the access log's wrapper hides the
			// method it calls.
			w.Header().Set("Connection", "close")
		}
		s.metrics.command(orUnknown(c.kind), bad.result())
		writeError(w, bad.status, bad.msg)
		return
	}
	s.execute(w, r, c)
}

func orUnknown(kind string) string {
	if kind == "" {
		return "unknown"
	}
	return kind
}

// The decoders turn what a route received into a command, or refuse it.
// They only read the body, so FuzzDecodeCommand can feed them anything. A refused
// command keeps the kind its route tells, for the metrics.

// decodePostCommand decodes the body of POST /: the seed's JSON.
func decodePostCommand(body io.Reader) (command, *badRequest) {
	var req commandRequest
	if bad := decodeJSON(body, &req); bad != nil {
		return command{}, bad
	}
	c, msg := req.command()
	if msg != "" {
		return c, refuse(msg)
	}
	return c, nil
}

// decodePostUser decodes the body of POST /users.
func decodePostUser(body io.Reader) (command, *badRequest) {
	c := command{kind: "create"}
	var req userRequest
	if bad := decodeJSON(body, &req); bad != nil {
		return c, bad
	}
	if req.ExpectedVersion != nil {
		return c, refuse(`field "expected_version" is not allowed when creating a user`)
	}
	c.first, c.last = req.FirstName.value(), req.LastName.value()
	return c, nil
}

// decodePutUser decodes PUT /users/{id}: its body and If-Match.
func decodePutUser(id, ifMatch string, body io.Reader) (command, *badRequest) {
	c := command{kind: "update", id: id}
	var req userRequest
	if bad := decodeJSON(body, &req); bad != nil {
		return c, bad
	}
	expected, msg := expectedVersion(ifMatch, req.ExpectedVersion)
	if msg != "" {
		return c, refuse(msg)
	}
	c.first, c.last, c.expected = req.FirstName.value(), req.LastName.value(), expected
	return c, nil
}

// decodeDeleteUser decodes DELETE /users/{id}: its If-Match. A body is
// ignored.
func decodeDeleteUser(id, ifMatch string) (command, *badRequest) {
	c := command{kind: "delete", id: id}
	expected, msg := expectedVersion(ifMatch, nil)
	if msg != "" {
		return c, refuse(msg)
	}
	c.expected = expected
	return c, nil
}

// command checks which fields the command type allows, as
// DisallowUnknownFields does for fields no command has.
func (req commandRequest) command() (command, string) {
	if req.Type == nil || *req.Type == "" {
		return command{}, `missing "type": one of ` + createCommand + ", " + updateCommand + ", " + deleteCommand
	}
	var c command
	switch *req.Type {
	case createCommand:
		c.kind = "create"
	case updateCommand:
		c.kind = "update"
	case deleteCommand:
		c.kind = "delete"
	default:
		return command{}, fmt.Sprintf("unknown command type %q: want one of %s, %s, %s", *req.Type, createCommand, updateCommand, deleteCommand)
	}
	notAllowed := func(field string) string {
		return fmt.Sprintf("field %q is not allowed in %s", field, *req.Type)
	}
	switch c.kind {
	case "create":
		if req.ID != nil {
			return c, notAllowed("id") + ": the service assigns ids"
		}
		if req.ExpectedVersion != nil {
			return c, notAllowed("expected_version")
		}
	case "update", "delete":
		if req.ID == nil || *req.ID == "" {
			return c, fmt.Sprintf(`field "id" is required in %s`, *req.Type)
		}
		c.id = *req.ID
		c.expected = req.ExpectedVersion
	}
	if c.kind == "delete" {
		if req.FirstName != nil {
			return c, notAllowed("first_name")
		}
		if req.LastName != nil {
			return c, notAllowed("last_name")
		}
	}
	c.first, c.last = req.FirstName.value(), req.LastName.value()
	return c, ""
}

// expectedVersion reads If-Match: "N" (or N), which must agree with the
// body's expected_version when both are given. If-Match: * asks for no
// particular version.
func expectedVersion(ifMatch string, fromBody *uint64) (*uint64, string) {
	h := strings.TrimSpace(ifMatch)
	if h == "" || h == "*" {
		return fromBody, ""
	}
	v, err := strconv.ParseUint(strings.Trim(h, `"`), 10, 64)
	if err != nil {
		return nil, fmt.Sprintf(`If-Match must be a version in quotes, like "3": got %q`, h)
	}
	if fromBody != nil && *fromBody != v {
		return nil, fmt.Sprintf("If-Match (%d) and expected_version (%d) disagree", v, *fromBody)
	}
	return &v, ""
}

type userResponse struct {
	ID        string `json:"id"`
	FirstName string `json:"first_name"`
	LastName  string `json:"last_name"`
	Version   uint64 `json:"version"`
}

type commandResponse struct {
	ID      string `json:"id"`
	Version uint64 `json:"version"`
	// Positions are where the command's events were written: a reader
	// waits for them (GET /users/{id}?after=…) to read this write.
	Positions []provider.Position `json:"positions,omitempty"`
}

func (s *server) getUser(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	get := func() error {
		u, version, err := s.users.Get(id)
		if s.notServedHere(err) {
			return err
		}
		if err != nil {
			s.fail(w, r, id, err)
			return nil
		}
		w.Header().Set("ETag", etag(version))
		serve.WriteJSON(w, http.StatusOK, userResponse{ID: id, FirstName: u.FirstName, LastName: u.LastName, Version: version})
		return nil
	}
	if err := get(); err != nil {
		s.elsewhere(w, r, id, nil, err, get)
	}
}

func etag(version uint64) string { return `"` + strconv.FormatUint(version, 10) + `"` }

// execute runs a decoded command and answers with the user's id and
// version, or the error's status. A command for a partition not served
// here now waits for it to be served, here or elsewhere (elsewhere).
func (s *server) execute(w http.ResponseWriter, r *http.Request, c command) {
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), s.timeout)
	defer cancel()
	run := func() error { return s.executeHere(ctx, w, r, c) }
	if err := run(); err != nil {
		// A create goes to the owner of a random partition, which picks
		// an id of its own.
		s.elsewhere(w, r, cmp.Or(c.id, event.NewID()), c.body, err, run)
	}
}

// executeHere runs c and answers, unless its partition is not served here
// now: it then answers nothing and returns why (notServedHere).
func (s *server) executeHere(ctx context.Context, w http.ResponseWriter, r *http.Request, c command) error {
	var opts []repository.ExecOption
	if c.expected != nil {
		opts = append(opts, repository.ExpectVersion(*c.expected))
	}
	start := time.Now()
	var (
		res repository.Result
		err error
	)
	switch c.kind {
	case "create":
		res, err = s.create(ctx, &c)
	case "update":
		res, err = s.users.Execute(ctx, c.id, updateUser(c.first, c.last), opts...)
	case "delete":
		res, err = s.users.Execute(ctx, c.id, deleteUser(), opts...)
	}
	if s.notServedHere(err) {
		return err
	}
	if err != nil {
		s.metrics.command(c.kind, resultOf(err))
		s.fail(w, r, c.id, err)
		return nil
	}
	if len(res.Positions) == 0 {
		s.metrics.command(c.kind, "unchanged")
	} else {
		s.metrics.command(c.kind, "ok")
		s.metrics.appended(c.kind, time.Since(start))
	}
	status := http.StatusOK
	if c.kind == "create" {
		status = http.StatusCreated
		w.Header().Set("Location", "/users/"+c.id)
	}
	if c.kind != "delete" {
		w.Header().Set("ETag", etag(res.Version))
	}
	serve.WriteJSON(w, status, commandResponse{ID: c.id, Version: res.Version, Positions: res.Positions})
	return nil
}

// create creates a user under a new id. With a group, the id is one of a
// partition this instance owns; when it owns none, the create goes to an
// instance that does.
func (s *server) create(ctx context.Context, c *command) (repository.Result, error) {
	if s.router == nil {
		c.id = event.NewID()
		return s.users.Create(ctx, c.id, createUser(c.first, c.last))
	}
	id, ok := s.router.newID()
	if !ok {
		c.id = event.NewID()
		return repository.Result{}, &repository.PartitionError{AggregateID: c.id, Partition: s.users.PartitionOf(c.id), Err: provider.ErrNotOwner}
	}
	c.id = id
	return s.users.Create(ctx, c.id, createUser(c.first, c.last))
}

// resultOf is the metrics label of a failed command.
func resultOf(err error) string {
	switch {
	case errors.Is(err, repository.ErrNotFound):
		return "not_found"
	case errors.Is(err, repository.ErrConcurrency), errors.Is(err, repository.ErrExists):
		return "conflict"
	case errors.Is(err, event.ErrInvalid):
		return "invalid"
	case errors.Is(err, repository.ErrNotReady):
		return "not_ready"
	case errors.Is(err, provider.ErrOutcomeUnknown):
		return "outcome_unknown"
	case errors.Is(err, repository.ErrUnresolved):
		return "unresolved"
	case errors.Is(err, provider.ErrUnavailable), errors.Is(err, provider.ErrClosed), errors.Is(err, context.DeadlineExceeded):
		return "unavailable"
	}
	return "error"
}

// errorResponse is every error's body. Only the fields of the case are set.
type errorResponse struct {
	Error           string             `json:"error"`
	Fields          []users.FieldError `json:"fields,omitempty"`
	ExpectedVersion *uint64            `json:"expected_version,omitempty"`
	ActualVersion   *uint64            `json:"actual_version,omitempty"`
	OutcomeUnknown  *bool              `json:"outcome_unknown,omitempty"`
	Done            *int64             `json:"done,omitempty"`
	Total           *int64             `json:"total,omitempty"`
}

// fail maps a repository or provider error to its status. The order
// matters: an append error may be ErrUnavailable and ErrOutcomeUnknown at
// once, and the unknown outcome is what the client must know.
func (s *server) fail(w http.ResponseWriter, r *http.Request, id string, err error) {
	var (
		conflict *repository.ConcurrencyError
		invalid  users.ValidationError
		status   int
		body     errorResponse
	)
	switch {
	case errors.As(err, &conflict):
		status = http.StatusConflict
		body = errorResponse{
			Error:           fmt.Sprintf("version conflict: user %s is at version %d, not %d", id, conflict.Actual, conflict.Expected),
			ExpectedVersion: &conflict.Expected,
			ActualVersion:   &conflict.Actual,
		}
	case errors.Is(err, repository.ErrExists):
		status, body.Error = http.StatusConflict, fmt.Sprintf("user %s already exists", id)
	case errors.Is(err, repository.ErrNotFound):
		status, body.Error = http.StatusNotFound, fmt.Sprintf("user %s not found", id)
	case errors.Is(err, event.ErrInvalid):
		status = http.StatusUnprocessableEntity
		if errors.As(err, &invalid) {
			body = errorResponse{Error: "invalid user: " + invalid.Error(), Fields: invalid}
		} else {
			body.Error = "invalid user"
		}
	case errors.Is(err, repository.ErrLimit):
		// The instance holds as many users as WRITER_MAX_USERS allows:
		// nothing was written.
		status, body.Error = http.StatusInsufficientStorage, "this writer holds as many users as it may (WRITER_MAX_USERS): nothing was created"
	case errors.Is(err, repository.ErrNotReady):
		p := s.users.Progress()
		status = http.StatusServiceUnavailable
		body = errorResponse{Error: "not ready: restoring users from Kafka", Done: &p.Done, Total: &p.Total}
		w.Header().Set("Retry-After", "1")
	case errors.Is(err, provider.ErrOutcomeUnknown):
		status = http.StatusServiceUnavailable
		body = errorResponse{
			Error:          "Kafka did not acknowledge in time: the change may or may not have been made; read the user before retrying",
			OutcomeUnknown: ptr(true),
		}
		w.Header().Set("Retry-After", "1")
	case errors.Is(err, repository.ErrUnresolved):
		status = http.StatusServiceUnavailable
		body = errorResponse{
			Error:          "an earlier change of this user has an unknown outcome that Kafka cannot confirm yet: nothing was changed; retry later",
			OutcomeUnknown: ptr(false),
		}
		w.Header().Set("Retry-After", "5")
	case errors.Is(err, provider.ErrUnavailable), errors.Is(err, provider.ErrClosed), errors.Is(err, context.DeadlineExceeded):
		status = http.StatusServiceUnavailable
		body = errorResponse{Error: "Kafka is unavailable: nothing was changed; retry later", OutcomeUnknown: ptr(false)}
		w.Header().Set("Retry-After", "5")
	default:
		status, body.Error = http.StatusInternalServerError, "internal error"
	}
	if status >= 500 {
		s.log.LogAttrs(r.Context(), slog.LevelError, "command failed", slog.String("id", id), slog.Int("status", status), slog.Any("err", err))
	}
	serve.WriteJSON(w, status, body)
}

func ptr[T any](v T) *T { return &v }

// limitBody caps the body at maxBody bytes. A body declared larger is
// refused before a byte of it is read.
func limitBody(w http.ResponseWriter, r *http.Request) io.Reader {
	if r.ContentLength > maxBody {
		return tooLarge{}
	}
	return http.MaxBytesReader(w, r.Body, maxBody)
}

type tooLarge struct{}

func (tooLarge) Read([]byte) (int, error) { return 0, &http.MaxBytesError{Limit: maxBody} }

// decodeJSON reads one JSON object into dst: no unknown fields, nothing
// after it. encoding/json refuses nesting deeper than 10 000 and numbers
// that do not fit dst's fields, so neither costs more than reading them.
func decodeJSON(body io.Reader, dst any) *badRequest {
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	err := dec.Decode(dst)
	if err == nil {
		if _, terr := dec.Token(); !errors.Is(terr, io.EOF) {
			err = terr
			if err == nil || !isTooLarge(err) {
				err = errTrailingData
			}
		}
	}
	switch {
	case err == nil:
		return nil
	case isTooLarge(err):
		return &badRequest{status: http.StatusRequestEntityTooLarge, msg: fmt.Sprintf("request body larger than %d bytes", maxBody)}
	}
	return refuse(decodeProblem(err))
}

var errTrailingData = errors.New("trailing data after the JSON object")

func isTooLarge(err error) bool {
	var tooLarge *http.MaxBytesError
	return errors.As(err, &tooLarge)
}

// decodeProblem turns an encoding/json error into a message for the client.
func decodeProblem(err error) string {
	var (
		syntax  *json.SyntaxError
		typeErr *json.UnmarshalTypeError
	)
	switch {
	case errors.Is(err, io.EOF):
		return "request body is empty: want a JSON object"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "malformed JSON: unexpected end of body"
	case errors.As(err, &syntax):
		return fmt.Sprintf("malformed JSON at byte %d: %v", syntax.Offset, err)
	case errors.As(err, &typeErr) && typeErr.Field == "":
		return "request body must be a JSON object"
	case errors.As(err, &typeErr):
		want := "a string"
		if typeErr.Type.Kind() == reflect.Uint64 {
			want = "a non-negative integer"
		}
		return fmt.Sprintf("field %q must be %s", typeErr.Field, want)
	case strings.HasPrefix(err.Error(), "json: unknown field "):
		// encoding/json has no error type for this one.
		return strings.TrimPrefix(err.Error(), "json: ")
	}
	return err.Error()
}

func (s *server) healthz(w http.ResponseWriter, _ *http.Request) {
	serve.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

type readiness struct {
	Ready          bool    `json:"ready"`
	Done           int64   `json:"done"`
	Total          int64   `json:"total"`
	ElapsedSeconds float64 `json:"elapsed_seconds"`
	Users          *int    `json:"users,omitempty"`
	// Partitions are the partitions this instance serves.
	Partitions []int32 `json:"partitions,omitempty"`
	Error      string  `json:"error,omitempty"`
	// Stopping is set once the instance got SIGTERM: it forwards what
	// still reaches it until it exits.
	Stopping bool `json:"stopping,omitempty"`
}

// readyz answers 503 with the restore's progress until it has succeeded,
// and 503 with stopping set from SIGTERM on, so that load balancers send
// no more.
func (s *server) readyz(w http.ResponseWriter, _ *http.Request) {
	p := s.users.Progress()
	body := readiness{Done: p.Done, Total: p.Total, ElapsedSeconds: p.Elapsed.Seconds()}
	if s.stopping.Load() {
		body.Stopping = true
		serve.WriteJSON(w, http.StatusServiceUnavailable, body)
		return
	}
	select {
	case <-s.users.Ready():
		body.Ready = true
		body.Users = ptr(s.users.Len())
		body.Partitions = s.users.Owned()
		serve.WriteJSON(w, http.StatusOK, body)
	default:
		if e := s.restoreErr.Load(); e != nil {
			body.Error = *e
		}
		w.Header().Set("Retry-After", "1")
		serve.WriteJSON(w, http.StatusServiceUnavailable, body)
	}
}

func writeError(w http.ResponseWriter, status int, msg string) {
	serve.WriteJSON(w, status, errorResponse{Error: msg})
}

// accessLog logs every request once it is answered.
