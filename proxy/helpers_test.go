package proxy

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"golang.org/x/net/websocket"

	"github.com/eventtap/eventtap/rules"
)

// fakeRules routes by method and path prefix and answers Evaluate with
// canned events. Configure it before use; it records what it evaluated.
type fakeRules struct {
	routes     []fakeRoute
	events     func(*rules.Exchange) ([]rules.Event, []error) // nil: one event per exchange
	panicRoute bool
	panicEval  bool

	mu   sync.Mutex
	seen []*rules.Exchange
	cond chan struct{} // closed and replaced on every Evaluate
}

type fakeRoute struct{ method, prefix, template string }

func (f *fakeRules) Route(method, path string) (string, bool) {
	if f.panicRoute {
		panic("fake rules: route")
	}
	for _, r := range f.routes {
		if (r.method == "" || r.method == method) && strings.HasPrefix(path, r.prefix) {
			return r.template, true
		}
	}
	return "", false
}

func (f *fakeRules) Evaluate(ex *rules.Exchange) ([]rules.Event, []error) {
	f.mu.Lock()
	f.seen = append(f.seen, ex)
	if f.cond != nil {
		close(f.cond)
	}
	f.cond = make(chan struct{})
	f.mu.Unlock()
	if f.panicEval {
		panic("fake rules: evaluate")
	}
	if f.events != nil {
		return f.events(ex)
	}
	return []rules.Event{{Rule: "order-created", Type: "ORDER_CREATED", Subject: "42",
		Data: json.RawMessage(`{}`), ObservedAt: ex.End}}, nil
}

func (f *fakeRules) exchanges() []*rules.Exchange {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*rules.Exchange(nil), f.seen...)
}

// waitExchanges waits until n exchanges were evaluated.
func (f *fakeRules) waitExchanges(t *testing.T, n int) []*rules.Exchange {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		f.mu.Lock()
		if len(f.seen) >= n {
			seen := append([]*rules.Exchange(nil), f.seen...)
			f.mu.Unlock()
			return seen
		}
		if f.cond == nil {
			f.cond = make(chan struct{})
		}
		c := f.cond
		f.mu.Unlock()
		select {
		case <-c:
		case <-deadline:
			t.Fatalf("waited for %d evaluated exchanges, got %d", n, len(f.exchanges()))
		}
	}
}

// ruleErr is an Evaluate error that names its rule the way rules.EvalError
// is expected to.
type ruleErr struct{ rule string }

func (e ruleErr) Error() string    { return "rule " + e.rule + ": no such key" }
func (e ruleErr) RuleName() string { return e.rule }

// fakeCommitter records commits; it can block until released, fail or
// panic.
type fakeCommitter struct {
	err     error
	panics  bool
	release chan struct{} // when set, Commit waits for it to close
	entered chan struct{} // when set, gets a value as Commit starts

	mu      sync.Mutex
	commits [][]rules.Event
}

func (c *fakeCommitter) Commit(ctx context.Context, events []rules.Event) error {
	if c.entered != nil {
		c.entered <- struct{}{}
	}
	if c.release != nil {
		select {
		case <-c.release:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if c.panics {
		panic("fake committer")
	}
	if c.err != nil {
		return c.err
	}
	c.mu.Lock()
	c.commits = append(c.commits, events)
	c.mu.Unlock()
	return nil
}

func (c *fakeCommitter) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.commits)
}

// testLogger logs to the test output at Debug when EVENTTAP_TEST_LOG is
// set, and nowhere otherwise.
func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("EVENTTAP_TEST_LOG") == "" {
		return slog.New(slog.DiscardHandler)
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// env is one test setup: an upstream and the real proxy in front of it,
// both on real listeners.
type env struct {
	t        *testing.T
	up       *upstream
	p        *Proxy
	srv      *httptest.Server
	reg      *prometheus.Registry
	rules    *fakeRules
	commit   *fakeCommitter
	client   *http.Client
	proxyURL string
}

type envOption func(*Config, *[]Option)

func newEnv(t *testing.T, r *fakeRules, c *fakeCommitter, mods ...envOption) *env {
	t.Helper()
	up := newUpstream(t)
	return newEnvFor(t, up, up.srv.URL, r, c, mods...)
}

// testSetup fills in the fakes a test left nil and returns the default
// configuration listening on a free port of 127.0.0.1 in front of
// upstreamURL.
func testSetup(r *fakeRules, c *fakeCommitter, upstreamURL string) (*fakeRules, *fakeCommitter, Config) {
	if r == nil {
		r = &fakeRules{}
	}
	if c == nil {
		c = &fakeCommitter{}
	}
	cfg := DefaultConfig()
	cfg.Listen = "127.0.0.1:0"
	cfg.Upstream = upstreamURL
	return r, c, cfg
}

func newEnvFor(t *testing.T, up *upstream, upstreamURL string, r *fakeRules, c *fakeCommitter, mods ...envOption) *env {
	t.Helper()
	r, c, cfg := testSetup(r, c, upstreamURL)
	cfg.MaxCaptureBytes = 64 << 10
	cfg.UpstreamTimeout = 5 * time.Second
	var opts []Option
	for _, m := range mods {
		m(&cfg, &opts)
	}
	reg := prometheus.NewRegistry()
	p, err := New(cfg, testLogger(t), reg, r, c, opts...)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(p.Handler())
	e := &env{t: t, up: up, p: p, srv: srv, reg: reg, rules: r, commit: c,
		client: newClient(), proxyURL: srv.URL}
	t.Cleanup(func() {
		srv.Close()
		p.closeUpgrades() // httptest forgets hijacked connections
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := p.tasks.wait(ctx); err != nil {
			t.Errorf("background work still running: %v", err)
		}
		e.client.CloseIdleConnections()
	})
	return e
}

// newClient is a client that does not decompress or follow redirects, so
// that tests see the bytes on the wire.
func newClient() *http.Client {
	return &http.Client{
		Transport: &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 64},
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
		Timeout: 30 * time.Second,
	}
}

// do sends one request to base+uri and returns the response with its body
// read.
func (e *env) do(base, method, uri string, hdr http.Header, body io.Reader) (*http.Response, []byte) {
	e.t.Helper()
	req, err := http.NewRequest(method, base+uri, body)
	if err != nil {
		e.t.Fatal(err)
	}
	for k, vs := range hdr {
		req.Header[k] = vs
	}
	if hdr.Get("Host") != "" {
		req.Host = hdr.Get("Host")
	}
	resp, err := e.client.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", method, base+uri, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatalf("%s %s: reading body: %v", method, base+uri, err)
	}
	return resp, b
}

// metric returns the value of the counter (or the sample count of the
// histogram) name with exactly these labels, 0 when absent.
func (e *env) metric(name string, labels map[string]string) float64 {
	e.t.Helper()
	return metricValue(e.t, e.reg, name, labels)
}

func metricValue(t testing.TB, g prometheus.Gatherer, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := g.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			if !labelsMatch(m, labels) {
				continue
			}
			switch {
			case m.GetCounter() != nil:
				return m.GetCounter().GetValue()
			case m.GetHistogram() != nil:
				return float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return 0
}

func labelsMatch(m *dto.Metric, want map[string]string) bool {
	if len(m.GetLabel()) != len(want) {
		return false
	}
	for _, lp := range m.GetLabel() {
		if want[lp.GetName()] != lp.GetValue() {
			return false
		}
	}
	return true
}

// upstream is a stand-in for the order API with one handler per behaviour
// the proxy must pass through.
type upstream struct {
	srv  *httptest.Server
	gate chan struct{} // streaming handlers wait on it between their parts
	gz   []byte        // the /gzip body, compressed
}

const orderJSON = `{"id":"42","status":"OPEN","total":12.5}`

func newUpstream(t *testing.T) *upstream {
	t.Helper()
	u := &upstream{gate: make(chan struct{})}
	var zb bytes.Buffer
	zw := gzip.NewWriter(&zb)
	_, _ = zw.Write([]byte(strings.Repeat(orderJSON, 20)))
	_ = zw.Close()
	u.gz = zb.Bytes()

	mux := http.NewServeMux()
	mux.HandleFunc("/echo/", u.echo)
	mux.HandleFunc("/orders", func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(orderJSON)))
		w.Header().Set("Location", "/orders/42")
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, orderJSON)
	})
	mux.HandleFunc("/orders/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, orderJSON)
	})
	mux.HandleFunc("/chunked-json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, orderJSON[:10])
		w.(http.Flusher).Flush()
		_, _ = io.WriteString(w, orderJSON[10:])
	})
	mux.HandleFunc("/download", func(w http.ResponseWriter, r *http.Request) {
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Content-Length", strconv.Itoa(n))
		_, _ = io.Copy(w, io.LimitReader(newPattern(), int64(n)))
	})
	mux.HandleFunc("/upload", func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"len":%d,"sha":%q}`, n, hex.EncodeToString(h.Sum(nil)))
	})
	mux.HandleFunc("/stream", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/x-ndjson")
		_, _ = io.WriteString(w, `{"n":1}`+"\n")
		w.(http.Flusher).Flush()
		u.wait(r)
		_, _ = io.WriteString(w, `{"n":2}`+"\n")
	})
	mux.HandleFunc("/sse", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		_, _ = io.WriteString(w, "data: one\n\n")
		w.(http.Flusher).Flush()
		u.wait(r)
		_, _ = io.WriteString(w, "data: two\n\n")
	})
	mux.HandleFunc("/gzip", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Vary", "Accept-Encoding")
		if !strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			_, _ = io.WriteString(w, strings.Repeat(orderJSON, 20))
			return
		}
		w.Header().Set("Content-Encoding", "gzip")
		w.Header().Set("Content-Length", strconv.Itoa(len(u.gz)))
		_, _ = w.Write(u.gz)
	})
	mux.HandleFunc("/cookies", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Add("Set-Cookie", "a=1; Path=/")
		w.Header().Add("Set-Cookie", "b=2; Path=/; HttpOnly")
		w.Header().Add("X-Multi", "one")
		w.Header().Add("X-Multi", "two")
		_, _ = io.WriteString(w, "ok")
	})
	mux.HandleFunc("/nocontent", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Deleted", "yes")
		w.WriteHeader(http.StatusNoContent)
	})
	mux.HandleFunc("/cached", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `"v1"`)
		w.Header().Set("Cache-Control", "max-age=60")
		if r.Header.Get("If-None-Match") == `"v1"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		_, _ = io.WriteString(w, "fresh")
	})
	mux.HandleFunc("/hop", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "X-Up-Hop")
		w.Header().Set("X-Up-Hop", "secret")
		w.Header().Set("Keep-Alive", "timeout=5")
		w.Header().Set("X-End", "kept")
		u.echo(w, r)
	})
	mux.HandleFunc("/bare", func(w http.ResponseWriter, r *http.Request) {
		// No Content-Type and no Date: the proxy must not add them.
		w.Header()["Date"] = nil
		w.Header()["Content-Type"] = nil
		_, _ = io.WriteString(w, "<html>sniff me</html>")
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(10 * time.Second):
		}
	})
	mux.HandleFunc("/expect", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "got %d bytes: %s", len(b), b)
	})
	mux.HandleFunc("/expect-reject", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusRequestEntityTooLarge)
		_, _ = io.WriteString(w, "too large")
	})
	mux.HandleFunc("/broken", func(w http.ResponseWriter, r *http.Request) {
		// Promise more than is sent, then drop the connection.
		if r.URL.Query().Get("chunked") == "" {
			w.Header().Set("Content-Length", "1000")
		}
		_, _ = io.WriteString(w, strings.Repeat("x", 100))
		w.(http.Flusher).Flush()
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			_ = conn.Close()
		}
	})
	mux.Handle("/ws", websocket.Handler(func(ws *websocket.Conn) {
		for {
			var msg string
			if err := websocket.Message.Receive(ws, &msg); err != nil {
				return
			}
			if err := websocket.Message.Send(ws, msg); err != nil {
				return
			}
		}
	}))
	u.srv = httptest.NewServer(mux)
	t.Cleanup(func() {
		u.open()
		u.srv.Close()
	})
	return u
}

// open lets the streaming handlers finish.
func (u *upstream) open() {
	select {
	case <-u.gate:
	default:
		close(u.gate)
	}
}

func (u *upstream) wait(r *http.Request) {
	select {
	case <-u.gate:
	case <-r.Context().Done():
	case <-time.After(10 * time.Second):
	}
}

// echoed is what /echo/ and /hop report about the request they got.
type echoed struct {
	Method  string      `json:"method"`
	URI     string      `json:"uri"`
	Host    string      `json:"host"`
	Header  http.Header `json:"header"`
	BodyLen int         `json:"body_len"`
	BodySHA string      `json:"body_sha"`
	Trailer http.Header `json:"trailer,omitempty"`
}

func (u *upstream) echo(w http.ResponseWriter, r *http.Request) {
	h := sha256.New()
	n, _ := io.Copy(h, r.Body)
	b, _ := json.Marshal(echoed{Method: r.Method, URI: r.RequestURI, Host: r.Host, Header: r.Header,
		BodyLen: int(n), BodySHA: hex.EncodeToString(h.Sum(nil)), Trailer: r.Trailer})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Upstream", "1")
	_, _ = w.Write(b)
}

// pattern is an endless, deterministic, incompressible-enough byte source,
// so that big bodies never have to be held in memory.
type pattern struct{ x uint64 }

func newPattern() *pattern { return &pattern{x: 0x9e3779b97f4a7c15} }

func (p *pattern) Read(b []byte) (int, error) {
	for i := range b {
		p.x ^= p.x << 13
		p.x ^= p.x >> 7
		p.x ^= p.x << 17
		b[i] = byte(p.x)
	}
	return len(b), nil
}

func patternSHA(n int64) string {
	h := sha256.New()
	_, _ = io.Copy(h, io.LimitReader(newPattern(), n))
	return hex.EncodeToString(h.Sum(nil))
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// rawExchange writes a raw request to addr and reads one response, so that
// tests can send what Go's client would normalise.
func rawExchange(t *testing.T, addr, request string) (*http.Response, []byte) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(conn, request); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("reading body: %v", err)
	}
	return resp, b
}

func hostOf(rawURL string) string {
	return strings.TrimPrefix(rawURL, "http://")
}

// freeAddr returns an address nothing listens on, for an upstream that
// refuses connections. (Nothing is handed this address to listen on, so
// the pick-then-close race of handing out free ports does not arise.)
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

var errOutbox = errors.New("outbox: disk full")
