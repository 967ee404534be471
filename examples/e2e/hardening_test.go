package e2e

import (
	"io"
	"net"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The writer started with WRITER_TOKEN answers 401 to every command and
// read without the token and changes nothing, while the probes and the
// metrics stay open; a client that sends its headers a byte at a time is
// cut off at READ_HEADER_TIMEOUT; neither the token nor the Kafka SASL
// password shows in the logs or the metrics.
func TestWriterHardening(t *testing.T) {
	const (
		token         = "e2e-writer-token-5f0c1d2b9a7e"
		password      = "e2e-sasl-password-8c3a6e41"
		headerTimeout = time.Second
	)
	tp := newTopic(t)
	w := start(t, writerBin, append(tp.env, "WRITER_TOKEN="+token, "KAFKA_SASL_PASSWORD="+password,
		"READ_HEADER_TIMEOUT="+headerTimeout.String(), "LOG_LEVEL=debug")...)
	w.waitReady()
	bearer := map[string]string{"Authorization": "Bearer " + token}
	status, resp := w.mustCall(http.MethodPost, "/users", `{"first_name":"Ada","last_name":"Lovelace"}`, bearer)
	require.Equal(t, http.StatusCreated, status, "%s", resp)
	id := decode[ack](t, resp).ID

	t.Run("bearer token", func(t *testing.T) {
		before := tp.ends(t)
		for _, auth := range []string{"", "Bearer", "Bearer wrong", "Bearer " + token[:len(token)-1], "Bearer " + token + "x", "Basic " + token, token} {
			for _, rq := range []struct{ method, path, body string }{
				{"POST", "/", `{"type":"CreateUserCommand","first_name":"Eve","last_name":"Intruder"}`},
				{"POST", "/users", `{"first_name":"Eve","last_name":"Intruder"}`},
				{"PUT", "/users/" + id, `{"first_name":"Eve","last_name":"Intruder"}`},
				{"DELETE", "/users/" + id, ``},
				{"GET", "/users/" + id, ``},
			} {
				var header map[string]string
				if auth != "" {
					header = map[string]string{"Authorization": auth}
				}
				res, b, err := w.do(rq.method, rq.path, rq.body, header)
				require.NoError(t, err)
				assert.Equal(t, http.StatusUnauthorized, res.StatusCode, "%s %s with %q: %s", rq.method, rq.path, auth, b)
				challenge := res.Header.Get("WWW-Authenticate")
				assert.True(t, strings.HasPrefix(challenge, "Bearer "), "WWW-Authenticate: %s", challenge)
				assert.Equal(t, auth != "", strings.Contains(challenge, `error="invalid_token"`), "WWW-Authenticate: %s", challenge)
				assert.Contains(t, decode[map[string]any](t, b)["error"], "bearer token")
			}
		}
		for _, path := range []string{"/healthz", "/readyz", "/metrics"} {
			status, resp := w.mustCall(http.MethodGet, path, "", nil)
			assert.Equal(t, http.StatusOK, status, "%s without a token: %s", path, resp)
		}
		assert.Equal(t, before, tp.ends(t), "refused commands appended nothing")
		// The scheme is case-insensitive (RFC 7235).
		status, resp := w.mustCall(http.MethodGet, "/users/"+id, "", map[string]string{"Authorization": "bearer " + token})
		require.Equal(t, http.StatusOK, status, "%s", resp)
		assert.Equal(t, user{ID: id, FirstName: "Ada", LastName: "Lovelace", Version: 1}, decode[user](t, resp))
	})

	t.Run("slowloris", func(t *testing.T) {
		conn, err := net.Dial("tcp", strings.TrimPrefix(w.url, "http://"))
		require.NoError(t, err)
		defer conn.Close()
		began := time.Now()
		_, err = io.WriteString(conn, "POST / HTTP/1.1\r\nHost: writer\r\nX-Slow: ")
		require.NoError(t, err)
		stop, sent := make(chan struct{}), make(chan int, 1)
		go func() {
			// The attack: one more byte of the header every 500 ms, never
			// the end of the headers.
			tick := time.NewTicker(500 * time.Millisecond)
			defer tick.Stop()
			n := 0
			defer func() { sent <- n }()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
					if _, err := conn.Write([]byte("a")); err != nil {
						return
					}
					n++
				}
			}
		}()
		require.NoError(t, conn.SetReadDeadline(began.Add(headerTimeout+3*time.Second)))
		answer, err := io.ReadAll(conn) // until the server closes the connection
		closedAfter := time.Since(began)
		close(stop)
		n := <-sent
		if err != nil {
			require.ErrorIs(t, err, syscall.ECONNRESET, "the server did not close the connection within %v", headerTimeout+3*time.Second)
		}
		assert.GreaterOrEqual(t, n, 1, "bytes sent before the server closed the connection")
		assert.GreaterOrEqual(t, closedAfter, headerTimeout-100*time.Millisecond)
		assert.Less(t, closedAfter, headerTimeout+2*time.Second)
		t.Logf("closed after %v and %d slow bytes; it answered %q", closedAfter.Round(time.Millisecond), n, answer)
	})

	t.Run("no secret in logs or metrics", func(t *testing.T) {
		status, metrics := w.mustCall(http.MethodGet, "/metrics", "", nil)
		require.Equal(t, http.StatusOK, status)
		w.mu.Lock()
		logs := strings.Join(w.logs, "\n")
		w.mu.Unlock()
		for _, secret := range []string{token, password} {
			assert.NotContains(t, logs, secret)
			assert.NotContains(t, string(metrics), secret)
		}
		// The password did reach the configuration that was logged.
		assert.Contains(t, logs, `"sasl_password_set":true`)
		assert.Contains(t, logs, `"bearer_token":true`)
	})
}
