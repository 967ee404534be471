package main

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/rehydrate/rehydrate/event"
	"github.com/rehydrate/rehydrate/examples/internal/users"
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

// forward answers a request for a partition this instance does not own:
// it sends it to the owner and copies the answer back, or answers 503 with
// Retry-After when the owner is unknown, moving, or unreachable. It never
// executes the command itself.
func (s *server) forward(w http.ResponseWriter, r *http.Request, id string, body []byte, cause error) {
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
	if by := r.Header.Get(forwardedHeader); by != "" {
		notNow("the user's partition is moving between instances (forwarded by " + by + "); retry")
		return
	}
	var pe *repository.PartitionError
	if !errors.As(cause, &pe) {
		notNow("this instance does not own the user's partition")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.timeout)
	defer cancel()
	for attempt := range 2 {
		addr := rt.owner(ctx, pe.Partition, attempt > 0)
		if addr == "" {
			notNow("the user's partition has no owner right now (instances are rebalancing); retry")
			return
		}
		resp, err := rt.send(ctx, r, addr, body)
		if err != nil {
			s.log.Warn("forward failed", "id", id, "partition", pe.Partition, "to", addr, "err", err)
			continue
		}
		defer resp.Body.Close()
		for k, vs := range resp.Header {
			if k == "Content-Length" || k == "Connection" {
				continue
			}
			w.Header()[k] = vs
		}
		w.Header().Set("Rehydrate-Served-By", addr)
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
		s.metrics.forwarded("ok")
		return
	}
	notNow("the instance that owns the user's partition did not answer; retry")
}

// send replays r, with body, to the instance at addr.
func (rt *router) send(ctx context.Context, r *http.Request, addr string, body []byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, r.Method, strings.TrimSuffix(addr, "/")+r.URL.RequestURI(), bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	for _, k := range []string{"Authorization", "Content-Type", "If-Match", "Accept"} {
		if v := r.Header.Values(k); len(v) > 0 {
			req.Header[k] = v
		}
	}
	req.Header.Set(forwardedHeader, rt.self)
	return rt.client.Do(req)
}

// notOwned reports whether err says another instance owns the aggregate.
func notOwned(err error) bool { return errors.Is(err, provider.ErrNotOwner) }
