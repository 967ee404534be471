package faults

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"
)

// A network partition of one writer: a TCP proxy in front of each broker
// that one writer's client goes through, and that cuts (closes every
// connection, refuses new ones) or stalls (keeps the connections, forwards
// nothing) while the writer's process, and the callers it serves, run on.
//
// Brokers advertise their own addresses, so a client that bootstrapped
// through a proxy would connect around it. The fault cluster has a second
// listener for that (docker/kafka-local's KAFKA_PROXIED_OFFSET): node i
// listens on KAFKA_FAULT_PORT+offset+i-1 and advertises
// KAFKA_FAULT_PORT+offset+5+i-1, where the proxies listen. A client
// bootstrapped from the advertised ports reaches every broker only through
// the proxies; the other writers use the plain listener.

type linkState int

const (
	linkUp linkState = iota
	linkCut
	linkStalled
	// linkDropReplies forwards what the client sends and discards what
	// the brokers answer: a request is written, its acknowledgement lost.
	linkDropReplies
	// linkDropRequests discards what the client sends: a request it wrote
	// to its connection never reaches a broker.
	linkDropRequests
)

// tcpProxy forwards the connections it accepts on ln to target.
type tcpProxy struct {
	ln     net.Listener
	target string

	mu     sync.Mutex
	state  linkState
	resume chan struct{} // closed when a stall ends
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
}

func newTCPProxy(t *testing.T, listen, target string) *tcpProxy {
	ln, err := net.Listen("tcp", listen)
	require.NoError(t, err, "proxy on %s", listen)
	p := &tcpProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}, resume: make(chan struct{})}
	close(p.resume)
	p.wg.Go(p.accept)
	t.Cleanup(p.close)
	return p
}

func (p *tcpProxy) accept() {
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return // closed
		}
		p.mu.Lock()
		cut := p.state == linkCut
		p.mu.Unlock()
		if cut {
			_ = c.Close()
			continue
		}
		b, err := net.Dial("tcp", p.target)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[b] = struct{}{}, struct{}{}
		p.mu.Unlock()
		p.wg.Go(func() { p.pipe(b, c, linkDropRequests) })
		p.wg.Go(func() { p.pipe(c, b, linkDropReplies) })
	}
}

// pipe copies src to dst, holding what it read while the link is stalled
// and discarding it while the link is in state drop.
func (p *tcpProxy) pipe(dst, src net.Conn, drop linkState) {
	defer func() {
		_ = dst.Close()
		_ = src.Close()
		p.mu.Lock()
		delete(p.conns, dst)
		delete(p.conns, src)
		p.mu.Unlock()
	}()
	buf := make([]byte, 64<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			p.mu.Lock()
			resume, dropped := p.resume, p.state == drop
			p.mu.Unlock()
			<-resume
			if dropped {
				continue
			}
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return // EOF, or closed by a cut
		}
	}
}

// set moves the link to state: cutting closes every connection.
func (p *tcpProxy) set(state linkState) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.state == linkStalled && state != linkStalled {
		close(p.resume)
	}
	if state == linkStalled && p.state != linkStalled {
		p.resume = make(chan struct{})
	}
	p.state = state
	if state == linkCut {
		for c := range p.conns {
			_ = c.Close()
		}
	}
}

func (p *tcpProxy) close() {
	_ = p.ln.Close()
	p.set(linkCut)
	p.wg.Wait()
}

// proxies are the proxies in front of the fault cluster's three nodes.
type proxies []*tcpProxy

// newProxies starts a proxy for every node of c and returns them with the
// bootstrap address of a client that goes through them.
func newProxies(t *testing.T, c *cluster) (proxies, string) {
	offset := os.Getenv("KAFKA_PROXIED_OFFSET")
	if offset == "" {
		const how = "the network partition tests need KAFKA_PROXIED_OFFSET (the fault cluster's proxied listener): run `make test-faults`"
		if os.Getenv("CI") == "true" {
			t.Fatal("CI=true: " + how)
		}
		t.Skip(how)
	}
	port, err := strconv.Atoi(c.port)
	require.NoError(t, err)
	off, err := strconv.Atoi(offset)
	require.NoError(t, err)
	var ps proxies
	var bootstrap []string
	for i := range 3 {
		listen, target := fmt.Sprintf("127.0.0.1:%d", port+off+5+i), fmt.Sprintf("127.0.0.1:%d", port+off+i)
		conn, err := net.Dial("tcp", target)
		require.NoError(t, err, "node %d has no proxied listener on %s: was the cluster started with KAFKA_PROXIED_OFFSET=%s?", i+1, target, offset)
		_ = conn.Close()
		ps = append(ps, newTCPProxy(t, listen, target))
		bootstrap = append(bootstrap, listen)
	}
	return ps, strings.Join(bootstrap, ",")
}

func (ps proxies) set(state linkState) {
	for _, p := range ps {
		p.set(state)
	}
}
