package admin

import (
	"strings"
	"testing"
)

func TestBlankNulls(t *testing.T) {
	tests := []struct {
		name, in, want string
	}{
		{"argument", `{ events(first: null) { totalCount } }`, `{ events              { totalCount } }`},
		{"one of several arguments", `{ webhookLogs(first: 5, after: null) { totalCount } }`, `{ webhookLogs(first: 5,            ) { totalCount } }`},
		{"input field", `mutation { webhookUpdate(input: {id: "wh_1", description: null}) { id } }`,
			`mutation { webhookUpdate(input: {id: "wh_1",                  }) { id } }`},
		{"nested in a list", `{ f(a: [{b: null, c: 1}]) { x } }`, `{ f(a: [{       , c: 1}]) { x } }`},
		{"variable default", `query($a: String = null) { f(a: $a) { x } }`, `query($a: String       ) { f(a: $a) { x } }`},
		{"multi-line", "{ f(\n  a: null\n) { x } }", "{ f \n         \n  { x } }"},
		// Not literals in value position: left to the parser and validator.
		{"alias of a field named null", `{ x: null }`, `{ x: null }`},
		{"field named null", `{ null }`, `{ null }`},
		{"in a string", `{ f(a: "b: null") { x } }`, `{ f(a: "b: null") { x } }`},
		{"in a block string", `{ f(a: """b: null \""" c: null""") { x } }`, `{ f(a: """b: null \""" c: null""") { x } }`},
		{"in a comment", "{ f(a: 1) # b: null\n { x } }", "{ f(a: 1) # b: null\n { x } }"},
		{"list element", `{ f(a: [null]) { x } }`, `{ f(a: [null]) { x } }`},
		{"unterminated string", `{ f(a: "b: null) { x } }`, `{ f(a: "b: null) { x } }`},
		{"argument named null", `{ f(null: 1) { x } }`, `{ f(null: 1) { x } }`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := string(blankNulls([]byte(tt.in)))
			if got != tt.want {
				t.Errorf("blankNulls(%q)\n got %q\nwant %q", tt.in, got, tt.want)
			}
			if len(got) != len(tt.in) {
				t.Errorf("length changed: %d -> %d (error locations would move)", len(tt.in), len(got))
			}
		})
	}
}

// TestNullLiterals sends documents with null literals over HTTP: they mean
// what a null variable means (the argument is not given).
func TestNullLiterals(t *testing.T) {
	e := newEnv(t)
	id := e.seedWebhook("https://example.com/hook", "ORDER_CREATED")
	r := e.gql(`{ webhooks(first: null, after: null, filter: null) { totalCount edges { node { id } } } }`, nil)
	if got := r.get("webhooks.totalCount"); got != float64(1) {
		t.Errorf("webhooks with null arguments: totalCount %v, want 1: %s", got, r.raw)
	}
	r = e.gql(`{ webhookLogs(after: null, filter: {type: null}) { totalCount } }`, nil)
	if got := r.get("webhookLogs.totalCount"); got != float64(0) {
		t.Errorf("webhookLogs: totalCount %v: %s", got, r.raw)
	}
	r = e.gql(`mutation($id: ID!) { webhookUpdate(input: {id: $id, description: null, status: DISABLED}) { status description } }`,
		map[string]any{"id": id})
	if got := r.get("webhookUpdate.status"); got != "DISABLED" {
		t.Errorf("webhookUpdate with a null field: %s", r.raw)
	}
	// A null where none may be is still refused.
	r = e.post("{ webhook(id: null) { id } }", nil)
	if r.code() != codeBadUserInput || !strings.Contains(string(r.raw), `argument \"id\" of type \"ID!\" is required`) {
		t.Errorf("null for a required argument: %s", r.raw)
	}
}

func FuzzBlankNulls(f *testing.F) {
	f.Add(`{ webhookLogs(first: 5, after: null, filter: {type: null}) { totalCount } }`)
	f.Add(`query($a: [Int] = null) { f(a: [null, {b: null}]) { x: null } } # c: null`)
	f.Add(`{ f(a: """b: null \""" """) }`)
	f.Fuzz(func(t *testing.T, q string) {
		got := blankNulls([]byte(q))
		if len(got) != len(q) {
			t.Fatalf("length changed: %d -> %d", len(q), len(got))
		}
	})
}
