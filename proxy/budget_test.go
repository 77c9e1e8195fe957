package proxy

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countingUpstream answers uploads with their length and SHA-256, and
// counts the body bytes it has received from all of them, so that a test
// knows when the proxy has read what the clients sent.
func countingUpstream(t *testing.T) (*httptest.Server, *atomic.Int64) {
	var got atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		buf := make([]byte, 16<<10)
		var n int64
		for {
			k, err := r.Body.Read(buf)
			h.Write(buf[:k])
			n += int64(k)
			got.Add(int64(k))
			if err != nil {
				break
			}
		}
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"len":%d,"sha":%q}`, n, hex.EncodeToString(h.Sum(nil)))
	}))
	t.Cleanup(srv.Close)
	return srv, &got
}

// liveHeap returns the bytes of live heap objects after a collection.
func liveHeap() int64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// slowUploads opens n connections that each declare a body of declared
// bytes on path and send the first sent bytes of it, then calls stalled
// once the upstream has received all of those, and then lets every client
// finish. It returns the heap growth measured while they were stalled and
// fails the test unless every client got its full, correct answer.
func slowUploads(t *testing.T, addr, path string, n int, declared, sent int64, received *atomic.Int64, stalled func()) int64 {
	t.Helper()
	base := received.Load()
	before := liveHeap()
	release := make(chan struct{})
	errs := make(chan error, n)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- slowUpload(addr, path, declared, sent, release)
		}()
	}
	deadline := time.Now().Add(60 * time.Second)
	for received.Load()-base < int64(n)*sent {
		if time.Now().After(deadline) {
			close(release)
			t.Fatalf("the upstream got %d of %d bytes", received.Load()-base, int64(n)*sent)
		}
		time.Sleep(5 * time.Millisecond)
	}
	growth := liveHeap() - before
	if stalled != nil {
		stalled()
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Error(err)
		}
	}
	return growth
}

// slowUpload sends a POST of declared pattern bytes: the first sent at once,
// the rest once release is closed; it checks the upstream's answer.
func slowUpload(addr, path string, declared, sent int64, release <-chan struct{}) error {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(90 * time.Second))
	body := io.LimitReader(newPattern(), declared)
	hdr := "POST " + path + " HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n" +
		"Content-Length: " + strconv.FormatInt(declared, 10) + "\r\n\r\n"
	if _, err := io.WriteString(conn, hdr); err != nil {
		return err
	}
	if _, err := io.CopyN(conn, body, sent); err != nil {
		return err
	}
	<-release
	if _, err := io.Copy(conn, body); err != nil {
		return err
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	var got struct {
		Len int64  `json:"len"`
		SHA string `json:"sha"`
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(b, &got) != nil || got.Len != declared || got.SHA != patternSHA(declared) {
		return fmt.Errorf("%s: client got %d %s, want the upstream's answer for %d bytes", path, resp.StatusCode, b, declared)
	}
	return nil
}

// TestCaptureBudgetSlowUploads is issue 10's attack: many connections
// declare large bodies on a tapped route and send part of them slowly.
// Without a process-wide budget every one of them held its capture buffer
// (the issue measured ~97 MiB of RSS for 300 × 256 KiB). The heap the tap
// adds must stay within capture_budget_bytes (measured against the same
// attack on an untapped route, which holds no captures), every client must
// get its full, correct answer, and each exchange that lost its body must
// be evaluated with a null body and counted.
func TestCaptureBudgetSlowUploads(t *testing.T) {
	const (
		n        = 64
		declared = 1 << 20
		sent     = 256 << 10
		budget   = 1 << 20
	)
	up, received := countingUpstream(t)
	r := &fakeRules{routes: []fakeRoute{{method: "POST", prefix: "/tapped", template: "/tapped"}}}
	e := newEnvFor(t, newUpstream(t), up.URL, r, nil, func(c *Config, _ *[]Option) {
		c.MaxCaptureBytes = declared
		c.CaptureBudgetBytes = budget
	})
	addr := hostOf(e.proxyURL)

	// Warm up pools and connections on both paths first.
	slowUploads(t, addr, "/plain", 4, 64<<10, 16<<10, received, nil)
	slowUploads(t, addr, "/tapped", 4, 64<<10, 16<<10, received, nil)
	dropsBefore := e.metric("eventtap_events_dropped_total", map[string]string{"reason": "capture_budget"})
	seenBefore := len(r.exchanges())

	untapped := slowUploads(t, addr, "/plain", n, declared, sent, received, nil)
	var inUse int64
	tapped := slowUploads(t, addr, "/tapped", n, declared, sent, received, func() {
		inUse = e.p.budget.used.Load()
	})
	extra := tapped - untapped
	t.Logf("heap while stalled: untapped %.1f MiB, tapped %.1f MiB, tap's share %.1f MiB (budget %.1f MiB, budget in use %.1f MiB)",
		float64(untapped)/(1<<20), float64(tapped)/(1<<20), float64(extra)/(1<<20), float64(budget)/(1<<20), float64(inUse)/(1<<20))
	// The slack covers the captured exchanges' bookkeeping and GC noise;
	// without the budget the tap's share is n × sent = 16 MiB or more.
	if limit := int64(budget + 3<<20); extra > limit {
		t.Errorf("the tap held %d bytes of heap during the attack, want at most %d (budget %d)", extra, limit, budget)
	}
	if inUse > budget || e.p.budget.peak.Load() > budget {
		t.Errorf("budget in use %d, peak %d; limit %d", inUse, e.p.budget.peak.Load(), budget)
	}

	exs := r.waitExchanges(t, seenBefore+n)[seenBefore:]
	var full, nulls int
	for _, ex := range exs {
		switch {
		case !ex.Request.Truncated && len(ex.Request.Body) == declared:
			full++
		case ex.Request.Truncated && ex.Request.Body == nil:
			nulls++
		default:
			t.Errorf("exchange with a body of %d bytes, truncated %v: neither captured nor dropped", len(ex.Request.Body), ex.Request.Truncated)
		}
	}
	if full > budget/declared || nulls == 0 {
		t.Errorf("%d bodies captured in full, %d dropped; the budget holds %d", full, nulls, budget/declared)
	}
	drops := e.metric("eventtap_events_dropped_total", map[string]string{"reason": "capture_budget"}) - dropsBefore
	if int(drops) != nulls {
		t.Errorf("capture_budget drops counted %v, exchanges without their body %d", drops, nulls)
	}
	waitFor(t, "the budget to be given back", func() bool { return e.p.budget.used.Load() == 0 })
}

// TestCaptureBudgetResponse: a response that finds the budget spent passes
// through to the client in full, before its exchange is evaluated with a
// null response body.
func TestCaptureBudgetResponse(t *testing.T) {
	const limit = 64 << 10
	r := &fakeRules{routes: []fakeRoute{{method: "POST", prefix: "/upload", template: "/upload"}}}
	e := newEnv(t, r, nil, func(c *Config, _ *[]Option) {
		c.MaxCaptureBytes, c.CaptureBudgetBytes = limit, limit
	})
	// The request body takes the whole budget; the answer finds it spent.
	body := make([]byte, limit)
	_, _ = io.ReadFull(newPattern(), body)
	resp, b := e.do(e.proxyURL, "POST", "/upload", nil, bytes.NewReader(body))
	want := fmt.Sprintf(`{"len":%d,"sha":%q}`, limit, sha(body))
	if resp.StatusCode != http.StatusOK || string(b) != want {
		t.Fatalf("client got %d %s, want %s", resp.StatusCode, b, want)
	}
	ex := r.waitExchanges(t, 1)[0]
	if len(ex.Request.Body) != limit || ex.Request.Truncated {
		t.Errorf("request body: %d bytes, truncated %v; want it captured", len(ex.Request.Body), ex.Request.Truncated)
	}
	if ex.Response.Body != nil || !ex.Response.Truncated {
		t.Errorf("response body: %q, truncated %v; want null", ex.Response.Body, ex.Response.Truncated)
	}
	waitFor(t, "the drop to be counted", func() bool {
		return e.metric("eventtap_events_dropped_total", map[string]string{"reason": "capture_budget"}) == 1
	})
	waitFor(t, "the budget to be given back", func() bool { return e.p.budget.used.Load() == 0 })

	// With the budget back, the same exchange is captured in full.
	_, _ = e.do(e.proxyURL, "POST", "/upload", http.Header{"Content-Type": {"application/json"}}, bytes.NewReader([]byte(`{"a":1}`)))
	ex = r.waitExchanges(t, 2)[1]
	if string(ex.Request.Body) != `{"a":1}` || string(ex.Response.Body) == "" || ex.Response.Truncated {
		t.Errorf("after the budget came back: request %q, response %q truncated %v", ex.Request.Body, ex.Response.Body, ex.Response.Truncated)
	}
}

// TestCaptureBudgetTake: reservations never pass the limit, however many
// goroutines race for it.
func TestCaptureBudgetTake(t *testing.T) {
	b := &captureBudget{limit: 1000}
	var wg sync.WaitGroup
	var taken atomic.Int64
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 1000 {
				if b.take(7) {
					taken.Add(7)
					if b.used.Load() > b.limit {
						t.Error("over the limit")
					}
					b.give(7)
					taken.Add(-7)
				}
			}
		}()
	}
	wg.Wait()
	if b.used.Load() != 0 || b.peak.Load() > b.limit {
		t.Errorf("used %d, peak %d", b.used.Load(), b.peak.Load())
	}
}

// TestCaptureBudgetPerBody: a request body that found the budget spent does
// not cost the response its capture once the budget is back.
func TestCaptureBudgetPerBody(t *testing.T) {
	const limit = 64 << 10
	gotBody, answer := make(chan struct{}), make(chan struct{})
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		close(gotBody)
		<-answer
		w.Header().Set("Content-Type", "application/x-ndjson")
		_, _ = io.WriteString(w, `{"n":1}`+"\n")
	}))
	t.Cleanup(up.Close)
	r := &fakeRules{routes: []fakeRoute{{method: "POST", prefix: "/", template: "/"}}}
	e := newEnvFor(t, newUpstream(t), up.URL, r, nil, func(c *Config, _ *[]Option) {
		c.MaxCaptureBytes, c.CaptureBudgetBytes = limit, limit
	})
	if !e.p.budget.take(limit) { // someone else holds it all
		t.Fatal("budget not free")
	}
	go func() {
		<-gotBody
		e.p.budget.give(limit)
		close(answer)
	}()
	resp, b := e.do(e.proxyURL, "POST", "/x", nil, bytes.NewReader([]byte(`{"a":1}`)))
	if resp.StatusCode != http.StatusOK || string(b) != `{"n":1}`+"\n" {
		t.Fatalf("client got %d %q", resp.StatusCode, b)
	}
	ex := r.waitExchanges(t, 1)[0]
	if ex.Request.Body != nil || !ex.Request.Truncated {
		t.Errorf("request body %q truncated %v, want null", ex.Request.Body, ex.Request.Truncated)
	}
	if string(ex.Response.Body) != `{"n":1}`+"\n" || ex.Response.Truncated {
		t.Errorf("response body %q truncated %v, want it captured", ex.Response.Body, ex.Response.Truncated)
	}
	waitFor(t, "the budget to be given back", func() bool { return e.p.budget.used.Load() == 0 })
}
