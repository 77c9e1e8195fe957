package proxy

import (
	"bytes"
	"compress/flate"
	"compress/gzip"
	"compress/zlib"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"runtime/debug"
	"strings"
	"sync/atomic"
	"time"

	"github.com/eventtap/eventtap/rules"
)

// tap captures one exchange on a route that some rule could match and turns
// it into events.
//
// When the upstream has answered, capture reads the response body up to
// max_capture_bytes+1. If it fits, the exchange is evaluated and its events
// committed before anything is written to the client (durability: sync), or
// in a background goroutine right after (async); the client then gets the
// upstream's headers, Content-Length included, and the buffered body.
//
// Reading first means that a response of unknown length which is not a
// known stream type reaches the client only when it has ended or passed the
// limit; that is the price of committing before releasing it.
//
// A body that does not fit, or a stream (SSE, NDJSON, …), is passed through
// as it arrives while its first bytes are kept; when it ends the exchange is
// evaluated with Truncated set and committed in the background. Holding a
// large download or an endless stream until the events are durable would
// mean buffering it or never answering, so for those responses "commit
// before acknowledgement" is knowingly not kept.
type tap struct {
	p     *Proxy
	route string
	start time.Time
	id    string
	// req is the captured request without its body, which body holds.
	req  rules.Request
	body *captureReader // nil when the request has no body
	// ctx carries the request's values but not its cancellation: a client
	// that goes away must not cancel the commit of what the upstream did.
	ctx context.Context
	tee *teeBody // set when the response is streamed
	// res is the exchange's share of proxy.capture_budget_bytes.
	res reservation
}

// newTap prepares the capture of r, whose path is path as rules.CleanPath
// gives it: the form rules match and CEL shows as request.path. A panic
// here costs the tap only.
func (p *Proxy) newTap(r *http.Request, route, path string, start time.Time) (t *tap) {
	defer func() {
		if v := recover(); v != nil {
			p.tapPanic("capture", v, 1)
			t = nil
		}
	}()
	h := r.Header.Clone()
	if ua := h["User-Agent"]; len(ua) == 1 && ua[0] == "" {
		delete(h, "User-Agent") // added by rewrite, not sent by the client
	}
	t = &tap{
		p:     p,
		route: route,
		start: start,
		id:    p.requestID(r),
		req: rules.Request{
			Method:   r.Method,
			Path:     path,
			RawQuery: r.URL.RawQuery,
			Header:   h,
		},
		ctx: context.WithoutCancel(r.Context()),
	}
	t.res.budget = &p.budget
	t.res.refs.Store(1) // the handler's, dropped by forwardTapped
	if r.Body != nil && r.Body != http.NoBody {
		t.body = newCaptureReader(r.Body, r.ContentLength, p.cfg.MaxCaptureBytes, &t.res)
	}
	return t
}

// settleLater settles the exchange in a background goroutine that Run
// waits for; the exchange keeps its captured bytes until it is done.
func (t *tap) settleLater(status int, hdr http.Header, body []byte, truncated bool, end time.Time) {
	t.res.ref()
	t.p.background(func() {
		defer t.res.unref()
		t.settle(status, hdr, body, truncated, end)
	})
}

// upstreamBodyErr returns the error with which the upstream broke off a
// streamed response body, if it did.
func (t *tap) upstreamBodyErr() error {
	if t.tee == nil {
		return nil
	}
	return t.tee.err
}

// capture is called by roundTrip with the upstream's response and returns
// the response goproxy writes to the client.
func (t *tap) capture(resp *http.Response) *http.Response {
	if bodyless(resp) {
		// HEAD, 204, 304: Content-Length describes a body that is not
		// there, so there is nothing to read or replace.
		end := time.Now()
		return t.release(resp, nil, end)
	}
	limit := t.p.cfg.MaxCaptureBytes
	if isStream(resp.Header) || resp.ContentLength > limit {
		t.stream(resp, nil, nil, false, false)
		return resp
	}
	body, overflow, spent, err := readCapped(resp.Body, resp.ContentLength, limit, &t.res)
	if overflow || spent || err != nil {
		// Too big to hold the client for, past the capture budget, or
		// broken off by the upstream: pass on what was read and the rest
		// as it comes.
		t.stream(resp, body, err, overflow, spent)
		return resp
	}
	end := time.Now()
	_ = resp.Body.Close() // fully read: the connection goes back to the pool
	resp.Body = &bufferedBody{Reader: bytes.NewReader(body)}
	return t.release(resp, body, end)
}

// release settles a fully captured exchange according to durability and
// returns the response for the client.
func (t *tap) release(resp *http.Response, body []byte, end time.Time) *http.Response {
	if t.p.cfg.Durability == DurabilityAsync {
		t.settleLater(resp.StatusCode, resp.Header.Clone(), body, false, end)
		return resp
	}
	if t.settle(resp.StatusCode, resp.Header.Clone(), body, false, end) {
		_ = resp.Body.Close()
		return jsonResponse(resp.Request, http.StatusServiceUnavailable, bodyRejected)
	}
	return resp
}

// bodyless reports whether a response has no body whatever its headers say.
func bodyless(resp *http.Response) bool {
	return resp.StatusCode < 200 || resp.StatusCode == http.StatusNoContent ||
		resp.StatusCode == http.StatusNotModified ||
		(resp.Request != nil && resp.Request.Method == http.MethodHead)
}

// stream replaces resp.Body with a tee that passes the body through and
// settles the exchange in the background when goproxy closes it. read is
// what capture read ahead; spent means the budget refused memory for more.
func (t *tap) stream(resp *http.Response, read []byte, err error, overflow, spent bool) {
	limit := t.p.cfg.MaxCaptureBytes
	b := &teeBody{t: t, resp: resp, rc: resp.Body, limit: limit, pending: read, err: err}
	switch {
	case spent:
		// Past the budget: what was read is owed to the client, but
		// nothing more is kept.
		b.dropped, b.truncated = true, true
	case overflow:
		b.kept, b.truncated = read[:limit], true
	default:
		b.kept = read
	}
	t.tee = b
	resp.Body = b
}

// settle builds the exchange, evaluates it and commits its events. It
// reports whether the client must get a 503 instead of the response
// (on_outbox_error: reject, only while the response is still held). It
// never panics.
func (t *tap) settle(status int, hdr http.Header, body []byte, truncated bool, end time.Time) (reject bool) {
	defer func() {
		if v := recover(); v != nil {
			t.p.tapPanic("evaluate", v, 1)
			reject = false
		}
	}()
	ex := &rules.Exchange{Request: t.req, Start: t.start, End: end}
	limit := t.p.cfg.MaxCaptureBytes
	if t.body != nil {
		b, tr := t.body.snapshot()
		ex.Request.Body, ex.Request.Truncated = decodeBody(t.req.Header, b, tr, limit, &t.res)
	}
	ex.Response.Status = status
	ex.Response.Header = hdr
	ex.Response.Body, ex.Response.Truncated = decodeBody(hdr, body, truncated, limit, &t.res)
	if t.res.spent.Load() {
		// A body passed through uncaptured: the rules see it as null. The
		// proxy cannot tell which rule would have read it, so the exchange
		// counts once, as the event it may have cost.
		t.p.m.droppedBudget.Inc()
		if ok, suppressed := t.p.budgetLog.allow(); ok {
			t.p.logger.Warn("capture budget spent: an exchange on a tapped route was evaluated without its body",
				"request_id", t.id, "route", t.route, "capture_budget_bytes", t.p.cfg.CaptureBudgetBytes,
				"similar_suppressed", suppressed)
		}
	}

	events, ok := t.p.evaluate(ex, t.id)
	if !ok || len(events) == 0 {
		return false
	}
	err := t.p.commit(t.ctx, events)
	switch {
	case err == nil:
		return false
	case errors.Is(err, errCommitPanic):
		return false // counted as tap_panic; the client keeps its response
	}
	t.p.m.droppedOutbox.Add(float64(len(events)))
	if ok, suppressed := t.p.outboxLog.allow(); ok {
		t.p.logger.Warn("events not committed", "request_id", t.id, "route", t.route,
			"events", len(events), "error", err, "similar_suppressed", suppressed)
	}
	return t.p.cfg.OnOutboxError == OnOutboxErrorReject
}

// background runs fn in a goroutine that Run waits for.
func (p *Proxy) background(fn func()) {
	p.tasks.add()
	go func() {
		defer p.tasks.done()
		fn()
	}()
}

// evaluate runs the rules on ex, counting the rules that failed.
func (p *Proxy) evaluate(ex *rules.Exchange, id string) (events []rules.Event, ok bool) {
	defer func() {
		if v := recover(); v != nil {
			p.tapPanic("evaluate", v, 1)
			events, ok = nil, false
		}
	}()
	events, errs := p.rules.Evaluate(ex)
	for _, err := range errs {
		name := ruleName(err)
		p.m.ruleErrors.WithLabelValues(name).Inc()
		p.logger.Debug("rule failed", "request_id", id, "rule", name, "error", err)
	}
	return events, true
}

var errCommitPanic = errors.New("proxy: committer panicked")

// commit hands events to the committer with a bounded context.
func (p *Proxy) commit(ctx context.Context, events []rules.Event) (err error) {
	defer func() {
		if v := recover(); v != nil {
			p.tapPanic("commit", v, len(events))
			err = errCommitPanic
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, p.opts.commitTimeout)
	defer cancel()
	return p.committer.Commit(ctx, events)
}

// tapPanic counts and logs a panic inside the tap; lost is how many events
// it cost, 1 when they are unknown.
func (p *Proxy) tapPanic(where string, v any, lost int) {
	p.m.droppedPanic.Add(float64(max(lost, 1)))
	if ok, suppressed := p.panicLog.allow(); ok {
		p.logger.Error("panic in the tap; the request was still forwarded",
			"where", where, "panic", fmt.Sprint(v), "stack", string(debug.Stack()),
			"similar_suppressed", suppressed)
	}
}

// logLimiter lets through one message per interval: a broken outbox or a
// panicking rule would otherwise log once per request. The metrics still
// count every occurrence.
type logLimiter struct {
	interval   time.Duration
	last       atomic.Int64 // unix nanoseconds of the last message let through
	suppressed atomic.Int64
}

// allow reports whether to log now, and how many messages were held back
// since the last one.
func (l *logLimiter) allow() (bool, int64) {
	now := time.Now().UnixNano()
	last := l.last.Load()
	if last != 0 && now-last < int64(l.interval) || !l.last.CompareAndSwap(last, now) {
		l.suppressed.Add(1)
		return false, 0
	}
	return true, l.suppressed.Swap(0)
}

// ruleName finds the rule an Evaluate error is about: a *rules.EvalError,
// or any error with a RuleName method (the fakes in tests, or a wrapper the
// reloading watcher might add).
func ruleName(err error) string {
	var ee *rules.EvalError
	if errors.As(err, &ee) && ee.Rule != "" {
		return ee.Rule
	}
	var named interface{ RuleName() string }
	if errors.As(err, &named) {
		if n := named.RuleName(); n != "" {
			return n
		}
	}
	return "unknown"
}

// isStream reports whether a response is meant to be consumed as it is
// produced, so that the tap must not hold it back.
func isStream(h http.Header) bool {
	ct := h.Get("Content-Type")
	if i := strings.IndexByte(ct, ';'); i >= 0 {
		ct = ct[:i]
	}
	ct = strings.TrimSpace(ct)
	for _, s := range streamTypes {
		if strings.EqualFold(ct, s) {
			return true
		}
	}
	return false
}

var streamTypes = []string{
	"text/event-stream",
	"application/x-ndjson", "application/ndjson", "application/jsonl",
	"application/x-jsonlines", "application/stream+json", "application/json-seq",
	"multipart/x-mixed-replace",
}

// readCapped reads r up to maxBytes. overflow reports that there was more
// (body then holds maxBytes+1 bytes, all still owed to the client); spent
// that res refused the memory for more (body holds what was read, all still
// owed to the client); err is a read error other than EOF (body holds what
// was read before it). The buffer grows by reservations from res (nil: no
// budget); a known length sizes it once.
func readCapped(r io.Reader, length, maxBytes int64, res *reservation) (body []byte, overflow, spent bool, err error) {
	if length >= 0 && length <= maxBytes {
		body, ok := res.growCapture(nil, int(length), length, length)
		if !ok {
			return nil, false, true, nil
		}
		body = body[:length]
		n, err := io.ReadFull(r, body)
		if err == io.EOF {
			err = io.ErrUnexpectedEOF // shorter than its Content-Length
		}
		return body[:n], false, false, err
	}
	limit := maxBytes + 1
	for {
		if int64(len(body)) == limit {
			return body, true, false, nil
		}
		if len(body) == cap(body) {
			var ok bool
			if body, ok = res.growCapture(body, 1, limit, -1); !ok {
				return body, false, true, nil
			}
		}
		n, rerr := r.Read(body[len(body):cap(body)])
		body = body[:len(body)+n]
		if rerr == io.EOF {
			return body, false, false, nil
		}
		if rerr != nil {
			return body, false, false, rerr
		}
	}
}

// bufferedBody is a response body the tap has already read.
type bufferedBody struct{ *bytes.Reader }

func (bufferedBody) Close() error { return nil }

// teeBody passes a response body to the client while keeping its first limit
// bytes, and settles the exchange when goproxy closes it. goproxy reads and
// closes it from the handler goroutine only.
type teeBody struct {
	t       *tap
	resp    *http.Response
	rc      io.ReadCloser
	limit   int64
	pending []byte // read ahead by capture, not yet given to the client
	kept    []byte
	// dropped: the capture budget refused memory; nothing more is kept.
	dropped bool
	eof     bool
	// truncated: kept is not the whole body.
	truncated bool
	err       error // the upstream body broke off
	closed    bool
}

func (b *teeBody) Read(p []byte) (int, error) {
	if len(b.pending) > 0 {
		n := copy(p, b.pending)
		b.pending = b.pending[n:]
		return n, nil
	}
	if b.err != nil {
		return 0, b.err
	}
	n, err := b.rc.Read(p)
	if n > 0 && !b.dropped {
		b.kept, b.truncated, b.dropped = keep(b.kept, p[:n], b.limit, &b.t.res)
	}
	switch {
	case err == io.EOF:
		b.eof = true
	case err != nil:
		b.err = err
	}
	return n, err
}

func (b *teeBody) Close() error {
	if b.closed {
		return nil
	}
	b.closed = true
	err := b.rc.Close()
	end := time.Now()
	truncated := b.truncated || !b.eof || b.err != nil
	b.t.settleLater(b.resp.StatusCode, b.resp.Header.Clone(), b.kept, truncated, end)
	return err
}

// captureReader passes a request body to the upstream while keeping its
// first limit bytes. Its clientBody remembers a read error, as for untapped
// requests, and its lock also guards the capture: the transport reads and
// closes the body from its own goroutine, possibly after the response has
// arrived.
type captureReader struct {
	clientBody
	res       *reservation
	limit     int64
	length    int64 // as declared; sizes a small buffer at once
	buf       []byte
	truncated bool
	dropped   bool // the capture budget refused memory
	eof       bool
}

// newCaptureReader captures rc. Its buffer is not allocated before the
// first bytes arrive: a declared length costs nothing until they do.
func newCaptureReader(rc io.ReadCloser, length, limit int64, res *reservation) *captureReader {
	return &captureReader{clientBody: clientBody{rc: rc}, res: res, limit: limit, length: length}
}

func (c *captureReader) Read(p []byte) (int, error) {
	n, err := c.rc.Read(p)
	c.mu.Lock()
	if n > 0 && !c.dropped {
		c.buf, c.truncated, c.dropped = keepSized(c.buf, p[:n], c.limit, c.length, c.res)
	}
	switch {
	case err == io.EOF:
		c.eof = true
	case err != nil && c.err == nil:
		c.err = err
	}
	c.mu.Unlock()
	return n, err
}

// snapshot returns the captured body and whether it is incomplete. A body
// still being read (the upstream answered before it had all of it) is
// copied, since the transport may still append to it.
func (c *captureReader) snapshot() ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.dropped {
		return nil, true
	}
	if c.eof && !c.truncated && c.err == nil {
		return c.buf, false
	}
	return bytes.Clone(c.buf), true
}

// keep appends to kept the part of p that fits in limit, growing kept by
// reservations from res. truncated: p did not fit; dropped: the budget
// refused, kept is released to the collector and nothing more is kept.
func keep(kept, p []byte, limit int64, res *reservation) (_ []byte, truncated, dropped bool) {
	return keepSized(kept, p, limit, -1, res)
}

// keepSized is keep for a body that declared its length.
func keepSized(kept, p []byte, limit, length int64, res *reservation) (_ []byte, truncated, dropped bool) {
	room := limit - int64(len(kept))
	if room <= 0 {
		return kept, true, false
	}
	take := min(int64(len(p)), room)
	kept, ok := res.growCapture(kept, int(take), limit, length)
	if !ok {
		return nil, true, true
	}
	return append(kept, p[:take]...), int64(len(p)) > room, false
}

// decodeBody returns the bytes the rules see for a captured body: a body
// sent with Content-Encoding gzip or deflate is decoded (into at most limit
// bytes), so that rules see the JSON a client would, while the client
// still gets the compressed bytes. A body that cannot be decoded is marked
// truncated, which makes the rules treat it as not JSON.
func decodeBody(h http.Header, body []byte, truncated bool, limit int64, res *reservation) ([]byte, bool) {
	if truncated || len(body) == 0 {
		return body, truncated
	}
	ce := strings.ToLower(strings.TrimSpace(h.Get("Content-Encoding")))
	var zr io.Reader
	switch ce {
	case "", "identity":
		return body, false
	case "gzip", "x-gzip":
		r, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			return body, true
		}
		zr = r
	case "deflate":
		// HTTP's deflate is zlib-wrapped, but some servers send raw DEFLATE.
		if r, err := zlib.NewReader(bytes.NewReader(body)); err == nil {
			zr = r
		} else {
			zr = flate.NewReader(bytes.NewReader(body))
		}
	default:
		return body, true // br, zstd, or several encodings
	}
	out, overflow, spent, err := readCapped(zr, -1, limit, res)
	if overflow {
		return out[:limit], true
	}
	if spent || err != nil {
		return body, true
	}
	return out, false
}
