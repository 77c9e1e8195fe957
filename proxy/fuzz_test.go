package proxy

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"net"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/eventtap/eventtap/rules"

	"golang.org/x/net/http/httpguts"
)

// FuzzRequestHeader checks the hop-by-hop cleanup on arbitrary Connection,
// Upgrade and TE values: no hop-by-hop header survives except the ones a
// WebSocket upgrade or "TE: trailers" need, headers named in Connection go,
// and other headers stay.
func FuzzRequestHeader(f *testing.F) {
	f.Add("keep-alive, X-Secret", "websocket", "trailers", "X-Secret")
	f.Add("Upgrade", "websocket", "", "Sec-Websocket-Key")
	f.Add("close,,upgrade ,", "h2c, WebSocket", "trailers;q=1, gzip", "x-Foo")
	f.Add("x-end, \x00bad", "", "TE", "X-End")
	f.Fuzz(func(t *testing.T, connection, upgrade, te, name string) {
		h := http.Header{}
		h["Connection"] = []string{connection}
		if upgrade != "" {
			h["Upgrade"] = []string{upgrade}
		}
		if te != "" {
			h["Te"] = []string{te}
		}
		h["Keep-Alive"] = []string{"timeout=5"}
		h["Proxy-Authorization"] = []string{"Basic x"}
		h["X-Keep"] = []string{"1"}
		if httpguts.ValidHeaderFieldName(name) {
			h[http.CanonicalHeaderKey(name)] = []string{"v"}
		}
		wantWS := isWebSocketUpgrade(h)
		listed := map[string]bool{}
		for _, v := range h["Connection"] {
			for v != "" {
				var tok string
				tok, v = nextToken(v)
				if httpguts.ValidHeaderFieldName(tok) {
					listed[http.CanonicalHeaderKey(tok)] = true
				}
			}
		}

		ws := cleanRequestHeader(h)
		if ws != wantWS {
			t.Fatalf("websocket = %v, want %v", ws, wantWS)
		}
		for k, v := range h {
			switch {
			case k == "Connection" || k == "Upgrade":
				if !ws {
					t.Fatalf("%s kept without a WebSocket upgrade: %q", k, v)
				}
			case k == "Te":
				if len(v) != 1 || v[0] != "trailers" {
					t.Fatalf("TE kept as %q", v)
				}
			case isHopHeader(k):
				t.Fatalf("hop-by-hop %s kept", k)
			case listed[k]:
				t.Fatalf("%s was listed in Connection but kept", k)
			}
		}
		if !listed["X-Keep"] && h.Get("X-Keep") != "1" {
			t.Fatal("an end-to-end header was removed")
		}
	})
}

// FuzzRequestTarget parses arbitrary request lines the way the server does,
// rewrites them, writes them as the transport does and checks that the
// upstream gets the origin-form target byte for byte.
func FuzzRequestTarget(f *testing.F) {
	for _, s := range []string{"/orders/a%2Fb?x=1", "/{id}/x|y?%zz", "/\xc3\xa4", "//double", "*",
		"http://h/abs?q", "/p?", "/a b", "/%", "/a#frag?x"} {
		f.Add(s)
	}
	p := &Proxy{upstream: &url.URL{Scheme: "http", Host: "upstream:3000"}}
	f.Fuzz(func(t *testing.T, target string) {
		raw := "GET " + target + " HTTP/1.1\r\nHost: client\r\n\r\n"
		r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
		if err != nil {
			return // the server would have refused it
		}
		r.RemoteAddr = "192.0.2.1:1234"
		if c := rules.CleanPath(requestPath(r)); rules.CleanPath(c) != c {
			t.Fatalf("%q: the path rules match, %q, is not clean", target, c)
		}
		p.rewrite(r)
		r.RequestURI = "" // as goproxy does before sending
		var out bytes.Buffer
		if err := r.Write(&out); err != nil {
			return // the transport refuses it too (control bytes)
		}
		line, _, _ := strings.Cut(out.String(), "\r\n")
		sent := strings.TrimSuffix(strings.TrimPrefix(line, "GET "), " HTTP/1.1")
		if originPath(target) != "" && sent != target {
			t.Fatalf("client sent %q, upstream would get %q", target, sent)
		}
		if !strings.Contains(out.String(), "\r\nHost: upstream:3000\r\n") {
			t.Fatalf("Host not rewritten: %q", out.String())
		}
	})
}

// FuzzForwarded checks X-Forwarded-* on arbitrary prior values, from a
// trusted peer (kept, the address appended) and from anyone else (replaced
// by what the proxy saw).
func FuzzForwarded(f *testing.F) {
	f.Add("192.0.2.1:55000", "203.0.113.7", "shop.example", "evil.example", true)
	f.Add("[2001:db8::1]:443", "", "", "", false)
	f.Add("garbage", "a, b", "h", "x", false)
	f.Fuzz(func(t *testing.T, remote, prior, host, priorHost string, trusted bool) {
		h := http.Header{}
		if prior != "" {
			h["X-Forwarded-For"] = []string{prior}
		}
		if priorHost != "" {
			h["X-Forwarded-Host"] = []string{priorHost}
			h["X-Forwarded-Proto"] = []string{"https"}
		}
		addForwarded(h, remote, host, false, trusted)
		got := h.Get("X-Forwarded-For")
		ip, _, err := net.SplitHostPort(remote)
		if err != nil {
			ip = remote
		}
		wantHost, wantProto := host, "http"
		if trusted && priorHost != "" {
			wantHost, wantProto = priorHost, "https"
		}
		switch {
		case trusted && prior != "" && !strings.HasPrefix(got, prior):
			t.Fatalf("trusted prior %q lost: %q", prior, got)
		case !trusted && got != ip:
			t.Fatalf("untrusted X-Forwarded-For = %q, want only the peer %q", got, ip)
		case !strings.HasSuffix(got, ip):
			t.Fatalf("peer %q not last in %q", ip, got)
		}
		if h.Get("X-Forwarded-Proto") != wantProto {
			t.Fatalf("proto %q, want %q", h.Get("X-Forwarded-Proto"), wantProto)
		}
		if h.Get("X-Forwarded-Host") != wantHost {
			t.Fatalf("host %q, want %q", h.Get("X-Forwarded-Host"), wantHost)
		}
	})
}

// FuzzDecodeBody feeds arbitrary compressed bodies to the capture decoder:
// it must not panic and never return more than the limit.
func FuzzDecodeBody(f *testing.F) {
	var zb bytes.Buffer
	zw := gzip.NewWriter(&zb)
	_, _ = zw.Write(bytes.Repeat([]byte(`{"a":1}`), 1000))
	_ = zw.Close()
	f.Add(zb.Bytes(), "gzip")
	f.Add([]byte{0x78, 0x9c, 0x01, 0x00, 0x00, 0xff, 0xff}, "deflate")
	f.Add([]byte("plain"), "")
	f.Add([]byte("x"), "br")
	const limit = 1 << 10
	f.Fuzz(func(t *testing.T, body []byte, encoding string) {
		if len(body) > limit {
			body = body[:limit] // captured bodies never exceed the limit
		}
		h := http.Header{"Content-Encoding": {encoding}}
		out, truncated := decodeBody(h, body, false, limit, nil)
		if len(out) > limit {
			t.Fatalf("decoded %d bytes, limit %d (truncated %v)", len(out), limit, truncated)
		}
	})
}
