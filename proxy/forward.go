package proxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/textproto"
	"strconv"
	"strings"
	"sync"

	"github.com/elazarl/goproxy"
	"golang.org/x/net/http/httpguts"
)

// rewrite turns r, in place, into the request the upstream gets; goproxy
// forwards it as it is. It reports whether r is a WebSocket upgrade, the only
// kind of upgrade that goes through (goproxy relays only WebSocket sessions).
//
// Host: the upstream gets its own host in the Host header, as it did when
// clients called it directly, so virtual hosting and absolute links it builds
// keep working; the host the client asked for is in X-Forwarded-Host.
func (p *Proxy) rewrite(r *http.Request) (upgrade bool) {
	// Forward the path exactly as the client sent it. r.URL.Path is
	// decoded and RawPath is kept only when it is a valid encoding, so
	// without this "/a%2Fb" survives but "/orders/{id}" or raw UTF-8 would be
	// re-escaped. The transport writes Opaque verbatim.
	if target := originPath(r.RequestURI); target != "" {
		r.URL.Opaque = target
	} else {
		r.URL.Opaque = "" // absolute-form: forward only the path, re-encoded
	}
	r.URL.Scheme = p.upstream.Scheme
	r.URL.Host = p.upstream.Host
	r.URL.User = nil
	r.URL.Fragment, r.URL.RawFragment = "", ""
	forwardedHost := r.Host
	r.Host = p.upstream.Host
	// "Connection: close" from the client is about the client's connection;
	// the server has already noted it. The upstream connection stays pooled.
	r.Close = false

	upgrade = cleanRequestHeader(r.Header)
	// The server takes the names the Trailer header announces as they are,
	// but the transport refuses a request announcing one that is not a
	// field name, and that is the client's mistake, not the upstream's. The
	// map stays even when emptied: the server fills it with the trailers
	// that arrive, and the outgoing request may be a copy sharing it.
	for k := range r.Trailer {
		if !httpguts.ValidHeaderFieldName(k) {
			delete(r.Trailer, k)
		}
	}
	addForwarded(r.Header, r.RemoteAddr, forwardedHost, r.TLS != nil, p.trustedPeer(r.RemoteAddr))
	if _, ok := r.Header["User-Agent"]; !ok {
		// Without this the transport would send its own User-Agent.
		r.Header["User-Agent"] = []string{""}
	}
	return upgrade
}

// originPath returns the path of an origin-form request target ("/a/b?q"
// gives "/a/b"), or "" when the target cannot be forwarded verbatim: it is
// not origin-form, or it starts with "//", which url.URL.RequestURI would
// turn into a scheme-relative URL.
func originPath(requestURI string) string {
	if len(requestURI) == 0 || requestURI[0] != '/' || strings.HasPrefix(requestURI, "//") {
		return ""
	}
	if i := strings.IndexByte(requestURI, '?'); i >= 0 {
		return requestURI[:i]
	}
	return requestURI
}

// cleanRequestHeader removes the hop-by-hop headers of a request (RFC 9110
// §7.6.1): Connection and the headers it lists, Keep-Alive, TE (except
// "trailers", which gRPC-style upstreams need), Trailer, Transfer-Encoding,
// Upgrade and Proxy-*. For a WebSocket upgrade it keeps "Connection: Upgrade"
// and the Upgrade header, which the upstream needs to switch protocols. It
// reports whether h asked for a WebSocket upgrade.
func cleanRequestHeader(h http.Header) (websocket bool) {
	websocket = isWebSocketUpgrade(h)
	var upgrade []string
	if websocket {
		upgrade = h["Upgrade"]
	}
	teTrailers := headerHasToken(h["Te"], "trailers")
	removeConnectionListed(h)
	for k := range h {
		if isHopHeader(k) {
			delete(h, k)
		}
	}
	if websocket {
		h["Connection"] = []string{"Upgrade"}
		h["Upgrade"] = upgrade
	}
	if teTrailers {
		h["Te"] = []string{"trailers"}
	}
	return websocket
}

// cleanResponseHeader removes the hop-by-hop headers of a response. A 101
// Switching Protocols keeps Connection and Upgrade, which are the answer to
// the client's upgrade.
func cleanResponseHeader(h http.Header, switching bool) {
	var conn, upgrade []string
	if switching {
		conn, upgrade = h["Connection"], h["Upgrade"]
	}
	removeConnectionListed(h)
	for k := range h {
		if isHopHeader(k) {
			delete(h, k)
		}
	}
	if switching {
		if conn != nil {
			h["Connection"] = conn
		}
		if upgrade != nil {
			h["Upgrade"] = upgrade
		}
	}
}

// isHopHeader reports whether the canonical header name k is hop-by-hop.
// The switch avoids a map or a slice scan per header.
func isHopHeader(k string) bool {
	switch k {
	case "Connection", "Keep-Alive", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
		"Proxy-Connection", "Proxy-Authenticate", "Proxy-Authorization":
		return true
	}
	return false
}

// removeConnectionListed deletes the headers named in h's Connection header.
// The usual tokens (close, keep-alive, upgrade) are compared first so that
// the common case does not canonicalize, which would allocate.
func removeConnectionListed(h http.Header) {
	for _, v := range h["Connection"] {
		for v != "" {
			var tok string
			tok, v = nextToken(v)
			switch {
			case tok == "", strings.EqualFold(tok, "close"):
			case strings.EqualFold(tok, "keep-alive"):
				delete(h, "Keep-Alive")
			case strings.EqualFold(tok, "upgrade"):
				delete(h, "Upgrade")
			default:
				// A listed name that cannot be a header is ignored
				// rather than canonicalized.
				if httpguts.ValidHeaderFieldName(tok) {
					delete(h, textproto.CanonicalMIMEHeaderKey(tok))
				}
			}
		}
	}
}

// nextToken splits a comma-separated header value: it returns the first
// element, trimmed, and the rest after the comma.
func nextToken(v string) (tok, rest string) {
	if i := strings.IndexByte(v, ','); i >= 0 {
		tok, rest = v[:i], v[i+1:]
	} else {
		tok = v
	}
	return strings.TrimSpace(tok), rest
}

// headerHasToken reports whether a comma-separated header holds token,
// compared without case.
func headerHasToken(values []string, token string) bool {
	for _, v := range values {
		for v != "" {
			var tok string
			tok, v = nextToken(v)
			if strings.EqualFold(tok, token) {
				return true
			}
		}
	}
	return false
}

func isWebSocketUpgrade(h http.Header) bool {
	return headerHasToken(h["Connection"], "upgrade") && headerHasToken(h["Upgrade"], "websocket")
}

// addForwarded sets the X-Forwarded-* headers the upstream gets.
//
// From a trusted peer (proxy.trusted_proxies), a proxy in front of this one
// that saw the original request: the peer's address is appended to
// X-Forwarded-For, and X-Forwarded-Host and X-Forwarded-Proto are kept when
// it set them, since the upstream wants the host and scheme its users used.
//
// From any other peer the three headers say only what this proxy saw: the
// peer's address, the Host it asked for and the scheme it used. Whatever the
// client wrote in them is replaced, as nginx's real_ip module and Traefik's
// trustedIPs do, so that a client cannot make the upstream build links to a
// host of its choosing or log an address it made up. The three values share
// one allocation.
func addForwarded(h http.Header, remoteAddr, host string, tls, trusted bool) {
	vals := make([]string, 3)
	ip, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		ip = remoteAddr
	}
	if !trusted {
		delete(h, "X-Forwarded-For")
		delete(h, "X-Forwarded-Host")
		delete(h, "X-Forwarded-Proto")
	}
	if ip != "" {
		if prior, ok := h["X-Forwarded-For"]; ok && len(prior) > 0 {
			ip = strings.Join(prior, ", ") + ", " + ip
		}
		vals[0] = ip
		h["X-Forwarded-For"] = vals[0:1:1]
	}
	if _, ok := h["X-Forwarded-Host"]; !ok && host != "" {
		vals[1] = host
		h["X-Forwarded-Host"] = vals[1:2:2]
	}
	if _, ok := h["X-Forwarded-Proto"]; !ok {
		vals[2] = "http"
		if tls {
			vals[2] = "https"
		}
		h["X-Forwarded-Proto"] = vals[2:3:3]
	}
}

// trustedPeer reports whether remoteAddr (ip:port, as net/http gives it) is
// in proxy.trusted_proxies. With none configured, the default, it costs
// nothing.
func (p *Proxy) trustedPeer(remoteAddr string) bool {
	if len(p.trusted) == 0 {
		return false
	}
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return false
	}
	a := ap.Addr().Unmap()
	for _, pf := range p.trusted {
		if pf.Contains(a) {
			return true
		}
	}
	return false
}

// tapKey is the context key under which a tapped request carries its *tap
// to roundTrip.
type tapKey struct{}

// roundTrip is goproxy's RoundTripper for every request. It sends the
// request with the proxy's transport, turns transport errors into answers
// (roundTripFailed), drops hop-by-hop response headers, and hands tapped
// exchanges to their tap. Replacing the body here, rather than in an
// OnResponse handler, keeps goproxy from dropping Content-Length.
func (p *Proxy) roundTrip(req *http.Request, _ *goproxy.ProxyCtx) (*http.Response, error) {
	t, _ := req.Context().Value(tapKey{}).(*tap)
	resp, err := p.transport.RoundTrip(req)
	if err != nil {
		return p.roundTripFailed(req, err), nil
	}
	switching := resp.StatusCode == http.StatusSwitchingProtocols
	cleanResponseHeader(resp.Header, switching)
	if t != nil && !switching {
		return t.capture(resp), nil
	}
	return resp, nil
}

// roundTripFailed answers a request the transport could not get answered,
// blaming whoever broke it. A request the client abandoned gets 499
// (nginx's "client closed request", which no one reads), and one whose body
// could not be read from the client (broken chunked framing) gets 400:
// neither is the upstream's fault, so neither counts as an upstream error,
// which alerts watch. Otherwise the upstream did not answer: 504 when it
// timed out, 502 when it could not be reached.
func (p *Proxy) roundTripFailed(req *http.Request, err error) *http.Response {
	if req.Context().Err() != nil {
		return jsonResponse(req, statusClientClosed, bodyClientClosed)
	}
	// The transport's error for a body it could not read looks like any
	// broken connection, hence the body's own record.
	if rb, ok := req.Body.(readErrBody); ok {
		if berr := rb.readErr(); berr != nil {
			p.debugFailure(req, http.StatusBadRequest, "request body unreadable", berr)
			return jsonResponse(req, http.StatusBadRequest, bodyBadRequest)
		}
	}
	p.m.upstreamErrors.Inc()
	code, body := http.StatusBadGateway, bodyBadGateway
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		code, body = http.StatusGatewayTimeout, bodyGatewayTimeout
	}
	p.debugFailure(req, code, "upstream failed", err)
	return jsonResponse(req, code, body)
}

// debugFailure logs, at Debug as per-request logs are, why the proxy
// answered req itself.
func (p *Proxy) debugFailure(req *http.Request, code int, msg string, err error) {
	if p.logger.Enabled(req.Context(), slog.LevelDebug) {
		p.logger.LogAttrs(req.Context(), slog.LevelDebug, msg,
			slog.String("method", req.Method), slog.String("path", req.URL.Path),
			slog.Int("status", code), slog.String("error", err.Error()))
	}
}

// readErrBody is a request body that remembers why reading it from the
// client failed: clientBody, or the tap's captureReader, which embeds one.
type readErrBody interface {
	readErr() error
}

// clientBody is the body of a request on its way to the upstream; it
// remembers the first read error other than EOF. The transport reads it
// from its own goroutine, which may still be reading after RoundTrip has
// returned, hence the lock.
type clientBody struct {
	rc  io.ReadCloser
	mu  sync.Mutex
	err error
}

func (b *clientBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err != nil && err != io.EOF {
		b.mu.Lock()
		if b.err == nil {
			b.err = err
		}
		b.mu.Unlock()
	}
	return n, err
}

func (b *clientBody) Close() error { return b.rc.Close() }

func (b *clientBody) readErr() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.err
}

const statusClientClosed = 499

// Bodies of the answers the proxy makes itself. They are short, fixed and
// never echo request data.
var (
	bodyBadGateway     = []byte(`{"error":"upstream unreachable","reason":"connection failed"}`)
	bodyGatewayTimeout = []byte(`{"error":"upstream unreachable","reason":"timeout"}`)
	bodyClientClosed   = []byte(`{"error":"client closed request"}`)
	bodyBadRequest     = []byte(`{"error":"bad request","reason":"request body"}`)
	bodyRejected       = []byte(`{"error":"events could not be recorded","reason":"outbox error"}`)
	bodyConnect        = []byte(`{"error":"method not allowed","reason":"the proxy does not open tunnels"}`)
)

// jsonResponse builds a response the proxy answers with instead of the
// upstream's.
func jsonResponse(req *http.Request, code int, body []byte) *http.Response {
	return &http.Response{
		Status:     strconv.Itoa(code) + " " + http.StatusText(code),
		StatusCode: code,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header: http.Header{
			"Content-Type":   {"application/json"},
			"Content-Length": {strconv.Itoa(len(body))},
			"Cache-Control":  {"no-store"},
		},
		Body:          io.NopCloser(bytes.NewReader(body)),
		ContentLength: int64(len(body)),
		Request:       req,
	}
}

// writeJSON writes an answer the proxy makes itself straight to the client.
func writeJSON(w http.ResponseWriter, code int, body []byte) {
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	h["Cache-Control"] = []string{"no-store"}
	w.WriteHeader(code)
	_, _ = w.Write(body)
}
