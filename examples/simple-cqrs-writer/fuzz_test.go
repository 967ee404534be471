package main

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"

	"github.com/rehydrate/rehydrate/observe/prom"
)

// fuzzUser is the user the fuzzed PUT and DELETE address; it exists before
// each input runs.
const fuzzUser = "ada"

// fuzzRoutes are the routes FuzzDecodeCommand drives: the input's route
// byte modulo their number.
var fuzzRoutes = []struct{ method, path string }{
	{http.MethodPost, "/"},
	{http.MethodPost, "/users"},
	{http.MethodPut, "/users/" + fuzzUser},
	{http.MethodDelete, "/users/" + fuzzUser},
}

// FuzzDecodeCommand feeds any body and If-Match to the decoders of the
// command routes, then to the routes themselves on a memory provider
// holding one user. Decoding gives a command or a 400 or 413, never a
// panic; an accepted command encodes back to a request that decodes to the
// same command; the route answers what decoding said, never a 5xx, and
// appends nothing when it refuses.
func FuzzDecodeCommand(f *testing.F) {
	for _, seed := range []struct {
		route         uint8
		ifMatch, body string
	}{
		{0, "", `{"type":"CreateUserCommand","first_name":"Ada","last_name":"Lovelace"}`},
		{0, "", `{"type":"UpdateUserCommand","id":"ada","first_name":"Ada","last_name":"King","expected_version":1}`},
		{0, "", `{"type":"DeleteUserCommand","id":"ada","expected_version":1}`},
		{0, "", `{"type":"UpdateUserCommand","id":"ada","first_name":"A","last_name":"B","expected_version":1e1000000}`},
		{1, "", `{"first_name":"Grace","last_name":"Hopper"}`},
		{1, "", "{\"first_name\":\"A\xff\\\"\",\"last_name\":\"B\"}"},
		{1, "", strings.Repeat("[", 20000)},
		{2, `"1"`, `{"first_name":"Ada","last_name":"King"}`},
		{2, "*", `{"first_name":"Ada","last_name":"King","expected_version":18446744073709551615}`},
		{3, `"1"`, ``},
	} {
		f.Add(seed.route, seed.ifMatch, []byte(seed.body))
	}
	f.Fuzz(func(t *testing.T, route uint8, ifMatch string, body []byte) {
		r := int(route) % len(fuzzRoutes)
		c, bad := decodeRoute(r, ifMatch, body)
		if bad != nil {
			require.Contains(t, []int{http.StatusBadRequest, http.StatusRequestEntityTooLarge}, bad.status, bad.msg)
			require.NotEmpty(t, bad.msg)
		} else {
			ifMatch2, body2 := encodeCommand(t, r, c)
			again, bad := decodeRoute(r, ifMatch2, body2)
			require.Nil(t, bad, "%+v encoded as %q, If-Match %q", c, body2, ifMatch2)
			require.Equal(t, c, again, "encoded as %q, If-Match %q", body2, ifMatch2)
		}
		checkRoute(t, r, ifMatch, body, bad)
	})
}

func decodeRoute(route int, ifMatch string, body []byte) (command, *badRequest) {
	r := bytes.NewReader(body)
	switch route {
	case 0:
		return decodePostCommand(r)
	case 1:
		return decodePostUser(r)
	case 2:
		return decodePutUser(fuzzUser, ifMatch, r)
	}
	return decodeDeleteUser(fuzzUser, ifMatch)
}

// encodeCommand is a request that route decodes to c, after checking that
// c is a command the route can give.
func encodeCommand(t *testing.T, route int, c command) (ifMatch string, body []byte) {
	wantKind, wantID := map[int]string{1: "create", 2: "update", 3: "delete"}[route], fuzzUser
	if route == 0 {
		wantKind, wantID = c.kind, c.id
		require.Contains(t, []string{"create", "update", "delete"}, c.kind)
		require.Equal(t, c.kind == "create", c.id == "", "id %q of a %s command", c.id, c.kind)
	} else if route == 1 {
		wantID = ""
	}
	require.Equal(t, wantKind, c.kind)
	require.Equal(t, wantID, c.id)

	var b strings.Builder
	field := func(key, value string) {
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`"` + key + `":` + value)
	}
	if route == 0 {
		field("type", jsonString(map[string]string{"create": createCommand, "update": updateCommand, "delete": deleteCommand}[c.kind]))
		if c.kind != "create" {
			field("id", jsonString(c.id))
		}
	}
	if c.kind != "delete" {
		field("first_name", jsonName(c.first))
		field("last_name", jsonName(c.last))
	}
	if c.expected != nil {
		switch route {
		case 1:
			t.Fatalf("a create command with an expected version: %+v", c)
		case 3:
			ifMatch = etag(*c.expected)
		default:
			field("expected_version", strconv.FormatUint(*c.expected, 10))
		}
	}
	return ifMatch, []byte("{" + b.String() + "}")
}

func jsonString(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// jsonName encodes a name as the decoder keeps it: one with invalid UTF-8
// is the JSON string's bytes as sent, so quoting them gives that string.
func jsonName(s string) string {
	if utf8.ValidString(s) {
		return jsonString(s)
	}
	return `"` + s + `"`
}

// checkRoute sends the input to its route, and checks that the answer is
// what decoding said (400 or 413 with its message), or what running a
// command can answer, and that the events appended are at most one, none
// when it answers an error.
func checkRoute(t *testing.T, route int, ifMatch string, body []byte, bad *badRequest) {
	s, p := newServerWith(t, true, fuzzMetrics())
	_, err := s.users.Create(t.Context(), fuzzUser, createUser("Ada", "Lovelace"))
	require.NoError(t, err)
	before := events(t, p)

	req := httptest.NewRequest(fuzzRoutes[route].method, fuzzRoutes[route].path, bytes.NewReader(body))
	if ifMatch != "" {
		req.Header["If-Match"] = []string{ifMatch}
	}
	rec := httptest.NewRecorder()
	s.routes().ServeHTTP(rec, req)

	var answer errorResponse
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &answer), "%s", rec.Body)
	switch {
	case len(body) > maxBody && route != 3:
		require.Equal(t, http.StatusRequestEntityTooLarge, rec.Code, "%s", rec.Body)
	case bad != nil:
		require.Equal(t, bad.status, rec.Code, "%s", rec.Body)
		require.Equal(t, bad.msg, answer.Error)
	default:
		require.Contains(t, []int{http.StatusOK, http.StatusCreated, http.StatusNotFound, http.StatusConflict, http.StatusUnprocessableEntity}, rec.Code, "%s", rec.Body)
	}
	after := events(t, p)
	if rec.Code >= 400 {
		require.NotEmpty(t, answer.Error)
		require.Equal(t, before, after, "a refused request appended")
	} else {
		require.LessOrEqual(t, after, before+1)
	}
}

// fuzzMetrics serves every input: newMetrics costs more than the rest of
// an input, and the command counters are all a route touches (the
// gauges, which would read a nil repository, are never collected).
var fuzzMetrics = sync.OnceValue(func() *metrics { return newMetrics(nil, prom.New()) })

// events is how many events p holds.
func events(t *testing.T, p *faulty) int64 {
	var n int64
	for _, part := range ends(t, p) {
		n += part.High
	}
	return n
}
