package serve_test

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rehydrate/rehydrate/examples/serve"
)

// An answer that is ready after the server's WriteTimeout (a long command,
// a process paused while serving it) still reaches the client: WriteJSON
// counts its own bound from when the answer is ready. Before, the client
// read EOF (the e2e TestPausedWriterCannotWriteAfterTakeover met it after a
// 12 s SIGSTOP).
func TestAnswerReadyAfterTheServersWriteTimeoutIsWritten(t *testing.T) {
	r := serve.NewRouter(slog.New(slog.DiscardHandler)) // its access log wraps the ResponseWriter
	r.Get("/", func(w http.ResponseWriter, _ *http.Request) {
		time.Sleep(300 * time.Millisecond) // the command, longer than WriteTimeout below
		serve.WriteJSON(w, http.StatusOK, map[string]string{"answer": "late"})
	})
	ts := httptest.NewUnstartedServer(r)
	ts.Config.WriteTimeout = 100 * time.Millisecond
	ts.Start()
	defer ts.Close()

	resp, err := ts.Client().Get(ts.URL)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.JSONEq(t, `{"answer":"late"}`, string(body))
}
