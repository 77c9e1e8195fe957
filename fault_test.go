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
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
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

// ---- 2. a receiver down for a while, then back

// faultUpdateRules emit one ORDER_UPDATED per PATCH, carrying the request
// body, so that a test can number the events of each subject.
const faultUpdateRules = `rules:
  - name: order-updated
    event: ORDER_UPDATED
    when: {method: PATCH, path: "/orders/{id}", status: 2xx}
    subject: path.id
    data: request.body
`

// outagePlan is how long a receiver stays down and how much traffic the
// sidecar sees meanwhile.
type outagePlan struct {
	outage   time.Duration // the receiver is down this long
	every    time.Duration // one event per subject this often while it is down
	subjects int
	schedule string        // delivery.retry_schedule: must outlast the outage
	drain    time.Duration // the backlog must be delivered this soon after it is back
}

// receiverOutage takes a receiver down while events keep coming, brings it
// back at the same address, and checks that every event arrives, each
// subject's events in the order they happened, without a restart.
func receiverOutage(t *testing.T, plan outagePlan) {
	api := httptest.NewServer(newOrderAPI().handler())
	t.Cleanup(api.Close)
	s := startFault(t, faultConfig{upstream: api.URL, rules: faultUpdateRules,
		delivery: []string{"retry_schedule: " + plan.schedule}})
	rc := newHookReceiver(t)
	hookID := rc.register(t, s.adminURL, "ORDER_UPDATED")
	receiverAddr, verify := rc.srv.Listener.Addr().String(), rc.srv.Config.Handler

	var ids []string
	for range plan.subjects {
		ids = append(ids, createOrder(t, s, `{"total":1}`)) // no rule: no event
	}
	seq := map[string]int{}
	sent := 0
	round := func() {
		for _, id := range ids {
			seq[id]++
			body := fmt.Sprintf(`{"seq":%d}`, seq[id])
			if code, _, b := faultSend(t, http.MethodPatch, s.proxyURL+"/orders/"+id, body); code != http.StatusOK {
				t.Fatalf("PATCH /orders/%s: %d %s", id, code, b)
			}
			sent++
		}
	}

	round()
	rc.waitFor(t, "ORDER_UPDATED", len(ids))

	rc.srv.Close() // connections refused from now on
	downAt := time.Now()
	downSent := 0
	for time.Since(downAt) < plan.outage {
		round()
		downSent += len(ids)
		time.Sleep(plan.every)
	}
	m := s.metrics(t)
	if got := m["eventtap_outbox_pending"]; got != float64(downSent) {
		t.Errorf("eventtap_outbox_pending = %v while the receiver is down, want the %d events sent meanwhile", got, downSent)
	}
	if got := m[`eventtap_delivery_attempts_total{outcome="failure",type="ORDER_UPDATED"}`]; got < float64(len(ids)) {
		t.Errorf("failed attempts = %v while the receiver is down, want at least one per subject (%d)", got, len(ids))
	}
	if got := m["eventtap_outbox_oldest_pending_seconds"]; got < plan.outage.Seconds()/2 {
		t.Errorf("eventtap_outbox_oldest_pending_seconds = %v after a %v outage", got, plan.outage)
	}
	if failed := attemptLogs(t, s, hookID); len(failed) == 0 || failed[0].Succeeded || failed[0].ResponseStatus != nil || failed[0].Error == "" {
		t.Errorf("webhookLogs of the attempts to a receiver that is down: %+v (want failures with no responseStatus and an error)", failed)
	}

	rc.srv = serveAt(t, receiverAddr, verify)
	backAt := time.Now()
	round()
	faultEventually(t, s, plan.drain, fmt.Sprintf("all %d events to arrive after the receiver came back", sent), func() bool {
		return len(distinct(rc.of("ORDER_UPDATED"))) >= sent
	})
	t.Logf("receiver down %v with %d events queued; all %d delivered %v after it came back",
		plan.outage.Round(time.Millisecond), downSent, sent, time.Since(backAt).Round(time.Millisecond))

	// Per subject, first arrivals follow the order of the exchanges.
	order := map[string][]int{}
	for _, d := range distinct(rc.of("ORDER_UPDATED")) {
		order[d.payload.Subject] = append(order[d.payload.Subject], seqOf(t, d))
	}
	for _, id := range ids {
		want := make([]int, seq[id])
		for i := range want {
			want[i] = i + 1
		}
		if !slices.Equal(order[id], want) {
			t.Errorf("subject %s: events arrived as %v, want %v", id, order[id], want)
		}
	}
	if bad := rc.rejected(); len(bad) > 0 {
		t.Errorf("the receiver rejected deliveries: %v", bad)
	}
	faultEventually(t, s, 10*time.Second, "eventtap_outbox_pending to return to 0", func() bool {
		return s.metrics(t)["eventtap_outbox_pending"] == 0
	})
	if got := s.metrics(t)[`eventtap_deliveries_failed_total{type="ORDER_UPDATED"}`]; got != 0 {
		t.Errorf("eventtap_deliveries_failed_total = %v: the schedule gave up during the outage", got)
	}
}

func TestFaultReceiverDown(t *testing.T) {
	receiverOutage(t, outagePlan{
		outage:   6 * time.Second,
		every:    time.Second,
		subjects: 4,
		// 13.5 s of retries: more than the outage, short enough that the
		// backlog starts draining within a second of the receiver's return.
		schedule: "[100ms, 200ms, 400ms, 800ms, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s]",
		drain:    15 * time.Second,
	})
}

// ---- 3. a slow receiver does not starve the others

// TestFaultSlowReceiver subscribes two receivers to the same events: one
// answers only after delivery.timeout, the other at once. The fast one must
// get every event promptly while the slow one's attempts time out and are
// retried, its later events waiting behind the first of each subject.
func TestFaultSlowReceiver(t *testing.T) {
	const timeout = time.Second
	tests := []struct {
		name              string
		workers           int
		subjects, perSubj int
	}{
		// The slow receiver's lanes hold a few of the workers.
		{"few slow lanes", 8, 2, 4},
		// The slow receiver has more lanes than there are workers: one
		// slow endpoint must still not hold every worker.
		{"slow lanes outnumber workers", 4, 8, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			api := httptest.NewServer(newOrderAPI().handler())
			t.Cleanup(api.Close)
			s := startFault(t, faultConfig{upstream: api.URL, rules: faultUpdateRules, delivery: []string{
				fmt.Sprintf("timeout: %v", timeout), fmt.Sprintf("workers: %d", tt.workers),
				"retry_schedule: [200ms, 200ms, 200ms, 200ms, 200ms, 200ms, 200ms, 200ms, 200ms, 200ms]"}})

			fast := newHookReceiver(t)
			var mu sync.Mutex
			arrived := map[string]time.Time{} // webhook-id → first arrival at the fast receiver
			rehost(t, fast, func(verify http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					mu.Lock()
					if id := r.Header.Get("webhook-id"); arrived[id].IsZero() {
						arrived[id] = time.Now()
					}
					mu.Unlock()
					verify.ServeHTTP(w, r)
				})
			})
			slow := newHookReceiver(t)
			rehost(t, slow, func(verify http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					// Verified and recorded as an attempt, then answered too late.
					verify.ServeHTTP(httptest.NewRecorder(), r)
					select {
					case <-r.Context().Done():
					case <-time.After(10 * time.Second):
					}
				})
			})
			fast.register(t, s.adminURL, "ORDER_UPDATED")
			slowID := slow.register(t, s.adminURL, "ORDER_UPDATED")

			var ids []string
			for range tt.subjects {
				ids = append(ids, createOrder(t, s, `{"total":1}`))
			}
			sentAt := map[string]time.Time{} // "subject/seq" → when the client sent the exchange
			for n := 1; n <= tt.perSubj; n++ {
				for _, id := range ids {
					key := fmt.Sprintf("%s/%d", id, n)
					sentAt[key] = time.Now()
					if code, _, b := faultSend(t, http.MethodPatch, s.proxyURL+"/orders/"+id, fmt.Sprintf(`{"seq":%d}`, n)); code != http.StatusOK {
						t.Fatalf("PATCH %s: %d %s", key, code, b)
					}
					time.Sleep(100 * time.Millisecond)
				}
			}
			total := tt.subjects * tt.perSubj
			faultEventually(t, s, 10*time.Second, "the fast receiver to get every event", func() bool {
				return len(distinct(fast.of("ORDER_UPDATED"))) == total
			})
			var worst time.Duration
			for _, d := range distinct(fast.of("ORDER_UPDATED")) {
				key := d.payload.Subject + "/" + strconv.Itoa(seqOf(t, d))
				mu.Lock()
				lag := arrived[d.payload.ID].Sub(sentAt[key])
				mu.Unlock()
				worst = max(worst, lag)
			}
			if worst > timeout/2 {
				t.Errorf("the fast receiver waited up to %v for an event while the slow one was timing out "+
					"(delivery.timeout %v, %d workers, %d slow lanes)", worst.Round(time.Millisecond), timeout, tt.workers, tt.subjects)
			} else {
				t.Logf("fast receiver: every event within %v", worst.Round(time.Millisecond))
			}

			// The slow receiver's attempts time out and are retried, and only
			// the first event of each subject is ever attempted there.
			attempts := func() map[string]int {
				n := map[string]int{}
				for _, d := range slow.of("ORDER_UPDATED") {
					n[d.payload.ID]++
				}
				return n
			}
			faultEventually(t, s, 15*time.Second, "the first event of every subject to be attempted twice at the slow receiver", func() bool {
				a := attempts()
				for _, n := range a {
					if n < 2 {
						return false
					}
				}
				return len(a) >= tt.subjects
			})
			for _, d := range slow.of("ORDER_UPDATED") {
				if seq := seqOf(t, d); seq != 1 {
					t.Errorf("the slow receiver got event %d of subject %s before the first was delivered", seq, d.payload.Subject)
				}
			}
			if n := len(attempts()); n != tt.subjects {
				t.Errorf("the slow receiver got attempts of %d events, want the first of each of %d subjects", n, tt.subjects)
			}
			for _, n := range attemptLogs(t, s, slowID) {
				if n.Succeeded || n.ResponseStatus != nil || !strings.Contains(n.Error, "delivery.timeout") || n.DurationMs < int(timeout.Milliseconds())*9/10 {
					t.Errorf("log of an attempt at the slow receiver: %+v, want a timeout after ~%v", n, timeout)
				}
			}
			// An attempt is counted when it has timed out and been recorded.
			faultEventually(t, s, 2*timeout+time.Second, fmt.Sprintf("%d failed attempts to be counted", 2*tt.subjects), func() bool {
				return s.metrics(t)[`eventtap_delivery_attempts_total{outcome="failure",type="ORDER_UPDATED"}`] >= float64(2*tt.subjects)
			})
			m := s.metrics(t)
			if got := m[`eventtap_delivery_attempts_total{outcome="success",type="ORDER_UPDATED"}`]; got != float64(total) {
				t.Errorf("successful attempts = %v, want %d (the fast receiver's)", got, total)
			}
			if got := m["eventtap_outbox_pending"]; got != float64(total) {
				t.Errorf("eventtap_outbox_pending = %v, want the slow receiver's %d", got, total)
			}
		})
	}
}

// attemptLog is what webhookLogs says of one delivery attempt.
type attemptLog struct {
	Succeeded      bool
	ResponseStatus *int
	Error          string
	DurationMs     int
}

// attemptLogs returns the newest 100 attempt logs of a webhook.
func attemptLogs(t testing.TB, s *faultSidecar, hookID string) []attemptLog {
	t.Helper()
	var page struct{ Edges []struct{ Node attemptLog } }
	gql(t, s.adminURL, `query($id: ID!) { webhookLogs(first: 100, filter: {webhookId: $id}) { edges { node { succeeded responseStatus error durationMs } } } }`,
		map[string]any{"id": hookID}).into(t, "webhookLogs", &page)
	out := make([]attemptLog, 0, len(page.Edges))
	for _, e := range page.Edges {
		out = append(out, e.Node)
	}
	return out
}

// seqOf returns the "seq" a faultUpdateRules event carries.
func seqOf(t testing.TB, d delivery) int {
	t.Helper()
	var data struct{ Seq int }
	if err := json.Unmarshal(d.payload.Data, &data); err != nil {
		t.Fatalf("event data %s: %v", d.payload.Data, err)
	}
	return data.Seq
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

// ---- 5. the data directory's disk full

// mountTmpfs mounts a tmpfs of the given size (e.g. "16m") for the test, or
// skips the test when that is not allowed (it needs root).
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("runs the eventtap binary; skipped with -short")
	}
	dir := filepath.Join(t.TempDir(), "tmpfs")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a %s tmpfs to fill (needs root): %v: %s", size, err, bytes.TrimSpace(out))
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, bytes.TrimSpace(out))
			_ = exec.Command("umount", "-l", dir).Run()
		}
	})
	return dir
}

// fillDisk writes a file into dir until the file system has no room left,
// and returns its path.
func fillDisk(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "filler")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var n int64
	for _, chunk := range []int{1 << 20, 4 << 10, 1} {
		buf := make([]byte, chunk)
		for range 1 << 12 { // bounded: the tmpfs is small
			w, err := f.Write(buf)
			n += int64(w)
			if errors.Is(err, syscall.ENOSPC) {
				break
			}
			if err != nil {
				t.Fatalf("filling %s: %v", dir, err)
			}
		}
	}
	if _, err := f.Write([]byte{0}); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("%s still takes writes after %d bytes of filler (%v)", dir, n, err)
	}
	t.Logf("filled %s with %d bytes: writes now fail with ENOSPC", dir, n)
	return path
}

// TestFaultDiskFull fills the file system of storage.dir while tapped
// traffic flows. With on_outbox_error: pass the clients keep getting the
// upstream's answers and the lost events are counted; with reject they get
// 503. Once space is freed, events are committed and delivered again,
// without a restart.
func TestFaultDiskFull(t *testing.T) {
	rejected := `{"error":"events could not be recorded","reason":"outbox error"}`
	for _, policy := range []string{"pass", "reject"} {
		t.Run(policy, func(t *testing.T) {
			mnt := mountTmpfs(t, "16m")
			api := httptest.NewServer(newOrderAPI().handler())
			t.Cleanup(api.Close)
			s := startFault(t, faultConfig{upstream: api.URL, rules: readFile(t, "docs/examples/orders.rules.yaml"),
				proxy: []string{"on_outbox_error: " + policy}, dataDir: filepath.Join(mnt, "data")})
			rc := newHookReceiver(t)
			rc.register(t, s.adminURL, "ORDER_CREATED")
			createOrder(t, s, `{"total":1}`)
			rc.waitFor(t, "ORDER_CREATED", 1)
			faultEventually(t, s, 5*time.Second, "the first delivery to be recorded", func() bool {
				m := s.metrics(t)
				return m["eventtap_outbox_pending"] == 0 && m[`eventtap_delivery_attempts_total{outcome="success",type="ORDER_CREATED"}`] == 1
			})

			filler := fillDisk(t, mnt)
			dropped := func() float64 { return s.metrics(t)[`eventtap_events_dropped_total{reason="outbox_error"}`] }
			pad := strings.Repeat("x", 1024) // each exchange needs new pages of the outbox's log
			var created, refused int
			deadline := time.Now().Add(20 * time.Second)
			for i := 0; i < 300 && time.Now().Before(deadline); i++ {
				req, _ := http.NewRequest(http.MethodPost, s.proxyURL+"/orders", strings.NewReader(`{"note":"`+pad+`"}`))
				req.Header.Set("Content-Type", "application/json")
				var b []byte
				resp, err := faultClient.Do(req)
				if err == nil {
					b, err = io.ReadAll(resp.Body)
					resp.Body.Close()
				}
				if err != nil {
					s.fatal(t, fmt.Errorf("exchange %d with the disk full (%d answered 201, %d 503 before it): %w", i+1, created, refused, err))
				}
				switch {
				case resp.StatusCode == http.StatusCreated && bytes.Contains(b, []byte(`"note":"`+pad)):
					created++
				case policy == "reject" && resp.StatusCode == http.StatusServiceUnavailable && string(b) == rejected:
					refused++
				default:
					t.Fatalf("POST /orders with the disk full (%s): %d %.200s", policy, resp.StatusCode, b)
				}
				if i%10 == 9 && dropped() > 0 && (policy == "pass" || refused > 0) {
					break
				}
			}
			lost := dropped()
			t.Logf("with the disk full: %d answered 201, %d answered 503; %v events dropped", created, refused, lost)
			if lost == 0 {
				t.Fatalf("no event counted in eventtap_events_dropped_total{reason=\"outbox_error\"} after %d exchanges with the disk full", created+refused)
			}
			if policy == "reject" && refused == 0 {
				t.Fatal("on_outbox_error: reject never answered 503 with the disk full")
			}

			// Space comes back: writing resumes without a restart.
			if err := os.Remove(filler); err != nil {
				t.Fatal(err)
			}
			var id string
			faultEventually(t, s, 15*time.Second, "an event to be committed again after space was freed", func() bool {
				before := s.metrics(t)[`eventtap_events_total{rule="order-created",type="ORDER_CREATED"}`]
				code, _, b := faultSend(t, http.MethodPost, s.proxyURL+"/orders", `{"total":2}`)
				var order struct{ ID int }
				if code != http.StatusCreated || json.Unmarshal(b, &order) != nil {
					return false
				}
				id = strconv.Itoa(order.ID)
				return s.metrics(t)[`eventtap_events_total{rule="order-created",type="ORDER_CREATED"}`] > before
			})
			resumed := dropped()
			next := createOrder(t, s, `{"total":3}`)
			for _, order := range []string{id, next} {
				faultEventually(t, s, 10*time.Second, "order "+order+"'s event to be delivered", func() bool {
					return slices.Contains(rc.subjects("ORDER_CREATED"), order)
				})
			}
			if got := dropped(); got != resumed {
				t.Errorf("eventtap_events_dropped_total went from %v to %v after writing resumed", resumed, got)
			}
		})
	}
}

// ---- 6. a truncated or invalid rules file on reload

const (
	faultRulesV1 = `rules:
  - name: order-created
    event: ORDER_CREATED
    when: {method: POST, path: /orders, status: 201}
    subject: response.body.id
`
	faultRulesV2 = `rules:
  - name: order-created-v2
    event: ORDER_CREATED
    when: {method: POST, path: /orders, status: 201}
    subject: response.body.id
  - name: order-canceled
    event: ORDER_CANCELED
    when: {method: POST, path: "/orders/{id}/cancel"}
    subject: path.id
`
)

// replaceFile writes data to a temporary file beside path and renames it
// over path, as editors and ConfigMap updates do, so that a reader sees the
// old content or the new, never a half-written one.
func replaceFile(t testing.TB, path string, data []byte) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// TestFaultRulesReload replaces the rules file of a running sidecar with
// broken ones (testdata/fault/reload/*.yaml): each is refused as a whole,
// its problems are logged as FILE:LINE:COL lines (golden files beside
// them, RULES standing for the rules file's path) and counted, and traffic
// keeps producing the old rules' events. A later valid file is picked up.
func TestFaultRulesReload(t *testing.T) {
	files, _ := filepath.Glob("testdata/fault/reload/*.yaml")
	if len(files) == 0 {
		t.Fatal("no broken rules files in testdata/fault/reload")
	}
	api := httptest.NewServer(newOrderAPI().handler())
	t.Cleanup(api.Close)
	s := startFault(t, faultConfig{upstream: api.URL, rules: faultRulesV1})
	rc := newHookReceiver(t)
	rc.register(t, s.adminURL, "ORDER_CREATED")
	failures := func() float64 { return s.metrics(t)[`eventtap_rules_reloads_total{result="failure"}`] }
	successes := func() float64 { return s.metrics(t)[`eventtap_rules_reloads_total{result="success"}`] }
	// expectEvent creates an order and checks which rule its event came from.
	expectEvent := func(t *testing.T, rule string) {
		t.Helper()
		id := createOrder(t, s, `{"total":1}`)
		var got *delivery
		faultEventually(t, s, 10*time.Second, "the event of order "+id, func() bool {
			for _, d := range rc.of("ORDER_CREATED") {
				if d.payload.Subject == id {
					got = &d
				}
			}
			return got != nil
		})
		if got.payload.Rule != rule {
			t.Errorf("order %s's event came from rule %q, want %q", id, got.payload.Rule, rule)
		}
	}
	expectEvent(t, "order-created")
	posRE := regexp.MustCompile(`^RULES:\d+:\d+: \S`)

	// refused waits for one more failed reload after trigger and checks its
	// log lines against golden.
	refused := func(t *testing.T, golden string, trigger func()) {
		t.Helper()
		before, logged := failures(), len(s.logs())
		trigger()
		faultEventually(t, s, 5*time.Second, "the reload to be refused and counted", func() bool { return failures() == before+1 })
		if got := s.metrics(t)["eventtap_rules_loaded"]; got != 1 {
			t.Errorf("eventtap_rules_loaded = %v after a refused reload, want the old set's 1", got)
		}
		logs := s.logs()[logged:]
		var b strings.Builder
		for _, rec := range logRecords(logs, "invalid rules") {
			msg, _ := rec["error"].(string)
			line := strings.ReplaceAll(msg, s.rulesPath, "RULES")
			if !posRE.MatchString(line) {
				t.Errorf("logged problem %q is not FILE:LINE:COL: message", msg)
			}
			fmt.Fprintln(&b, line)
		}
		summary := logRecords(logs, "reloading rules failed; the active rules stay")
		if len(summary) != 1 || summary[0]["active_rules"] != 1.0 || summary[0]["problems"] != float64(strings.Count(b.String(), "\n")) {
			t.Errorf("reload failure summary logged as %v, want one line with active_rules 1 and the number of problems", summary)
		}
		if *update {
			if err := os.WriteFile(golden, []byte(b.String()), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		want, err := os.ReadFile(golden)
		if err != nil {
			t.Fatalf("%v (run go test -run TestFaultRulesReload -update)", err)
		}
		if b.String() != string(want) {
			t.Errorf("logged problems:\n%s\nwant (%s):\n%s", b.String(), golden, want)
		}
		expectEvent(t, "order-created")
	}

	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			refused(t, strings.TrimSuffix(f, ".yaml")+".golden", func() { replaceFile(t, s.rulesPath, data) })
		})
	}
	t.Run("SIGHUP with the broken file still there", func(t *testing.T) {
		last := files[len(files)-1]
		refused(t, strings.TrimSuffix(last, ".yaml")+".golden", func() {
			if err := s.proc.cmd.Process.Signal(syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
		})
	})
	t.Run("a valid file is picked up", func(t *testing.T) {
		before := successes()
		replaceFile(t, s.rulesPath, []byte(faultRulesV2))
		faultEventually(t, s, 5*time.Second, "the valid rules to be loaded", func() bool { return successes() == before+1 })
		if got := s.metrics(t)["eventtap_rules_loaded"]; got != 2 {
			t.Errorf("eventtap_rules_loaded = %v, want 2", got)
		}
		expectEvent(t, "order-created-v2")
	})
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
