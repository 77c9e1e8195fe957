// Package testkit holds the helpers that tests of every eventtap package
// share: a log buffer safe for concurrent writes, polling until a condition
// holds, finding the addresses a server bound when it was told to listen
// on port 0, and the bare proxies and client the proxy benchmarks use.
//
// It is imported only by _test.go files. It must not hold state between
// tests: each helper works on what the test hands it, and the baseline
// proxies BareProxies starts close when the test ends.
package testkit

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eventtap/eventtap/internal/baseline"
)

// SyncBuffer is a bytes.Buffer safe for concurrent writes, for logs.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Eventually polls cond every 10ms until it holds, and fails the test
// with "timed out waiting until what" after timeout.
func Eventually(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting until %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// textAddr finds the addr attribute in a log line of slog's text format.
var textAddr = regexp.MustCompile(`(?:^| )addr=("(?:[^"\\]|\\.)*"|\S+)`)

// ListeningAddr returns the address in the first log line whose message is
// msg (for example "proxy listening"), in slog's JSON or text format, and
// false when there is none yet. Servers log the address they bound, so a
// test can configure port 0 and read the port back without the race of
// picking a free port first.
func ListeningAddr(logs, msg string) (string, bool) {
	for _, line := range strings.Split(logs, "\n") {
		if !strings.Contains(line, msg) {
			continue
		}
		var rec struct{ Msg, Addr string }
		if json.Unmarshal([]byte(line), &rec) == nil {
			if rec.Msg == msg && rec.Addr != "" {
				return rec.Addr, true
			}
			continue
		}
		if !strings.Contains(line, "msg="+quoteIfSpaced(msg)) {
			continue
		}
		if m := textAddr.FindStringSubmatch(line); m != nil {
			return strings.Trim(m[1], `"`), true
		}
	}
	return "", false
}

func quoteIfSpaced(s string) string {
	if strings.ContainsAny(s, " =\"") {
		b, _ := json.Marshal(s)
		return string(b)
	}
	return s
}

// Listening is a slog.Handler that remembers the addr attribute of
// records whose message ends in "listening", whatever their level, and
// passes on to next only the records next is enabled for. It lets a test
// run a server in-process at a quiet log level and still learn its address.
type Listening struct {
	next  slog.Handler
	mu    *sync.Mutex
	addrs map[string]string
}

// NewListening returns a Listening handler in front of next.
func NewListening(next slog.Handler) *Listening {
	return &Listening{next: next, mu: &sync.Mutex{}, addrs: map[string]string{}}
}

// Enabled is true from Info up, so that "listening" records reach Handle.
func (h *Listening) Enabled(ctx context.Context, l slog.Level) bool {
	return l >= slog.LevelInfo || h.next.Enabled(ctx, l)
}

// Handle records the address of a "listening" record.
func (h *Listening) Handle(ctx context.Context, r slog.Record) error {
	if strings.HasSuffix(r.Message, "listening") {
		r.Attrs(func(a slog.Attr) bool {
			if a.Key == "addr" {
				h.mu.Lock()
				h.addrs[r.Message] = a.Value.String()
				h.mu.Unlock()
				return false
			}
			return true
		})
	}
	if !h.next.Enabled(ctx, r.Level) {
		return nil
	}
	return h.next.Handle(ctx, r)
}

// WithAttrs implements slog.Handler.
func (h *Listening) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	c.next = h.next.WithAttrs(as)
	return &c
}

// WithGroup implements slog.Handler.
func (h *Listening) WithGroup(name string) slog.Handler {
	c := *h
	c.next = h.next.WithGroup(name)
	return &c
}

// Addr waits up to timeout for a record with message msg (for example
// "admin server listening") and returns its address.
func (h *Listening) Addr(t testing.TB, timeout time.Duration, msg string) string {
	t.Helper()
	var addr string
	Eventually(t, timeout, "the log says "+msg, func() bool {
		h.mu.Lock()
		defer h.mu.Unlock()
		addr = h.addrs[msg]
		return addr != ""
	})
	return addr
}

// RequireTool returns the path of a tool the test needs. Outside CI a
// missing tool skips the test, saying so; in CI (CI=true, as .ci/run sets)
// it fails it: a check that can silently not run is not a check.
func RequireTool(t testing.TB, why string, names ...string) string {
	t.Helper()
	for _, n := range names {
		if p, err := exec.LookPath(n); err == nil {
			return p
		}
	}
	msg := "needs " + strings.Join(names, " or ") + " on PATH (" + why + ")"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg + "; CI must install it (.ci/run does)")
	}
	t.Skip(msg + "; skipped outside CI")
	return ""
}

// BareProxies starts the baselines the proxy benchmarks compare eventtap
// with, both forwarding to upstream through a transport from newTransport:
// a bare httputil.ReverseProxy and a bare goproxy whose NonproxyHandler
// points at the upstream. They are closed when the test ends.
func BareProxies(tb testing.TB, upstream *url.URL, newTransport func() *http.Transport) (reverseProxy, goProxy *httptest.Server) {
	tb.Helper()
	reverseProxy = httptest.NewServer(baseline.ReverseProxy(upstream, newTransport()))
	tb.Cleanup(reverseProxy.Close)
	goProxy = httptest.NewServer(baseline.Goproxy(upstream, newTransport()))
	tb.Cleanup(goProxy.Close)
	return reverseProxy, goProxy
}

// BenchClient is the client of the proxy benchmarks: enough idle
// connections for parallel requests, no transparent decompression.
func BenchClient(tb testing.TB) *http.Client {
	c := &http.Client{Transport: BenchTransport()}
	tb.Cleanup(c.CloseIdleConnections)
	return c
}

// BenchTransport is BenchClient's transport, also used by baselines.
func BenchTransport() *http.Transport {
	return &http.Transport{MaxIdleConns: 1024, MaxIdleConnsPerHost: 1024, IdleConnTimeout: time.Minute, DisableCompression: true}
}
