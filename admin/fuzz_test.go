package admin

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/eventtap/eventtap/outbox"
)

// FuzzGraphQL posts arbitrary documents and variables: the handler must not
// panic and must always answer well-formed JSON whose errors all carry a
// code, with a status GraphQL over HTTP allows.
func FuzzGraphQL(f *testing.F) {
	for _, seed := range []struct{ query, vars string }{
		{zonosCreate, ""},
		{zonosUpdate, "{}"},
		{zonosLogs, "null"},
		{introspectionQuery, ""},
		{deepQuery(maxDepth + 1), ""},
		{`query($n: Int, $t: DateTime) { webhookLogs(first: $n, filter: {createdAfter: $t}) { totalCount } }`, `{"n": 5, "t": "2026-01-01T00:00:00Z"}`},
		{`query($in: WebhookUpdateInput!) { a: webhook(id: "wh_1") { id } }`, `{"in": {"id": ["x"]}}`},
		{`mutation($in: WebhookCreateInput!) { webhookCreate(input: $in) { id } }`, `{"in": {"url": "https://x", "type": "ORDER_CREATED", "status": 1}}`},
		{`{ events { edges { node { payload deliveries { webhook { id } } } } } }`, `[1, 2]`},
		{`{ webhooks { ...A } } fragment A on WebhookConnection { ...A }`, ""},
		{`query A { __typename } query A { __typename }`, `{"x": {"y": [null, 1e400]}}`},
		{"{ \"\\u0000\" }", ""},
		{"", ""},
	} {
		f.Add(seed.query, seed.vars)
	}

	store := newFakeStore()
	store.addEvent(outbox.Event{Type: "ORDER_CREATED", Subject: "1", Payload: []byte(`{"a":1}`),
		Deliveries: []outbox.Delivery{{WebhookID: "wh_1", State: outbox.Pending}}})
	store.addLog(outbox.Log{WebhookID: "wh_1", Type: "ORDER_CREATED"})
	s, err := New(DefaultConfig(), nil, newRegistry(), store, builtinTypes, nil)
	if err != nil {
		f.Fatal(err)
	}
	h := s.Handler()

	f.Fuzz(func(t *testing.T, query, vars string) {
		body := map[string]any{"query": query}
		if vars != "" {
			body["variables"] = json.RawMessage(vars)
		}
		raw, err := json.Marshal(body)
		if err != nil {
			// vars is not JSON: send it as it is, which is a request error.
			raw = []byte(`{"query": ` + string(mustJSON(query)) + `, "variables": ` + vars + `}`)
		}
		for _, accept := range []string{mediaJSON, mediaGraphQLResponse} {
			req := httptest.NewRequest(http.MethodPost, "http://127.0.0.1:9090/graphql", bytes.NewReader(raw))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Accept", accept)
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			checkWellFormed(t, rec.Result(), accept)
		}
	})
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

func checkWellFormed(t *testing.T, resp *http.Response, accept string) {
	t.Helper()
	body, _ := io.ReadAll(resp.Body)
	if ct := resp.Header.Get("Content-Type"); ct != accept+"; charset=utf-8" {
		t.Fatalf("Content-Type %q for Accept %s", ct, accept)
	}
	switch resp.StatusCode {
	case 200, 400, 405, 413, 500, 503:
	default:
		t.Fatalf("HTTP %d: %s", resp.StatusCode, body)
	}
	var top map[string]json.RawMessage
	if err := json.Unmarshal(body, &top); err != nil {
		t.Fatalf("not a JSON object: %v: %s", err, body)
	}
	for k := range top {
		if k != "data" && k != "errors" {
			t.Fatalf("unexpected key %q: %s", k, body)
		}
	}
	_, hasData := top["data"]
	var errs []struct {
		Message    *string          `json:"message"`
		Locations  []map[string]int `json:"locations"`
		Path       []any            `json:"path"`
		Extensions map[string]any   `json:"extensions"`
	}
	if raw, ok := top["errors"]; ok {
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&errs); err != nil || len(errs) == 0 {
			t.Fatalf("malformed errors (%v): %s", err, body)
		}
	}
	if !hasData && len(errs) == 0 {
		t.Fatalf("neither data nor errors: %s", body)
	}
	for _, e := range errs {
		if e.Message == nil {
			t.Fatalf("error without message: %s", body)
		}
		switch e.Extensions["code"] {
		case codeBadUserInput, codeNotFound, codeInternal:
		default:
			t.Fatalf("error code %v: %s", e.Extensions["code"], body)
		}
	}
	if accept == mediaGraphQLResponse && !hasData && resp.StatusCode == 200 {
		t.Fatalf("no data but HTTP 200 with graphql-response+json: %s", body)
	}
}
