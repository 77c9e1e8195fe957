package rules

import (
	"net/http"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"
)

func TestParseExchange(t *testing.T) {
	data, err := os.ReadFile("testdata/exchanges/order-status-changed.json")
	if err != nil {
		t.Fatal(err)
	}
	ex, err := ParseExchange(data)
	if err != nil {
		t.Fatal(err)
	}
	want := &Exchange{
		Request: Request{
			Method: "PATCH", Path: "/orders/ord_42", RawQuery: "notify=false",
			Header: http.Header{"Content-Type": {"application/json"}, "X-Request-Id": {"r-1"}},
			Body:   []byte(`{"status": "SHIPPED"}`),
		},
		Response: Response{
			Status: 200,
			Header: http.Header{"Content-Type": {"application/json"}},
			Body:   []byte(`{"id": "ord_42", "status": "SHIPPED", "total": 99.5}`),
		},
		Start: time.Date(2026, 11, 29, 13, 34, 18, 0, time.UTC),
		End:   time.Date(2026, 11, 29, 13, 34, 18, 120e6, time.UTC),
	}
	if !reflect.DeepEqual(ex, want) {
		t.Fatalf("got  %+v\nwant %+v", ex, want)
	}
}

func TestParseExchangeForms(t *testing.T) {
	tests := []struct {
		name, in string
		check    func(*Exchange) bool
	}{
		{"string body is raw text", `{"request":{"method":"post","path":"/o","body":"a=b&c"},"response":{"status":201,"body":"{\"id\": 1}"}}`,
			func(ex *Exchange) bool {
				return ex.Request.Method == "POST" && string(ex.Request.Body) == "a=b&c" && string(ex.Response.Body) == `{"id": 1}`
			}},
		{"null and missing bodies are empty", `{"request":{"method":"GET","path":"/o","body":null},"response":{"status":204}}`,
			func(ex *Exchange) bool { return ex.Request.Body == nil && ex.Response.Body == nil }},
		{"scalar JSON bodies", `{"request":{"method":"GET","path":"/o","body":42},"response":{"status":200,"body":true}}`,
			func(ex *Exchange) bool { return string(ex.Request.Body) == "42" && string(ex.Response.Body) == "true" }},
		{"header lists", `{"request":{"method":"GET","path":"/o","headers":{"x-tag":["a","b"],"X-Tag":"c"}},"response":{"status":200}}`,
			func(ex *Exchange) bool { return len(ex.Request.Header["X-Tag"]) == 3 }},
		{"query object", `{"request":{"method":"GET","path":"/o","query":{"a":"1","b":["2","3"]}},"response":{"status":200}}`,
			func(ex *Exchange) bool { return ex.Request.RawQuery == "a=1&b=2&b=3" }},
		{"query string", `{"request":{"method":"GET","path":"/o","query":"?a=1"},"response":{"status":200}}`,
			func(ex *Exchange) bool { return ex.Request.RawQuery == "a=1" }},
		{"path is decoded", `{"request":{"method":"GET","path":"/o/a%20b"},"response":{"status":200}}`,
			func(ex *Exchange) bool { return ex.Request.Path == "/o/a b" }},
		{"encoded slash stays in its segment, as in the proxy", `{"request":{"method":"GET","path":"/o/a%2Fb"},"response":{"status":200}}`,
			func(ex *Exchange) bool { return ex.Request.Path == "/o/a%2Fb" }},
		{"path is cleaned as the proxy cleans it", `{"request":{"method":"GET","path":"//o/./x/"},"response":{"status":200}}`,
			func(ex *Exchange) bool { return ex.Request.Path == "/o/x" }},
		{"end defaults to start", `{"request":{"method":"GET","path":"/"},"response":{"status":200},"start":"2026-01-01T00:00:00Z"}`,
			func(ex *Exchange) bool { return ex.End.Equal(ex.Start) && !ex.End.IsZero() }},
		{"truncated", `{"request":{"method":"GET","path":"/","truncated":true},"response":{"status":200,"truncated":true}}`,
			func(ex *Exchange) bool { return ex.Request.Truncated && ex.Response.Truncated }},
	}
	for _, tc := range tests {
		ex, err := ParseExchange([]byte(tc.in))
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if !tc.check(ex) {
			t.Errorf("%s: got %+v", tc.name, ex)
		}
	}
}

func TestParseExchangeErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{`{"request": {"method": "GET",}`, "exchange: line 1, column 30: invalid character '}'"},
		{"{\n  \"request\": {\"method\": 5}}", "exchange: line 2, column 25: cannot unmarshal number into Go struct field"},
		{`{"request": {"method": "GET", "path": "/"}, "response": {"status": 200}, "extra": 1}`, `exchange: unknown field "extra"`},
		{`{"response": {"status": 200}}`, "exchange: request.method: is required"},
		{`{"request": {"method": "GET"}, "response": {"status": 200}}`, "exchange: request.path: is required"},
		{`{"request": {"method": "GET", "path": "orders"}, "response": {"status": 200}}`, `exchange: request.path: "orders" must start with "/"`},
		{`{"request": {"method": "GET", "path": "/"}}`, "exchange: response.status: is required"},
		{`{"request": {"method": "GET", "path": "/?a=1", "query": "b=2"}, "response": {"status": 200}}`, "exchange: request.query: is given both"},
		{`{"request": {"method": "GET", "path": "/", "headers": {"a": 1}}, "response": {"status": 200}}`, `exchange: request.headers: "a": must be a string or a list of strings`},
		{`{"request": {"method": "GET", "path": "/"}, "response": {"status": 200}, "start": "yesterday"}`, `exchange: start: "yesterday" is not an RFC 3339 time`},
		{`{"request": {"method": "GET", "path": "/"}, "response": {"status": 200}} {}`, "exchange: holds more than one JSON value"},
	}
	for _, tc := range tests {
		_, err := ParseExchange([]byte(tc.in))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseExchange(%s) = %v, want %q", tc.in, err, tc.want)
		}
	}
}
