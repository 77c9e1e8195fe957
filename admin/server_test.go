package admin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func newRegistry() *prometheus.Registry { return prometheus.NewRegistry() }

const smallQuery = `{ webhooks { totalCount } }`

func TestAuth(t *testing.T) {
	e := newEnv(t)
	body := []byte(`{"query": "` + smallQuery + `"}`)
	for _, tc := range []struct {
		name, auth string
		status     int
		challenge  string // a substring of WWW-Authenticate
	}{
		{"missing", "", http.StatusUnauthorized, `Bearer realm=`},
		{"wrong token", "Bearer nope", http.StatusUnauthorized, `error="invalid_token"`},
		{"longer wrong token", "Bearer " + testToken + "x", http.StatusUnauthorized, `error="invalid_token"`},
		{"prefix of the token", "Bearer " + testToken[:4], http.StatusUnauthorized, `error="invalid_token"`},
		{"wrong scheme", "Basic " + base64.StdEncoding.EncodeToString([]byte("admin:"+testToken)), http.StatusUnauthorized, `Bearer realm=`},
		{"bare token", testToken, http.StatusUnauthorized, `Bearer realm=`},
		{"right", "Bearer " + testToken, http.StatusOK, ""},
		{"scheme is case-insensitive", "bearer " + testToken, http.StatusOK, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, accept := range []string{mediaJSON, mediaGraphQLResponse} {
				r := e.send(http.MethodPost, "/graphql", body, header{"Content-Type", "application/json"},
					header{"Authorization", tc.auth}, header{"Accept", accept})
				if r.status != tc.status {
					t.Fatalf("Accept %s: HTTP %d, want %d: %s", accept, r.status, tc.status, r.raw)
				}
				if tc.status != http.StatusUnauthorized {
					continue
				}
				if r.code() != codeUnauthenticated || r.hasData() {
					t.Errorf("body = %s", r.raw)
				}
				if got := r.header.Get("WWW-Authenticate"); !strings.Contains(got, tc.challenge) {
					t.Errorf("WWW-Authenticate = %q, want it to contain %q", got, tc.challenge)
				}
				if !strings.HasPrefix(r.header.Get("Content-Type"), accept) {
					t.Errorf("Content-Type = %q", r.header.Get("Content-Type"))
				}
			}
		})
	}

	// GET execution needs the token too; the explorer page does not.
	r := e.send(http.MethodGet, "/graphql?query="+url.QueryEscape(smallQuery), nil, header{"Authorization", ""})
	if r.status != http.StatusUnauthorized {
		t.Errorf("GET without token: HTTP %d", r.status)
	}
	r = e.send(http.MethodGet, "/graphql", nil, header{"Authorization", ""}, header{"Accept", "text/html"})
	if r.status != http.StatusOK {
		t.Errorf("explorer without token: HTTP %d", r.status)
	}
}

// TestAuthConstantTime checks the comparison's inputs: both sides are
// hashed, so tokens of any length compare in the same time.
func TestAuthConstantTime(t *testing.T) {
	e := newEnv(t)
	if e.s.tokenHash != sha256.Sum256([]byte(testToken)) {
		t.Fatal("the configured token is not kept as its hash")
	}
	for _, tok := range []string{"", "x", testToken[:len(testToken)-1], testToken + testToken} {
		req, _ := http.NewRequest(http.MethodPost, "/graphql", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		if e.s.authenticate(discardWriter{}, req) == nil {
			t.Errorf("token %q accepted", tok)
		}
	}
}

type discardWriter struct{}

func (discardWriter) Header() http.Header         { return http.Header{} }
func (discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (discardWriter) WriteHeader(int)             {}

func TestNoTokenOnLoopback(t *testing.T) {
	e := newEnv(t, withToken(""))
	r := e.post(smallQuery, nil)
	if r.status != http.StatusOK || len(r.Errors) > 0 {
		t.Errorf("HTTP %d %s", r.status, r.raw)
	}
	if _, err := New(Config{Listen: "0.0.0.0:9090"}, nil, newRegistry(), newFakeStore(), builtinTypes, nil); err == nil {
		t.Error("New accepted an empty token on a non-loopback address")
	}
}

func TestBodyLimit(t *testing.T) {
	e := newEnv(t)
	padding := strings.Repeat(" ", maxBodyBytes)
	big := []byte(`{"query": "` + smallQuery + padding + `"}`)
	r := e.send(http.MethodPost, "/graphql", big, header{"Content-Type", "application/json"})
	if r.status != http.StatusRequestEntityTooLarge || r.code() != codeBadUserInput {
		t.Errorf("declared length: HTTP %d %s", r.status, r.raw)
	}

	// Without a Content-Length (chunked), the reader stops at the limit.
	req, _ := http.NewRequest(http.MethodPost, e.srv.URL+"/graphql", io.MultiReader(bytes.NewReader(big)))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+testToken)
	req.ContentLength = -1
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Errorf("chunked: HTTP %d", resp.StatusCode)
	}

	// Just under the limit is fine.
	ok := []byte(`{"query": "` + smallQuery + padding[:maxBodyBytes-100] + `"}`)
	if r := e.send(http.MethodPost, "/graphql", ok, header{"Content-Type", "application/json"}); r.status != http.StatusOK {
		t.Errorf("under the limit: HTTP %d %.200s", r.status, r.raw)
	}
}

// TestContentNegotiation follows GraphQL over HTTP: application/json
// answers 200 for anything executed or not, graphql-response+json answers
// 4xx when nothing was executed (no data entry).
func TestContentNegotiation(t *testing.T) {
	e := newEnv(t)
	const (
		json = mediaJSON
		gql  = mediaGraphQLResponse
	)
	type want struct {
		media  string
		status int
	}
	bodies := map[string]string{
		"ok":             `{"query": "{ webhooks { totalCount } }"}`,
		"field error":    `{"query": "mutation { webhookDelete(id: \"nope\") }"}`,
		"parse error":    `{"query": "{ webhooks {"}`,
		"invalid":        `{"query": "{ nope }"}`,
		"bad variables":  `{"query": "query($n: Int) { webhooks(first: $n) { totalCount } }", "variables": {"n": "x"}}`,
		"missing query":  `{"variables": {}}`,
		"query not text": `{"query": 42}`,
		"variables list": `{"query": "{ webhooks { totalCount } }", "variables": [1]}`,
		"not JSON":       `{"query": `,
	}
	for _, tc := range []struct {
		accept string
		body   string
		want   want
	}{
		{"", "ok", want{json, 200}},
		{"*/*", "ok", want{json, 200}},
		{"application/json", "ok", want{json, 200}},
		{"application/graphql-response+json", "ok", want{gql, 200}},
		{"application/graphql-response+json, application/json;q=0.9", "ok", want{gql, 200}},
		{"application/json, application/graphql-response+json", "ok", want{json, 200}},
		{"application/graphql-response+json, application/json", "ok", want{gql, 200}},
		{"application/json;q=0.5, application/graphql-response+json", "ok", want{gql, 200}},
		{"application/*", "ok", want{json, 200}},
		{"application/*, application/graphql-response+json", "ok", want{gql, 200}},
		{"text/plain", "ok", want{json, 406}},
		{"application/json;q=0", "ok", want{json, 406}},

		{json, "field error", want{json, 200}},
		{gql, "field error", want{gql, 200}}, // data: null is still a response with data
		{json, "parse error", want{json, 200}},
		{gql, "parse error", want{gql, 400}},
		{json, "invalid", want{json, 200}},
		{gql, "invalid", want{gql, 400}},
		{json, "bad variables", want{json, 200}},
		{gql, "bad variables", want{gql, 400}},
		{json, "missing query", want{json, 400}},
		{gql, "missing query", want{gql, 400}},
		{json, "query not text", want{json, 400}},
		{json, "variables list", want{json, 400}},
		{json, "not JSON", want{json, 400}},
		{gql, "not JSON", want{gql, 400}},
	} {
		t.Run(tc.body+" "+tc.accept, func(t *testing.T) {
			hdrs := []header{{"Content-Type", "application/json"}}
			if tc.accept != "" {
				hdrs = append(hdrs, header{"Accept", tc.accept})
			}
			r := e.send(http.MethodPost, "/graphql", []byte(bodies[tc.body]), hdrs...)
			if r.status != tc.want.status {
				t.Errorf("HTTP %d, want %d: %s", r.status, tc.want.status, r.raw)
			}
			if ct := r.header.Get("Content-Type"); ct != tc.want.media+"; charset=utf-8" {
				t.Errorf("Content-Type = %q, want %s", ct, tc.want.media)
			}
			if tc.body != "ok" && tc.body != "field error" && r.hasData() {
				t.Errorf("a request that was not executed has a data entry: %s", r.raw)
			}
			if tc.want.status != 200 && r.code() == "" {
				t.Errorf("no error code: %s", r.raw)
			}
		})
	}
}

func TestRequestContentType(t *testing.T) {
	e := newEnv(t)
	for _, ct := range []string{"", "text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"} {
		r := e.send(http.MethodPost, "/graphql", []byte(`{"query": "{ webhooks { totalCount } }"}`), header{"Content-Type", ct})
		if r.status != http.StatusUnsupportedMediaType || r.code() != codeBadUserInput {
			t.Errorf("Content-Type %q: HTTP %d %s", ct, r.status, r.raw)
		}
	}
	r := e.send(http.MethodPost, "/graphql", []byte(`{"query": "{ webhooks { totalCount } }"}`),
		header{"Content-Type", "application/json; charset=utf-8"})
	if r.status != http.StatusOK {
		t.Errorf("with charset: HTTP %d", r.status)
	}
	r = e.send(http.MethodPut, "/graphql", nil)
	if r.status != http.StatusMethodNotAllowed || !strings.Contains(r.header.Get("Allow"), "POST") {
		t.Errorf("PUT: HTTP %d, Allow %q", r.status, r.header.Get("Allow"))
	}
}

func TestGET(t *testing.T) {
	e := newEnv(t)
	id := e.seedWebhook("https://a.example/hook", "ORDER_CREATED")

	// A browser gets the explorer.
	browser := "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
	r := e.send(http.MethodGet, "/graphql", nil, header{"Accept", browser})
	page := string(r.raw)
	if r.status != http.StatusOK || !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") || !strings.Contains(page, `id="graphiql"`) {
		t.Fatalf("explorer: HTTP %d %s", r.status, r.header)
	}
	checkExplorerPage(t, e, page, r.header) // explorer_test.go
	// Also with a query in the URL (a shared link).
	r = e.send(http.MethodGet, "/graphql?query="+url.QueryEscape(smallQuery), nil, header{"Accept", browser})
	if !strings.HasPrefix(r.header.Get("Content-Type"), "text/html") {
		t.Errorf("browser with ?query= got %s", r.header.Get("Content-Type"))
	}

	// Other clients execute queries.
	q := url.Values{
		"query":         {`query One($id: ID!) { webhook(id: $id) { url } } query Two { webhooks { totalCount } }`},
		"variables":     {`{"id": "` + id + `"}`},
		"operationName": {"One"},
	}
	for _, accept := range []string{"", "*/*", mediaJSON, mediaGraphQLResponse} {
		r = e.send(http.MethodGet, "/graphql?"+q.Encode(), nil, header{"Accept", accept})
		if r.status != http.StatusOK || r.get("webhook.url") != "https://a.example/hook" {
			t.Errorf("GET with Accept %q: HTTP %d %s", accept, r.status, r.raw)
		}
	}

	// Mutations are refused on GET, with or without an operation name.
	for _, v := range []url.Values{
		{"query": {`mutation { webhookDelete(id: "` + id + `") }`}},
		{"query": {`query A { webhooks { totalCount } } mutation B { webhookDelete(id: "` + id + `") }`}, "operationName": {"B"}},
	} {
		r = e.send(http.MethodGet, "/graphql?"+v.Encode(), nil, header{"Accept", mediaJSON})
		if r.status != http.StatusMethodNotAllowed || r.code() != codeBadUserInput || r.hasData() || r.header.Get("Allow") != "POST" {
			t.Errorf("GET mutation: HTTP %d, Allow %q, %s", r.status, r.header.Get("Allow"), r.raw)
		}
	}
	if len(e.store.webhooks) != 1 {
		t.Error("a GET mutation ran")
	}

	for name, path := range map[string]string{
		"no query":      "/graphql",
		"bad variables": "/graphql?query=" + url.QueryEscape(smallQuery) + "&variables=%5B1%5D",
	} {
		r = e.send(http.MethodGet, path, nil, header{"Accept", mediaJSON})
		if r.status != http.StatusBadRequest || r.code() != codeBadUserInput {
			t.Errorf("%s: HTTP %d %s", name, r.status, r.raw)
		}
	}
}

func TestMetrics(t *testing.T) {
	reg := prometheus.NewRegistry()
	c := prometheus.NewCounter(prometheus.CounterOpts{Name: "eventtap_events_total", Help: "Events."})
	reg.MustRegister(c)
	c.Add(3)
	e := newEnv(t, withGatherer(reg))

	r := e.send(http.MethodGet, "/metrics", nil)
	if r.status != http.StatusOK || !strings.HasPrefix(r.header.Get("Content-Type"), "text/plain") ||
		!strings.Contains(string(r.raw), "eventtap_events_total 3") {
		t.Errorf("text exposition: HTTP %d %s %s", r.status, r.header.Get("Content-Type"), r.raw)
	}
	r = e.send(http.MethodGet, "/metrics", nil, header{"Accept", "application/openmetrics-text; version=1.0.0; charset=utf-8"})
	if !strings.HasPrefix(r.header.Get("Content-Type"), "application/openmetrics-text") ||
		!strings.HasSuffix(string(r.raw), "# EOF\n") {
		t.Errorf("OpenMetrics: %s %s", r.header.Get("Content-Type"), r.raw)
	}
}

func TestHealthz(t *testing.T) {
	e := newEnv(t, withReady(map[string]Check{"store": func(context.Context) error { return errors.New("down") }}))
	r := e.send(http.MethodGet, "/healthz", nil, header{"Authorization", ""})
	if r.status != http.StatusOK || strings.TrimSpace(string(r.raw)) != "ok" {
		t.Errorf("HTTP %d %q", r.status, r.raw)
	}
}

func TestReadyz(t *testing.T) {
	ok := func(context.Context) error { return nil }
	for _, tc := range []struct {
		name   string
		checks map[string]Check
		status int
		body   []string
	}{
		{"none", nil, 200, []string{`"status":"ok"`}},
		{"all ok", map[string]Check{"store": ok, "upstream": ok}, 200,
			[]string{`"store":{"status":"ok"}`, `"upstream":{"status":"ok"}`}},
		{"one fails", map[string]Check{"store": ok, "upstream": func(context.Context) error {
			return errors.New("dial tcp 127.0.0.1:3000: connection refused")
		}}, 503, []string{`"status":"fail"`, `"store":{"status":"ok"}`, `"upstream":{"status":"fail","error":"dial tcp 127.0.0.1:3000: connection refused"}`}},
		{"hangs until the timeout", map[string]Check{"upstream": func(ctx context.Context) error {
			<-ctx.Done()
			return ctx.Err()
		}}, 503, []string{`"error":"context deadline exceeded"`}},
		{"panics", map[string]Check{"store": func(context.Context) error { panic("boom") }}, 503, []string{`check panicked: boom`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, withReady(tc.checks))
			start := time.Now()
			r := e.send(http.MethodGet, "/readyz", nil, header{"Authorization", ""})
			if r.status != tc.status {
				t.Errorf("HTTP %d, want %d: %s", r.status, tc.status, r.raw)
			}
			for _, b := range tc.body {
				if !strings.Contains(string(r.raw), b) {
					t.Errorf("body %s lacks %s", r.raw, b)
				}
			}
			if d := time.Since(start); d > checkTimeout+time.Second {
				t.Errorf("took %v", d)
			}
		})
	}
}

func TestRun(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	cfg := DefaultConfig()
	cfg.Listen = addr
	s, err := New(cfg, nil, newRegistry(), newFakeStore(), builtinTypes, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()

	var resp *http.Response
	for range 100 {
		resp, err = http.Get("http://" + addr + "/healthz")
		if err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("server never answered: %v", err)
	}
	resp.Body.Close()

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run = %v", err)
		}
	case <-time.After(shutdownTimeout + time.Second):
		t.Fatal("Run did not return after ctx ended")
	}
	if _, err := http.Get("http://" + addr + "/healthz"); err == nil {
		t.Error("still serving after Run returned")
	}

	// A taken address is an error, not a hang.
	ln, err = net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg.Listen = ln.Addr().String()
	s, _ = New(cfg, nil, newRegistry(), newFakeStore(), builtinTypes, nil)
	if err := s.Run(context.Background()); err == nil {
		t.Error("Run on a taken address returned nil")
	}
}

func TestAcceptParsing(t *testing.T) {
	for _, tc := range []struct {
		accept string
		media  string
		html   bool
	}{
		{"", mediaJSON, false},
		{"*/*", mediaJSON, false},
		{"text/html", "", true},
		{"text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", mediaJSON, true},
		{"application/json, text/html;q=0.5", mediaJSON, false},
		{"text/*", "", false},
		{"application/graphql-response+json;q=0.8, application/json;q=0.9", mediaJSON, false},
		{"garbage;;;, application/graphql-response+json", mediaGraphQLResponse, false},
		{"application/json;q=2", mediaJSON, false}, // an invalid q drops the range, leaving none
	} {
		req, _ := http.NewRequest(http.MethodGet, "/", nil)
		if tc.accept != "" {
			req.Header.Set("Accept", tc.accept)
		}
		a := parseAccept(req)
		if got := a.responseMediaType(); got != tc.media {
			t.Errorf("%q: media = %q, want %q", tc.accept, got, tc.media)
		}
		if got := a.wantsHTML(); got != tc.html {
			t.Errorf("%q: wantsHTML = %v", tc.accept, got)
		}
	}
}

// TestBodyNotAnObject checks that a body of the wrong JSON shape gets a
// message saying what to send, not the decoder's Go types.
func TestBodyNotAnObject(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct{ body, want string }{
		{`[{"query":"{ webhooks { totalCount } }"}]`, "batched operations are not supported"},
		{`"{ webhooks { totalCount } }"`, "the request body is a JSON string, not an object"},
		{`{"query":`, "the request body is not a JSON object"},
	} {
		r := e.send(http.MethodPost, "/graphql", []byte(tc.body), header{"Content-Type", "application/json"})
		if r.status != http.StatusBadRequest || r.code() != codeBadUserInput || len(r.Errors) != 1 ||
			!strings.Contains(r.Errors[0].Message, tc.want) || strings.Contains(r.Errors[0].Message, "Go ") ||
			strings.Contains(r.Errors[0].Message, "struct") {
			t.Errorf("body %s: HTTP %d %s, want 400 with %q", tc.body, r.status, r.raw, tc.want)
		}
	}
}
