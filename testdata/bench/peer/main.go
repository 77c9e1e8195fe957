// Command peer is everything .ci/bench runs next to eventtap: the order API
// it proxies, the bare proxies it is compared with, and the webhook receiver
// its events are delivered to. One binary keeps the build to one step and
// gives every role the same HTTP server settings.
//
//	peer -mode upstream -listen 127.0.0.1:38001
//	peer -mode goproxy  -listen 127.0.0.1:38003 -upstream http://127.0.0.1:38001
//	peer -mode revproxy -listen 127.0.0.1:38004 -upstream http://127.0.0.1:38001
//	peer -mode receiver -listen 127.0.0.1:38007
//
// It lives under testdata so that `go build ./...` and `go test ./...` skip
// it; build it with `go build ./testdata/bench/peer`.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/eventtap/eventtap/internal/baseline"
	"github.com/eventtap/eventtap/proxy"
)

func main() {
	mode := flag.String("mode", "", "upstream, goproxy, revproxy or receiver")
	listen := flag.String("listen", "127.0.0.1:0", "host:port to serve on")
	upstream := flag.String("upstream", "", "the order API, for goproxy and revproxy (http://host:port)")
	flag.Parse()

	var h http.Handler
	switch *mode {
	case "upstream":
		h = newOrderAPI()
	case "goproxy", "revproxy":
		u, err := url.Parse(*upstream)
		if err != nil || u.Scheme == "" || u.Host == "" {
			log.Fatalf("peer: -upstream %q must be an absolute URL such as http://127.0.0.1:38001", *upstream)
		}
		if *mode == "goproxy" {
			h = baseline.Goproxy(u, newTransport())
		} else {
			h = baseline.ReverseProxy(u, newTransport())
		}
	case "receiver":
		h = newReceiver()
	default:
		log.Fatalf("peer: -mode must be upstream, goproxy, revproxy or receiver, not %q", *mode)
	}
	if err := serve(*listen, h); err != nil {
		log.Fatalf("peer %s: %v", *mode, err)
	}
}

// serve runs h until SIGINT or SIGTERM with the timeouts eventtap's proxy
// server uses, so that no role gets a head start from its server settings.
func serve(addr string, h http.Handler) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 30 * time.Second, IdleTimeout: 2 * time.Minute}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return srv.Shutdown(sctx)
}

// newTransport is eventtap's own upstream transport (upstream_timeout at
// its default): the bare proxies must pool connections exactly as eventtap
// does, or the comparison measures connection churn instead of the proxies.
func newTransport() *http.Transport { return proxy.NewTransport(proxy.DefaultConfig()) }

// orderAPI answers as fast as it can, so that the proxies in front of it, not
// the upstream, bound throughput. It keeps no orders: memory stays flat
// however long the benchmark runs.
type orderAPI struct {
	nextID atomic.Int64
	order  []byte // GET answer
}

func newOrderAPI() *orderAPI {
	return &orderAPI{order: []byte(`{"id":1,"status":"OPEN","customer":"c-1","total":12.5,` +
		`"items":[{"sku":"A-1","qty":2},{"sku":"B-7","qty":1}]}`)}
}

func (a *orderAPI) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// Reading the body keeps the connection reusable, as a real API would.
	_, _ = io.Copy(io.Discard, r.Body)
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	if r.Method == http.MethodPost && r.URL.Path == "/orders" {
		// A fresh id per order gives every event its own subject, as real
		// traffic does (events of one subject are delivered in order).
		body := make([]byte, 0, 128)
		body = append(body, `{"id":`...)
		body = strconv.AppendInt(body, a.nextID.Add(1), 10)
		body = append(body, `,"status":"OPEN","customer":"c-1","total":12.5,"items":[{"sku":"A-1","qty":2}]}`...)
		h["Content-Length"] = []string{strconv.Itoa(len(body))}
		w.WriteHeader(http.StatusCreated)
		_, _ = w.Write(body)
		return
	}
	h["Content-Length"] = []string{strconv.Itoa(len(a.order))}
	_, _ = w.Write(a.order)
}

// receiver accepts every webhook without verifying it (the tests verify
// signatures; here only the rate matters) and counts them, so that the
// script can measure delivery throughput from the outside.
type receiver struct{ n atomic.Int64 }

func newReceiver() *receiver { return &receiver{} }

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodGet && r.URL.Path == "/count" {
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintln(w, rc.n.Load())
		return
	}
	_, _ = io.Copy(io.Discard, r.Body)
	rc.n.Add(1)
	w.WriteHeader(http.StatusNoContent)
}
