package main

// Fault scenarios: odd and malformed requests from clients (see fault_harness_test.go).

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ---- 8. odd requests from clients

// oddRequest is one raw request. complete says it is whole, so that the
// proxy owes an answer (any status) or a close; a request that is not is
// sent and hung up on.
type oddRequest struct {
	raw      []byte
	complete bool
	head     bool
}

// oddRequests generates n odd raw requests from rng: unusual and invalid
// methods, paths, protocol versions, headers, framings and bodies (JSON and
// not) on tapped and untapped routes.
func oddRequests(rng *rand.Rand, n int) []oddRequest {
	pick := func(xs []string) string { return xs[rng.IntN(len(xs))] }
	// either picks from odd one time in five, else from usual, so that many
	// requests get past the HTTP parser and reach the proxy and the tap.
	either := func(usual, odd []string) string {
		if rng.IntN(5) == 0 {
			return pick(odd)
		}
		return pick(usual)
	}
	usualMethods := []string{"GET", "POST", "POST", "PATCH", "PUT", "DELETE", "HEAD", "OPTIONS"}
	oddMethods := []string{"M-SEARCH", "PROPFIND", "BREW", "TRACE", "get", "GET\x00", "G\tET", "", strings.Repeat("M", 2000),
		"CONNECT", "PRI", "\xff\xfe"}
	usualPaths := []string{"/orders", "/orders", "/orders/1", "/orders/a-b", "/orders/2/cancel", "/orders/3/shipments", "/shipments/shp_1", "/other"}
	oddPaths := []string{"/orders/%zz", "/%", "/%00", "/orders/%2F..%2F..%2Fetc%2Fpasswd", "/" + strings.Repeat("a", 8<<10),
		"/" + strings.Repeat("%41", 30000), "*", "http://127.0.0.1:9/orders", "//double//slash", "/orders/{id}",
		"/\xc3\xa4", "/\xff\xfe", "/q?x=%zz&y=;&&=", "/frag#x", "", "/a b", "orders", "/orders?" + strings.Repeat("k=v&", 5000),
		"/graphql", "/metrics", "/orders/" + strings.Repeat("9", 400), "/orders/1/"}
	usualProtos := []string{"HTTP/1.1", "HTTP/1.1", "HTTP/1.0"}
	oddProtos := []string{"HTTP/2.0", "HTTP/1.1\x00", "HTTP/9.9", "", "http/1.1", "HTTP/1.10"}
	headers := []string{
		// odd but valid
		"Host: shop.example", "X-Long: " + strings.Repeat("v", 64<<10), "Connection: X-Secret, close\r\nX-Secret: 1",
		"Connection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13",
		"Expect: 100-continue", "Content-Encoding: gzip", "Accept-Encoding: gzip, br", "X-Request-Id: " + strings.Repeat("r", 1000),
		"Content-Type: application/json", "Content-Type: application/json; charset=utf-16", "Cookie: " + strings.Repeat("a=b; ", 1000),
		"Keep-Alive: timeout=1", "Proxy-Authorization: Basic eDp5", "X-Forwarded-For: \xff, 999.1.1.1", "Te: trailers, gzip",
		"Authorization: Bearer " + strings.Repeat("t", 100), "X-Unicode: \u00e9\u4e2d", "Range: bytes=0-1,-5", "Trailer: X-T",
		"X-Forwarded-Host: evil.example", "Content-Type: text/plain",
		// invalid
		"Host: a\r\nHost: b", "X-Nul: a\x00b", "NoColon", " Leading: space", "X-Fold: a\r\n folded", ":authority: x"}
	bodies := []string{"", "", `{"id":1,"status":"OPEN"}`, `{"id":"a","status":"PAID"}`, `{"id":`, `{"id":1e999}`,
		strings.Repeat("[", 20000), `{"id":"\ud800"}`, "\xff\xfe\x00", `{"id":1,"id":2,"status":"X"}`,
		`{"status":{"a":[1,2,{}]},"id":"x"}`, `{"id":"big","note":"` + strings.Repeat("s", 100<<10) + `"}`, `{"id":-0.0}`,
		`{"id":12345678901234567890123}`, `{"id":true}`, `{"id":null}`, `{"id":{"nested":1}}`, `{"id":"\u0000<>&"}`,
		"not json at all", `{"id":1}{"id":2}`, " \t\n{\"id\" : 3 } \n"}
	out := make([]oddRequest, 0, n)
	for range n {
		var b bytes.Buffer
		method, body := either(usualMethods, oddMethods), pick(bodies)
		if rng.IntN(8) == 0 {
			body = string(randomBytes(rng, rng.IntN(2000)))
		}
		eol := "\r\n"
		if rng.IntN(10) == 0 {
			eol = "\n"
		}
		b.WriteString(method + " " + either(usualPaths, oddPaths) + " " + either(usualProtos, oddProtos) + eol)
		if rng.IntN(12) != 0 {
			b.WriteString("Host: eventtap.test" + eol)
		}
		for range rng.IntN(4) {
			b.WriteString(pick(headers) + eol)
		}
		if rng.IntN(50) == 0 {
			for i := range 500 {
				fmt.Fprintf(&b, "X-Many-%d: %d%s", i, i, eol)
			}
		}
		complete := true
		switch rng.IntN(10) {
		case 0, 1, 2: // a body of the length it says
			fmt.Fprintf(&b, "Content-Length: %d%s%s%s", len(body), eol, eol, body)
		case 3: // chunked, well formed
			b.WriteString("Transfer-Encoding: chunked" + eol + eol)
			if body != "" {
				fmt.Fprintf(&b, "%x\r\n%s\r\n", len(body), body)
			}
			b.WriteString("0\r\n\r\n")
		case 4: // chunked garbage
			b.WriteString("Transfer-Encoding: chunked" + eol + eol + "zz\r\n" + body + "\r\n")
		case 5: // promises more than it sends, then hangs up
			fmt.Fprintf(&b, "Content-Length: %d%s%s%s", len(body)+100, eol, eol, body)
			complete = false
		case 6: // the head is cut short
			b.WriteString("X-Cut: ")
			complete = false
		case 7: // framing the server refuses before it reads a body
			b.WriteString(pick([]string{"Content-Length: -1", "Content-Length: 99999999999999999999", "Content-Length: 0x10",
				"Content-Length: 5\r\nContent-Length: 6", "Transfer-Encoding: gzip, chunked", "Transfer-Encoding: identity"}) + eol + eol + body)
		case 8: // chunked and a Content-Length
			fmt.Fprintf(&b, "Transfer-Encoding: chunked%sContent-Length: 3%s%s%x\r\n%s\r\n0\r\n\r\n", eol, eol, eol, len(body), body)
		default: // no framing: the body is the next request's garbage
			b.WriteString(eol + body)
		}
		out = append(out, oddRequest{raw: b.Bytes(), complete: complete, head: method == "HEAD"})
	}
	return out
}

func randomBytes(rng *rand.Rand, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(rng.UintN(256))
	}
	return b
}

// oddOutcome is what one odd request got.
type oddOutcome struct {
	status   int  // 0 when no response came
	hungUp   bool // the request was incomplete: the client went away
	closed   bool // the connection ended without a response
	timedOut bool
	garbage  string // an answer that is not HTTP
}

// sendOdd writes one raw request on a new connection and reads the first
// response, if it owes one.
func sendOdd(addr string, r oddRequest) oddOutcome {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return oddOutcome{garbage: "dial: " + err.Error()}
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	_, _ = c.Write(r.raw) // the server may answer and close before it has read everything
	if !r.complete {
		return oddOutcome{hungUp: true}
	}
	br := bufio.NewReader(c)
	var req *http.Request
	if r.head {
		req = &http.Request{Method: http.MethodHead}
	}
	resp, err := http.ReadResponse(br, req)
	var ne net.Error
	switch {
	case errors.As(err, &ne) && ne.Timeout():
		return oddOutcome{timedOut: true}
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET):
		return oddOutcome{closed: true}
	case err != nil:
		return oddOutcome{garbage: err.Error()}
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 8<<20))
	resp.Body.Close()
	return oddOutcome{status: resp.StatusCode}
}

// processGauges are the sidecar's own resource gauges from /metrics.
type processGauges struct{ goroutines, fds, rss, heap float64 }

func (s *faultSidecar) gauges(t testing.TB) processGauges {
	m := s.metrics(t)
	return processGauges{m["go_goroutines"], m["process_open_fds"], m["process_resident_memory_bytes"], m["go_memstats_heap_inuse_bytes"]}
}

func (g processGauges) String() string {
	return fmt.Sprintf("%v goroutines, %v fds, RSS %.1f MiB, heap in use %.1f MiB", g.goroutines, g.fds, g.rss/(1<<20), g.heap/(1<<20))
}

// echoOrders is an upstream that accepts whatever it gets on the tapped
// routes and answers it back as JSON, so that odd bodies reach the rules,
// and closes every connection so that idle connections do not blur the
// goroutine count.
func echoOrders(t testing.TB) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
		w.Header().Set("Connection", "close")
		switch {
		case r.Method == http.MethodPost && r.URL.Path == "/orders":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusCreated)
		case strings.HasPrefix(r.URL.Path, "/orders/"):
			w.Header().Set("Content-Type", "application/json")
		default:
			w.WriteHeader(http.StatusNotFound)
		}
		_, _ = w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// oddBarrage sends n odd requests from 8 connections at a time and checks
// what came back: every complete request is answered or closed within the
// deadline, every answer is HTTP, and no answer is a 500 (a handler panic)
// or a 502 (the upstream is up).
func oddBarrage(t *testing.T, s *faultSidecar, rng *rand.Rand, n int) {
	t.Helper()
	reqs := oddRequests(rng, n)
	outcomes := make([]oddOutcome, len(reqs))
	next := make(chan int)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for i := range next {
				outcomes[i] = sendOdd(s.proxyAddr, reqs[i])
			}
		})
	}
	for i := range reqs {
		next <- i
	}
	close(next)
	wg.Wait()
	s.mustBeUp(t)
	byStatus := map[int]int{}
	closed, hungUp := 0, 0
	wrong := map[string][]string{} // what went wrong → the requests it happened to
	for i, o := range outcomes {
		switch {
		case o.timedOut:
			wrong["no answer within 5s"] = append(wrong["no answer within 5s"], fmt.Sprintf("%.200q", reqs[i].raw))
		case o.garbage != "":
			wrong["an answer that is not HTTP"] = append(wrong["an answer that is not HTTP"], fmt.Sprintf("%.200q: %s", reqs[i].raw, o.garbage))
		case o.status == http.StatusInternalServerError || o.status == http.StatusBadGateway:
			k := fmt.Sprintf("%d %s", o.status, http.StatusText(o.status))
			wrong[k] = append(wrong[k], fmt.Sprintf("%.200q", reqs[i].raw))
		case o.status != 0:
			byStatus[o.status]++
		case o.hungUp:
			hungUp++
		default:
			closed++
		}
	}
	t.Logf("%d odd requests: answers by status %v; %d closed without an answer; %d incomplete (hung up on)", n, byStatus, closed, hungUp)
	for what, examples := range wrong {
		t.Errorf("%d of %d odd requests got %s, e.g.\n  %s", len(examples), n, what, strings.Join(examples[:min(3, len(examples))], "\n  "))
	}
}

// TestFaultOddRequests sends thousands of odd raw requests to the running
// binary. It must stay up, answer a normal request correctly afterwards,
// deliver valid signed events for what the odd traffic created, and come
// back to the goroutine, file descriptor and memory use it had before.
func TestFaultOddRequests(t *testing.T) {
	oddTraffic(t, 7, 2, 1500) // a fixed seed: the same requests every run
}

// oddTraffic sends rounds×perRound odd requests generated from seed,
// checking after each round that the sidecar returns to its baseline.
func oddTraffic(t *testing.T, seed uint64, rounds, perRound int) {
	api := echoOrders(t)
	s := startFault(t, faultConfig{upstream: api.URL, rules: readFile(t, "docs/examples/orders.rules.yaml")})
	rc := newHookReceiver(t)
	rehost(t, rc, func(verify http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Connection", "close") // see echoOrders
			verify.ServeHTTP(w, r)
		})
	})
	rc.register(t, s.adminURL, "ORDER_CREATED")
	rc.register(t, s.adminURL, "ORDER_STATUS_CHANGED")

	// The baseline is taken after normal traffic of the same concurrency.
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 10 {
				resp, err := faultClient.Post(s.proxyURL+"/orders", "application/json", strings.NewReader(fmt.Sprintf(`{"id":"warm-%d-%d"}`, w, i)))
				if err == nil {
					_, _ = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}
		})
	}
	wg.Wait()
	rc.waitFor(t, "ORDER_CREATED", 80)
	time.Sleep(500 * time.Millisecond)
	base := s.gauges(t)
	t.Logf("seed %d; baseline: %v", seed, base)

	rng := rand.New(rand.NewPCG(seed, 2026))
	var first processGauges
	for round := 1; round <= rounds; round++ {
		oddBarrage(t, s, rng, perRound)
		var g processGauges
		faultEventually(t, s, 15*time.Second, "goroutines and fds to return near the baseline", func() bool {
			g = s.gauges(t)
			return g.goroutines <= base.goroutines+8 && g.fds <= base.fds+4
		})
		t.Logf("after %d odd requests: %v", round*perRound, g)
		if round == 1 {
			first = g
		} else if g.rss > first.rss+24<<20 || g.rss > base.rss+96<<20 {
			t.Errorf("RSS grows with odd traffic: %.1f MiB at the baseline, %.1f after %d requests, %.1f after %d",
				base.rss/(1<<20), first.rss/(1<<20), perRound, g.rss/(1<<20), round*perRound)
		}
	}

	// Still serving, and correctly.
	code, h, b := faultSend(t, http.MethodPost, s.proxyURL+"/orders", `{"id":"after-the-odd-traffic","status":"OPEN"}`)
	if code != http.StatusCreated || string(b) != `{"id":"after-the-odd-traffic","status":"OPEN"}` || h.Get("Content-Type") != "application/json" {
		t.Fatalf("POST /orders after the odd traffic: %d %s", code, b)
	}
	faultEventually(t, s, 15*time.Second, "the event of the last order", func() bool {
		return slices.Contains(rc.subjects("ORDER_CREATED"), "after-the-odd-traffic")
	})
	if bad := rc.rejected(); len(bad) > 0 {
		t.Errorf("the receiver rejected %d deliveries of events the odd traffic created, e.g. %v", len(bad), bad[:min(3, len(bad))])
	}
	m := s.metrics(t)
	for _, metric := range []string{`eventtap_events_dropped_total{reason="tap_panic"}`, `eventtap_events_dropped_total{reason="outbox_error"}`,
		"eventtap_proxy_upstream_errors_total"} { // the upstream never failed
		if m[metric] != 0 {
			t.Errorf("%s = %v after the odd traffic", metric, m[metric])
		}
	}
	if logs := s.logs(); strings.Contains(logs, "panic") {
		t.Errorf("the sidecar logged a panic:\n%s", logExcerpt(logs))
	}
	t.Logf("%v events from the odd traffic, %d delivered", m[`eventtap_events_total{rule="order-created",type="ORDER_CREATED"}`],
		len(distinct(rc.of("ORDER_CREATED"))))
}

// TestFaultBadRequests sends requests whose body breaks its own framing, or
// whose trailer announcement is not a field name. They are the client's
// fault, not the upstream's: the client gets a 4xx (a request the proxy
// cannot forward is a bad request, as nginx answers it) or the upstream's
// answer, never "502 upstream unreachable", or nothing when it has hung
// up; and eventtap_proxy_upstream_errors_total, which alerts watch, does
// not move.
func TestFaultBadRequests(t *testing.T) {
	api := echoOrders(t)
	s := startFault(t, faultConfig{upstream: api.URL, rules: readFile(t, "docs/examples/orders.rules.yaml")})
	const (
		bad    = "a 4xx"
		answer = "an answer that is not a 5xx"
		hangUp = "" // the client goes away after sending the request
	)
	tests := []struct {
		name, raw, want string
	}{
		{"garbage chunk size", "PUT /other HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n", bad},
		{"garbage chunk size, tapped route", "POST /orders HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n", bad},
		{"chunk longer than its size", "POST /orders HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{\"id\":1}\r\n0\r\n\r\n", bad},
		// Trailer is hop-by-hop; the name it announces is not a field name.
		{"trailer named with a space", "PUT /other HTTP/1.1\r\nHost: x\r\nTrailer: X-T Y\r\nTransfer-Encoding: chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n", answer},
		{"body cut short, then gone", "POST /orders HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{\"id\":", hangUp},
		{"chunked body cut short, then gone", "PUT /other HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n10\r\nabc", hangUp},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := s.metrics(t)["eventtap_proxy_upstream_errors_total"]
			o := sendOdd(s.proxyAddr, oddRequest{raw: []byte(tt.raw), complete: tt.want != hangUp})
			if tt.want == bad && (o.status < 400 || o.status > 499) || tt.want == answer && (o.status == 0 || o.status > 499) {
				t.Errorf("answer: %+v, want %s", o, tt.want)
			}
			time.Sleep(200 * time.Millisecond) // the proxy notices the hang-up
			if got := s.metrics(t)["eventtap_proxy_upstream_errors_total"]; got != before {
				t.Errorf("eventtap_proxy_upstream_errors_total went from %v to %v: a client's malformed request counted against the upstream", before, got)
			}
		})
	}
}
