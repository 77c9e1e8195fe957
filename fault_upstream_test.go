package main

// Fault scenarios on the upstream side: down, garbage, huge subjects (see fault_harness_test.go).

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// ---- 4. the upstream down, then back

// TestFaultUpstreamDown takes the order API away, refusing connections or
// accepting them and saying nothing, then brings it back at the same
// address: meanwhile clients get a clean JSON 502 or 504, counted as
// upstream errors, and no event; afterwards traffic and events resume
// without a restart.
func TestFaultUpstreamDown(t *testing.T) {
	tests := []struct {
		name string
		// down puts what answers at addr while the order API is gone, and
		// returns what removes it again.
		down  func(t *testing.T, addr string) (undo func())
		code  int
		body  string
		ready bool // /readyz while down
	}{
		{"connection refused", func(*testing.T, string) func() { return func() {} },
			http.StatusBadGateway, `{"error":"upstream unreachable","reason":"connection failed"}`, false},
		{"accepts and says nothing", func(t *testing.T, addr string) func() { return startRaw(t, addr, nil).close },
			http.StatusGatewayTimeout, `{"error":"upstream unreachable","reason":"timeout"}`, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			orders := newOrderAPI()
			api := serveAt(t, "127.0.0.1:0", orders.handler())
			addr := api.Listener.Addr().String()
			s := startFault(t, faultConfig{upstream: api.URL, rules: readFile(t, "docs/examples/orders.rules.yaml"),
				proxy: []string{"upstream_timeout: 500ms"}})
			rc := newHookReceiver(t)
			rc.register(t, s.adminURL, "ORDER_CREATED")
			createOrder(t, s, `{"total":1}`)
			rc.waitFor(t, "ORDER_CREATED", 1)
			readyz := func() int {
				code, _, _ := faultSend(t, http.MethodGet, s.adminURL+"/readyz", "")
				return code
			}

			api.Close()
			// The proxy drops its idle connections to the API when they
			// close; a request racing that would fail on a dead one.
			time.Sleep(200 * time.Millisecond)
			undo := tt.down(t, addr)
			requests := []struct{ method, path, body string }{
				{http.MethodPost, "/orders", `{"total":2}`}, // tapped
				{http.MethodPost, "/orders", `{"total":3}`},
				{http.MethodGet, "/orders", ""}, // not tapped
			}
			for _, r := range requests {
				code, h, b := faultSend(t, r.method, s.proxyURL+r.path, r.body)
				if code != tt.code || string(b) != tt.body || h.Get("Content-Type") != "application/json" {
					t.Errorf("%s %s with the upstream down: %d %q (%s), want %d %s", r.method, r.path, code, b, h.Get("Content-Type"), tt.code, tt.body)
				}
			}
			if got := readyz(); (got == http.StatusOK) != tt.ready {
				t.Errorf("/readyz with the upstream down: %d", got)
			}
			m := s.metrics(t)
			for metric, want := range map[string]float64{
				"eventtap_proxy_upstream_errors_total":                                                         float64(len(requests)),
				fmt.Sprintf(`eventtap_proxy_requests_total{code="%d",method="POST",route="/orders"}`, tt.code): 2,
				`eventtap_events_total{rule="order-created",type="ORDER_CREATED"}`:                             1,
			} {
				if m[metric] != want {
					t.Errorf("%s = %v with the upstream down, want %v", metric, m[metric], want)
				}
			}

			undo()
			serveAt(t, addr, orders.handler())
			faultEventually(t, s, 5*time.Second, "/readyz to answer 200 again", func() bool { return readyz() == http.StatusOK })
			if id := createOrder(t, s, `{"total":4}`); id != "2" {
				t.Errorf("the order created after the upstream came back has id %s, want 2", id)
			}
			if got := rc.waitFor(t, "ORDER_CREATED", 2); got[1].payload.Subject != "2" {
				t.Errorf("event after the upstream came back is about %q, want order 2", got[1].payload.Subject)
			}
			if code, _, b := faultSend(t, http.MethodGet, s.proxyURL+"/orders/2", ""); code != http.StatusOK || !bytes.Contains(b, []byte(`"total":4`)) {
				t.Errorf("GET /orders/2 after the upstream came back: %d %s", code, b)
			}
			if got := s.metrics(t)["eventtap_proxy_upstream_errors_total"]; got != float64(len(requests)) {
				t.Errorf("eventtap_proxy_upstream_errors_total = %v after the upstream came back, want %d", got, len(requests))
			}
		})
	}
}

// ---- 7. garbage from the upstream

// faultGarbageRules: one rule needs the response body, the other only the
// request's, so that a broken response shows which rules still fire.
const faultGarbageRules = `rules:
  - name: order-created
    event: ORDER_CREATED
    when: {method: POST, path: /orders, status: 201}
    subject: response.body.id
  - name: order-ref
    event: ORDER_UPDATED
    when: {method: POST, path: /orders, status: 201}
    subject: request.body.ref
    data: '{"ref": request.body.ref}'
`

// answer is what a client made of one response.
type answer struct {
	code    int
	header  http.Header
	body    []byte
	err     error // the request failed: no response at all
	bodyErr error // the response broke off in its body
}

// garbageClient reads whatever comes back, however large its headers.
var garbageClient = &http.Client{Timeout: 15 * time.Second,
	Transport: &http.Transport{DisableKeepAlives: true, MaxResponseHeaderBytes: 64 << 20}}

func ask(method, url, body string) answer {
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		return answer{err: err}
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := garbageClient.Do(req)
	if err != nil {
		return answer{err: err}
	}
	defer resp.Body.Close()
	a := answer{code: resp.StatusCode, header: resp.Header}
	a.body, a.bodyErr = io.ReadAll(resp.Body)
	return a
}

// rawResponse builds an HTTP/1.1 response head (each header "Name: value")
// and appends body as is.
func rawResponse(status string, headers []string, body string) []byte {
	var b bytes.Buffer
	b.WriteString("HTTP/1.1 " + status + "\r\n")
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("\r\n")
	b.WriteString(body)
	return b.Bytes()
}

func jsonHead(body string) []string {
	return []string{"Content-Type: application/json", "Content-Length: " + strconv.Itoa(len(body))}
}

// TestFaultUpstreamGarbage puts an upstream that answers with malformed
// bytes behind the proxy. Each answer is also fetched directly, and the
// client must see through the proxy what it sees directly (unchanged bytes,
// or a response broken off the same way), or a clean JSON 502 when the
// answer is not HTTP at all; rules fire according to what they need, and
// the proxy serves the next request.
func TestFaultUpstreamGarbage(t *testing.T) {
	const (
		same      = "the same as directly"
		sameOr502 = "the same as directly, or a clean 502"
		bad502    = "a clean 502"
		broken    = "broken off as directly"
	)
	big := func(n int) string { return strings.Repeat("h", n) }
	manyHeaders := make([]string, 0, 10001)
	for i := range 10000 {
		manyHeaders = append(manyHeaders, fmt.Sprintf("X-H-%d: %d", i, i))
	}
	manyHeaders = append(manyHeaders, jsonHead(`{"id":12}`)...)
	tests := []struct {
		name   string
		post   bool // POST /orders (tapped) with {"ref": name}, else GET /<name> (not tapped)
		raw    []byte
		want   string
		events []string // event types expected when the answer passes
	}{
		{"invalid-json", true, rawResponse("201 Created", jsonHead(`{"id": 7, "status": `), `{"id": 7, "status": `),
			same, []string{"ORDER_UPDATED"}},
		{"binary-body", true, rawResponse("201 Created", jsonHead("\x00\x01\xfe\xff{\"id\":"), "\x00\x01\xfe\xff{\"id\":"),
			same, []string{"ORDER_UPDATED"}},
		{"header-64k", true, rawResponse("201 Created", append([]string{"X-Big: " + big(64<<10)}, jsonHead(`{"id":8}`)...), `{"id":8}`),
			sameOr502, []string{"ORDER_CREATED", "ORDER_UPDATED"}},
		{"header-1m", true, rawResponse("201 Created", append([]string{"X-Big: " + big(1<<20)}, jsonHead(`{"id":9}`)...), `{"id":9}`),
			sameOr502, []string{"ORDER_CREATED", "ORDER_UPDATED"}},
		{"header-1m-untapped", false, rawResponse("200 OK", []string{"X-Big: " + big(1<<20), "Content-Length: 2"}, "ok"),
			sameOr502, nil},
		{"header-12m", false, rawResponse("200 OK", []string{"X-Big: " + big(12<<20), "Content-Length: 2"}, "ok"),
			sameOr502, nil},
		{"10000-headers", true, rawResponse("201 Created", manyHeaders, `{"id":12}`),
			sameOr502, []string{"ORDER_CREATED", "ORDER_UPDATED"}},
		{"cut-mid-body", true, rawResponse("201 Created", []string{"Content-Type: application/json", "Content-Length: 1000"}, `{"id": 10, "sta`),
			broken, []string{"ORDER_UPDATED"}},
		{"cut-mid-body-untapped", false, rawResponse("200 OK", []string{"Content-Length: 1000"}, "partial"),
			broken, nil},
		{"cut-mid-chunk", true, rawResponse("201 Created", []string{"Content-Type: application/json", "Transfer-Encoding: chunked"}, "f\r\n{\"id\": 11, \"st\r\n"),
			broken, []string{"ORDER_UPDATED"}},
		{"closed-at-once", true, nil, bad502, nil},
		{"not-http", false, []byte("SSH-2.0-OpenSSH_9.6\r\n"), bad502, nil},
		{"bad-content-length", false, rawResponse("200 OK", []string{"Content-Length: abc"}, "x"), bad502, nil},
		{"two-content-lengths", true, rawResponse("201 Created", []string{"Content-Length: 2", "Content-Length: 3"}, "{}x"), bad502, nil},
	}
	answers := map[string][]byte{"/ok": rawResponse("200 OK", []string{"Content-Length: 2"}, "ok")}
	for _, tt := range tests {
		answers["/"+tt.name] = tt.raw
	}
	upstream := startRaw(t, "127.0.0.1:0", func(r *http.Request) []byte {
		if r.URL.Path == "/orders" {
			var in struct{ Ref string }
			_ = json.NewDecoder(r.Body).Decode(&in)
			return answers["/"+in.Ref]
		}
		return answers[r.URL.Path]
	})
	s := startFault(t, faultConfig{upstream: upstream.url(), rules: faultGarbageRules})
	rc := newHookReceiver(t)
	rc.register(t, s.adminURL, "ORDER_CREATED")
	rc.register(t, s.adminURL, "ORDER_UPDATED")

	var wantUpdated []string // refs of the cases whose ORDER_UPDATED must arrive
	var wantCreated, want502, wantRuleErrors int
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method, path, body := http.MethodGet, "/"+tt.name, ""
			if tt.post {
				method, path, body = http.MethodPost, "/orders", `{"ref":"`+tt.name+`"}`
			}
			direct, proxied := ask(method, upstream.url()+path, body), ask(method, s.proxyURL+path, body)
			s.mustBeUp(t)
			passed := false
			is502 := proxied.err == nil && proxied.bodyErr == nil && proxied.code == http.StatusBadGateway &&
				string(proxied.body) == `{"error":"upstream unreachable","reason":"connection failed"}`
			switch {
			case tt.want == bad502 || tt.want == sameOr502 && is502:
				if !is502 {
					t.Errorf("got %s, want %s", describe(proxied), tt.want)
				}
				want502++
			case tt.want == broken:
				if direct.err != nil || direct.bodyErr == nil {
					t.Fatalf("directly: %s; the case is meant to break off in the body", describe(direct))
				}
				if proxied.err != nil || proxied.code != direct.code || proxied.bodyErr == nil || !bytes.Equal(proxied.body, direct.body) {
					t.Errorf("through the proxy: %s; directly: %s", describe(proxied), describe(direct))
				}
				passed = true
			default: // same
				if direct.err != nil || direct.bodyErr != nil {
					t.Fatalf("directly: %s", describe(direct))
				}
				if proxied.err != nil || proxied.bodyErr != nil || proxied.code != direct.code || !bytes.Equal(proxied.body, direct.body) ||
					!maps.EqualFunc(proxied.header, direct.header, slices.Equal) {
					t.Errorf("through the proxy: %s; directly: %s", describe(proxied), describe(direct))
				}
				passed = true
			}
			t.Logf("through the proxy: %s", describe(proxied))
			if passed && tt.post {
				if slices.Contains(tt.events, "ORDER_UPDATED") {
					wantUpdated = append(wantUpdated, tt.name)
				}
				if slices.Contains(tt.events, "ORDER_CREATED") {
					wantCreated++
				} else {
					wantRuleErrors++ // the response body is not JSON: no subject
				}
			}
			// The proxy serves the next request as usual.
			if a := ask(http.MethodGet, s.proxyURL+"/ok", ""); a.err != nil || a.bodyErr != nil || a.code != http.StatusOK || string(a.body) != "ok" {
				t.Errorf("the next request after %s: %s", tt.name, describe(a))
			}
		})
	}

	// ORDER_UPDATED events are about the case (its ref); ORDER_CREATED ones
	// about the id in the upstream's JSON.
	sort.Strings(wantUpdated)
	faultEventually(t, s, 10*time.Second, fmt.Sprintf("%d ORDER_UPDATED and %d ORDER_CREATED deliveries", len(wantUpdated), wantCreated), func() bool {
		return len(rc.subjects("ORDER_UPDATED")) >= len(wantUpdated) && len(rc.subjects("ORDER_CREATED")) >= wantCreated
	})
	time.Sleep(300 * time.Millisecond) // room for a wrong extra event to arrive
	if got := rc.subjects("ORDER_UPDATED"); !slices.Equal(got, wantUpdated) {
		t.Errorf("ORDER_UPDATED events about %q, want %q", got, wantUpdated)
	}
	if got := rc.subjects("ORDER_CREATED"); len(got) != wantCreated {
		t.Errorf("ORDER_CREATED events about %q, want %d", got, wantCreated)
	}
	if bad := rc.rejected(); len(bad) > 0 {
		t.Errorf("the receiver rejected deliveries: %v", bad)
	}
	m := s.metrics(t)
	for metric, want := range map[string]float64{
		"eventtap_proxy_upstream_errors_total":              float64(want502),
		`eventtap_rule_errors_total{rule="order-created"}`:  float64(wantRuleErrors),
		`eventtap_events_dropped_total{reason="tap_panic"}`: 0,
	} {
		if m[metric] != want {
			t.Errorf("%s = %v, want %v", metric, m[metric], want)
		}
	}
}

func describe(a answer) string {
	switch {
	case a.err != nil:
		return fmt.Sprintf("no response (%v)", a.err)
	case a.bodyErr != nil:
		return fmt.Sprintf("%d with %d body bytes, then %v", a.code, len(a.body), a.bodyErr)
	}
	return fmt.Sprintf("%d with %d header(s), body %.80q", a.code, len(a.header), a.body)
}

// TestFaultHugeSubject has the upstream answer ids of 100 KiB, which rules
// turn into subjects, among ordinary orders created at the same moment
// (so that their events share group commits). The client still gets every
// answer unchanged, every ordinary order's event is delivered, and the
// huge id, which is response data, is not written to the log.
func TestFaultHugeSubject(t *testing.T) {
	api := echoOrders(t)
	s := startFault(t, faultConfig{upstream: api.URL, rules: readFile(t, "docs/examples/orders.rules.yaml")})
	rc := newHookReceiver(t)
	rc.register(t, s.adminURL, "ORDER_CREATED")
	huge := strings.Repeat("s", 100<<10)
	var want []string
	for round := range 5 {
		var wg sync.WaitGroup
		post := func(id string) {
			body := `{"id":"` + id + `"}`
			resp, err := faultClient.Post(s.proxyURL+"/orders", "application/json", strings.NewReader(body))
			if err != nil {
				t.Errorf("POST /orders: %v", err)
				return
			}
			defer resp.Body.Close()
			if b, err := io.ReadAll(resp.Body); err != nil || resp.StatusCode != http.StatusCreated || string(b) != body {
				t.Errorf("POST /orders with a %d-byte id: %d, %d bytes (%v)", len(id), resp.StatusCode, len(b), err)
			}
		}
		wg.Go(func() { post(huge) })
		for i := range 16 {
			id := fmt.Sprintf("order-%d-%d", round, i)
			want = append(want, id)
			wg.Go(func() { post(id) })
		}
		wg.Wait()
	}
	missing := func() []string {
		got := rc.subjects("ORDER_CREATED")
		var out []string
		for _, id := range want {
			if !slices.Contains(got, id) {
				out = append(out, id)
			}
		}
		return out
	}
	for deadline := time.Now().Add(10 * time.Second); len(missing()) > 0 && time.Now().Before(deadline); {
		s.mustBeUp(t)
		time.Sleep(50 * time.Millisecond)
	}
	logs := s.logs()
	if m := missing(); len(m) > 0 {
		var why []string
		for _, rec := range logRecords(logs, "events not committed") {
			why = append(why, fmt.Sprintf("%.160q", rec["error"]))
		}
		t.Errorf("%d of %d ordinary orders' events never arrived (e.g. %v); eventtap_events_dropped_total{reason=\"outbox_error\"} = %v; logged: %v",
			len(m), len(want), m[:min(3, len(m))], s.metrics(t)[`eventtap_events_dropped_total{reason="outbox_error"}`], why)
	}
	if n := strings.Count(logs, huge[:16]); n > 0 {
		t.Errorf("the log holds pieces of the response's id %d times (%d bytes of log)", n, len(logs))
	}
}
