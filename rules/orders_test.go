package rules_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/eventtap/eventtap/rules"
)

func loadOrders(tb testing.TB) *rules.Engine {
	tb.Helper()
	data, err := os.ReadFile("testdata/orders.rules.yaml")
	if err != nil {
		tb.Fatal(err)
	}
	e, err := rules.CompileFile("testdata/orders.rules.yaml", data, rules.EventTypes(nil))
	if err != nil {
		tb.Fatalf("the example rules do not compile:\n%v", err)
	}
	return e
}

// TestOrdersRules runs the example rule set against the exchanges of an
// order's life.
func TestOrdersRules(t *testing.T) {
	e := loadOrders(t)
	if e.Len() != 6 {
		t.Fatalf("%d rules", e.Len())
	}
	end := time.Date(2026, 11, 29, 13, 34, 18, 0, time.UTC)
	ex := func(method, path string, status int, reqBody, respBody string) *rules.Exchange {
		return &rules.Exchange{
			Request:  rules.Request{Method: method, Path: path, Header: http.Header{"Content-Type": {"application/json"}}, Body: []byte(reqBody)},
			Response: rules.Response{Status: status, Header: http.Header{"Content-Type": {"application/json"}}, Body: []byte(respBody)},
			Start:    end.Add(-time.Millisecond), End: end,
		}
	}
	type want struct {
		rule, typ, subject, data, state string
	}
	tests := []struct {
		name string
		ex   *rules.Exchange
		want []want
	}{
		{"create", ex("POST", "/orders", 201, `{"sku":"A-1","qty":2}`, `{"id":"ord_1","status":"OPEN","total":39.98}`),
			[]want{{"order-created", rules.OrderCreated, "ord_1", `{"id":"ord_1","status":"OPEN","total":39.98}`, ""}}},
		{"create refused", ex("POST", "/orders", 422, `{}`, `{"error":"sku required"}`), nil},
		{"list is not an event", ex("GET", "/orders", 200, ``, `[]`), nil},
		{"status change", ex("PATCH", "/orders/ord_1", 200, `{"status":"PAID"}`, `{"id":"ord_1","status":"PAID"}`),
			[]want{
				{"order-updated", rules.OrderUpdated, "ord_1", `{"id":"ord_1","status":"PAID"}`, ""},
				{"order-status-changed", rules.OrderStatusChanged, "ord_1", `{"id":"ord_1","status":"PAID"}`, "order-status-changed\x00ord_1=\"PAID\""},
			}},
		{"update without a body", ex("PUT", "/orders/ord_1", 204, `{"note":"x"}`, ``),
			[]want{{"order-updated", rules.OrderUpdated, "ord_1", `null`, ""}}},
		{"cancel with a body", ex("POST", "/orders/ord_1/cancel", 200, ``, `{"id":"ord_1","status":"CANCELED"}`),
			[]want{{"order-canceled", rules.OrderCanceled, "ord_1", `{"id":"ord_1","status":"CANCELED"}`, ""}}},
		{"cancel without a body", ex("POST", "/orders/ord_1/cancel", 204, ``, ``),
			[]want{{"order-canceled", rules.OrderCanceled, "ord_1", `{"id":"ord_1","status":"CANCELED"}`, ""}}},
		{"cancel conflict", ex("POST", "/orders/ord_1/cancel", 409, ``, `{"error":"shipped"}`), nil},
		{"shipment", ex("POST", "/orders/ord_1/shipments", 201, `{"carrier":"ups"}`, `{"id":"shp_9","carrier":"ups"}`),
			[]want{{"shipment-created", rules.ShipmentCreated, "shp_9", `{"order_id":"ord_1","shipment":{"id":"shp_9","carrier":"ups"}}`, ""}}},
		{"shipment canceled", ex("DELETE", "/shipments/shp_9", 204, ``, ``),
			[]want{{"shipment-canceled", rules.ShipmentCanceled, "shp_9", `{"id":"shp_9"}`, ""}}},
		{"unrelated", ex("DELETE", "/orders/ord_1", 204, ``, ``), nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, routed := e.Route(tc.ex.Request.Method, tc.ex.Request.Path)
			if len(tc.want) > 0 && !routed {
				t.Fatal("Route says no rule could match")
			}
			evs, errs := e.Evaluate(tc.ex)
			if len(errs) > 0 {
				t.Fatalf("errors: %v", errs)
			}
			if len(evs) != len(tc.want) {
				t.Fatalf("got %d events, want %d: %+v", len(evs), len(tc.want), evs)
			}
			for i, w := range tc.want {
				ev := evs[i]
				state := ""
				if ev.State != nil {
					state = ev.State.Key + "=" + string(ev.State.Value)
				}
				got := want{ev.Rule, ev.Type, ev.Subject, string(ev.Data), state}
				if got != w {
					t.Errorf("event %d:\n got %q\nwant %q", i, got, w)
				}
				if !json.Valid(ev.Data) || !ev.ObservedAt.Equal(end) {
					t.Errorf("event %d: data %s, observed at %v", i, ev.Data, ev.ObservedAt)
				}
			}
		})
	}
}

// TestExampleExchange runs the example exchange file the way
// `eventtap rules test` does.
func TestExampleExchange(t *testing.T) {
	data, err := os.ReadFile("testdata/exchanges/order-status-changed.json")
	if err != nil {
		t.Fatal(err)
	}
	ex, err := rules.ParseExchange(data)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, o := range loadOrders(t).Explain(ex) {
		fmt.Fprintf(&b, "%s: %s", o.Rule, o.Result)
		if o.Event != nil {
			fmt.Fprintf(&b, " %s %s %s", o.Event.Type, o.Event.Subject, o.Event.Data)
		}
		b.WriteString("\n")
	}
	want := `order-created: method or path did not match
order-updated: fired ORDER_UPDATED ord_42 {"id":"ord_42","status":"SHIPPED","total":99.5}
order-status-changed: fired ORDER_STATUS_CHANGED ord_42 {"id":"ord_42","status":"SHIPPED","total":99.5}
order-canceled: method or path did not match
shipment-created: method or path did not match
shipment-canceled: method or path did not match
`
	if b.String() != want {
		t.Fatalf("got:\n%s\nwant:\n%s", b.String(), want)
	}
}

func ExampleEngine_Evaluate() {
	e, err := rules.CompileFile("rules.yaml", []byte(`
- name: order-created
  event: ORDER_CREATED
  when: {method: POST, path: /orders, status: 201}
  subject: response.body.id
`), rules.EventTypes(nil))
	if err != nil {
		fmt.Println(err)
		return
	}
	route, ok := e.Route("POST", "/orders")
	fmt.Println(route, ok)
	events, _ := e.Evaluate(&rules.Exchange{
		Request:  rules.Request{Method: "POST", Path: "/orders", Body: []byte(`{"sku": "A-1"}`)},
		Response: rules.Response{Status: 201, Body: []byte(`{"id": 1042, "status": "OPEN"}`)},
	})
	for _, ev := range events {
		fmt.Println(ev.Type, ev.Subject, string(ev.Data))
	}
	// Output:
	// /orders true
	// ORDER_CREATED 1042 {"id":1042,"status":"OPEN"}
}

func ExampleCompileFile_errors() {
	_, err := rules.CompileFile("rules.yaml", []byte(`
- name: order-created
  event: ORDER_CREATD
  when: {method: POST, path: /orders, status: 2xx}
  subject: response.body.idd +
`), rules.EventTypes(nil))
	fmt.Println(err)
	// Output:
	// rules.yaml:3:10: event: unknown event type "ORDER_CREATD" (did you mean "ORDER_CREATED"?); use one of ORDER_CREATED, ORDER_CANCELED, ORDER_STATUS_CHANGED, ORDER_UPDATED, SHIPMENT_CREATED, SHIPMENT_CANCELED, or add it to event_types in the configuration
	// rules.yaml:5:31: subject: Syntax error: mismatched input '<EOF>' expecting {'[', '{', '(', '.', '-', '!', 'true', 'false', 'null', NUM_FLOAT, NUM_INT, NUM_UINT, STRING, BYTES, IDENTIFIER}
}
