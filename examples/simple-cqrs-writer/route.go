package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptrace"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/examples/serve"
	"github.com/rehydrate/rehydrate/examples/users"
	"github.com/rehydrate/rehydrate/provider"
	"github.com/rehydrate/rehydrate/repository"
)

// forwardedHeader marks a request one instance forwarded to another. An
// instance never forwards such a request again: when ownership is moving,
// two instances could otherwise send it back and forth.
const forwardedHeader = "Rehydrate-Forwarded-By"

// ownersTTL is how long a map of partition owners is trusted before it is
// asked again. A map that names no other owner for a partition this
// instance does not serve is stale or caught mid-move, and is asked again
// after minRefresh; so is one whose owner did not answer.
const (
	ownersTTL  = time.Second
	minRefresh = 100 * time.Millisecond
)

// router sends a command to the instance that owns its user's partition.
// Every instance of the service is a member of one group; each partition is
// owned by one of them, which alone executes its commands. An instance learns
// the others' addresses from the group itself (each member publishes its
// WRITER_ADVERTISE address with its membership), so a plain load balancer in
// front of N instances works.
type router struct {
	users  *repository.Repository[users.User]
	self   string // this instance's address
	client *http.Client

	mu      sync.Mutex
	owners  map[int32]string
	fetched time.Time
}

// newID returns a new user id that lands in a partition this instance owns,
// so that a create never needs forwarding. Ids are random (UUIDv7), so with
// k of n partitions owned a try succeeds with probability k/n. ok is false
// when the instance owns nothing.
func (rt *router) newID() (id string, ok bool) {
	owned := rt.users.Owned()
	if len(owned) == 0 {
		return "", false
	}
	for {
		id = event.NewID()
		if slices.Contains(owned, rt.users.PartitionOf(id)) {
			return id, true
		}
	}
}

// owner returns the address of the instance that owns partition p, "" when
// none is known (the partition is moving) or it is this instance.
func (rt *router) owner(ctx context.Context, p int32, fresh bool) string {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	addr := rt.owners[p]
	age := time.Since(rt.fetched)
	if rt.owners == nil || age > ownersTTL || (fresh || addr == "" || addr == rt.self) && age > minRefresh {
		owners, err := rt.users.Owners(ctx)
		if err != nil {
			return ""
		}
		rt.owners, rt.fetched = owners, time.Now()
		addr = owners[p]
	}
	if addr == rt.self {
		return ""
	}
	return addr
}

// handoverPoll is how often a command waiting for its partition looks
// again (handover).
const handoverPoll = 20 * time.Millisecond

// elsewhere answers a request for a partition not served here now (cause
// says why: not owned here, or owned and still being restored, a
// takeover). It waits, up to s.handover, for the partition to be served
// again: here, and then here() serves the request, or by an owner the group
// names, and then the request is forwarded there and its answer copied
// back. Only past the bound, or when no owner answers, is the answer 503
// with Retry-After.
//
// A request another instance forwarded is not forwarded again (when
// ownership is moving, two instances could otherwise send it back and
// forth), unless this instance is stopping: it will serve nothing again,
// and it has left the group, so no owner it forwards to can name it. Such a
// request waits here only while the partition is being restored here;
// otherwise the answer is 503 at once, and the instance that forwarded it,
// which still waits within its own bound, asks the group again.
func (s *server) elsewhere(w http.ResponseWriter, r *http.Request, id string, body []byte, cause error, here func() error) {
	rt := s.router
	notNow := func(msg string) {
		w.Header().Set("Retry-After", "1")
		s.metrics.forwarded("unavailable")
		writeError(w, http.StatusServiceUnavailable, msg)
	}
	if rt == nil {
		notNow("this instance does not own the user's partition")
		return
	}
	by := r.Header.Get(forwardedHeader)
	mayForward := by == "" || s.stopping.Load()
	// Detached from the request, as a command is (execute): net/http
	// cancels r's context when the connection's read deadline passes, which
	// a pause of this process (SIGSTOP, a frozen VM) makes happen at once
	// after it, while a forward is on its way.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), s.timeout)
	defer cancel()
	part := s.users.PartitionOf(id)
	deadline := time.Now().Add(s.handover)
	for attempt := 0; ; attempt++ {
		if mayForward {
			if addr := rt.owner(ctx, part, attempt > 0); addr != "" {
				resp, sent, err := rt.send(ctx, r, addr, body)
				if err != nil && sent {
					// The owner may have run the command: sent again, it
					// could run twice, and a refusal would say nothing
					// changed.
					s.log.Warn("forwarded, answer lost", "id", id, "partition", part, "to", addr, "err", err)
					s.metrics.forwarded("unknown")
					w.Header().Set("Retry-After", "1")
					serve.WriteJSON(w, http.StatusServiceUnavailable, errorResponse{
						Error:          "forwarded to the instance that owns the user's partition, whose answer was lost: the change may or may not have been made; read the user before retrying",
						OutcomeUnknown: ptr(true),
					})
					return
				}
				level := slog.LevelWarn // gone or stopping: the group names its successor soon
				if err == nil && resp.StatusCode == http.StatusServiceUnavailable && time.Now().Before(deadline) {
					// Not served there yet either, and nothing was
					// changed there (no outcome_unknown): wait on.
					var e errorResponse
					b, _ := io.ReadAll(io.LimitReader(resp.Body, maxBody))
					resp.Body.Close()
					if json.Unmarshal(b, &e) == nil && e.OutcomeUnknown == nil {
						err, level = errors.New("503 "+e.Error), slog.LevelDebug
					} else {
						resp.Body = io.NopCloser(bytes.NewReader(b))
					}
				}
				if err == nil {
					defer resp.Body.Close()
					for k, vs := range resp.Header {
						if k == "Content-Length" || k == "Connection" {
							continue
						}
						w.Header()[k] = vs
					}
					w.Header().Set("Rehydrate-Served-By", addr)
					serve.Answering(w)
					w.WriteHeader(resp.StatusCode)
					_, _ = io.Copy(w, resp.Body)
					s.metrics.forwarded("ok")
					return
				}
				s.log.Log(ctx, level, "forward failed", "id", id, "partition", part, "to", addr, "err", err)
			}
		}
		if !mayForward && !restoringHere(cause) {
			notNow("this instance does not serve the user's partition (forwarded by " + by + "); retry")
			return
		}
		if time.Now().After(deadline) {
			notNow("the user's partition has no owner that serves it now (instances are rebalancing); retry")
			return
		}
		select {
		case <-ctx.Done():
			notNow("the user's partition has no owner that serves it now (instances are rebalancing); retry")
			return
		case <-time.After(handoverPoll):
		}
		if cause = here(); cause == nil {
			return
		}
	}
}

// send replays r, with body, to the instance at addr. sent reports whether
// the request was written whole: an error after that leaves its outcome
// unknown, while one before it (no connection) changed nothing.
func (rt *router) send(ctx context.Context, r *http.Request, addr string, body []byte) (resp *http.Response, sent bool, err error) {
	var wrote atomic.Bool
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		WroteRequest: func(info httptrace.WroteRequestInfo) { wrote.Store(info.Err == nil) },
	})
	req, err := http.NewRequestWithContext(ctx, r.Method, strings.TrimSuffix(addr, "/")+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		return nil, false, err
	}
	for _, k := range []string{"Authorization", "Content-Type", "If-Match", "Accept"} {
		if v := r.Header.Values(k); len(v) > 0 {
			req.Header[k] = v
		}
	}
	req.Header.Set(forwardedHeader, rt.self)
	resp, err = rt.client.Do(req)
	return resp, wrote.Load(), err
}

// restoringHere reports whether err says the partition is this instance's
// and being restored.
func restoringHere(err error) bool {
	var pe *repository.PartitionError
	return errors.As(err, &pe) && errors.Is(pe, repository.ErrNotReady)
}

// notServedHere reports whether err says the aggregate's partition is not
// served here now, and nothing of the command was done: another instance
// owns it, this one is still restoring it, or this one is stopping and its
// membership closed under the command (an append error without
// ErrOutcomeUnknown wrote nothing: provider.Member's contract).
func (s *server) notServedHere(err error) bool {
	switch {
	case errors.Is(err, provider.ErrNotOwner), restoringHere(err):
		return true
	case s.stopping.Load() && s.router != nil:
		return errors.Is(err, provider.ErrClosed) && !errors.Is(err, provider.ErrOutcomeUnknown)
	}
	return false
}
