package main

import (
	"bufio"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A 100 MiB body is refused with 413 once the server has read a little over
// the 1 MiB limit of it, or none of it when its length is declared, and the
// connection is closed instead of drained.
func TestBodyOverTheLimitIsNotReadWhole(t *testing.T) {
	const size = 100 << 20
	for _, tc := range []struct {
		name          string
		contentLength int64
		maxRead       int64
	}{
		// After answering, net/http reads up to 256 KiB more of a body
		// whose end it has not seen, to reuse the connection, before it
		// sees the Connection: close.
		{"chunked", -1, maxBody + 256<<10 + 64<<10},
		{"Content-Length: 104857600", size, 64 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, p := newServer(t, true)
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			counted := &countingListener{Listener: ln}
			srv := newHTTPServer(s.routes(), time.Second, s.timeout, slog.New(slog.DiscardHandler))
			go func() { _ = srv.Serve(counted) }()
			t.Cleanup(func() { _ = srv.Close() })

			conn, err := net.Dial("tcp", ln.Addr().String())
			require.NoError(t, err)
			defer conn.Close()
			body := &endlessName{}
			req, err := http.NewRequest(http.MethodPost, "http://"+ln.Addr().String()+"/users", body)
			require.NoError(t, err)
			req.ContentLength = tc.contentLength
			written := make(chan error, 1)
			go func() { written <- req.Write(conn) }()

			require.NoError(t, conn.SetReadDeadline(time.Now().Add(10*time.Second)))
			resp, err := http.ReadResponse(bufio.NewReader(conn), req)
			require.NoError(t, err)
			read, generated := counted.n.Load(), body.n.Load()
			b, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			_ = conn.Close() // stops the writer
			<-written

			assert.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode, "%s", b)
			assert.True(t, resp.Close, "Connection: close")
			var answer errorResponse
			require.NoError(t, json.Unmarshal(b, &answer), "%s", b)
			assert.Contains(t, answer.Error, "larger than")
			assert.LessOrEqual(t, read, tc.maxRead, "bytes the server read")
			assert.Less(t, generated, int64(size/4), "bytes the client generated")
			t.Logf("the server read %d bytes, the client generated %d of %d", read, generated, size)
			assert.Zero(t, events(t, p))
		})
	}
}

// endlessName is a body that starts a name and never ends it: the decoder
// cannot stop before the limit.
type endlessName struct{ n atomic.Int64 }

func (e *endlessName) Read(p []byte) (int, error) {
	const start = `{"first_name":"`
	off := e.n.Add(int64(len(p))) - int64(len(p))
	for i := range p {
		if k := off + int64(i); k < int64(len(start)) {
			p[i] = start[k]
		} else {
			p[i] = 'a'
		}
	}
	return len(p), nil
}

// countingListener counts the bytes the server reads.
type countingListener struct {
	net.Listener
	n atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countingConn{TCPConn: c.(*net.TCPConn), n: &l.n}, nil
}

// countingConn keeps *net.TCPConn's CloseWrite, which the server uses to
// close without losing its answer to a reset.
type countingConn struct {
	*net.TCPConn
	n *atomic.Int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.TCPConn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

var _ interface{ CloseWrite() error } = (*countingConn)(nil)
