package e2e

import (
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// balancer sends requests as a load balancer in front of the writers
// would: only to writers whose /readyz answers 200 (it polls them), and a
// request whose connection was refused again to another writer. Every
// request opens a connection of its own, so that a refused connection
// means that nothing was sent.
type balancer struct {
	t      *testing.T
	client *http.Client
	mu     sync.Mutex
	ws     map[*service]*atomic.Bool // up: /readyz answered 200 last time
	stop   chan struct{}
	wg     sync.WaitGroup
	// resent counts requests sent again elsewhere after a refused
	// connection; broken counts requests whose connection failed after
	// they were sent (their outcome unknown to the client).
	resent, broken atomic.Int64
}

func newBalancer(t *testing.T, ws ...*service) *balancer {
	b := &balancer{
		t:      t,
		client: &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}},
		ws:     map[*service]*atomic.Bool{},
		stop:   make(chan struct{}),
	}
	for _, w := range ws {
		b.add(w)
	}
	b.wg.Go(b.watch)
	t.Cleanup(b.close)
	return b
}

func (b *balancer) close() {
	select {
	case <-b.stop:
	default:
		close(b.stop)
		b.wg.Wait()
	}
}

// add puts w behind the balancer; it gets requests once it is ready.
func (b *balancer) add(w *service) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.ws[w] = &atomic.Bool{}
}

// remove takes w from behind the balancer.
func (b *balancer) remove(w *service) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.ws, w)
}

// watch polls every writer's /readyz, as a load balancer's health check.
func (b *balancer) watch() {
	for {
		select {
		case <-b.stop:
			return
		case <-time.After(50 * time.Millisecond):
		}
		b.mu.Lock()
		ws := make(map[*service]*atomic.Bool, len(b.ws))
		for w, up := range b.ws {
			ws[w] = up
		}
		b.mu.Unlock()
		for w, up := range ws {
			status, _, err := b.send(w, http.MethodGet, "/readyz", "")
			up.Store(err == nil && status == http.StatusOK)
		}
	}
}

// call sends the request to a ready writer, and again to another one when
// the connection is refused; err is a connection that failed after the
// request was sent.
func (b *balancer) call(rng *rand.Rand, method, path, body string) (int, []byte, error) {
	for {
		var up []*service
		b.mu.Lock()
		for w, ok := range b.ws {
			if ok.Load() {
				up = append(up, w)
			}
		}
		b.mu.Unlock()
		if len(up) == 0 {
			select {
			case <-b.stop:
				return 0, nil, errors.New("balancer stopped")
			case <-time.After(10 * time.Millisecond): // no writer ready: wait for the health check
			}
			continue
		}
		w := up[rng.IntN(len(up))]
		status, resp, err := b.send(w, method, path, body)
		if errors.Is(err, syscall.ECONNREFUSED) {
			b.mu.Lock()
			if up := b.ws[w]; up != nil {
				up.Store(false)
			}
			b.mu.Unlock()
			b.resent.Add(1)
			continue
		}
		if err != nil {
			b.broken.Add(1)
		}
		return status, resp, err
	}
}

func (b *balancer) send(w *service, method, path, body string) (int, []byte, error) {
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequestWithContext(context.Background(), method, w.url+path, r)
	if err != nil {
		return 0, nil, err
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := b.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	return resp.StatusCode, out, err
}

// restartUnder stops w with SIGTERM and starts a writer under its name and
// port (a StatefulSet's pod coming back), behind the balancer.
func (b *balancer) restartUnder(t *testing.T, tp topic, w *service, name string) *service {
	t.Helper()
	require.Equal(t, 0, w.terminate(), "%s exits cleanly", name)
	b.remove(w)
	n := startWriterAt(t, tp, w.port(), "WRITER_INSTANCE="+name)
	b.add(n)
	return n
}

// balanced is a fleetLoad whose clients go through a balancer.
func balanced(t *testing.T, ids []string, ws ...*service) (*fleetLoad, *balancer) {
	lb := newBalancer(t, ws...)
	load := newFleetLoad(t, ids)
	load.lb = lb
	return load, lb
}

// checkNoRefusal checks that every valid command the load sent was
// acknowledged: no answer but 2xx, no connection broken after sending.
func checkNoRefusal(t *testing.T, load *fleetLoad, lb *balancer) {
	t.Helper()
	t.Logf("%d updates acknowledged, %d refused, %d with an unknown outcome %v, %d sent again after a refused connection, %d broken connections",
		load.ok.Load(), load.refused.Load(), load.unknown.Load(), load.why, lb.resent.Load(), lb.broken.Load())
	assert.Zero(t, load.refused.Load(), "refused commands: %v", load.why)
	assert.Zero(t, load.unknown.Load(), "commands with an unknown outcome: %v", load.why)
	assert.Zero(t, lb.broken.Load(), "connections broken after the request was sent")
}

// balancedFleet starts a writer per name, creates 200 users, and starts 16
// clients behind a balancer, returning once 300 updates were acknowledged.
func balancedFleet(t *testing.T, tp topic, names []string) ([]*service, []string, *fleetLoad, *balancer) {
	t.Helper()
	ws := make([]*service, len(names))
	for i, name := range names {
		ws[i] = startWriterAt(t, tp, 0, "WRITER_INSTANCE="+name)
	}
	waitSpread(t, 6, ws...)
	ids := createUsers(t, ws[0], 200)
	load, lb := balanced(t, ids, ws...)
	load.start(16)
	waitAcks(t, load, 300)
	return ws, ids, load, lb
}

// A rolling deploy of three writers, one by one, each stopped (SIGTERM) and
// started again under its name, under 16 clients behind a load balancer:
// no command is refused, nothing acknowledged is lost, and no version is
// acknowledged twice.
func TestRollingDeployRefusesNothing(t *testing.T) {
	tp := newTopic(t)
	names := []string{"w-0", "w-1", "w-2"}
	ws, ids, load, lb := balancedFleet(t, tp, names)
	for i, name := range names {
		ws[i] = lb.restartUnder(t, tp, ws[i], name)
		waitSpread(t, 6, ws...)
		waitAcks(t, load, load.ok.Load()+300)
	}
	load.halt()
	lb.close()
	checkNoRefusal(t, load, lb)
	rs := load.checkTopic(tp)
	assert.Len(t, rs, len(ids))
}

// Scaling from one writer to three and back to one under 16 clients behind
// a load balancer: no command is refused, nothing acknowledged is lost.
func TestScaleOutAndInRefusesNothing(t *testing.T) {
	tp := newTopic(t)
	a := startWriterAt(t, tp, 0, "WRITER_INSTANCE=w-a")
	a.waitServing(6)
	ids := createUsers(t, a, 200)
	load, lb := balanced(t, ids, a)
	load.start(16)
	waitAcks(t, load, 300)
	b := startWriterAt(t, tp, 0, "WRITER_INSTANCE=w-b")
	lb.add(b)
	c := startWriterAt(t, tp, 0, "WRITER_INSTANCE=w-c")
	lb.add(c)
	waitSpread(t, 6, a, b, c)
	waitAcks(t, load, load.ok.Load()+300)
	for _, w := range []*service{c, b} {
		require.Equal(t, 0, w.terminate())
		lb.remove(w)
		waitAcks(t, load, load.ok.Load()+300)
	}
	a.waitServing(6)
	load.halt()
	lb.close()
	checkNoRefusal(t, load, lb)
	rs := load.checkTopic(tp)
	assert.Len(t, rs, len(ids))
	checkEqualsReplay(t, a, rs)
}

// fleetLoad's clients, with a balancer.
func (l *fleetLoad) put(rng *rand.Rand, id, body string) (status int, resp []byte, w *service, to string, err error) {
	if l.lb != nil {
		status, b, err := l.lb.call(rng, http.MethodPut, "/users/"+id, body)
		return status, b, nil, "the balancer", err
	}
	l.mu.Lock()
	ws := l.writers
	l.mu.Unlock()
	w = ws[rng.IntN(len(ws))]
	k := l.sent.Add(1)
	l.mu.Lock()
	if l.pending == nil {
		l.pending = make(map[*service]map[int64]time.Time)
	}
	if l.pending[w] == nil {
		l.pending[w] = make(map[int64]time.Time)
	}
	l.pending[w][k] = time.Now()
	l.mu.Unlock()
	status, b, err := w.call(http.MethodPut, "/users/"+id, body, nil)
	l.mu.Lock()
	delete(l.pending[w], k)
	l.mu.Unlock()
	return status, b, w, w.url, err
}

// One of three writers killed (SIGKILL) and started again at once under
// its name, under 16 clients behind a load balancer: it takes its own
// partitions back as the same static member, the others' partitions do not
// move, no answer is a refusal (commands for its users wait for it at the
// others; only requests in flight at the kill lose their connection, and
// those forwarded to it then get an unknown outcome: it may have run them),
// and nothing acknowledged is lost.
func TestKill9RestartUnderNameMovesNothingElse(t *testing.T) {
	tp := newTopic(t)
	names := []string{"w-0", "w-1", "w-2"}
	ws, ids, load, lb := balancedFleet(t, tp, names)
	before := [][]int32{ws[1].served(), ws[2].served()}
	ws[0].kill9()
	lb.remove(ws[0])
	ws[0] = startWriterAt(t, tp, ws[0].port(), "WRITER_INSTANCE="+names[0])
	lb.add(ws[0])
	waitSpread(t, 6, ws...)
	assert.Equal(t, before, [][]int32{ws[1].served(), ws[2].served()}, "the others' partitions did not move")
	waitAcks(t, load, load.ok.Load()+300)
	load.halt()
	lb.close()
	t.Logf("RESULT %d updates acknowledged, %d refused, %d with an unknown outcome (forwarded to the killed writer) %v, %d sent again after a refused connection, %d connections broken by the kill",
		load.ok.Load(), load.refused.Load(), load.unknown.Load(), load.why, lb.resent.Load(), lb.broken.Load())
	assert.Zero(t, load.refused.Load(), "refused commands: %v", load.why)
	rs := load.checkTopic(tp)
	assert.Len(t, rs, len(ids))
}
