package rules

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// got renders events and errors compactly for comparison.
func got(evs []Event, errs []error) []string {
	var out []string
	for _, ev := range evs {
		s := fmt.Sprintf("%s %s %s %s", ev.Rule, ev.Type, ev.Subject, ev.Data)
		if ev.State != nil {
			s += fmt.Sprintf(" state=%q:%s", ev.State.Key, ev.State.Value)
		}
		out = append(out, s)
	}
	for _, err := range errs {
		var ee *EvalError
		if !errors.As(err, &ee) {
			out = append(out, "NOT AN EvalError: "+err.Error())
			continue
		}
		out = append(out, "error "+err.Error())
	}
	return out
}

func oneRule(when, rest string) string {
	return "- name: r\n  event: ORDER_CREATED\n  when: " + when + "\n" + rest
}

func TestEvaluateClauses(t *testing.T) {
	const orderBody = `{"id": 42, "status": "OPEN", "total": 12.5, "lines": [{"sku": "a", "qty": 2}], "customer": {"name": "Zoë", "vip": true}}`
	tests := []struct {
		name  string
		rules string
		ex    *Exchange
		want  []string // events as rendered by got; "error …" entries match by prefix
	}{
		// when.method
		{"method matches", oneRule("{method: POST, path: /orders}", "  subject: response.body.id\n"),
			exch("POST", "/orders", 201, "", `{"id":1}`), []string{`r ORDER_CREATED 1 {"id":1}`}},
		{"method lower-case in rule", oneRule("{method: post, path: /orders}", "  subject: response.body.id\n"),
			exch("POST", "/orders", 201, "", `{"id":1}`), []string{`r ORDER_CREATED 1 {"id":1}`}},
		{"method list", oneRule("{method: [put, PATCH], path: /orders}", "  subject: response.body.id\n"),
			exch("PATCH", "/orders", 200, "", `{"id":1}`), []string{`r ORDER_CREATED 1 {"id":1}`}},
		{"other method", oneRule("{method: POST, path: /orders}", "  subject: response.body.id\n"),
			exch("GET", "/orders", 200, "", `{"id":1}`), nil},
		{"request method is case-sensitive", oneRule("{method: POST, path: /orders}", "  subject: response.body.id\n"),
			exch("post", "/orders", 201, "", `{"id":1}`), nil},

		// when.path
		{"capture", oneRule("{method: POST, path: '/orders/{id}/cancel'}", "  subject: path.id\n  data: path\n"),
			exch("POST", "/orders/o-1/cancel", 200, "", ""), []string{`r ORDER_CREATED o-1 {"id":"o-1"}`}},
		{"capture needs a segment", oneRule("{method: POST, path: '/orders/{id}/cancel'}", "  subject: path.id\n"),
			exch("POST", "/orders//cancel", 200, "", ""), nil},
		{"capture is one segment", oneRule("{method: POST, path: '/orders/{id}'}", "  subject: path.id\n"),
			exch("POST", "/orders/1/2", 200, "", ""), nil},
		{"trailing slash is the same path (SPEC §3 Path matching)", oneRule("{method: POST, path: /orders}", "  subject: '1'\n"),
			exch("POST", "/orders/", 201, "", ""), []string{`r ORDER_CREATED 1 null`}},
		{"path list, second matches", oneRule("{method: POST, path: [/orders, '/carts/{cart}/checkout']}", "  subject: path.cart\n  data: '1'\n"),
			exch("POST", "/carts/c9/checkout", 201, "", ""), []string{`r ORDER_CREATED c9 1`}},
		{"two captures", oneRule("{method: DELETE, path: '/orders/{order}/shipments/{shipment}'}", "  subject: path.order + '/' + path.shipment\n  data: path\n"),
			exch("DELETE", "/orders/1/shipments/2", 204, "", ""), []string{`r ORDER_CREATED 1/2 {"order":"1","shipment":"2"}`}},
		{"root", oneRule("{method: POST, path: /}", "  subject: '\"x\"'\n  data: 'null'\n"),
			exch("POST", "/", 200, "", ""), []string{`r ORDER_CREATED x null`}},

		// when.status
		{"status code", oneRule("{method: POST, path: /o, status: 201}", "  subject: '1'\n  data: 'true'\n"),
			exch("POST", "/o", 201, "", ""), []string{`r ORDER_CREATED 1 true`}},
		{"status code miss", oneRule("{method: POST, path: /o, status: 201}", "  subject: '1'\n"),
			exch("POST", "/o", 200, "", ""), nil},
		{"status default is 2xx", oneRule("{method: POST, path: /o}", "  subject: '1'\n"),
			exch("POST", "/o", 500, "", ""), nil},
		{"status class", oneRule("{method: POST, path: /o, status: 4xx}", "  subject: '1'\n  data: response.status\n"),
			exch("POST", "/o", 409, "", ""), []string{`r ORDER_CREATED 1 409`}},
		{"status mixed list", oneRule("{method: POST, path: /o, status: [200, 3XX]}", "  subject: '1'\n  data: response.status\n"),
			exch("POST", "/o", 302, "", ""), []string{`r ORDER_CREATED 1 302`}},
		{"status quoted code", oneRule("{method: POST, path: /o, status: '202'}", "  subject: '1'\n  data: response.status\n"),
			exch("POST", "/o", 202, "", ""), []string{`r ORDER_CREATED 1 202`}},

		// when.match
		{"match true", oneRule("{method: POST, path: /o, match: 'request.body.status == \"OPEN\"'}", "  subject: response.body.id\n"),
			exch("POST", "/o", 201, `{"status":"OPEN"}`, `{"id":"a"}`), []string{`r ORDER_CREATED a {"id":"a"}`}},
		{"match false", oneRule("{method: POST, path: /o, match: 'request.body.status == \"OPEN\"'}", "  subject: response.body.id\n"),
			exch("POST", "/o", 201, `{"status":"DRAFT"}`, `{"id":"a"}`), nil},
		{"match not bool at run time", oneRule("{method: POST, path: /o, match: 'request.body.status'}", "  subject: response.body.id\n"),
			exch("POST", "/o", 201, `{"status":"DRAFT"}`, `{"id":"a"}`), []string{`error rule "r": when.match: evaluated to a string, not true or false`}},
		{"match error", oneRule("{method: POST, path: /o, match: 'request.body.missing == 1'}", "  subject: response.body.id\n"),
			exch("POST", "/o", 201, `{"status":"DRAFT"}`, `{"id":"a"}`), []string{`error rule "r": when.match: no such key: missing`}},
		{"match on headers, lower-case, first value", oneRule("{method: POST, path: /o, match: 'request.headers[\"x-tenant\"] == \"t1\"'}", "  subject: response.headers[\"location\"]\n"),
			func() *Exchange {
				ex := exch("POST", "/o", 201, "", "")
				ex.Request.Header["X-Tenant"] = []string{"t1", "t2"}
				ex.Response.Header["Location"] = []string{"/o/7"}
				return ex
			}(), []string{`r ORDER_CREATED /o/7 null`}},
		{"match on query, first value", oneRule("{method: POST, path: /o, match: 'request.query.dry != \"1\" && request.query.tag == \"a\"'}", "  subject: request.query.tag\n  data: request.query\n"),
			func() *Exchange {
				ex := exch("POST", "/o", 201, "", "")
				ex.Request.RawQuery = "tag=a&tag=b&dry=0"
				return ex
			}(), []string{`r ORDER_CREATED a {"dry":"0","tag":"a"}`}},
		{"match on method and path variables", oneRule("{method: [POST, PUT], path: '/o/{id}', match: 'request.method == \"PUT\" && request.path.endsWith(\"/7\")'}", "  subject: path.id\n"),
			exch("PUT", "/o/7", 200, "", ""), []string{`r ORDER_CREATED 7 null`}},
		{"match with optional", oneRule("{method: POST, path: /o, match: 'request.?body.?status.orValue(\"\") == \"\"'}", "  subject: '1'\n  data: 'null'\n"),
			exch("POST", "/o", 200, `{"id":1}`, ""), []string{`r ORDER_CREATED 1 null`}},
		{"match with comprehension", oneRule("{method: POST, path: /o, match: 'response.body.lines.exists(l, l.qty > 1)'}", "  subject: response.body.id\n  data: 'response.body.lines.map(l, l.sku)'\n"),
			exch("POST", "/o", 200, "", orderBody), []string{`r ORDER_CREATED 42 ["a"]`}},

		// bodies
		{"JSON body whatever the content type", oneRule("{method: POST, path: /o}", "  subject: response.body.id\n"),
			func() *Exchange {
				ex := exch("POST", "/o", 201, "", `{"id":"x"}`)
				ex.Response.Header["Content-Type"] = []string{"text/plain"}
				return ex
			}(), []string{`r ORDER_CREATED x {"id":"x"}`}},
		{"non-JSON body is null", oneRule("{method: POST, path: /o}", "  subject: '1'\n  data: '[request.body, response.body]'\n"),
			exch("POST", "/o", 201, "a=b", "<html>"), []string{`r ORDER_CREATED 1 [null,null]`}},
		{"truncated body is null", oneRule("{method: POST, path: /o}", "  subject: '1'\n"),
			func() *Exchange {
				ex := exch("POST", "/o", 201, "", `{"id":1}`)
				ex.Response.Truncated = true
				return ex
			}(), []string{`r ORDER_CREATED 1 null`}},
		{"scalar JSON body", oneRule("{method: POST, path: /o}", "  subject: response.body\n"),
			exch("POST", "/o", 201, "", `  "abc"  `), []string{`r ORDER_CREATED abc "abc"`}},

		// subject
		{"subject integral double", oneRule("{method: POST, path: /o}", "  subject: response.body.n\n  data: 'response.body.n'\n"),
			exch("POST", "/o", 201, "", `{"n": 1.0}`), []string{`r ORDER_CREATED 1 1`}},
		{"subject big integer keeps digits", oneRule("{method: POST, path: /o}", "  subject: response.body.id\n"),
			exch("POST", "/o", 201, "", `{"id": 9007199254740993}`), []string{`r ORDER_CREATED 9007199254740993 {"id":9007199254740993}`}},
		{"subject double", oneRule("{method: POST, path: /o}", "  subject: response.body.total\n  data: response.body.total * 2.0\n"),
			exch("POST", "/o", 201, "", orderBody), []string{`r ORDER_CREATED 12.5 25`}},
		{"subject bool", oneRule("{method: POST, path: /o}", "  subject: response.body.customer.vip\n  data: response.body.customer\n"),
			exch("POST", "/o", 201, "", orderBody), []string{`r ORDER_CREATED true {"name":"Zoë","vip":true}`}},
		{"subject uint", oneRule("{method: POST, path: /o}", "  subject: 7u\n  data: 'null'\n"),
			exch("POST", "/o", 201, "", ""), []string{`r ORDER_CREATED 7 null`}},
		{"subject null", oneRule("{method: POST, path: /o}", "  subject: response.body.id\n"),
			exch("POST", "/o", 201, "", `{"id": null}`), []string{`error rule "r": subject: evaluated to null`}},
		{"subject empty", oneRule("{method: POST, path: /o}", "  subject: response.body.id\n"),
			exch("POST", "/o", 201, "", `{"id": ""}`), []string{`error rule "r": subject: evaluated to an empty string`}},
		{"subject list at run time", oneRule("{method: POST, path: /o}", "  subject: response.body.id\n"),
			exch("POST", "/o", 201, "", `{"id": [1]}`), []string{`error rule "r": subject: evaluated to a list`}},
		{"subject on a null body", oneRule("{method: POST, path: /o}", "  subject: response.body.id\n"),
			exch("POST", "/o", 201, "", `oops`), []string{`error rule "r": subject: `}},

		// data
		{"data default is the body as written, compacted", oneRule("{method: POST, path: /o}", "  subject: response.body.z\n"),
			exch("POST", "/o", 201, "", "{\"z\": 1,\n \"a\": [1.50, \"x y\"]}"), []string{`r ORDER_CREATED 1 {"z":1,"a":[1.50,"x y"]}`}},
		{"data map literal, sorted keys", oneRule("{method: POST, path: '/o/{id}'}", "  subject: path.id\n  data: '{\"z\": path.id, \"a\": response.body.lines, \"m\": {\"n\": 1, \"d\": 2.5, \"u\": 3u, \"b\": b\"hi\", \"nul\": null}}'\n"),
			exch("POST", "/o/9", 201, "", orderBody), []string{`r ORDER_CREATED 9 {"a":[{"sku":"a","qty":2}],"m":{"b":"aGk=","d":2.5,"n":1,"nul":null,"u":3},"z":"9"}`}},
		{"data of a body part keeps its text", oneRule("{method: POST, path: /o}", "  subject: response.body.id\n  data: response.body.customer\n"),
			exch("POST", "/o", 201, "", `{"id":1,"customer":{"z":"\u2028<>", "a":-0.0000001,"b":1e21,"c":0.000001}}`), []string{`r ORDER_CREATED 1 {"z":"\u2028<>","a":-0.0000001,"b":1e21,"c":0.000001}`}},
		{"changed of a body part is canonical", oneRule("{method: POST, path: /o}", "  subject: response.body.id\n  data: 'null'\n  changed: response.body.customer\n"),
			exch("POST", "/o", 201, "", `{"id":1,"customer":{"z":"\u2028<>", "a":-0.0000001,"b":1e21,"c":0.000001, "z":"last"}}`), []string{`r ORDER_CREATED 1 null state="r\x001":{"a":-1e-7,"b":1e+21,"c":0.000001,"z":"last"}`}},
		{"data of a body with invalid UTF-8", oneRule("{method: POST, path: /o}", "  subject: '1'\n"),
			exch("POST", "/o", 201, "", "{\"a\": \"\xff\"}"), []string{"r ORDER_CREATED 1 {\"a\":\"\uFFFD\"}"}},
		{"data timestamp and duration", oneRule("{method: POST, path: /o}", "  subject: '1'\n  data: '[timestamp(\"2026-01-02T03:04:05Z\"), duration(\"1.5s\")]'\n"),
			exch("POST", "/o", 201, "", ""), []string{`r ORDER_CREATED 1 ["2026-01-02T03:04:05Z","1.5s"]`}},
		{"data of request body", oneRule("{method: POST, path: /o}", "  subject: '1'\n  data: request.body\n"),
			exch("POST", "/o", 201, `{ "b" : 1 }`, ""), []string{`r ORDER_CREATED 1 {"b":1}`}},
		{"data error", oneRule("{method: POST, path: /o}", "  subject: '1'\n  data: response.body.nope\n"),
			exch("POST", "/o", 201, "", `{}`), []string{`error rule "r": data: no such key: nope`}},
		{"data NaN", oneRule("{method: POST, path: /o}", "  subject: '1'\n  data: 0.0/0.0\n"),
			exch("POST", "/o", 201, "", `{}`), []string{`error rule "r": data: NaN cannot be encoded as JSON`}},

		// changed
		{"changed state", oneRule("{method: PATCH, path: '/orders/{id}'}", "  subject: path.id\n  changed: response.body.status\n"),
			exch("PATCH", "/orders/42", 200, "", orderBody), []string{`r ORDER_CREATED 42 ` + compactJSON(orderBody) + ` state="r\x0042":"OPEN"`}},
		{"changed map is deterministic", oneRule("{method: PATCH, path: '/orders/{id}'}", "  subject: path.id\n  data: 'null'\n  changed: response.body\n"),
			exch("PATCH", "/orders/42", 200, "", `{"b":1,"a":{"y":1,"x":2}}`), []string{`r ORDER_CREATED 42 null state="r\x0042":{"a":{"x":2,"y":1},"b":1}`}},
		{"changed error", oneRule("{method: PATCH, path: '/orders/{id}'}", "  subject: path.id\n  changed: response.body.status\n"),
			exch("PATCH", "/orders/42", 200, "", `[]`), []string{`error rule "r": changed: `}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := mustCompile(t, tc.rules)
			g := got(e.Evaluate(tc.ex))
			if len(g) != len(tc.want) {
				t.Fatalf("got %d results, want %d:\n got: %q\nwant: %q", len(g), len(tc.want), g, tc.want)
			}
			for i := range g {
				if g[i] != tc.want[i] && !(strings.HasPrefix(tc.want[i], "error ") && strings.HasPrefix(g[i], tc.want[i])) {
					t.Errorf("result %d:\n got: %s\nwant: %s", i, g[i], tc.want[i])
				}
			}
		})
	}
}

func compactJSON(s string) string {
	return string(appendCompact(nil, []byte(s)))
}

func TestEvaluateSeveralRules(t *testing.T) {
	e := mustCompile(t, `
- name: a
  event: ORDER_UPDATED
  when: {method: PATCH, path: '/orders/{id}'}
  subject: path.id
  data: 'null'
- name: broken
  event: ORDER_UPDATED
  when: {method: PATCH, path: '/orders/{id}'}
  subject: response.body.nope
- name: other-route
  event: ORDER_CREATED
  when: {method: POST, path: /orders}
  subject: '1'
- name: b
  event: ORDER_STATUS_CHANGED
  when: {method: [PATCH], path: '/orders/{order}'}
  subject: path.order
  data: response.body.status
  changed: response.body.status
`)
	ex := exch("PATCH", "/orders/7", 200, "", `{"status":"PAID"}`)
	evs, errs := e.Evaluate(ex)
	want := []string{
		`a ORDER_UPDATED 7 null`,
		`b ORDER_STATUS_CHANGED 7 "PAID" state="b\x007":"PAID"`,
		`error rule "broken": subject: no such key: nope`,
	}
	if g := got(evs, errs); strings.Join(g, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got:\n%s\nwant:\n%s", strings.Join(g, "\n"), strings.Join(want, "\n"))
	}
	for _, ev := range evs {
		if !ev.ObservedAt.Equal(ex.End) {
			t.Errorf("%s: ObservedAt = %v, want Exchange.End %v", ev.Rule, ev.ObservedAt, ex.End)
		}
	}
	var ee *EvalError
	if !errors.As(errs[0], &ee) || ee.Rule != "broken" || ee.Err == nil {
		t.Fatalf("error = %#v, want *EvalError for rule broken", errs[0])
	}

	outs := e.Explain(ex)
	var res []string
	for _, o := range outs {
		res = append(res, o.Rule+": "+o.Result.String())
	}
	wantRes := "a: fired|broken: failed|other-route: method or path did not match|b: fired"
	if strings.Join(res, "|") != wantRes {
		t.Fatalf("Explain = %q, want %q", strings.Join(res, "|"), wantRes)
	}
	if e.Len() != 4 || strings.Join(e.Names(), ",") != "a,broken,other-route,b" {
		t.Fatalf("Len = %d, Names = %v", e.Len(), e.Names())
	}
}

func TestEvaluateNoMatchDoesNotAllocate(t *testing.T) {
	e := mustCompile(t, oneRule("{method: POST, path: /orders}", "  subject: response.body.id\n"))
	ex := exch("GET", "/orders", 200, "", `{"id":1}`)
	if n := testing.AllocsPerRun(100, func() { e.Evaluate(ex) }); n != 0 {
		t.Fatalf("Evaluate of a non-matching exchange allocates %v times", n)
	}
}

// TestBodiesParsedOnlyWhenNeeded checks the needs analysis and that the
// evaluation state parses a body only for rules that read it.
func TestBodiesParsedOnlyWhenNeeded(t *testing.T) {
	tests := []struct {
		rest string
		want needs
	}{
		{"  subject: path.id\n  data: 'null'\n", 0},
		{"  subject: path.id\n", needRespBody},
		{"  subject: path.id\n  data: request.body.x\n", needReqBody},
		{"  subject: path.id\n  data: 'has(request.body.x)'\n", needReqBody},
		{"  subject: path.id\n  data: 'request[\"body\"]'\n", needReqBody},
		{"  subject: path.id\n  data: 'request.?body'\n", needReqBody},
		{"  subject: path.id\n  data: request.headers\n", needReqHeaders},
		{"  subject: path.id\n  data: response.headers\n", needRespHeaders},
		{"  subject: path.id\n  data: 'request.query'\n", needQuery},
		{"  subject: path.id\n  data: '[request.method, request.path, response.status]'\n", 0},
		{"  subject: path.id\n  data: request\n", needAll},
		{"  subject: path.id\n  data: 'response[\"st\" + \"atus\"]'\n", needAll},
		{"  subject: path.id\n  data: '[1].map(request, request)'\n", 0},
		{"  subject: path.id\n  data: '[1].map(x, request.body)'\n", needReqBody},
	}
	for _, tc := range tests {
		e := mustCompile(t, oneRule("{method: POST, path: '/o/{id}'}", tc.rest))
		r := e.rules[0]
		if r.needs != tc.want {
			t.Errorf("%q: needs = %05b, want %05b", tc.rest, r.needs, tc.want)
		}
		st := &evalState{ex: exch("POST", "/o/1", 200, `{"x":1}`, `{"y":2}`), needs: r.needs}
		if _, res, err := st.evalRule(r, map[string]string{"id": "1"}); res != Fired {
			t.Errorf("%q: %v %v", tc.rest, res, err)
		}
		if st.reqBody != nil && r.needs&needReqBody == 0 || st.respBody != nil && r.needs&needRespBody == 0 {
			t.Errorf("%q: parsed request %v, response %v with needs %05b", tc.rest, st.reqBody != nil, st.respBody != nil, r.needs)
		}
	}
}

func TestEvaluateCostLimit(t *testing.T) {
	e := mustCompile(t, oneRule("{method: POST, path: /o, match: 'response.body.all(a, response.body.all(b, response.body.all(c, a + b + c >= 0)))'}", "  subject: '1'\n"))
	var b strings.Builder
	b.WriteString("[0")
	for i := 1; i < 2000; i++ {
		b.WriteString(",1")
	}
	b.WriteString("]")
	ex := exch("POST", "/o", 200, "", b.String())
	start := time.Now()
	_, errs := e.Evaluate(ex)
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "cost limit") {
		t.Fatalf("errs = %v, want a cost limit error", errs)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("a runaway expression ran for %v", d)
	}
}

// TestEvaluateReusesScratch evaluates exchanges one after the other, and
// concurrently, on one engine, which reuses its buffers from one evaluation
// to the next, and requires the results of an engine used once.
func TestEvaluateReusesScratch(t *testing.T) {
	const rules = `
- name: upd
  event: ORDER_UPDATED
  when: {method: PATCH, path: '/o/{id}', match: 'has(request.body.status)'}
  subject: path.id
  data: '{"id": path.id, "total": response.body.total, "lines": response.body.lines.map(l, l.sku)}'
  changed: response.body.status
- name: raw
  event: ORDER_UPDATED
  when: {method: PATCH, path: '/o/{id}'}
  subject: response.body.id
`
	big := orderJSON(2<<20, "BIG") // a tape larger than the buffers kept
	var exs []*Exchange
	for i, body := range []string{orderJSON(1024, "A"), `{"id": "x", "status": "B", "lines": []}`, big, orderJSON(300, "C"), "{\"id\":\"\xff\", \"lines\": [{\"sku\": \"\u00e9\"}]}", `nope`} {
		exs = append(exs, exch("PATCH", fmt.Sprintf("/o/%d", i), 200, `{"status":"S"}`, body))
	}
	want := make([][]string, len(exs))
	for i, ex := range exs {
		want[i] = got(mustCompile(t, rules).Evaluate(ex))
	}
	e := mustCompile(t, rules)
	check := func(i int) error {
		if g := got(e.Evaluate(exs[i])); !slices.Equal(g, want[i]) {
			return fmt.Errorf("exchange %d: got %q, want %q", i, g, want[i])
		}
		return nil
	}
	for round := 0; round < 3; round++ {
		for i := range exs {
			if err := check(i); err != nil {
				t.Fatal(err)
			}
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 4*len(exs))
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range exs {
				if err := check((i + g) % len(exs)); err != nil {
					errs <- err
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// TestEvaluateSubjectTooLong checks that a subject longer than
// MaxSubjectBytes is a run-time error of its rule, whose message does not
// repeat the (response) data.
func TestEvaluateSubjectTooLong(t *testing.T) {
	e := mustCompile(t, `
- name: created
  event: ORDER_CREATED
  when: {method: POST, path: /orders, status: 201}
  subject: response.body.id
`)
	for _, tc := range []struct {
		n      int
		events int
	}{{MaxSubjectBytes, 1}, {MaxSubjectBytes + 1, 0}, {100 << 10, 0}} {
		id := strings.Repeat("7", tc.n)
		evs, errs := e.Evaluate(exch("POST", "/orders", 201, `{}`, `{"id":"`+id+`"}`))
		if len(evs) != tc.events || len(errs) != 1-tc.events {
			t.Fatalf("subject of %d bytes: %d events, errors %v", tc.n, len(evs), errs)
		}
		if len(errs) == 1 && (strings.Contains(errs[0].Error(), "7777") || !strings.Contains(errs[0].Error(), "more than the 1024")) {
			t.Errorf("error %q", errs[0])
		}
	}
}
