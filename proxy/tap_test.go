package proxy

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eventtap/eventtap/rules"
)

func ordersRules() *fakeRules {
	return &fakeRules{routes: []fakeRoute{
		{method: "POST", prefix: "/orders", template: "/orders"},
		{method: "GET", prefix: "/download", template: "/download"},
		{method: "POST", prefix: "/upload", template: "/upload"},
		{method: "GET", prefix: "/gzip", template: "/gzip"},
		{method: "GET", prefix: "/sse", template: "/sse"},
	}}
}

func TestCaptureExchange(t *testing.T) {
	e := newEnv(t, ordersRules(), nil)
	hdr := http.Header{"Content-Type": {"application/json"}, "Idempotency-Key": {"k1"}}
	resp, b := e.do(e.proxyURL, "POST", "/orders?src=web", hdr, strings.NewReader(`{"status":"OPEN"}`))
	if resp.StatusCode != 201 || string(b) != orderJSON {
		t.Fatalf("got %d %s", resp.StatusCode, b)
	}
	if resp.Header.Get("Content-Length") != strconv.Itoa(len(orderJSON)) {
		t.Errorf("Content-Length %q not kept on a captured route", resp.Header.Get("Content-Length"))
	}
	ex := e.rules.waitExchanges(t, 1)[0]
	if ex.Request.Method != "POST" || ex.Request.Path != "/orders" || ex.Request.RawQuery != "src=web" {
		t.Errorf("request line: %+v", ex.Request)
	}
	if string(ex.Request.Body) != `{"status":"OPEN"}` || ex.Request.Truncated {
		t.Errorf("request body %q truncated=%v", ex.Request.Body, ex.Request.Truncated)
	}
	if ex.Request.Header.Get("Idempotency-Key") != "k1" {
		t.Errorf("request header not captured: %v", ex.Request.Header)
	}
	if ex.Response.Status != 201 || string(ex.Response.Body) != orderJSON || ex.Response.Truncated {
		t.Errorf("response %d %q truncated=%v", ex.Response.Status, ex.Response.Body, ex.Response.Truncated)
	}
	if ex.Response.Header.Get("Location") != "/orders/42" {
		t.Errorf("response header not captured: %v", ex.Response.Header)
	}
	if ex.Start.IsZero() || ex.End.Before(ex.Start) {
		t.Errorf("times: %v .. %v", ex.Start, ex.End)
	}
	if e.commit.count() != 1 {
		t.Errorf("commits = %d, want 1", e.commit.count())
	}
	// A request no rule can match is not captured.
	e.do(e.proxyURL, "GET", "/orders/42", nil, nil)
	if n := len(e.rules.exchanges()); n != 1 {
		t.Errorf("evaluated %d exchanges, want 1", n)
	}
}

func TestCaptureDecodesGzip(t *testing.T) {
	e := newEnv(t, ordersRules(), nil)
	resp, b := e.do(e.proxyURL, "GET", "/gzip", http.Header{"Accept-Encoding": {"gzip"}}, nil)
	if resp.Header.Get("Content-Encoding") != "gzip" || string(b) != string(e.up.gz) {
		t.Fatalf("client did not get the compressed bytes")
	}
	ex := e.rules.waitExchanges(t, 1)[0]
	if want := strings.Repeat(orderJSON, 20); string(ex.Response.Body) != want || ex.Response.Truncated {
		t.Errorf("rules saw %d bytes (truncated %v), want the decoded %d", len(ex.Response.Body), ex.Response.Truncated, len(want))
	}
}

// TestLargeUpload streams 32 MiB through a captured route and checks that
// the proxy neither buffers it nor changes it.
func TestLargeUpload(t *testing.T) {
	e := newEnv(t, ordersRules(), nil)
	const size = 32 << 20
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	req, _ := http.NewRequest("POST", e.proxyURL+"/upload", io.LimitReader(newPattern(), size))
	req.ContentLength = size
	resp, err := e.client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	runtime.ReadMemStats(&after)
	var got struct {
		Len int64
		SHA string
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("%v: %s", err, b)
	}
	if got.Len != size || got.SHA != patternSHA(size) {
		t.Fatalf("upstream got %d bytes, sha %s", got.Len, got.SHA)
	}
	// Client, proxy and upstream share this process: everything they
	// allocated together must stay far below the body's size.
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > size/4 {
		t.Errorf("allocated %d MiB while streaming a %d MiB body", alloc>>20, size>>20)
	}
	ex := e.rules.waitExchanges(t, 1)[0]
	if !ex.Request.Truncated || int64(len(ex.Request.Body)) != e.p.cfg.MaxCaptureBytes {
		t.Errorf("captured %d bytes, truncated %v", len(ex.Request.Body), ex.Request.Truncated)
	}
}

func TestLargeDownloadCaptured(t *testing.T) {
	e := newEnv(t, ordersRules(), nil)
	const size = 8 << 20
	resp, b := e.do(e.proxyURL, "GET", "/download?n="+strconv.Itoa(size), nil, nil)
	if resp.ContentLength != size || resp.Header.Get("Content-Length") != strconv.Itoa(size) {
		t.Errorf("Content-Length %q not kept", resp.Header.Get("Content-Length"))
	}
	if len(b) != size || sha(b) != patternSHA(size) {
		t.Fatalf("body differs (%d bytes)", len(b))
	}
	ex := e.rules.waitExchanges(t, 1)[0]
	if !ex.Response.Truncated || int64(len(ex.Response.Body)) != e.p.cfg.MaxCaptureBytes {
		t.Errorf("captured %d bytes, truncated %v", len(ex.Response.Body), ex.Response.Truncated)
	}
	// A body just over the limit, of unknown length to the tap until read.
	resp, b = e.do(e.proxyURL, "GET", "/download?n="+strconv.Itoa(int(e.p.cfg.MaxCaptureBytes)+1), nil, nil)
	if len(b) != int(e.p.cfg.MaxCaptureBytes)+1 || resp.StatusCode != 200 {
		t.Errorf("just over the limit: %d bytes", len(b))
	}
}

// TestDurability checks when the client gets a matched response relative to
// the commit of its events.
func TestDurability(t *testing.T) {
	for _, mode := range []string{DurabilitySync, DurabilityAsync} {
		t.Run(mode, func(t *testing.T) {
			c := &fakeCommitter{release: make(chan struct{}), entered: make(chan struct{}, 1)}
			e := newEnv(t, ordersRules(), c, func(cfg *Config, _ *[]Option) { cfg.Durability = mode })
			type result struct {
				status int
				body   string
			}
			got := make(chan result, 1)
			go func() {
				resp, err := e.client.Post(e.proxyURL+"/orders", "application/json", strings.NewReader(`{}`))
				if err != nil {
					got <- result{status: -1, body: err.Error()}
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				got <- result{resp.StatusCode, string(b)}
			}()
			select {
			case <-c.entered:
			case <-time.After(5 * time.Second):
				t.Fatal("Commit was not called")
			}
			switch mode {
			case DurabilitySync:
				select {
				case r := <-got:
					t.Fatalf("response released before the commit returned: %+v", r)
				case <-time.After(300 * time.Millisecond):
				}
				close(c.release)
				r := <-got
				if r.status != 201 || r.body != orderJSON {
					t.Fatalf("after commit: %+v", r)
				}
			case DurabilityAsync:
				select {
				case r := <-got:
					if r.status != 201 || r.body != orderJSON {
						t.Fatalf("got %+v", r)
					}
				case <-time.After(3 * time.Second):
					t.Fatal("async held the response until the commit")
				}
				if c.count() != 0 {
					t.Fatal("commit finished before release")
				}
				close(c.release)
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				if err := e.p.tasks.wait(ctx); err != nil {
					t.Fatal(err)
				}
			}
			if c.count() != 1 {
				t.Errorf("commits = %d, want 1", c.count())
			}
		})
	}
}

func TestOutboxError(t *testing.T) {
	cases := []struct {
		policy     string
		durability string
		wantStatus int
		wantBody   string
	}{
		{OnOutboxErrorPass, DurabilitySync, 201, orderJSON},
		{OnOutboxErrorReject, DurabilitySync, 503, string(bodyRejected)},
		{OnOutboxErrorReject, DurabilityAsync, 201, orderJSON}, // already released
	}
	for _, c := range cases {
		t.Run(c.policy+"/"+c.durability, func(t *testing.T) {
			e := newEnv(t, ordersRules(), &fakeCommitter{err: errOutbox}, func(cfg *Config, _ *[]Option) {
				cfg.OnOutboxError = c.policy
				cfg.Durability = c.durability
			})
			resp, b := e.do(e.proxyURL, "POST", "/orders", nil, strings.NewReader(`{}`))
			if resp.StatusCode != c.wantStatus || string(b) != c.wantBody {
				t.Fatalf("got %d %s, want %d %s", resp.StatusCode, b, c.wantStatus, c.wantBody)
			}
			if c.wantStatus == 503 && resp.Header.Get("Content-Type") != "application/json" {
				t.Errorf("503 content type %q", resp.Header.Get("Content-Type"))
			}
			waitFor(t, "the drop to be counted", func() bool {
				return e.metric("eventtap_events_dropped_total", map[string]string{"reason": "outbox_error"}) == 1
			})
		})
	}
}

// TestTapFailsOpen makes every part of the tap panic and checks that the
// client still gets the upstream's response.
func TestTapFailsOpen(t *testing.T) {
	cases := []struct {
		name  string
		rules func(*fakeRules)
		c     *fakeCommitter
	}{
		{"route panics", func(r *fakeRules) { r.panicRoute = true }, &fakeCommitter{}},
		{"evaluate panics", func(r *fakeRules) { r.panicEval = true }, &fakeCommitter{}},
		{"commit panics", func(*fakeRules) {}, &fakeCommitter{panics: true}},
	}
	for _, c := range cases {
		for _, durability := range []string{DurabilitySync, DurabilityAsync} {
			t.Run(c.name+"/"+durability, func(t *testing.T) {
				r := ordersRules()
				c.rules(r)
				e := newEnv(t, r, c.c, func(cfg *Config, _ *[]Option) {
					cfg.Durability = durability
					cfg.OnOutboxError = OnOutboxErrorReject
				})
				resp, b := e.do(e.proxyURL, "POST", "/orders", nil, strings.NewReader(`{}`))
				if resp.StatusCode != 201 || string(b) != orderJSON || resp.ContentLength != int64(len(orderJSON)) {
					t.Fatalf("got %d %s", resp.StatusCode, b)
				}
				waitFor(t, "the panic to be counted", func() bool {
					return e.metric("eventtap_events_dropped_total", map[string]string{"reason": "tap_panic"}) >= 1
				})
			})
		}
	}
}

func TestRuleErrors(t *testing.T) {
	r := ordersRules()
	r.events = func(*rules.Exchange) ([]rules.Event, []error) {
		return nil, []error{ruleErr{"order-created"}, &rules.EvalError{Rule: "order-created", Err: io.EOF}, io.EOF}
	}
	e := newEnv(t, r, nil)
	resp, _ := e.do(e.proxyURL, "POST", "/orders", nil, strings.NewReader(`{}`))
	if resp.StatusCode != 201 {
		t.Fatalf("got %d", resp.StatusCode)
	}
	if v := e.metric("eventtap_rule_errors_total", map[string]string{"rule": "order-created"}); v != 2 {
		t.Errorf("rule errors{order-created} = %v, want 2", v)
	}
	if v := e.metric("eventtap_rule_errors_total", map[string]string{"rule": "unknown"}); v != 1 {
		t.Errorf("rule errors{unknown} = %v, want 1", v)
	}
	if e.commit.count() != 0 {
		t.Errorf("committed although no events")
	}
}

func TestRequestMetrics(t *testing.T) {
	e := newEnv(t, ordersRules(), nil)
	e.do(e.proxyURL, "POST", "/orders", nil, strings.NewReader(`{}`))
	e.do(e.proxyURL, "GET", "/orders/1", nil, nil)
	e.do(e.proxyURL, "GET", "/orders/2", nil, nil)
	e.do(e.proxyURL, "BREW", "/echo/x", nil, nil)
	e.do(e.proxyURL, "GET", "/nowhere", nil, nil)
	for _, c := range []struct {
		labels map[string]string
		want   float64
	}{
		{map[string]string{"method": "POST", "route": "/orders", "code": "201"}, 1},
		{map[string]string{"method": "GET", "route": "other", "code": "200"}, 2},
		{map[string]string{"method": "OTHER", "route": "other", "code": "200"}, 1},
		{map[string]string{"method": "GET", "route": "other", "code": "404"}, 1},
	} {
		if v := e.metric("eventtap_proxy_requests_total", c.labels); v != c.want {
			t.Errorf("requests%v = %v, want %v", c.labels, v, c.want)
		}
	}
	if v := e.metric("eventtap_proxy_request_duration_seconds", map[string]string{"route": "/orders"}); v != 1 {
		t.Errorf("duration{/orders} count = %v, want 1", v)
	}
	if v := e.metric("eventtap_proxy_request_duration_seconds", map[string]string{"route": "other"}); v != 4 {
		t.Errorf("duration{other} count = %v, want 4", v)
	}
}

// TestRunShutdown serves on a real listener through Run's code path and
// checks the order of shutdown.
func TestRunShutdown(t *testing.T) {
	t.Run("in-flight and async commits finish", func(t *testing.T) {
		c := &fakeCommitter{release: make(chan struct{}), entered: make(chan struct{}, 4)}
		up := newUpstream(t)
		p, addr, done, cancel := runProxy(t, up, ordersRules(), c, func(cfg *Config, _ *[]Option) { cfg.Durability = DurabilityAsync })
		_ = p
		client := newClient()
		// A streaming request in flight, and a released response whose
		// commit is still pending.
		streamResp, err := client.Get("http://" + addr + "/stream")
		if err != nil {
			t.Fatal(err)
		}
		defer streamResp.Body.Close()
		resp, err := client.Post("http://"+addr+"/orders", "application/json", strings.NewReader(`{}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		<-c.entered
		cancel()

		select {
		case <-done.done:
			t.Fatalf("Run returned with work in flight: %v", done.err)
		case <-time.After(200 * time.Millisecond):
		}
		if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			t.Error("still accepting connections after shutdown began")
		}
		up.open()
		if b, err := io.ReadAll(streamResp.Body); err != nil || !strings.Contains(string(b), `{"n":2}`) {
			t.Errorf("in-flight stream: %q %v", b, err)
		}
		select {
		case <-done.done:
			t.Fatalf("Run returned before the async commit finished: %v", done.err)
		case <-time.After(200 * time.Millisecond):
		}
		close(c.release)
		done.wait(t, "Run did not return")
		if c.count() != 1 {
			t.Errorf("commits = %d, want 1", c.count())
		}
	})
	t.Run("deadline closes stragglers", func(t *testing.T) {
		up := newUpstream(t)
		_, addr, done, cancel := runProxy(t, up, nil, nil, func(_ *Config, o *[]Option) {
			*o = append(*o, WithShutdownTimeout(200*time.Millisecond))
		})
		resp, err := newClient().Get("http://" + addr + "/stream")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		start := time.Now()
		cancel()
		done.wait(t, "Run did not return after the shutdown deadline")
		if d := time.Since(start); d < 150*time.Millisecond {
			t.Errorf("returned after %v, before the deadline", d)
		}
	})
	t.Run("websocket sessions are closed", func(t *testing.T) {
		up := newUpstream(t)
		_, addr, done, cancel := runProxy(t, up, nil, nil)
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_, _ = io.WriteString(conn, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
			"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: http://localhost/\r\n\r\n")
		_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 12)
		if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != "HTTP/1.1 101" {
			t.Fatalf("handshake: %q %v", buf, err)
		}
		cancel()
		done.wait(t, "Run did not return with a WebSocket open")
	})
}

// runProxy runs p on a real listener via Serve, which Run uses
// after listening on cfg.Listen.
func runProxy(t *testing.T, up *upstream, r *fakeRules, c *fakeCommitter, mods ...envOption) (*Proxy, string, *runResult, context.CancelFunc) {
	t.Helper()
	r, c, cfg := testSetup(r, c, up.srv.URL)
	var opts []Option
	for _, m := range mods {
		m(&cfg, &opts)
	}
	p, err := New(cfg, testLogger(t), nil, r, c, opts...)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r2 := &runResult{done: make(chan struct{})}
	go func() {
		r2.err = p.Serve(ctx, ln)
		close(r2.done)
	}()
	t.Cleanup(func() {
		cancel()
		up.open()
		select {
		case <-r2.done:
		case <-time.After(30 * time.Second):
			t.Error("Run did not return")
		}
	})
	return p, ln.Addr().String(), r2, cancel
}

// runResult is what Serve returned, once done is closed.
type runResult struct {
	done chan struct{}
	err  error
}

// wait fails the test with msg unless Serve returns, without an
// error, within 5 seconds.
func (r *runResult) wait(t *testing.T, msg string) {
	t.Helper()
	select {
	case <-r.done:
		if r.err != nil {
			t.Fatal(r.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal(msg)
	}
}

func TestRunListenError(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	cfg := DefaultConfig()
	cfg.Listen = ln.Addr().String()
	p, err := New(cfg, nil, nil, &fakeRules{}, &fakeCommitter{})
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Run(t.Context()); err == nil || !strings.Contains(err.Error(), "listen") {
		t.Fatalf("Run on a busy port: %v", err)
	}
}

func TestNewRejectsBadInput(t *testing.T) {
	bad := DefaultConfig()
	bad.Upstream = "ftp://x"
	if _, err := New(bad, nil, nil, &fakeRules{}, &fakeCommitter{}); err == nil {
		t.Error("bad config accepted")
	}
	if _, err := New(DefaultConfig(), nil, nil, nil, &fakeCommitter{}); err == nil {
		t.Error("nil rules accepted")
	}
}

// TestSetRulesInitialisesRuleErrors: every rule's
// eventtap_rule_errors_total{rule} exists at 0, and a removed rule loses
// its series.
func TestSetRulesInitialisesRuleErrors(t *testing.T) {
	e := newEnv(t, nil, nil)
	count := func(rule string) (float64, bool) {
		mfs, err := e.reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			if mf.GetName() != "eventtap_rule_errors_total" {
				continue
			}
			for _, m := range mf.GetMetric() {
				if m.GetLabel()[0].GetValue() == rule {
					return m.GetCounter().GetValue(), true
				}
			}
		}
		return 0, false
	}
	e.p.SetRules([]string{"a", "b"})
	for _, r := range []string{"a", "b"} {
		if v, ok := count(r); !ok || v != 0 {
			t.Errorf("rule %s: %v present %v, want 0", r, v, ok)
		}
	}
	e.p.SetRules([]string{"a", "c"})
	if _, ok := count("b"); ok {
		t.Error("a removed rule kept its series")
	}
	if v, ok := count("c"); !ok || v != 0 {
		t.Errorf("rule c: %v present %v, want 0", v, ok)
	}
}
