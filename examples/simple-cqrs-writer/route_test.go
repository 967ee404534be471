package main

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A forward whose request reached the owner and whose answer was lost has
// an unknown outcome (the owner may have run it); one that never left
// changed nothing. send tells the two apart: elsewhere answers the first
// with outcome_unknown and does not send it again.
func TestSendTellsALostAnswerFromAForwardNeverSent(t *testing.T) {
	var got atomic.Int32
	owner := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		got.Add(1)
		// The owner ran the command, then its connection broke.
		conn, _, err := http.NewResponseController(w).Hijack()
		require.NoError(t, err)
		_ = conn.Close()
	}))
	defer owner.Close()
	rt := &router{self: "http://self", client: owner.Client()}
	req := httptest.NewRequest(http.MethodPut, "/users/u1", strings.NewReader(`{}`))

	_, sent, err := rt.send(t.Context(), req, owner.URL, []byte(`{}`))
	require.Error(t, err)
	assert.True(t, sent, "the owner read the whole request")
	assert.Equal(t, int32(1), got.Load())

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	nowhere := "http://" + ln.Addr().String()
	require.NoError(t, ln.Close()) // nothing listens there now
	_, sent, err = rt.send(t.Context(), req, nowhere, []byte(`{}`))
	require.Error(t, err)
	assert.False(t, sent, "no connection: nothing was sent")
}
