package rules

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

const eachRules = `
- name: order-status
  event: ORDER_STATUS_CHANGED
  when: {method: GET, path: /orders, match: has(item.status)}
  each: response.body
  subject: item.id
  changed: item.status
`

// ordersList returns a JSON list of n orders; order i has status f(i).
func ordersList(n int, f func(i int) string) string {
	var b strings.Builder
	b.WriteByte('[')
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":%d,"status":%q,"customer":"cus_%d","total":%d.5}`, i+1, f(i), i, i)
	}
	b.WriteByte(']')
	return b.String()
}

func TestEachEmitsOneEventPerElementInOrder(t *testing.T) {
	e := mustCompile(t, eachRules)
	ex := exch("GET", "/orders", 200, "", `[{"id":3,"status":"OPEN"},{"id":1},{"id":"a-7","status":"PAID","x":[1, 2]}]`)
	evs, errs := e.Evaluate(ex)
	if len(errs) != 0 {
		t.Fatal(errs)
	}
	want := []struct{ subject, data, value string }{
		{"3", `{"id":3,"status":"OPEN"}`, `"OPEN"`},
		{"a-7", `{"id":"a-7","status":"PAID","x":[1,2]}`, `"PAID"`},
	}
	if len(evs) != len(want) {
		t.Fatalf("%d events, want %d: %+v", len(evs), len(want), evs)
	}
	for i, w := range want {
		ev := evs[i]
		if ev.Subject != w.subject || string(ev.Data) != w.data || ev.State == nil || string(ev.State.Value) != w.value ||
			ev.State.Key != StateKey("order-status", w.subject) || ev.Rule != "order-status" || !ev.ObservedAt.Equal(testEnd) {
			t.Errorf("event %d = %+v %s, want %+v", i, ev, ev.Data, w)
		}
	}

	// An empty list, and a list where nothing matches: no event, no error.
	for _, body := range []string{`[]`, `[{"id":1},{"id":2}]`} {
		if evs, errs := e.Evaluate(exch("GET", "/orders", 200, "", body)); len(evs) != 0 || len(errs) != 0 {
			t.Errorf("%s: events %v, errors %v", body, evs, errs)
		}
	}
}

func TestEachSeesRequestResponseAndPath(t *testing.T) {
	e := mustCompile(t, `
- name: bulk
  event: ORDER_UPDATED
  when: {method: POST, path: "/accounts/{acct}/orders/bulk-status", match: 'item != "skip"'}
  each: request.body.ids
  subject: item
  data: '{"account": path.acct, "id": item, "status": request.body.status, "code": response.status}'
`)
	ex := exch("POST", "/accounts/ac1/orders/bulk-status", 200, `{"ids":["o1","skip","o2"],"status":"SHIPPED"}`, `{"ok":true}`)
	evs, errs := e.Evaluate(ex)
	if len(errs) != 0 || len(evs) != 2 {
		t.Fatalf("events %v, errors %v", evs, errs)
	}
	if string(evs[1].Data) != `{"account":"ac1","code":200,"id":"o2","status":"SHIPPED"}` || evs[0].Subject != "o1" {
		t.Errorf("events: %s, %s", evs[0].Data, evs[1].Data)
	}
}

func TestEachFailures(t *testing.T) {
	e := mustCompile(t, eachRules+`
- name: plain
  event: ORDER_UPDATED
  when: {method: GET, path: /orders}
  subject: '"list"'
  data: '"x"'
`)
	tests := []struct {
		name, body, want string
	}{
		{"not a list", `{"orders":[]}`, `each: evaluated to a map, not a list`},
		{"null body", ``, `each: evaluated to null (no JSON body?), not a list`},
		{"too many", ordersList(MaxEachElements+1, func(int) string { return "OPEN" }), `each: the list has 1001 elements, more than the 1000`},
		{"an element fails", `[{"id":1,"status":"OPEN"},{"status":"PAID"}]`, `each[1]: subject: no such key: id`},
		{"a null subject", `[{"id":null,"status":"OPEN"}]`, `each[0]: subject:`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			evs, errs := e.Evaluate(exch("GET", "/orders", 200, "", tc.body))
			// The rule with each emits nothing; the other rule is not
			// affected.
			for _, ev := range evs {
				if ev.Rule == "order-status" {
					t.Errorf("the failing rule emitted %+v", ev)
				}
			}
			if len(errs) != 1 {
				t.Fatalf("errors %v, want one", errs)
			}
			var ee *EvalError
			if !errors.As(errs[0], &ee) || ee.Rule != "order-status" || !strings.Contains(ee.Error(), tc.want) {
				t.Errorf("error %v, want %q", errs[0], tc.want)
			}
		})
	}
	if evs, errs := e.Evaluate(exch("GET", "/orders", 200, "", ordersList(MaxEachElements, func(int) string { return "OPEN" }))); len(errs) != 0 || len(evs) != MaxEachElements+1 {
		t.Errorf("exactly %d elements: %d events, errors %v", MaxEachElements, len(evs), errs)
	}
}

// TestEachCostIsBounded: a rule whose per-element expressions are each
// cheap enough for one evaluation, but not a thousand times over, fails
// quickly instead of stalling the proxy; so does one that copies the whole
// body into every element's event.
func TestEachCostIsBounded(t *testing.T) {
	body := ordersList(MaxEachElements, func(i int) string { return fmt.Sprint("S", i) })
	for _, tc := range []struct {
		name, rest, want string
		pad              int // leading spaces in the body, counted in its size
	}{
		{"quadratic subject", "  subject: 'response.body.filter(o, o.id == item.id && o.status == item.status)[0].id'\n", "cost limit", 0},
		{"whole body as data", "  subject: item.id\n  data: 'response.body.map(o, o)'\n", "cost limit", 0},
		// Padded so that the bodies alone are larger than the slack.
		{"whole body text as data", "  subject: item.id\n  data: response.body\n", "data: the events' data add up to more than", 8 << 20},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := mustCompile(t, "- name: r\n  event: ORDER_UPDATED\n  when: {method: GET, path: /orders}\n  each: response.body\n"+tc.rest)
			ex := exch("GET", "/orders", 200, "", strings.Repeat(" ", tc.pad)+body)
			start := time.Now()
			evs, errs := e.Evaluate(ex)
			d := time.Since(start)
			if len(evs) != 0 || len(errs) != 1 || !strings.Contains(errs[0].Error(), tc.want) {
				t.Fatalf("events %d, errors %v; want %q", len(evs), errs, tc.want)
			}
			// The budget cut the work short (an unbounded rule would run
			// all 1,000 elements, and a per-element limit alone would allow
			// 1,000 times the cost limit). The wall-clock guard is loose
			// because -race on a loaded machine slows CEL down tenfold.
			if !strings.Contains(errs[0].Error(), " of 1000 elements") && tc.pad == 0 {
				t.Errorf("the error does not say where the budget ran out: %v", errs[0])
			}
			if d > 10*time.Second {
				t.Errorf("took %v", d)
			}
			t.Logf("%v: %v", d, errs[0])
		})
	}
}

func TestEachExplain(t *testing.T) {
	e := mustCompile(t, eachRules)
	out := e.Explain(exch("GET", "/orders", 200, "", `[{"id":1,"status":"OPEN"},{"id":2},{"status":"X"},{"id":4,"status":"PAID"}]`))
	if len(out) != 1 {
		t.Fatalf("%d outcomes", len(out))
	}
	o := out[0]
	if o.Result != Failed || o.Err == nil || !strings.Contains(o.Err.Error(), "each[2]: subject") {
		t.Fatalf("outcome %+v", o)
	}
	want := []Result{Fired, NoMatch, Failed, Fired}
	if len(o.Items) != len(want) {
		t.Fatalf("%d items, want %d", len(o.Items), len(want))
	}
	for i, w := range want {
		if it := o.Items[i]; it.Result != w || (w == Fired) != (it.Event != nil) || (w == Failed) != (it.Err != nil) {
			t.Errorf("item %d = %+v, want %v", i, it, w)
		}
	}
	if ev := o.Items[3].Event; ev.Subject != "4" || string(ev.State.Value) != `"PAID"` {
		t.Errorf("item 3 event %+v", ev)
	}
}

// TestDecideChange is the table of the `changed` decision, applied as the
// outbox applies it: per StateKey, in order, recording when told to.
func TestDecideChange(t *testing.T) {
	tests := []struct {
		name          string
		prev          string // "" = none stored
		cur           string
		want          Change
		record, fires bool
	}{
		{"first sighting", "", `"OPEN"`, ChangeFirst, true, false},
		{"same value", `"OPEN"`, `"OPEN"`, ChangeSame, false, false},
		{"same value, other formatting", `{"a":1}`, `{ "a": 1 }`, ChangeSame, false, false},
		{"new value", `"OPEN"`, `"PAID"`, ChangeNew, true, true},
		{"null with a value stored", `"OPEN"`, `null`, ChangeUnknown, false, false},
		{"null first", "", `null`, ChangeUnknown, false, false},
		{"empty", "", ``, ChangeUnknown, false, false},
		{"number to string", `1`, `"1"`, ChangeNew, true, true},
	}
	for _, tc := range tests {
		got := DecideChange([]byte(tc.prev), tc.prev != "", []byte(tc.cur))
		if got != tc.want || got.Record() != tc.record || got.Fire() != tc.fires {
			t.Errorf("%s: %v (record %v, fire %v), want %v", tc.name, got, got.Record(), got.Fire(), tc.want)
		}
	}
}

// TestChangedLifecycle runs the exchanges of SPEC §3's pattern (one rule
// listing the create, the updates and the reads) through the engine and a
// store applying DecideChange, as the outbox does.
func TestChangedLifecycle(t *testing.T) {
	e := mustCompile(t, `
- name: status
  event: ORDER_STATUS_CHANGED
  when:
    method: [POST, PATCH, PUT, GET]
    path: [/orders, "/orders/{id}"]
    status: [200, 201]
    match: 'request.method != "GET" || request.path != "/orders"'
  subject: response.body.id
  changed: response.body.?status.orValue(null)
- name: status-list
  event: ORDER_STATUS_CHANGED
  when: {method: GET, path: /orders, status: 200}
  each: response.body
  subject: item.id
  changed: item.status
`)
	store := map[string]string{}
	step := func(ex *Exchange) []string {
		t.Helper()
		evs, errs := e.Evaluate(ex)
		if len(errs) > 0 {
			t.Fatal(errs)
		}
		var fired []string
		for _, ev := range evs {
			prev, found := store[ev.State.Key]
			d := DecideChange([]byte(prev), found, ev.State.Value)
			if d.Record() {
				store[ev.State.Key] = string(ev.State.Value)
			}
			if d.Fire() {
				fired = append(fired, fmt.Sprintf("%s:%s:%s->%s", ev.Rule, ev.Subject, prev, ev.State.Value))
			}
		}
		return fired
	}
	for _, s := range []struct {
		name string
		ex   *Exchange
		want string
	}{
		{"create seeds", exch("POST", "/orders", 201, `{}`, `{"id":7,"status":"OPEN"}`), ""},
		{"first update fires", exch("PATCH", "/orders/7", 200, `{"status":"PAID"}`, `{"id":7,"status":"PAID"}`), `status:7:"OPEN"->"PAID"`},
		{"same value", exch("PUT", "/orders/7", 200, `{"status":"PAID"}`, `{"id":7,"status":"PAID"}`), ""},
		{"unchanged read", exch("GET", "/orders/7", 200, ``, `{"id":7,"status":"PAID"}`), ""},
		{"read after a change behind the API", exch("GET", "/orders/7", 200, ``, `{"id":7,"status":"SHIPPED"}`), `status:7:"PAID"->"SHIPPED"`},
		{"partial response (null)", exch("PATCH", "/orders/7", 200, `{"note":"x"}`, `{"id":7}`), ""},
		{"still SHIPPED", exch("GET", "/orders/7", 200, ``, `{"id":7,"status":"SHIPPED"}`), ""},
		{"list seeds its own rule", exch("GET", "/orders", 200, ``, `[{"id":7,"status":"SHIPPED"},{"id":8,"status":"OPEN"}]`), ""},
		{"list: one changed element", exch("GET", "/orders", 200, ``, `[{"id":7,"status":"SHIPPED"},{"id":8,"status":"PAID"}]`), `status-list:8:"OPEN"->"PAID"`},
		{"list: the same subject twice chains", exch("GET", "/orders", 200, ``, `[{"id":8,"status":"X"},{"id":8,"status":"Y"},{"id":7,"status":"SHIPPED"}]`),
			`status-list:8:"PAID"->"X" status-list:8:"X"->"Y"`},
	} {
		if got := strings.Join(step(s.ex), " "); got != s.want {
			t.Errorf("%s: fired %q, want %q", s.name, got, s.want)
		}
	}
}
