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
		{"PATCH", "/orders/1/", "/orders/{id}"}, // SPEC §3 Path matching: as the upstream understands it
		{"PATCH", "//orders/1", "/orders/{id}"},
		{"PATCH", "/orders/./1", "/orders/{id}"},
		{"PATCH", "/orders//1//", "/orders/{id}"},
		{"PATCH", "/x/../orders/1", "/orders/{id}"},
		{"PATCH", "/../orders/1", "/orders/{id}"},
		{"PATCH", "/orders/%2E/1", "/orders/{id}"},
		{"PATCH", "/orders/1/%2e%2E", ""}, // "/orders"
		{"PATCH", "/orders/a%2Fb", "/orders/{id}"},
		{"PATCH", "/orders/a%2fb", "/orders/{id}"},
		{"POST", "/orders/a%2Fb/cancel", "/orders/{id}/cancel"},
		{"POST", "/orders%2F1/cancel", ""},
		{"POST", "/%6Frders/1/cancel", "/orders/{id}/cancel"},
		{"POST", "/orders/search/", "/orders/search"},
		{"PATCH", "/orders//", ""},
		{"post", "/orders", ""},
		{"DELETE", "/", "/"},
		{"DELETE", "", ""},
		{"DELETE", "//", "/"},
		{"DELETE", "/./", "/"},
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
	for _, p := range []string{"/orders/42/cancel", "/nothing/here", "/orders/search/cancel", "/orders/a%2Fb/cancel", "/orders/100%25"} {
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

func TestCleanPath(t *testing.T) {
	tests := []struct{ in, want string }{
		{"/", "/"},
		{"/orders/7", "/orders/7"},
		{"/orders/7/", "/orders/7"},
		{"//orders/7", "/orders/7"},
		{"/orders//7", "/orders/7"},
		{"/orders/./7", "/orders/7"},
		{"/orders/x/../7", "/orders/7"},
		{"/../../orders/7", "/orders/7"},
		{"/orders/7/.", "/orders/7"},
		{"/orders/7/..", "/orders"},
		{"/orders/%2E%2e/x", "/x"},
		{"/orders/.../7", "/orders/.../7"},
		{"/orders/.x/7", "/orders/.x/7"},
		{"//", "/"},
		{"/./", "/"},
		{"/..", "/"},
		{"/orders/a%2Fb", "/orders/a%2Fb"},
		{"/orders/a%2fb", "/orders/a%2Fb"},
		{"/orders/a%2F..%2Fb", "/orders/a%2F..%2Fb"}, // one segment, not a dot segment
		{"/orders/100%25", "/orders/100%25"},
		{"/orders/100%", "/orders/100%25"},
		{"/orders/%zz", "/orders/%25zz"},
		{"/caf%C3%A9/%37", "/caf\u00e9/7"},
		{"/a%20b", "/a b"},
		{"/a%3Fb", "/a?b"},
		{"*", "*"},
		{"", ""},
		{"orders/7/", "orders/7/"},
	}
	for _, tc := range tests {
		got := CleanPath(tc.in)
		if got != tc.want {
			t.Errorf("CleanPath(%q) = %q, want %q", tc.in, got, tc.want)
		}
		if again := CleanPath(got); again != got {
			t.Errorf("CleanPath(%q) = %q, not clean: again %q", tc.in, got, again)
		}
	}
	for _, p := range []string{"/orders/7", "/orders/a%2Fb", "/", "*"} {
		if n := testing.AllocsPerRun(100, func() { _ = CleanPath(p) }); n != 0 {
			t.Errorf("CleanPath(%q), already clean, allocates %v times", p, n)
		}
	}
}

// TestPathForms: the forms of a path that the upstream takes for the same
// resource reach the same rule, and CEL sees the captures decoded.
func TestPathForms(t *testing.T) {
	e := mustCompile(t, `
- name: update
  event: ORDER_UPDATED
  when: {method: PATCH, path: '/orders/{id}'}
  subject: path.id
  data: '{"path": request.path, "id": path.id}'
- name: literal
  event: ORDER_UPDATED
  when: {method: POST, path: '/caf%C3%A9/a%2Fb'}
  subject: '"x"'
`)
	for _, tc := range []struct{ method, path, subject string }{
		{"PATCH", "/orders/7", "7"},
		{"PATCH", "/orders/7/", "7"},
		{"PATCH", "//orders/7", "7"},
		{"PATCH", "/orders/./7", "7"},
		{"PATCH", "/orders/%37", "7"},
		{"PATCH", "/orders/a%2Fb", "a/b"},
		{"PATCH", "/orders/50%25", "50%"},
		{"POST", "/caf\u00e9/a%2Fb", "x"},
		{"POST", "/caf%c3%a9/a%2fb/", "x"},
	} {
		clean := CleanPath(tc.path)
		for _, p := range []string{tc.path, clean} {
			events, errs := e.Evaluate(exch(tc.method, p, 200, "", ""))
			if len(errs) != 0 || len(events) != 1 || events[0].Subject != tc.subject {
				t.Errorf("%s %q: events %v, errors %v; want subject %q", tc.method, p, events, errs, tc.subject)
			}
		}
	}
	events, _ := e.Evaluate(exch("PATCH", CleanPath("/orders//a%2Fb/"), 200, "", ""))
	if len(events) != 1 || string(events[0].Data) != `{"id":"a/b","path":"/orders/a%2Fb"}` {
		t.Errorf("data = %v", events)
	}
	if _, err := parseTemplate("/orders/./x"); err == nil || !strings.Contains(err.Error(), "dot segments") {
		t.Errorf("a template with a dot segment: %v", err)
	}
}

// FuzzCleanPath: CleanPath gives a clean path (a fixed point) without empty
// or dot segments, keeps the leading slash, and Route agrees with the
// rules' own matching on both the raw and the clean form.
func FuzzCleanPath(f *testing.F) {
	for _, s := range []string{"/orders/7/", "//orders/7", "/orders/./7", "/a/../b", "/a%2Fb", "/%2e%2E/x", "/100%", "/%zz/%2", "*", "/caf%C3%A9"} {
		f.Add(s)
	}
	e := mustCompile(f, routeRules)
	f.Fuzz(func(t *testing.T, p string) {
		c := CleanPath(p)
		if CleanPath(c) != c || !isClean(c) {
			t.Fatalf("CleanPath(%q) = %q is not clean", p, c)
		}
		if len(p) > 0 && p[0] == '/' {
			if c[0] != '/' || (c != "/" && strings.HasSuffix(c, "/")) {
				t.Fatalf("CleanPath(%q) = %q", p, c)
			}
			for _, seg := range strings.Split(c[1:], "/") {
				if c != "/" && isDotOrEmpty(seg) {
					t.Fatalf("CleanPath(%q) = %q has segment %q", p, c, seg)
				}
			}
		} else if c != p {
			t.Fatalf("CleanPath(%q) = %q, want it unchanged", p, c)
		}
		for _, m := range []string{"POST", "PATCH", "DELETE"} {
			r1, ok1 := e.Route(m, p)
			r2, ok2 := e.Route(m, c)
			if r1 != r2 || ok1 != ok2 || ok1 != anyRuleMatches(e, m, p) {
				t.Fatalf("Route(%s, %q) = %q %v, clean %q: %q %v, rules %v", m, p, r1, ok1, c, r2, ok2, anyRuleMatches(e, m, p))
			}
		}
	})
}
