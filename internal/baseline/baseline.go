// Package baseline builds the bare proxies eventtap's benchmarks compare it
// with: goproxy used as a reverse proxy in the plainest way, and
// httputil.ReverseProxy. The root and proxy benchmarks (through testkit)
// and .ci/bench's peer program all use these, so that every comparison is
// against the same baselines.
//
// It must not be used by the eventtap binary; it holds no state.
package baseline

import (
	"net/http"
	"net/http/httputil"
	"net/url"

	"github.com/elazarl/goproxy"
)

// Goproxy is goproxy used as a reverse proxy in the plainest way:
// origin-form requests reach NonproxyHandler, which points them at upstream
// and hands them back to goproxy, which forwards them through tr.
func Goproxy(upstream *url.URL, tr *http.Transport) http.Handler {
	gp := goproxy.NewProxyHttpServer()
	gp.Tr = tr
	gp.KeepAcceptEncoding = true
	gp.NonproxyHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.URL.Scheme, r.URL.Host = upstream.Scheme, upstream.Host
		gp.ServeHTTP(w, r)
	})
	return gp
}

// ReverseProxy is httputil.ReverseProxy forwarding to upstream through tr,
// adding X-Forwarded-* as eventtap does.
func ReverseProxy(upstream *url.URL, tr *http.Transport) http.Handler {
	return &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(upstream)
			pr.SetXForwarded()
		},
		Transport: tr,
	}
}
