package rules

import (
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// FuzzCompileFile compiles arbitrary rules files: it must never panic, and
// must return either an engine or positioned problems.
func FuzzCompileFile(f *testing.F) {
	seeds, _ := filepath.Glob("testdata/compile/*.yaml")
	seeds = append(seeds, "testdata/orders.rules.yaml")
	for _, s := range seeds {
		data, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("- name: a\n  event: ORDER_CREATED\n  when: {method: GET, path: '/{a}/{b}'}\n  subject: path.a + path.b\n  changed: request.query\n"))
	f.Add([]byte("- &a {name: x}\n- *a\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		start := time.Now()
		e, err := CompileFile("f.yaml", data, EventTypes([]string{"ORDER_REFUNDED"}))
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("compiling %d bytes took %v", len(data), d)
		}
		if err != nil {
			if e != nil {
				t.Fatal("both an engine and an error")
			}
			j, ok := err.(interface{ Unwrap() []error })
			if !ok {
				t.Fatalf("not a joined error: %v", err)
			}
			lines := strings.Count(string(data), "\n") + 2
			for _, p := range j.Unwrap() {
				var pe *Error
				if !errors.As(p, &pe) || !positioned.MatchString(strings.ReplaceAll(p.Error(), "\n", " ")) {
					t.Fatalf("unpositioned problem %q", p)
				}
				if pe.Line < 1 || pe.Line > lines || pe.Column < 1 || pe.File != "f.yaml" {
					t.Fatalf("problem outside the file (%d lines): %v", lines, pe)
				}
			}
			return
		}
		if e == nil {
			t.Fatal("neither an engine nor an error")
		}
		for _, r := range e.rules {
			for _, m := range r.methods {
				for _, tpl := range r.paths {
					path := strings.ReplaceAll(strings.ReplaceAll(tpl.raw, "{", "x"), "}", "")
					if _, ok := e.Route(m, path); !ok {
						t.Fatalf("rule %q: Route(%s, %s) found no rule", r.name, m, path)
					}
				}
			}
		}
	})
}

// fuzzRules is a realistic rule set that reads every part of an exchange.
const fuzzRules = `
- name: order-created
  event: ORDER_CREATED
  when: {method: POST, path: /orders, status: 201}
  subject: response.body.id
- name: order-status-changed
  event: ORDER_STATUS_CHANGED
  when: {method: [PATCH, PUT], path: '/orders/{id}', match: 'has(response.body.status)'}
  subject: path.id
  changed: response.body.status
- name: order-updated
  event: ORDER_UPDATED
  when: {method: [PATCH, PUT], path: ['/orders/{id}', '/v2/orders/{id}']}
  subject: path.id
  data: '{"id": path.id, "lines": response.body.?lines.orValue([]).map(l, l.?sku.orValue("")), "tenant": request.headers[?"x-tenant"].orValue("")}'
- name: order-canceled
  event: ORDER_CANCELED
  when: {method: POST, path: '/orders/{id}/cancel', status: [200, 202, 204], match: 'request.query[?"dry"].orValue("") != "1"'}
  subject: path.id
  data: 'response.body != null ? response.body : {"id": path.id}'
- name: shipment-created
  event: SHIPMENT_CREATED
  when: {method: POST, path: '/orders/{order}/shipments', status: 2xx, match: 'request.body.carrier in ["ups", "dhl"] || size(request.body) > 0'}
  subject: response.body.id
  data: '{"order": path.order, "shipment": response.body, "items": request.body.items.filter(i, i.qty > 0)}'
- name: shipment-canceled
  event: SHIPMENT_CANCELED
  when: {method: DELETE, path: '/shipments/{id}', status: [200, 204]}
  subject: path.id
  data: '[request.method, request.path, response.status, response.headers, request.query]'
  changed: 'response.body'
- name: orders-listed
  event: ORDER_STATUS_CHANGED
  when: {method: [GET, POST], path: [/orders, '/orders/{id}'], match: 'type(item) == map && has(item.id)'}
  each: 'type(response.body) == list ? response.body : [response.body]'
  subject: item.id
  changed: item.?status.orValue(null)
`

// FuzzEvaluate evaluates arbitrary exchanges against fuzzRules: no panic,
// bounded time, well-formed events.
func FuzzEvaluate(f *testing.F) {
	e := mustCompile(f, fuzzRules)
	f.Add("POST", "/orders", 201, "", "x-tenant", "t1", []byte(`{"sku":"a"}`), []byte(`{"id":"o1","status":"OPEN"}`), false)
	f.Add("PATCH", "/orders/o1", 200, "", "", "", []byte(`{"status":"PAID"}`), []byte(`{"id":"o1","status":"PAID","lines":[{"sku":"a"},{"qty":1},3]}`), false)
	f.Add("PUT", "/v2/orders/%2F", 204, "a=1", "X-Tenant", "", []byte(``), []byte(``), true)
	f.Add("POST", "/orders/o1/cancel", 202, "dry=0&dry=1", "", "", []byte(`[1,2`), []byte(`{"id":1e400}`), false)
	f.Add("POST", "/orders/o1/shipments", 201, "", "", "", []byte(`{"carrier":"ups","items":[{"qty":1},{"qty":0},{"qty":"x"}]}`), []byte(`{"id":12.0}`), false)
	f.Add("GET", "/orders", 200, "", "", "", []byte(``), []byte(`[{"id":1,"status":"OPEN"},{"id":"x"},null,{"id":{}},{"status":1}]`), false)
	f.Add("DELETE", "/shipments/s1", 200, "%zz", "Content-Type", "text/plain", []byte("\xff"), []byte(`{"a":{"b":[null,true,"\u2028"]},"a":1}`), false)
	f.Fuzz(func(t *testing.T, method, path string, status int, query, hname, hvalue string, reqBody, respBody []byte, truncated bool) {
		ex := &Exchange{
			Request:  Request{Method: method, Path: path, RawQuery: query, Header: http.Header{hname: {hvalue}}, Body: reqBody, Truncated: truncated},
			Response: Response{Status: status, Header: http.Header{hname: {hvalue, "second"}}, Body: respBody},
			End:      testEnd,
		}
		start := time.Now()
		evs, errs := e.Evaluate(ex)
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("Evaluate took %v", d)
		}
		_, routed := e.Route(method, path)
		if (len(evs) > 0 || len(errs) > 0) && !routed {
			t.Fatalf("rules fired on %s %s but Route says none could", method, path)
		}
		for _, ev := range evs {
			if ev.Subject == "" || !json.Valid(ev.Data) || !ev.ObservedAt.Equal(testEnd) {
				t.Fatalf("bad event %+v", ev)
			}
			if ev.State != nil && (!json.Valid(ev.State.Value) || !strings.HasPrefix(ev.State.Key, ev.Rule+"\x00")) {
				t.Fatalf("bad state %+v", ev.State)
			}
		}
		for _, err := range errs {
			var ee *EvalError
			if !errors.As(err, &ee) || ee.Rule == "" {
				t.Fatalf("bad error %v", err)
			}
		}
		// Explain agrees with Evaluate.
		fired := 0
		for _, o := range e.Explain(ex) {
			switch {
			case o.Result == Fired && o.Items != nil:
				for _, it := range o.Items {
					if it.Result == Fired {
						fired++
					}
				}
			case o.Result == Fired:
				fired++
			}
		}
		if fired != len(evs) {
			t.Fatalf("Explain fired %d events, Evaluate %d", fired, len(evs))
		}
	})
}
