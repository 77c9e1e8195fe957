package main

// The fault suite (issue 7): the real binary, started as users start it,
// meets the failures a sidecar meets in production, and each test checks
// what clients, receivers (verifying every signature) and /metrics observe:
//
//	TestFaultReceiverDown     a receiver down for seconds, then back: the backlog drains, in order per subject
//	TestFaultSlowReceiver     a receiver slower than delivery.timeout does not delay another
//	TestFaultUpstreamDown     the order API refusing or silent, then back: clean 502/504, counted; no restart needed
//	TestFaultDiskFull         storage.dir's file system full (a tmpfs; needs root): pass/reject, then recovery
//	TestFaultRulesReload      broken rules files (testdata/fault/reload) refused, logged FILE:LINE:COL, counted
//	TestFaultUpstreamGarbage  invalid JSON, huge headers, responses cut off, non-HTTP answers
//	TestFaultHugeSubject      ids too long to be store keys, among ordinary orders
//	TestFaultOddRequests      thousands of odd raw requests: no crash, no leak, still correct
//	TestFaultBadRequests      malformed requests are not blamed on the upstream
//
// This file is the harness (the sidecar under test, raw upstreams); the
// scenarios are in fault_delivery_test.go (2, 3), fault_upstream_test.go
// (4, 7), fault_disk_test.go (5), fault_reload_test.go (6) and
// fault_requests_test.go (8); shared helpers of every package's tests are in
// internal/testkit.
//
// kill -9 under load is TestCrashKill9 (crash_test.go). The minutes-long
// versions are in fault_soak_test.go (go test -tags soak).
//
// Every scenario runs the binary as a child process (startBinary), so that a
// crash fails the scenario with the crash in its log rather than taking the
// test binary down, and so that go_goroutines and the process_* metrics are
// the sidecar's own. Only loopback addresses are used.

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eventtap/eventtap/internal/testkit"
)

// ---- the sidecar under test

// faultConfig is what a scenario changes in the sidecar's configuration.
type faultConfig struct {
	upstream string
	rules    string   // the rules file
	proxy    []string // extra `proxy:` keys, e.g. "on_outbox_error: reject"
	delivery []string // extra `delivery:` keys, e.g. "timeout: 1s"
	dataDir  string   // storage.dir; a fresh directory when empty
}

// faultSidecar is the eventtap binary serving one scenario.
type faultSidecar struct {
	proc                          *process
	proxyAddr, proxyURL, adminURL string
	cfgPath, rulesPath            string
	exited                        chan struct{} // closed when the process has exited
	waitErr                       error         // set before exited is closed
}

// faultClient bounds every request a scenario makes.
var faultClient = &http.Client{Timeout: 15 * time.Second}

// startFault writes a config and a rules file and runs `eventtap serve` until
// the test ends, when it stops it with SIGTERM and expects a clean exit.
func startFault(t *testing.T, fc faultConfig) *faultSidecar {
	t.Helper()
	if testing.Short() {
		t.Skip("runs the eventtap binary; skipped with -short")
	}
	dir := t.TempDir()
	s := &faultSidecar{
		cfgPath:   filepath.Join(dir, "eventtap.yaml"),
		rulesPath: filepath.Join(dir, "rules.yaml"),
		exited:    make(chan struct{}),
	}
	if fc.dataDir == "" {
		fc.dataDir = filepath.Join(dir, "data")
	}
	proxyKeys := append([]string{`listen: "127.0.0.1:0"`, fmt.Sprintf("upstream: %q", fc.upstream)}, fc.proxy...)
	deliveryKeys := append([]string{"allow_private_networks: true", "jitter: 0"}, fc.delivery...)
	cfg := fmt.Sprintf("proxy: {%s}\nadmin: {listen: \"127.0.0.1:0\"}\nstorage: {dir: %q}\ndelivery: {%s}\nrules_file: rules.yaml\nlog: {level: info, format: json}\n",
		strings.Join(proxyKeys, ", "), fc.dataDir, strings.Join(deliveryKeys, ", "))
	if err := os.WriteFile(s.rulesPath, []byte(fc.rules), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(s.cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	s.proc = startBinary(t, "serve", "--config", s.cfgPath)
	go func() {
		s.waitErr = s.proc.cmd.Wait()
		close(s.exited)
	}()
	// Registered after startBinary's cleanup, so it runs first; once it has
	// waited for exited, startBinary's cleanup finds the process reaped.
	t.Cleanup(func() { s.stop(t) })
	var adminAddr string
	faultEventually(t, s, 20*time.Second, "the listening addresses in the log", func() bool {
		var ok1, ok2 bool
		s.proxyAddr, ok1 = testkit.ListeningAddr(s.logs(), "proxy listening")
		adminAddr, ok2 = testkit.ListeningAddr(s.logs(), "admin server listening")
		return ok1 && ok2
	})
	s.proxyURL, s.adminURL = "http://"+s.proxyAddr, "http://"+adminAddr
	faultEventually(t, s, 20*time.Second, "/healthz to answer 200", func() bool {
		resp, err := faultClient.Get(s.adminURL + "/healthz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	waitTCP(t, s.proxyAddr)
	return s
}

func (s *faultSidecar) stop(t *testing.T) {
	select {
	case <-s.exited:
		t.Errorf("eventtap exited before the test ended: %v", s.waitErr)
	default:
		_ = s.proc.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-s.exited:
			if s.waitErr != nil {
				t.Errorf("eventtap did not exit cleanly after SIGTERM: %v", s.waitErr)
			}
		case <-time.After(30 * time.Second):
			t.Errorf("eventtap did not stop within 30s of SIGTERM")
			_ = s.proc.cmd.Process.Kill()
			<-s.exited
		}
	}
	if t.Failed() {
		t.Logf("eventtap log:\n%s", logExcerpt(s.logs()))
	}
}

// logs returns what the sidecar has written to stderr so far.
func (s *faultSidecar) logs() string { return s.proc.logs() }

// mustBeUp fails the test at once, with the crash, when the sidecar has died.
func (s *faultSidecar) mustBeUp(t testing.TB) {
	t.Helper()
	select {
	case <-s.exited:
		t.Fatalf("eventtap died: %v (its log follows)", s.waitErr)
	default:
	}
}

// fatal fails the test with err, or with the crash when the sidecar died:
// a connection error is often the first sign of one.
func (s *faultSidecar) fatal(t testing.TB, err error) {
	t.Helper()
	select {
	case <-s.exited:
	case <-time.After(time.Second):
	}
	s.mustBeUp(t)
	t.Fatal(err)
}

// metrics scrapes the sidecar's /metrics (see scrape).
func (s *faultSidecar) metrics(t testing.TB) map[string]float64 {
	t.Helper()
	s.mustBeUp(t)
	return scrape(t, s.adminURL)
}

// logExcerpt is the part of a log worth reading: from a Go crash (fatal
// error or panic) on when there is one, else the end.
func logExcerpt(logs string) string {
	lines := strings.Split(strings.TrimRight(logs, "\n"), "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "fatal error:") || strings.HasPrefix(l, "panic:") || strings.HasPrefix(l, "unexpected fault address") {
			start := max(0, i-5)
			return strings.Join(lines[start:min(len(lines), i+40)], "\n")
		}
	}
	return strings.Join(lines[max(0, len(lines)-40):], "\n")
}

// logRecords parses the sidecar's JSON log lines with the given msg.
func logRecords(logs, msg string) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(logs, "\n") {
		var rec map[string]any
		if json.Unmarshal([]byte(line), &rec) == nil && rec["msg"] == msg {
			out = append(out, rec)
		}
	}
	return out
}

// faultEventually polls cond until it holds, failing the test after timeout
// (or at once when the sidecar s, if given, has died).
func faultEventually(t testing.TB, s *faultSidecar, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if s != nil {
			s.mustBeUp(t)
		}
		if time.Now().After(deadline) {
			t.Fatalf("gave up after %v waiting for %s", timeout, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// faultSend makes one request with a bounded client and reads the whole answer.
func faultSend(t testing.TB, method, url, body string) (int, http.Header, []byte) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := faultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading the body: %v", method, url, err)
	}
	return resp.StatusCode, resp.Header, b
}

// createOrder posts an order through the proxy and returns its id.
func createOrder(t testing.TB, s *faultSidecar, body string) string {
	t.Helper()
	code, _, b := faultSend(t, http.MethodPost, s.proxyURL+"/orders", body)
	var order struct{ ID int }
	if code != http.StatusCreated || json.Unmarshal(b, &order) != nil || order.ID == 0 {
		t.Fatalf("POST /orders through the proxy: %d %s", code, b)
	}
	return strconv.Itoa(order.ID)
}

// serveAt serves h on addr ("127.0.0.1:0" for any port) until the test ends.
// Taking a server down and calling serveAt again with its address brings it
// back where clients expect it.
func serveAt(t testing.TB, addr string, h http.Handler) *httptest.Server {
	t.Helper()
	var ln net.Listener
	var err error
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if ln, err = net.Listen("tcp", addr); err == nil || time.Now().After(deadline) {
			break
		}
	}
	if err != nil {
		t.Fatalf("listen on %s again: %v", addr, err)
	}
	srv := httptest.NewUnstartedServer(h)
	srv.Listener.Close()
	srv.Listener = ln
	srv.Start()
	t.Cleanup(srv.Close)
	return srv
}

// rehost puts wrap in front of rc's verifying handler, on a new server that
// rc's URL (and so register) then names.
func rehost(t testing.TB, rc *hookReceiver, wrap func(verify http.Handler) http.Handler) {
	rc.srv = serveAt(t, "127.0.0.1:0", wrap(rc.srv.Config.Handler))
}

// distinct returns deliveries without redeliveries of the same event, in
// order of first arrival.
func distinct(ds []delivery) []delivery {
	seen := map[string]bool{}
	var out []delivery
	for _, d := range ds {
		if !seen[d.payload.ID] {
			seen[d.payload.ID] = true
			out = append(out, d)
		}
	}
	return out
}

func (rc *hookReceiver) rejected() []string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.bad)
}

// subjects returns the subjects of the distinct deliveries of typ.
func (rc *hookReceiver) subjects(typ string) []string {
	var out []string
	for _, d := range distinct(rc.of(typ)) {
		out = append(out, d.payload.Subject)
	}
	sort.Strings(out)
	return out
}

// ---- raw upstreams

// rawServer is an upstream that answers with raw bytes: it reads a request,
// writes answer(request) verbatim, and goes on reading requests on the same
// connection only while the answers are complete keep-alive HTTP messages;
// after anything else it closes the connection. (An upstream that closed a
// connection after an answer the client may take as keep-alive would make
// the client's next request on it fail at random, as with any real server
// that does so.) With a nil answer it accepts connections and never says
// anything.
type rawServer struct {
	ln     net.Listener
	answer func(*http.Request) []byte
	stop   chan struct{}
	once   sync.Once
	wg     sync.WaitGroup
	mu     sync.Mutex
	conns  map[net.Conn]bool
}

func startRaw(t testing.TB, addr string, answer func(*http.Request) []byte) *rawServer {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	r := &rawServer{ln: ln, answer: answer, stop: make(chan struct{}), conns: map[net.Conn]bool{}}
	r.wg.Add(1)
	go r.accept()
	t.Cleanup(r.close)
	return r
}

func (r *rawServer) url() string { return "http://" + r.ln.Addr().String() }

func (r *rawServer) accept() {
	defer r.wg.Done()
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		r.mu.Lock()
		r.conns[c] = true
		r.mu.Unlock()
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			defer func() {
				c.Close()
				r.mu.Lock()
				delete(r.conns, c)
				r.mu.Unlock()
			}()
			if r.answer == nil {
				<-r.stop
				return
			}
			br := bufio.NewReader(c)
			for {
				_ = c.SetDeadline(time.Now().Add(10 * time.Second))
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				body, err := io.ReadAll(req.Body)
				if err != nil {
					return
				}
				req.Body = io.NopCloser(bytes.NewReader(body))
				answer := r.answer(req)
				if _, err := c.Write(answer); err != nil || !keepAlive(answer, req) {
					return
				}
			}
		}()
	}
}

// keepAlive reports whether answer is one complete HTTP response after
// which a client may send its next request on the same connection.
func keepAlive(answer []byte, req *http.Request) bool {
	rd := bytes.NewReader(answer)
	br := bufio.NewReader(rd)
	resp, err := http.ReadResponse(br, req)
	if err != nil {
		return false
	}
	defer resp.Body.Close()
	if _, err := io.Copy(io.Discard, resp.Body); err != nil {
		return false
	}
	// Bytes after the message (a body longer than its Content-Length)
	// would be read as the next answer.
	return !resp.Close && br.Buffered() == 0 && rd.Len() == 0
}

// close stops listening, drops every connection and waits for them.
func (r *rawServer) close() {
	r.once.Do(func() {
		close(r.stop)
		r.ln.Close()
		r.mu.Lock()
		for c := range r.conns {
			c.Close()
		}
		r.mu.Unlock()
		r.wg.Wait()
	})
}
