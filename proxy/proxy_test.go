package proxy

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/websocket"
)

// modes runs a test with no route tapped and with every route tapped: the
// client must not be able to tell them apart.
var modes = []struct {
	name  string
	rules func() *fakeRules
}{
	{"miss", func() *fakeRules { return &fakeRules{} }},
	{"tapped", func() *fakeRules {
		return &fakeRules{routes: []fakeRoute{{prefix: "/", template: "/{any}"}}}
	}},
}

// TestTransparent sends the same requests to the upstream directly and
// through the proxy and compares status, headers and body bytes.
func TestTransparent(t *testing.T) {
	type tc struct {
		name, method, uri string
		header            http.Header
		body              string
		echo              bool // the body describes the request: compare it minus X-Forwarded-*
	}
	jsonCT := http.Header{"Content-Type": {"application/json"}}
	cases := []tc{
		{name: "repeated query", method: "GET", uri: "/echo/plain?x=1&x=2&y=%2F%20"},
		{name: "encoded segments", method: "GET", uri: "/echo/a%2Fb/c%20d/%7Bid%7D/%252F"},
		{name: "post body", method: "POST", uri: "/echo/post", header: jsonCT, body: orderJSON},
		{name: "custom method", method: "BREW", uri: "/echo/pot"},
		{name: "repeated request headers", method: "PUT", uri: "/echo/h", body: "x",
			header: http.Header{"X-Multi": {"a", "b"}, "Authorization": {"Bearer t"}, "Cookie": {"a=1", "b=2"}}},
		{name: "created with location", method: "POST", uri: "/orders", header: jsonCT, body: orderJSON},
		{name: "get order", method: "GET", uri: "/orders/42"},
		{name: "two set-cookie", method: "GET", uri: "/cookies"},
		{name: "204", method: "DELETE", uri: "/nocontent"},
		{name: "304", method: "GET", uri: "/cached", header: http.Header{"If-None-Match": {`"v1"`}}},
		{name: "200 with etag", method: "GET", uri: "/cached"},
		{name: "HEAD keeps content-length", method: "HEAD", uri: "/download?n=1000"},
		{name: "gzip byte for byte", method: "GET", uri: "/gzip", header: http.Header{"Accept-Encoding": {"gzip"}}},
		{name: "identity when not asked", method: "GET", uri: "/gzip"},
		{name: "8 MiB download", method: "GET", uri: "/download?n=8388608"},
		{name: "chunked json", method: "GET", uri: "/chunked-json"},
		{name: "no content-type or date", method: "GET", uri: "/bare"},
		{name: "404", method: "GET", uri: "/nowhere"},
		{name: "admin paths go upstream", method: "GET", uri: "/metrics"},
	}
	for i := range cases {
		cases[i].echo = strings.HasPrefix(cases[i].uri, "/echo/")
	}
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			e := newEnv(t, mode.rules(), nil)
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					direct, db := e.do(e.up.srv.URL, c.method, c.uri, c.header, strings.NewReader(c.body))
					via, vb := e.do(e.proxyURL, c.method, c.uri, c.header, strings.NewReader(c.body))
					if direct.StatusCode != via.StatusCode {
						t.Errorf("status: direct %d, via proxy %d", direct.StatusCode, via.StatusCode)
					}
					// An echo's length grows by the X-Forwarded-* it reports.
					ignore := []string{"Date"}
					if c.echo {
						ignore = append(ignore, "Content-Length")
					}
					if d, v := headerWithout(direct.Header, ignore...), headerWithout(via.Header, ignore...); !reflect.DeepEqual(d, v) {
						t.Errorf("headers differ:\ndirect %v\nproxy  %v", d, v)
					}
					if !c.echo && direct.ContentLength != via.ContentLength {
						t.Errorf("Content-Length: direct %d, via proxy %d", direct.ContentLength, via.ContentLength)
					}
					if c.echo {
						var de, ve echoed
						if err := json.Unmarshal(db, &de); err != nil {
							t.Fatal(err)
						}
						if err := json.Unmarshal(vb, &ve); err != nil {
							t.Fatal(err)
						}
						ve.Header = headerWithout(ve.Header, "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto")
						if !reflect.DeepEqual(de, ve) {
							t.Errorf("upstream saw a different request:\ndirect %+v\nproxy  %+v", de, ve)
						}
					} else if !bytes.Equal(db, vb) {
						t.Errorf("body: direct %d bytes (sha %s), via proxy %d bytes (sha %s)",
							len(db), sha(db)[:12], len(vb), sha(vb)[:12])
					}
				})
			}
		})
	}
}

func headerWithout(h http.Header, names ...string) http.Header {
	h = h.Clone()
	for _, n := range names {
		delete(h, n)
	}
	return h
}

// TestForwardedHeaders: X-Forwarded-For, -Host and -Proto are kept as sent
// only from a peer in trusted_proxies; from anyone else they say what the
// proxy saw, whatever the client wrote in them.
func TestForwardedHeaders(t *testing.T) {
	spoofed := http.Header{"X-Forwarded-For": {"203.0.113.7, 10.0.0.1"}, "X-Forwarded-Host": {"shop.example"}, "X-Forwarded-Proto": {"https"}}
	cases := []struct {
		name       string
		trusted    []string
		header     http.Header
		wantFor    string
		wantHost   string // "" = the proxy's own host:port
		wantProto  string
		wantHeader string // Host header the upstream got; "" = the upstream's
	}{
		{"first hop", nil, nil, "127.0.0.1", "", "http", ""},
		{"spoofed by an untrusted client", nil, spoofed, "127.0.0.1", "", "http", ""},
		{"spoofed, other network trusted", []string{"10.0.0.0/8", "::1/128"}, spoofed, "127.0.0.1", "", "http", ""},
		{"behind a trusted proxy", []string{"127.0.0.0/8"}, spoofed, "203.0.113.7, 10.0.0.1, 127.0.0.1", "shop.example", "https", ""},
		{"trusted single address", []string{"127.0.0.1"}, spoofed, "203.0.113.7, 10.0.0.1, 127.0.0.1", "shop.example", "https", ""},
		{"trusted, first hop", []string{"127.0.0.0/8"}, nil, "127.0.0.1", "", "http", ""},
		{"custom host", nil, http.Header{"Host": {"orders.internal"}}, "127.0.0.1", "orders.internal", "http", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, nil, nil, func(cfg *Config, _ *[]Option) { cfg.TrustedProxies = c.trusted })
			wantHost, wantHeader := c.wantHost, c.wantHeader
			if wantHost == "" {
				wantHost = hostOf(e.proxyURL)
			}
			if wantHeader == "" {
				wantHeader = hostOf(e.up.srv.URL)
			}
			_, b := e.do(e.proxyURL, "GET", "/echo/fwd", c.header.Clone(), nil)
			var got echoed
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatal(err)
			}
			if v := got.Header.Values("X-Forwarded-For"); len(v) != 1 || v[0] != c.wantFor {
				t.Errorf("X-Forwarded-For = %q, want %q", v, c.wantFor)
			}
			if v := got.Header.Values("X-Forwarded-Host"); len(v) != 1 || v[0] != wantHost {
				t.Errorf("X-Forwarded-Host = %q, want %q", v, wantHost)
			}
			if v := got.Header.Values("X-Forwarded-Proto"); len(v) != 1 || v[0] != c.wantProto {
				t.Errorf("X-Forwarded-Proto = %q, want %q", v, c.wantProto)
			}
			if got.Host != wantHeader {
				t.Errorf("Host = %q, want %q", got.Host, wantHeader)
			}
			if _, ok := got.Header["X-Request-Id"]; ok {
				t.Errorf("the proxy added X-Request-Id to the upstream request")
			}
		})
	}
}

func TestHopByHopHeaders(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			e := newEnv(t, mode.rules(), nil)
			resp, b := rawExchange(t, hostOf(e.proxyURL), "GET /hop HTTP/1.1\r\n"+
				"Host: x\r\n"+
				"Connection: keep-alive, X-Secret, Upgrade\r\n"+
				"X-Secret: 1\r\n"+
				"Keep-Alive: timeout=5\r\n"+
				"TE: trailers, deflate\r\n"+
				"Upgrade: h2c\r\n"+
				"Proxy-Authorization: Basic Zm9vOmJhcg==\r\n"+
				"Proxy-Connection: keep-alive\r\n"+
				"X-End-To-End: yes\r\n"+
				"\r\n")
			var got echoed
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatalf("%v: %s", err, b)
			}
			for _, h := range []string{"Connection", "X-Secret", "Keep-Alive", "Upgrade", "Proxy-Authorization", "Proxy-Connection"} {
				if v, ok := got.Header[h]; ok {
					t.Errorf("upstream got hop-by-hop %s: %q", h, v)
				}
			}
			if v := got.Header.Get("Te"); v != "trailers" {
				t.Errorf("TE = %q, want trailers", v)
			}
			if v := got.Header.Get("X-End-To-End"); v != "yes" {
				t.Errorf("end-to-end header lost: %q", v)
			}
			for _, h := range []string{"X-Up-Hop", "Keep-Alive"} {
				if v, ok := resp.Header[h]; ok {
					t.Errorf("client got hop-by-hop %s: %q", h, v)
				}
			}
			if resp.Header.Get("X-End") != "kept" {
				t.Errorf("client lost an end-to-end response header: %v", resp.Header)
			}
		})
	}
}

// TestRequestTargets sends targets that Go's client would normalise.
func TestRequestTargets(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			e := newEnv(t, mode.rules(), nil)
			for _, target := range []string{
				"/echo/a%2Fb%2fc",
				"/echo/{id}/x|y",
				"/echo/\xc3\xa4/%C3%A4",
				"/echo/q?a=%zz&&b=%2F&c",
				"/echo/empty?",
			} {
				_, b := rawExchange(t, hostOf(e.proxyURL), "GET "+target+" HTTP/1.1\r\nHost: x\r\n\r\n")
				var got echoed
				if err := json.Unmarshal(b, &got); err != nil {
					t.Fatalf("%s: %v: %s", target, err, b)
				}
				if got.URI != target {
					t.Errorf("upstream got %q, client sent %q", got.URI, target)
				}
				if ua, ok := got.Header["User-Agent"]; ok {
					t.Errorf("upstream got a User-Agent the client did not send: %q", ua)
				}
			}

			// Absolute-form goes to the upstream, never to the named host.
			_, b := rawExchange(t, hostOf(e.proxyURL), "GET http://elsewhere.invalid/echo/abs?x=1 HTTP/1.1\r\nHost: elsewhere.invalid\r\n\r\n")
			var got echoed
			if err := json.Unmarshal(b, &got); err != nil {
				t.Fatalf("absolute-form: %v: %s", err, b)
			}
			if got.URI != "/echo/abs?x=1" || got.Host != hostOf(e.up.srv.URL) {
				t.Errorf("absolute-form: upstream got %q for host %q", got.URI, got.Host)
			}

			// CONNECT would turn the proxy into a tunnel.
			resp, b := rawExchange(t, hostOf(e.proxyURL), "CONNECT elsewhere.invalid:443 HTTP/1.1\r\nHost: elsewhere.invalid:443\r\n\r\n")
			if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Content-Type") != "application/json" {
				t.Errorf("CONNECT: %d %s", resp.StatusCode, b)
			}
		})
	}
}

func TestWebSocket(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			e := newEnv(t, mode.rules(), nil)
			ws, err := websocket.Dial("ws://"+hostOf(e.proxyURL)+"/ws", "", "http://localhost/")
			if err != nil {
				t.Fatal(err)
			}
			_ = ws.SetDeadline(time.Now().Add(5 * time.Second))
			for i := range 3 {
				msg := fmt.Sprintf("hello %d %s", i, strings.Repeat("z", i*5000))
				if err := websocket.Message.Send(ws, msg); err != nil {
					t.Fatal(err)
				}
				var got string
				if err := websocket.Message.Receive(ws, &got); err != nil {
					t.Fatal(err)
				}
				if got != msg {
					t.Fatalf("echo: got %d bytes, want %d", len(got), len(msg))
				}
			}
			_ = ws.Close()
			waitFor(t, "the session to end", func() bool {
				return e.metric("eventtap_proxy_requests_total",
					map[string]string{"method": "GET", "route": routeLabel(mode.name, "/{any}"), "code": "101"}) == 1
			})
			if n := len(e.rules.exchanges()); n != 0 {
				t.Errorf("an upgrade was evaluated %d times", n)
			}
		})
	}
}

func routeLabel(mode, tapped string) string {
	if mode == "tapped" {
		return tapped
	}
	return routeOther
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestExpectContinue drives the 100-continue dance by hand: the client
// sends its body only after the proxy relays the upstream's interest, and
// not at all when the upstream answers first.
func TestExpectContinue(t *testing.T) {
	for _, mode := range modes {
		t.Run(mode.name, func(t *testing.T) {
			e := newEnv(t, mode.rules(), nil)
			conn, err := net.Dial("tcp", hostOf(e.proxyURL))
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
			br := bufio.NewReader(conn)
			_, _ = io.WriteString(conn, "POST /expect HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
			interim, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			if interim.StatusCode != http.StatusContinue {
				t.Fatalf("got %d before sending the body, want 100", interim.StatusCode)
			}
			_, _ = io.WriteString(conn, "hello")
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != 200 || string(b) != "got 5 bytes: hello" {
				t.Fatalf("final: %d %q", resp.StatusCode, b)
			}

			// The upstream refuses without reading: no 100, the body is never sent.
			conn2, err := net.Dial("tcp", hostOf(e.proxyURL))
			if err != nil {
				t.Fatal(err)
			}
			defer conn2.Close()
			_ = conn2.SetDeadline(time.Now().Add(5 * time.Second))
			_, _ = io.WriteString(conn2, "POST /expect-reject HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\nExpect: 100-continue\r\n\r\n")
			resp, err = http.ReadResponse(bufio.NewReader(conn2), nil)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusRequestEntityTooLarge {
				t.Fatalf("got %d, want 413 without a 100 first", resp.StatusCode)
			}
		})
	}
}

// TestStreaming checks that the first part of a streamed response reaches
// the client while the upstream is still producing it.
func TestStreaming(t *testing.T) {
	for _, mode := range modes {
		for _, c := range []struct{ path, first, rest string }{
			{"/stream", `{"n":1}` + "\n", `{"n":2}` + "\n"},
			{"/sse", "data: one\n\n", "data: two\n\n"},
		} {
			t.Run(mode.name+c.path, func(t *testing.T) {
				e := newEnv(t, mode.rules(), nil)
				resp, err := e.client.Get(e.proxyURL + c.path)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				if resp.ContentLength != -1 {
					t.Errorf("ContentLength = %d, want -1 (streamed)", resp.ContentLength)
				}
				first := make([]byte, len(c.first))
				got := make(chan error, 1)
				go func() { _, err := io.ReadFull(resp.Body, first); got <- err }()
				select {
				case err := <-got:
					if err != nil {
						t.Fatal(err)
					}
				case <-time.After(3 * time.Second):
					t.Fatal("the first part did not arrive while the upstream was still streaming")
				}
				if string(first) != c.first {
					t.Fatalf("first part %q, want %q", first, c.first)
				}
				e.up.open()
				rest, err := io.ReadAll(resp.Body)
				if err != nil {
					t.Fatal(err)
				}
				if string(rest) != c.rest {
					t.Fatalf("rest %q, want %q", rest, c.rest)
				}
				if mode.name == "tapped" {
					ex := e.rules.waitExchanges(t, 1)[0]
					if string(ex.Response.Body) != c.first+c.rest || ex.Response.Truncated {
						t.Errorf("captured %q (truncated %v)", ex.Response.Body, ex.Response.Truncated)
					}
				}
			})
		}
	}
}

func TestUpstreamFailures(t *testing.T) {
	t.Run("down", func(t *testing.T) {
		e := newEnvFor(t, nil, "http://"+freeAddr(t), nil, nil)
		resp, b := e.do(e.proxyURL, "GET", "/orders/1", nil, nil)
		if resp.StatusCode != http.StatusBadGateway || resp.Header.Get("Content-Type") != "application/json" {
			t.Fatalf("got %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
		}
		var body struct{ Error string }
		if err := json.Unmarshal(b, &body); err != nil || body.Error != "upstream unreachable" {
			t.Fatalf("body %s (%v)", b, err)
		}
		if v := e.metric("eventtap_proxy_upstream_errors_total", nil); v != 1 {
			t.Errorf("upstream errors = %v, want 1", v)
		}
		// Still up.
		if resp, _ := e.do(e.proxyURL, "GET", "/orders/2", nil, nil); resp.StatusCode != http.StatusBadGateway {
			t.Errorf("second request: %d", resp.StatusCode)
		}
	})
	t.Run("timeout", func(t *testing.T) {
		e := newEnv(t, nil, nil, func(c *Config, _ *[]Option) { c.UpstreamTimeout = 200 * time.Millisecond })
		start := time.Now()
		resp, b := e.do(e.proxyURL, "GET", "/slow", nil, nil)
		if resp.StatusCode != http.StatusGatewayTimeout || !strings.Contains(string(b), `"error":"upstream unreachable"`) {
			t.Fatalf("got %d %s", resp.StatusCode, b)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("took %v", d)
		}
		if v := e.metric("eventtap_proxy_upstream_errors_total", nil); v != 1 {
			t.Errorf("upstream errors = %v, want 1", v)
		}
		if v := e.metric("eventtap_proxy_requests_total", map[string]string{"method": "GET", "route": "other", "code": "504"}); v != 1 {
			t.Errorf("requests{code=504} = %v", v)
		}
	})
	for _, mode := range modes {
		for _, q := range []string{"", "?chunked=1"} {
			t.Run("broken body "+mode.name+q, func(t *testing.T) {
				e := newEnv(t, mode.rules(), nil)
				resp, err := e.client.Get(e.proxyURL + "/broken" + q)
				if err != nil {
					t.Fatal(err)
				}
				defer resp.Body.Close()
				if _, err := io.ReadAll(resp.Body); err == nil {
					t.Fatal("the client read a complete body although the upstream broke off")
				}
			})
		}
	}
}

// TestBadRequests sends raw requests whose body the client broke. The proxy
// answers them with 400 itself, or forwards them once their announced
// trailers are fixed up; a client that hangs up mid-upload is recorded as
// 499. None of them counts as an upstream error, and the proxy goes on
// serving.
func TestBadRequests(t *testing.T) {
	const head = "POST /echo/x HTTP/1.1\r\nHost: x\r\n"
	const chunked = "Transfer-Encoding: chunked\r\n\r\n"
	cases := []struct {
		name, raw string
		hangUp    bool   // the client closes the connection after raw
		status    int    // what the client gets, or the code recorded for a hang-up
		body      string // the exact body; "" for the upstream's echo
		trailer   http.Header
	}{
		{name: "garbage chunk size", raw: head + chunked + "zz\r\nabc\r\n0\r\n\r\n",
			status: http.StatusBadRequest, body: string(bodyBadRequest)},
		{name: "chunk longer than its size", raw: head + chunked + "2\r\n{\"id\":1}\r\n0\r\n\r\n",
			status: http.StatusBadRequest, body: string(bodyBadRequest)},
		{name: "bad chunk after a good one", raw: head + chunked + "3\r\nabc\r\nqq\r\nabc\r\n0\r\n\r\n",
			status: http.StatusBadRequest, body: string(bodyBadRequest)},
		{name: "trailer announced with a space", raw: head + "Trailer: X-T Y, X-Ok\r\n" + chunked + "2\r\n{}\r\n0\r\nX-Ok: 1\r\n\r\n",
			status: http.StatusOK, trailer: http.Header{"X-Ok": {"1"}}},
		{name: "body cut short, then gone", raw: head + "Content-Length: 100\r\n\r\n{\"id\":",
			hangUp: true, status: statusClientClosed},
		{name: "chunked body cut short, then gone", raw: head + chunked + "10\r\nabc",
			hangUp: true, status: statusClientClosed},
	}
	for _, mode := range modes {
		for _, c := range cases {
			t.Run(mode.name+"/"+c.name, func(t *testing.T) {
				e := newEnv(t, mode.rules(), nil)
				addr := hostOf(e.proxyURL)
				requests := func() float64 {
					return e.metric("eventtap_proxy_requests_total", map[string]string{"method": "POST",
						"route": routeLabel(mode.name, "/{any}"), "code": strconv.Itoa(c.status)})
				}
				if c.hangUp {
					conn, err := net.Dial("tcp", addr)
					if err != nil {
						t.Fatal(err)
					}
					if _, err := io.WriteString(conn, c.raw); err != nil {
						t.Fatal(err)
					}
					_ = conn.Close()
					waitFor(t, fmt.Sprintf("a request recorded as %d", c.status), func() bool { return requests() == 1 })
				} else {
					resp, b := rawExchange(t, addr, c.raw)
					if resp.StatusCode != c.status {
						t.Fatalf("status %d, want %d; body %s", resp.StatusCode, c.status, b)
					}
					if c.body != "" {
						if string(b) != c.body || resp.Header.Get("Content-Type") != "application/json" {
							t.Errorf("body %q (%s), want %q", b, resp.Header.Get("Content-Type"), c.body)
						}
					} else {
						var got echoed
						if err := json.Unmarshal(b, &got); err != nil {
							t.Fatalf("echo %s: %v", b, err)
						}
						if got.BodyLen != 2 || !reflect.DeepEqual(got.Trailer, c.trailer) {
							t.Errorf("the upstream got %d bytes and trailers %v, want 2 and %v", got.BodyLen, got.Trailer, c.trailer)
						}
					}
					if v := requests(); v != 1 {
						t.Errorf("requests{code=%d} = %v, want 1", c.status, v)
					}
				}
				if v := e.metric("eventtap_proxy_upstream_errors_total", nil); v != 0 {
					t.Errorf("upstream errors = %v, want 0: the client's fault counted against the upstream", v)
				}
				// A well-formed request on a new connection is served.
				resp, b := e.do(e.proxyURL, "POST", "/echo/next", nil, strings.NewReader("hello"))
				var got echoed
				if err := json.Unmarshal(b, &got); resp.StatusCode != http.StatusOK || err != nil || got.BodyLen != 5 {
					t.Errorf("next request: %d %s", resp.StatusCode, b)
				}
			})
		}
	}
}

func TestCheckUpstream(t *testing.T) {
	e := newEnv(t, nil, nil)
	if err := e.p.CheckUpstream(t.Context()); err != nil {
		t.Errorf("live upstream: %v", err)
	}
	dead := newEnvFor(t, nil, "http://"+freeAddr(t), nil, nil)
	if err := dead.p.CheckUpstream(t.Context()); err == nil {
		t.Errorf("dead upstream: no error")
	}
}
