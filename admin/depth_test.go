package admin

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/graphql-go/graphql"
	"github.com/graphql-go/graphql/language/ast"
	"github.com/graphql-go/graphql/language/parser"
)

// TestDepthCounting pins how depth is measured, running only the depth rule
// against the real schema: each query passes with its depth as the limit
// and fails with one less.
func TestDepthCounting(t *testing.T) {
	e := newEnv(t)
	for _, tc := range []struct {
		name  string
		query string
		depth int
	}{
		{"typename", `{ __typename }`, 1},
		{"one level", `{ webhooks { totalCount } }`, 2},
		{"connection", `{ webhooks { edges { node { id } } } }`, 4},
		{"deepest data", `{ events { edges { node { deliveries { webhook { id } } } } } }`, 6},
		{"named fragment", `{ events { ...E } } fragment E on EventConnection { edges { node { id } } }`, 4},
		{"inline fragment", `{ events { ... on EventConnection { edges { node { id } } } } }`, 4},
		{"fragment at two depths", `{ webhook(id: "x") { ...W } webhooks { edges { node { ...W } } } } fragment W on Webhook { id }`, 4},
		{"nested fragments", `{ events { ...A } }
			fragment A on EventConnection { edges { ...B } }
			fragment B on EventEdge { node { ...C } }
			fragment C on Event { deliveries { webhook { id } } }`, 6},
		{"deepest operation counts", `query A { webhooks { totalCount } } query B { webhooks { edges { node { id } } } }`, 4},
		{"ofType is free", `{ __type(name: "WebhookConnection") { ofType { ofType { ofType { ofType { name } } } } } }`, 2},
		{"introspection counts", `{ __schema { types { fields { type { name } } } } }`, 5},
		{"introspection cycle", `{ __type(name: "__Type") { fields { type { ofType { ofType { fields { type { name } } } } } } } }`, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			doc, err := parser.Parse(parser.ParseParams{Source: tc.query})
			if err != nil {
				t.Fatal(err)
			}
			if vr := graphql.ValidateDocument(&e.s.schema, doc, []graphql.ValidationRuleFn{limitsRule(tc.depth, maxSelections)}); !vr.IsValid {
				t.Errorf("refused at limit %d: %v", tc.depth, vr.Errors)
			}
			vr := graphql.ValidateDocument(&e.s.schema, doc, []graphql.ValidationRuleFn{limitsRule(tc.depth-1, maxSelections)})
			if vr.IsValid {
				t.Fatalf("accepted at limit %d", tc.depth-1)
			}
			if msg := vr.Errors[0].Message; !strings.Contains(msg, fmt.Sprintf("depth is %d and the limit is %d", tc.depth, tc.depth-1)) {
				t.Errorf("message = %q", msg)
			}
		})
	}
}

// deepQuery is an introspection query of exactly the given depth: our data
// schema has no cycles, so only __Type.fields → __Field.type nests without
// end.
func deepQuery(depth int) string {
	var b strings.Builder
	b.WriteString(`{ __type(name: "Query") { `)
	for i := range depth - 2 {
		if i%2 == 0 {
			b.WriteString("fields { ")
		} else {
			b.WriteString("type { ")
		}
	}
	b.WriteString("name")
	b.WriteString(strings.Repeat(" }", depth))
	return b.String()
}

func TestDepthLimit(t *testing.T) {
	e := newEnv(t)
	r := e.post(deepQuery(maxDepth), nil)
	if r.status != http.StatusOK || len(r.Errors) > 0 {
		t.Errorf("depth %d refused: %s", maxDepth, r.raw)
	}
	for _, accept := range []string{mediaJSON, mediaGraphQLResponse} {
		r = e.post(deepQuery(maxDepth+1), nil, header{"Accept", accept})
		want := map[string]int{mediaJSON: 200, mediaGraphQLResponse: 400}[accept]
		if r.status != want || r.code() != codeBadUserInput || r.hasData() ||
			!strings.Contains(r.Errors[0].Message, "the limit is 12") {
			t.Errorf("Accept %s: depth %d: HTTP %d %s", accept, maxDepth+1, r.status, r.raw)
		}
	}

	// Through fragments, the same.
	r = e.post(`{ __type(name: "Query") { ...F } }
		fragment F on __Type { fields { type { ...G } } }
		fragment G on __Type { fields { type { ...H } } }
		fragment H on __Type { fields { type { fields { type { fields { type { fields { type { name } } } } } } } } }`, nil)
	if r.code() != codeBadUserInput || !strings.Contains(r.Errors[0].Message, "depth is 14") {
		t.Errorf("through fragments: %s", r.raw)
	}

	// A fragment cycle is refused, not followed.
	done := make(chan *gqlResult, 1)
	go func() {
		done <- e.post(`{ webhooks { ...A } } fragment A on WebhookConnection { totalCount ...B } fragment B on WebhookConnection { ...A }`, nil)
	}()
	select {
	case r = <-done:
		if r.code() != codeBadUserInput || r.hasData() {
			t.Errorf("fragment cycle: %s", r.raw)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("fragment cycle hangs")
	}

	// Lexical nesting is bounded before parsing.
	r = e.post(`{ __type(name: "X") { `+strings.Repeat("ofType { ", 80)+"name"+strings.Repeat(" }", 82), nil)
	if r.code() != codeBadUserInput || !strings.Contains(r.Errors[0].Message, "nests brackets more than 64") {
		t.Errorf("deep nesting: %.300s", r.raw)
	}
	// Brackets inside strings and comments do not count.
	r = e.post(`{ webhooks(after: "`+strings.Repeat("{", 100)+`") { totalCount } } # `+strings.Repeat("{", 100), nil)
	if r.code() != codeBadUserInput || !strings.Contains(r.Errors[0].Message, "not a cursor") {
		t.Errorf("brackets in a string: %.300s", r.raw)
	}
}

// TestFragmentFanOut: each fragment spreads the next twice, 2^40 paths in
// a small document. The rule measures each fragment once, refuses the
// expansion as too large, and the specified rules never see it.
func TestFragmentFanOut(t *testing.T) {
	e := newEnv(t)
	var b strings.Builder
	b.WriteString(`{ __type(name: "Query") { ...F0 } }`)
	const n = 40
	for i := range n {
		fmt.Fprintf(&b, "\nfragment F%d on __Type { a: ofType { ...F%d } b: ofType { ...F%d } }", i, i+1, i+1)
	}
	fmt.Fprintf(&b, "\nfragment F%d on __Type { name }", n)

	doc, err := parser.Parse(parser.ParseParams{Source: b.String()})
	if err != nil {
		t.Fatal(err)
	}
	vr := graphql.ValidateDocument(&e.s.schema, doc, []graphql.ValidationRuleFn{limitsRule(maxDepth, maxSelections)})
	if vr.IsValid || !strings.Contains(vr.Errors[0].Message, "more than 5000 fields") {
		t.Errorf("fan-out: %v", vr.Errors)
	}

	start := time.Now()
	r := e.post(b.String(), nil)
	if r.code() != codeBadUserInput || !strings.Contains(r.Errors[0].Message, "too large") {
		t.Errorf("fan-out over HTTP: %.300s", r.raw)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}

	// The standard introspection query is far below the size limit.
	doc, _ = parser.Parse(parser.ParseParams{Source: introspectionQuery})
	m := &measurer{ctx: graphql.NewValidationContext(&e.s.schema, doc, graphql.NewTypeInfo(&graphql.TypeInfoConfig{Schema: &e.s.schema})),
		memo: map[string]size{}, active: map[string]bool{}, cap: 1 << 30}
	for _, def := range doc.Definitions {
		if op, ok := def.(*ast.OperationDefinition); ok {
			sz := m.selectionSet(op.SelectionSet)
			t.Logf("introspection query: depth %d, %d selections", sz.depth, sz.selections)
			if sz.selections > maxSelections/10 || sz.depth > maxDepth {
				t.Errorf("introspection query measures %+v", sz)
			}
		}
	}
}
