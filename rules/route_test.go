package rules

import (
	"fmt"
	"strings"
	"testing"
)

func TestParseTemplate(t *testing.T) {
	tests := []struct {
		in      string
		segs    string // rendered as lit|{name}|…
		wantErr string
	}{
		{"/", "", ""},
		{"/orders", "orders", ""},
		{"/orders/{id}/cancel", "orders|{id}|cancel", ""},
		{"/a/{x}/{y_2}", "a|{x}|{y_2}", ""},
		{"/v1.2/orders:search", "v1.2|orders:search", ""},
		{"orders", "", `must start with "/"`},
		{"", "", `must start with "/"`},
		{"/orders/", "", "empty segment"},
		{"/orders//x", "", "empty segment"},
		{"/orders?x=1", "", "match the path only"},
		{"/orders/{}", "", "capture"},
		{"/orders/{1d}", "", "capture"},
		{"/orders/{id}.json", "", "whole segment"},
		{"/orders/{id", "", "whole segment"},
		{"/orders/{id}/{id}", "", "twice"},
	}
	for _, tc := range tests {
		tpl, err := parseTemplate(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("parseTemplate(%q) error = %v, want %q", tc.in, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("parseTemplate(%q): %v", tc.in, err)
			continue
		}
		var parts []string
		for _, s := range tpl.segs {
			if s.name != "" {
				parts = append(parts, "{"+s.name+"}")
			} else {
				parts = append(parts, s.lit)
			}
		}
		if g := strings.Join(parts, "|"); g != tc.segs {
			t.Errorf("parseTemplate(%q) = %q, want %q", tc.in, g, tc.segs)
		}
	}
}

const routeRules = `
- name: create
  event: ORDER_CREATED
  when: {method: POST, path: /orders}
  subject: response.body.id
- name: search
  event: ORDER_UPDATED
  when: {method: [POST, GET], path: /orders/search}
  subject: '1'
- name: cancel
  event: ORDER_CANCELED
  when: {method: POST, path: '/orders/{id}/cancel'}
  subject: path.id
- name: update
  event: ORDER_UPDATED
  when: {method: [PATCH, PUT], path: ['/orders/{id}', '/v2/orders/{id}']}
  subject: path.id
- name: any-order-post
  event: ORDER_UPDATED
  when: {method: POST, path: '/orders/{id}'}
  subject: path.id
- name: literal-after-capture
  event: ORDER_UPDATED
  when: {method: POST, path: '/orders/{id}/ship'}
  subject: path.id
- name: root
  event: ORDER_UPDATED
  when: {method: DELETE, path: /}
  subject: '1'
`

func TestRoute(t *testing.T) {
	e := mustCompile(t, routeRules)
	tests := []struct {
		method, path string
		route        string // "" = no route
	}{
		{"POST", "/orders", "/orders"},
		{"GET", "/orders", ""},
		{"POST", "/orders/search", "/orders/search"}, // rule "search" comes before "any-order-post"
		{"GET", "/orders/search", "/orders/search"},
		{"POST", "/orders/42", "/orders/{id}"},
		{"POST", "/orders/42/cancel", "/orders/{id}/cancel"},
		{"POST", "/orders/42/ship", "/orders/{id}/ship"},
		{"POST", "/orders/42/other", ""},
		{"POST", "/orders/search/cancel", "/orders/{id}/cancel"}, // literal "search" has no cancel child: capture backtracks
		{"PATCH", "/orders/1", "/orders/{id}"},
		{"PUT", "/v2/orders/1", "/v2/orders/{id}"},
		{"PUT", "/v2/orders/", ""},
		{"PATCH", "/orders/", ""},
		{"PATCH", "/orders", ""},
		{"PATCH", "/orders/1/", ""},
		{"PATCH", "/orders//", ""},
		{"post", "/orders", ""},
		{"DELETE", "/", "/"},
		{"DELETE", "", ""},
		{"DELETE", "//", ""},
		{"POST", "orders", ""},
		{"POST", "/orders/1/cancel/x", ""},
		{"OPTIONS", "/orders", ""},
	}
	for _, tc := range tests {
		route, ok := e.Route(tc.method, tc.path)
		if ok != (tc.route != "") || route != tc.route {
			t.Errorf("Route(%q, %q) = %q, %v; want %q", tc.method, tc.path, route, ok, tc.route)
		}
		// Route and Evaluate must agree on method and path.
		if _, ok := e.Route(tc.method, tc.path); ok != anyRuleMatches(e, tc.method, tc.path) {
			t.Errorf("Route(%q, %q) = %v but the rules' own matching disagrees", tc.method, tc.path, ok)
		}
	}
	var nilEngine *Engine
	if _, ok := nilEngine.Route("POST", "/orders"); ok {
		t.Error("nil engine routes")
	}
}

func anyRuleMatches(e *Engine, method, path string) bool {
	for _, r := range e.rules {
		ex := exch(method, path, 200, "", "")
		for _, m := range r.methods {
			if m == method {
				for _, t := range r.paths {
					if t.match(ex.Request.Path, nil) {
						return true
					}
				}
			}
		}
	}
	return false
}

func TestRouteAllocs(t *testing.T) {
	e := mustCompile(t, routeRules)
	for _, p := range []string{"/orders/42/cancel", "/nothing/here", "/orders/search/cancel"} {
		if n := testing.AllocsPerRun(100, func() { e.Route("POST", p) }); n != 0 {
			t.Errorf("Route(POST, %s) allocates %v times", p, n)
		}
	}
}

// benchEngine has 20 rules over a realistic API surface.
func benchEngine(tb testing.TB) *Engine {
	return benchEngineData(tb, `'{"id": path.id, "total": response.body.total, "lines": response.body.lines.map(l, l.sku)}'`)
}

// benchEngineData is benchEngine with the given data expression for the
// -updated rules.
func benchEngineData(tb testing.TB, updatedData string) *Engine {
	var b strings.Builder
	resources := []string{"orders", "shipments", "returns", "invoices", "carts"}
	for i, res := range resources {
		fmt.Fprintf(&b, `
- name: %[1]s-created
  event: ORDER_CREATED
  when: {method: POST, path: /%[1]s, status: 201}
  subject: response.body.id
- name: %[1]s-status-changed
  event: ORDER_STATUS_CHANGED
  when: {method: [PATCH, PUT], path: '/%[1]s/{id}', status: 2xx, match: 'has(request.body.status)'}
  subject: path.id
  changed: response.body.status
- name: %[1]s-updated
  event: ORDER_UPDATED
  when: {method: [PATCH, PUT], path: '/%[1]s/{id}', status: 2xx}
  subject: path.id
  data: %[2]s
- name: %[1]s-canceled
  event: ORDER_CANCELED
  when: {method: POST, path: '/%[1]s/{id}/cancel', status: [200, 204]}
  subject: path.id
  data: '{"id": path.id, "reason": request.body.reason}'
`, res, updatedData)
		_ = i
	}
	return mustCompile(tb, b.String())
}

func BenchmarkRouteMiss(b *testing.B) {
	e := benchEngine(b)
	b.ReportAllocs()
	defer startCPU().report(b)
	for b.Loop() {
		if _, ok := e.Route("GET", "/api/v1/products/12345/reviews"); ok {
			b.Fatal("routed")
		}
	}
}

func BenchmarkRouteMissSamePrefix(b *testing.B) {
	e := benchEngine(b)
	b.ReportAllocs()
	defer startCPU().report(b)
	for b.Loop() {
		if _, ok := e.Route("POST", "/orders/12345/reviews"); ok {
			b.Fatal("routed")
		}
	}
}

func BenchmarkRouteHit(b *testing.B) {
	e := benchEngine(b)
	b.ReportAllocs()
	defer startCPU().report(b)
	for b.Loop() {
		if _, ok := e.Route("POST", "/invoices/12345/cancel"); !ok {
			b.Fatal("not routed")
		}
	}
}
