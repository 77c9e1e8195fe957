package proxy

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/eventtap/eventtap/rules"
)

// TestPathForms is issue 10's item 7 through the real proxy and the real
// rules engine: json-server, like most routers, takes PATCH /orders/7/ for
// /orders/7, so the forms of a path that reach the same resource must reach
// the same rule; the upstream still gets the request line byte for byte,
// and CEL sees the clean path and decoded captures.
func TestPathForms(t *testing.T) {
	eng, err := rules.CompileFile("rules.yaml", []byte(`
- name: order-updated
  event: ORDER_UPDATED
  when: {method: PATCH, path: '/orders/{id}', status: 2xx}
  subject: path.id
  data: '{"path": request.path}'
`), rules.EventTypes(nil))
	if err != nil {
		t.Fatal(err)
	}
	up := newUpstream(t)
	// A bare echo, without the ServeMux that would redirect unclean paths.
	raw := httptest.NewServer(http.HandlerFunc(up.echo))
	t.Cleanup(raw.Close)
	c := &fakeCommitter{}
	cfg := DefaultConfig()
	cfg.Upstream = raw.URL
	p, err := New(cfg, testLogger(t), nil, eng, c)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p.Handler())
	t.Cleanup(srv.Close)

	cases := []struct{ target, subject, path string }{
		{"/orders/7", "7", "/orders/7"},
		{"/orders/7/", "7", "/orders/7"},
		{"//orders/7", "7", "/orders/7"},
		{"/orders/./7", "7", "/orders/7"},
		{"/orders//7?x=1", "7", "/orders/7"},
		{"/x/../orders/7", "7", "/orders/7"},
		{"/orders/%37", "7", "/orders/7"},
		{"/orders/a%2Fb", "a/b", "/orders/a%2Fb"},
		{"http://elsewhere.invalid/orders/7/", "7", "/orders/7"},
	}
	for i, tc := range cases {
		resp, b := rawExchange(t, hostOf(srv.URL), "PATCH "+tc.target+" HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
		var got echoed
		if err := json.Unmarshal(b, &got); err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %s", tc.target, resp.StatusCode, b)
		}
		want := tc.target
		if tc.target[0] != '/' {
			want = "/orders/7/" // absolute-form goes out in origin-form
		}
		if got.URI != want {
			t.Errorf("%s: upstream got %q", tc.target, got.URI)
		}
		if c.count() != i+1 {
			t.Fatalf("%s: %d events committed, want %d", tc.target, c.count(), i+1)
		}
		ev := c.commits[i][0]
		if ev.Subject != tc.subject || string(ev.Data) != `{"path":"`+tc.path+`"}` {
			t.Errorf("%s: event subject %q data %s; want %q and path %q", tc.target, ev.Subject, ev.Data, tc.subject, tc.path)
		}
	}
	// A percent-encoded slash stays inside its segment: two segments after
	// /orders/ are not /orders/{id}.
	_, _ = rawExchange(t, hostOf(srv.URL), "PATCH /orders/a/b HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
	if c.count() != len(cases) {
		t.Errorf("/orders/a/b fired the rule for /orders/{id}")
	}
}
