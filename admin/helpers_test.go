package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// builtinTypes are SPEC §3's built-in event types, in order.
var builtinTypes = []string{"ORDER_CREATED", "ORDER_CANCELED", "ORDER_STATUS_CHANGED", "ORDER_UPDATED",
	"SHIPMENT_CREATED", "SHIPMENT_CANCELED"}

const testToken = "s3cret-admin-token"

// testEnv is a Server behind a real HTTP server, backed by a fakeStore.
type testEnv struct {
	t     *testing.T
	store *fakeStore
	srv   *httptest.Server
	s     *Server
	token string
}

type envOption func(*envConfig)

type envConfig struct {
	cfg        Config
	eventTypes []string
	ready      map[string]Check
	gatherer   prometheus.Gatherer
}

func withToken(tok string) envOption               { return func(c *envConfig) { c.cfg.Token = tok } }
func withEventTypes(ts ...string) envOption        { return func(c *envConfig) { c.eventTypes = ts } }
func withReady(m map[string]Check) envOption       { return func(c *envConfig) { c.ready = m } }
func withGatherer(g prometheus.Gatherer) envOption { return func(c *envConfig) { c.gatherer = g } }

func newEnv(t *testing.T, opts ...envOption) *testEnv {
	t.Helper()
	c := envConfig{
		cfg:        DefaultConfig(),
		eventTypes: append(append([]string{}, builtinTypes...), "INVOICE_PAID"),
		gatherer:   prometheus.NewRegistry(),
	}
	c.cfg.Token = testToken
	for _, o := range opts {
		o(&c)
	}
	store := newFakeStore()
	logger := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := New(c.cfg, logger, c.gatherer, store, c.eventTypes, c.ready)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	srv := httptest.NewServer(s.Handler())
	t.Cleanup(srv.Close)
	return &testEnv{t: t, store: store, srv: srv, s: s, token: c.cfg.Token}
}

// testWriter sends the server's log to the test log, so that a failing
// test shows what the server said.
type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// gqlResult is a decoded GraphQL response with its HTTP envelope.
type gqlResult struct {
	Data   json.RawMessage `json:"data"`
	Errors []struct {
		Message    string         `json:"message"`
		Path       []any          `json:"path"`
		Locations  []any          `json:"locations"`
		Extensions map[string]any `json:"extensions"`
	} `json:"errors"`
	status int
	header http.Header
	raw    []byte
}

// hasData reports whether the response has a data entry (possibly null).
func (r *gqlResult) hasData() bool { return r.Data != nil }

func (r *gqlResult) code() string {
	if len(r.Errors) == 0 {
		return ""
	}
	c, _ := r.Errors[0].Extensions["code"].(string)
	return c
}

// get digs into data along a dotted path ("webhooks.edges.0.node.id").
func (r *gqlResult) get(path string) any {
	r0 := any(nil)
	if err := json.Unmarshal(r.Data, &r0); err != nil {
		return nil
	}
	return dig(r0, path)
}

func dig(v any, path string) any {
	if path == "" {
		return v
	}
	for part := range strings.SplitSeq(path, ".") {
		switch x := v.(type) {
		case map[string]any:
			v = x[part]
		case []any:
			i, err := strconv.Atoi(part)
			if err != nil || i < 0 || i >= len(x) {
				return nil
			}
			v = x[i]
		default:
			return nil
		}
	}
	return v
}

type header struct{ key, value string }

// post sends a GraphQL request as the explorer would, with the token.
func (e *testEnv) post(query string, vars map[string]any, hdrs ...header) *gqlResult {
	e.t.Helper()
	body, err := json.Marshal(map[string]any{"query": query, "variables": vars})
	if err != nil {
		e.t.Fatal(err)
	}
	return e.send(http.MethodPost, "/graphql", body, append([]header{{"Content-Type", "application/json"}}, hdrs...)...)
}

// gql posts and fails the test on any GraphQL error.
func (e *testEnv) gql(query string, vars map[string]any) *gqlResult {
	e.t.Helper()
	r := e.post(query, vars)
	if r.status != http.StatusOK || len(r.Errors) > 0 {
		e.t.Fatalf("query failed: HTTP %d: %s", r.status, r.raw)
	}
	return r
}

// send is one raw request; the token is added unless an Authorization
// header is given (an empty one sends none).
func (e *testEnv) send(method, path string, body []byte, hdrs ...header) *gqlResult {
	e.t.Helper()
	req, err := http.NewRequestWithContext(context.Background(), method, e.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	auth := true
	for _, h := range hdrs {
		if h.key == "Authorization" {
			auth = false
			if h.value == "" {
				continue
			}
		}
		req.Header.Add(h.key, h.value)
	}
	if auth && e.token != "" {
		req.Header.Set("Authorization", "Bearer "+e.token)
	}
	resp, err := e.srv.Client().Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	r := &gqlResult{status: resp.StatusCode, header: resp.Header, raw: raw}
	if strings.Contains(resp.Header.Get("Content-Type"), "json") {
		if err := json.Unmarshal(raw, r); err != nil {
			e.t.Fatalf("response is not JSON: %v: %s", err, raw)
		}
	}
	return r
}

// seedWebhook creates a webhook through the API.
func (e *testEnv) seedWebhook(url, typ string) string {
	e.t.Helper()
	r := e.gql(`mutation($u: String!, $t: WebhookType!) { webhookCreate(input: {url: $u, type: $t}) { id } }`,
		map[string]any{"u": url, "t": typ})
	return r.get("webhookCreate.id").(string)
}
