package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/rehydrate/rehydrate/provider/memory"
)

func TestMinimalWriter(t *testing.T) {
	p, err := memory.New(6)
	require.NoError(t, err)
	users, err := newUsers(p)
	require.NoError(t, err)
	_, err = users.Restore(t.Context())
	require.NoError(t, err)
	srv := httptest.NewServer(routes(users))
	defer srv.Close()
	call := func(method, path, body string) (int, string) {
		req, err := http.NewRequestWithContext(t.Context(), method, srv.URL+path, strings.NewReader(body))
		require.NoError(t, err)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, strings.TrimSpace(string(b))
	}
	status, body := call("POST", "/users/ada", `{"name":"Ada Lovelace"}`)
	assert.Equal(t, http.StatusOK, status, body)
	status, _ = call("POST", "/users/ada", `{"name":"Ada"}`)
	assert.Equal(t, http.StatusConflict, status)
	status, _ = call("PUT", "/users/ada", `{"name":""}`)
	assert.Equal(t, http.StatusUnprocessableEntity, status)
	status, body = call("PUT", "/users/ada", `{"name":"Augusta Ada King"}`)
	assert.Equal(t, http.StatusOK, status)
	assert.JSONEq(t, `{"version":2}`, body)
	status, body = call("GET", "/users/ada", "")
	assert.Equal(t, http.StatusOK, status)
	assert.JSONEq(t, `{"name":"Augusta Ada King","version":2}`, body)
	status, _ = call("GET", "/users/nobody", "")
	assert.Equal(t, http.StatusNotFound, status)

	// A restart restores the same state from the log.
	again, err := newUsers(p)
	require.NoError(t, err)
	_, err = again.Restore(t.Context())
	require.NoError(t, err)
	u, v, err := again.Get("ada")
	require.NoError(t, err)
	assert.Equal(t, "Augusta Ada King", u.Name)
	assert.Equal(t, uint64(2), v)
}
