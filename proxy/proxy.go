// Package proxy is eventtap's reverse proxy: the component that clients talk
// to instead of the order API.
//
// Every request that reaches the proxy port is forwarded to the upstream
// unchanged (method, path as sent, query, end-to-end headers, body) and the
// upstream's status, headers and body bytes come back unchanged; only
// hop-by-hop headers are dropped and X-Forwarded-* added. Forwarding is done by
// github.com/elazarl/goproxy with a transport of its own, so the proxy port
// never serves anything itself (no admin paths) and never tunnels (CONNECT is
// refused).
//
// When some rule could match a request's METHOD+PATH (Rules.Route, given the
// path as the upstream understands it: rules.CleanPath), the proxy taps the
// exchange: it captures both bodies (up to max_capture_bytes each, and up to
// capture_budget_bytes for all exchanges in flight together), asks
// Rules.Evaluate for candidate events and hands them to Committer.Commit,
// before the response is released (durability: sync) or right after it
// (durability: async). The tap fails open: a panic or an error in it never
// changes what the client gets, except for on_outbox_error: reject.
//
// The package never touches the store; it sees the rules engine and the
// outbox only through the Rules and Committer interfaces it defines.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/elazarl/goproxy"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/eventtap/eventtap/rules"
)

// Rules is what the proxy needs from the rules engine. *rules.Engine and the
// reloading watcher in rules/watch implement it. The proxy calls both
// methods from many goroutines at once.
type Rules interface {
	// Route reports whether some rule could match a request with this method
	// and path (clean, as rules.CleanPath gives it), and if so the rule's
	// path template, used as the metrics label. It is called for every
	// request, so it must be cheap.
	Route(method, path string) (route string, ok bool)
	// Evaluate returns the candidate events for a captured exchange and one
	// error per rule that failed at run time.
	Evaluate(ex *rules.Exchange) ([]rules.Event, []error)
}

// Committer makes events durable; *outbox.Outbox implements it. Commit is
// called from many goroutines at once and returns once the events are
// durable, or with the reason they are not.
type Committer interface {
	Commit(ctx context.Context, events []rules.Event) error
}

// Defaults for the options of New.
const (
	// DefaultShutdownTimeout is how long Run lets in-flight requests finish
	// after its context ends; it fits inside the 30s that orchestrators
	// usually allow between SIGTERM and SIGKILL.
	DefaultShutdownTimeout = 25 * time.Second
	// DefaultCommitTimeout bounds one Commit call, so that a stuck outbox
	// cannot hold a client (durability: sync) or shutdown forever.
	DefaultCommitTimeout = 10 * time.Second
)

// Option changes how New builds a Proxy.
type Option func(*options)

type options struct {
	shutdownTimeout time.Duration
	commitTimeout   time.Duration
}

// WithShutdownTimeout sets how long Run lets in-flight requests finish once
// its context ends, before it closes their connections. The default is
// DefaultShutdownTimeout.
func WithShutdownTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.shutdownTimeout = d
		}
	}
}

// WithCommitTimeout bounds each Commit call. The default is
// DefaultCommitTimeout.
func WithCommitTimeout(d time.Duration) Option {
	return func(o *options) {
		if d > 0 {
			o.commitTimeout = d
		}
	}
}

// Proxy is the reverse proxy with its tap. Build it with New; it is safe for
// concurrent use. It owns the goroutines that commit events in the
// background and waits for them in Run.
type Proxy struct {
	cfg       Config
	opts      options
	logger    *slog.Logger
	rules     Rules
	committer Committer
	m         *metrics

	upstream     *url.URL
	upstreamAddr string // host:port, for CheckUpstream
	// trusted are the peers whose X-Forwarded-* are kept (trusted_proxies).
	trusted []netip.Prefix
	// budget bounds the bodies captured by all exchanges in flight.
	budget    captureBudget
	transport *http.Transport
	gp        *goproxy.ProxyHttpServer
	rt        goproxy.RoundTripper
	handler   http.Handler

	// tasks counts the work that must end before Run returns: tapped
	// requests, background commits and WebSocket sessions.
	tasks tracker

	upgradesMu sync.Mutex
	upgrades   map[net.Conn]struct{}

	idPrefix string
	idSeq    atomic.Uint64

	panicLog, outboxLog, budgetLog logLimiter
}

// New builds a Proxy for cfg. It registers its metrics on reg (a private
// registry when reg is nil) and forwards to cfg.Upstream; r decides which
// requests are tapped and c makes their events durable.
func New(cfg Config, logger *slog.Logger, reg prometheus.Registerer, r Rules, c Committer, opts ...Option) (*Proxy, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("proxy: invalid config: %w", err)
	}
	if r == nil || c == nil {
		return nil, errors.New("proxy: rules and committer are required")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	o := options{shutdownTimeout: DefaultShutdownTimeout, commitTimeout: DefaultCommitTimeout}
	for _, opt := range opts {
		opt(&o)
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	u, err := url.Parse(cfg.Upstream)
	if err != nil { // Validate already checked it; keep the error path honest
		return nil, fmt.Errorf("proxy: upstream: %w", err)
	}
	p := &Proxy{
		cfg:          cfg,
		opts:         o,
		logger:       logger.With("component", "proxy"),
		rules:        r,
		committer:    c,
		m:            m,
		upstream:     &url.URL{Scheme: u.Scheme, Host: u.Host},
		upstreamAddr: hostPort(u),
		transport:    NewTransport(cfg),
		upgrades:     make(map[net.Conn]struct{}),
		idPrefix:     strconv.FormatUint(rand.Uint64()&0xffffffff, 36) + "-",
		panicLog:     logLimiter{interval: 10 * time.Second},
		outboxLog:    logLimiter{interval: 10 * time.Second},
		budgetLog:    logLimiter{interval: 10 * time.Second},
	}
	for _, s := range cfg.TrustedProxies {
		pf, err := parseTrusted(s)
		if err != nil { // Validate already checked it
			return nil, fmt.Errorf("proxy: trusted_proxies: %w", err)
		}
		p.trusted = append(p.trusted, pf)
	}
	p.budget.limit = cfg.CaptureBudgetBytes
	p.rt = goproxy.RoundTripperFunc(p.roundTrip)
	p.gp = p.newGoproxy()
	p.handler = http.HandlerFunc(p.serve)
	return p, nil
}

// NewTransport returns the transport a Proxy sends upstream with, tuned for
// a single, nearby upstream: many idle connections (the default keeps two
// per host, which makes a busy proxy dial for most requests), no environment
// proxy, no HTTP/2 (WebSocket upgrades need HTTP/1.1) and no transparent
// decompression, so that the client's Accept-Encoding decides and compressed
// bodies pass through byte for byte. It is exported so that benchmarks give
// bare proxies the very same transport.
func NewTransport(cfg Config) *http.Transport {
	dialer := &net.Dialer{Timeout: cfg.UpstreamTimeout, KeepAlive: 30 * time.Second}
	return &http.Transport{
		Proxy:                 nil,
		DialContext:           dialer.DialContext,
		ForceAttemptHTTP2:     false,
		MaxIdleConns:          1024,
		MaxIdleConnsPerHost:   1024,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		ResponseHeaderTimeout: cfg.UpstreamTimeout,
		DisableCompression:    true,
	}
}

// newGoproxy configures goproxy as the forwarding engine. serve hands it
// every request with an absolute URL pointing at the upstream, so goproxy's
// own proxy path (not NonproxyHandler) runs: its per-request RoundTripper is
// where the tap and the error mapping sit.
func (p *Proxy) newGoproxy() *goproxy.ProxyHttpServer {
	gp := goproxy.NewProxyHttpServer()
	gp.Tr = p.transport
	gp.Logger = goproxyLogger{p.logger}
	gp.Verbose = false
	// Keep the client's Accept-Encoding: goproxy drops it by default, which
	// would change what the upstream sends.
	gp.KeepAcceptEncoding = true
	// Nothing is written to the response headers before goproxy copies the
	// upstream's, so there is nothing to clear first.
	gp.KeepDestinationHeaders = true
	gp.ConnectDial = nil
	// serve always passes absolute URLs, so goproxy never calls this; if it
	// ever did, the request still gets the same rewriting and tap.
	gp.NonproxyHandler = http.HandlerFunc(p.serve)
	gp.OnRequest().DoFunc(func(req *http.Request, ctx *goproxy.ProxyCtx) (*http.Request, *http.Response) {
		ctx.RoundTripper = p.rt
		return req, nil
	})
	return gp
}

// Handler returns the proxy's HTTP handler, the one Run serves. Every request
// it gets goes to the upstream. Only Run waits for the background commits
// the handler starts; a caller serving Handler itself loses those still
// running when the process exits.
func (p *Proxy) Handler() http.Handler { return p.handler }

// Run serves the proxy on cfg.Listen until ctx ends. It then stops accepting
// connections, lets in-flight requests finish within the shutdown timeout
// (closing what is left after it), closes WebSocket sessions, and waits for
// the background commits it started, so that the caller can close the
// outbox once Run returns.
func (p *Proxy) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", p.cfg.Listen)
	if err != nil {
		return fmt.Errorf("proxy: listen: %w", err)
	}
	return p.Serve(ctx, ln)
}

// Serve is Run on a listener the caller bound (and Serve closes), for a
// caller that must know the address before the proxy starts.
func (p *Proxy) Serve(ctx context.Context, ln net.Listener) error {
	srv := &http.Server{
		Handler: p.handler,
		// Slow clients may take their time with bodies (uploads, long
		// polls), but a request's headers have no reason to be slow.
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * time.Minute,
		ErrorLog:          slog.NewLogLogger(p.logger.Handler(), slog.LevelWarn),
	}
	p.logger.Info("proxy listening", "addr", ln.Addr().String(), "upstream", p.cfg.Upstream,
		"durability", p.cfg.Durability)

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
	}

	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), p.opts.shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		p.logger.Warn("in-flight requests did not finish before the shutdown deadline; closing them",
			"timeout", p.opts.shutdownTimeout)
		_ = srv.Close()
	}
	if serveErr == nil {
		<-errc // http.ErrServerClosed
	}
	// Shutdown neither waits for nor closes hijacked connections.
	p.closeUpgrades()

	// Background commits have their own timeout; the margin covers the
	// evaluation that precedes them.
	wctx, wcancel := context.WithTimeout(context.Background(), p.opts.commitTimeout+5*time.Second)
	defer wcancel()
	if err := p.tasks.wait(wctx); err != nil {
		p.logger.Error("background commits still running at shutdown; their events may be lost")
	}
	p.transport.CloseIdleConnections()
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return fmt.Errorf("proxy: serve: %w", serveErr)
	}
	return nil
}

// CheckUpstream reports whether the upstream accepts TCP connections; the
// admin server uses it for /readyz.
func (p *Proxy) CheckUpstream(ctx context.Context) error {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", p.upstreamAddr)
	if err != nil {
		return fmt.Errorf("proxy: upstream %s unreachable: %w", p.upstreamAddr, err)
	}
	return conn.Close()
}

// serve is the entry point for every request on the proxy port.
func (p *Proxy) serve(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rw := &responseWriter{ResponseWriter: w, proxy: p}
	if r.Method == http.MethodConnect {
		// A CONNECT tunnel would bypass both the upstream's routing and the
		// tap, and goproxy would open it to any host: this port is not a
		// forward proxy.
		writeJSON(rw, http.StatusMethodNotAllowed, bodyConnect)
		p.done(r, rw, routeOther, r.URL.Path, start, false)
		return
	}

	path := rules.CleanPath(requestPath(r))
	route, tapped := p.route(r.Method, path)
	label := routeOther
	if tapped {
		label = route
	}
	upgrade := p.rewrite(r)

	var t *tap
	if tapped && !upgrade {
		t = p.newTap(r, route, path, start)
	}
	if t != nil {
		p.forwardTapped(rw, r, t)
	} else {
		p.forward(rw, r)
	}
	if rw.hijacked != nil {
		p.endUpgrade(rw.hijacked)
	}
	p.done(r, rw, label, path, start, t != nil)

	if rw.srcErr != nil || (t != nil && t.upstreamBodyErr() != nil) {
		// The upstream broke off its body. Make the client see a broken
		// response too, as it would without the proxy, instead of a
		// chunked body that ends cleanly: deliver what arrived, then drop
		// the connection.
		rw.Flush()
		panic(http.ErrAbortHandler)
	}
}

// requestPath returns the path of r as the client sent it, escaped: rules
// match it as the upstream will understand it (rules.CleanPath), and the
// decoded r.URL.Path cannot tell "a%2Fb" (one segment) from "a/b" (two).
// Taking it from the request line costs no allocation.
func requestPath(r *http.Request) string {
	if p := originPath(r.RequestURI); p != "" {
		return p
	}
	return r.URL.EscapedPath() // absolute-form, "//…", "*"
}

// forward forwards an untapped request. One with a body goes out as a
// shallow copy whose body remembers why reading it failed (clientBody), so
// that roundTrip can tell a client's broken body from a broken upstream;
// the server's own Request stays untouched, as in forwardTapped. A request
// without a body, most of them, costs nothing more.
func (p *Proxy) forward(rw *responseWriter, r *http.Request) {
	if r.Body == nil || r.Body == http.NoBody {
		p.gp.ServeHTTP(rw, r)
		return
	}
	out := &bodyRequest{req: *r, body: clientBody{rc: r.Body}}
	out.req.Body = &out.body
	p.gp.ServeHTTP(rw, &out.req)
}

// bodyRequest puts an outgoing request and its body wrapper in one
// allocation.
type bodyRequest struct {
	req  http.Request
	body clientBody
}

// forwardTapped forwards r with t attached, so that roundTrip captures the
// exchange. The request goes out as a shallow copy: the server's own Request
// (whose Body type it inspects after the handler) stays untouched.
func (p *Proxy) forwardTapped(rw *responseWriter, r *http.Request, t *tap) {
	p.tasks.add()
	defer p.tasks.done()
	defer t.res.unref()
	out := r.WithContext(context.WithValue(r.Context(), tapKey{}, t))
	if t.body != nil {
		out.Body = t.body
	}
	p.gp.ServeHTTP(rw, out)
}

// route asks the rules which requests to tap. A panicking Rules only costs
// the tap, never the request.
func (p *Proxy) route(method, path string) (route string, ok bool) {
	defer func() {
		if v := recover(); v != nil {
			p.tapPanic("route", v, 1)
			route, ok = "", false
		}
	}()
	return p.rules.Route(method, path)
}

// done records a finished request in the metrics and, at Debug, in the log.
func (p *Proxy) done(r *http.Request, rw *responseWriter, route, path string, start time.Time, tapped bool) {
	d := time.Since(start)
	code := rw.code()
	p.m.observe(methodLabel(r.Method), route, code, d)
	if p.logger.Enabled(r.Context(), slog.LevelDebug) {
		p.logger.LogAttrs(r.Context(), slog.LevelDebug, "request",
			slog.String("request_id", p.requestID(r)),
			slog.String("method", r.Method),
			slog.String("path", path),
			slog.String("route", route),
			slog.Int("status", code),
			slog.Duration("duration", d),
			slog.Bool("tapped", tapped))
	}
}

// requestID names a request in the logs: the client's X-Request-Id when it
// sent one, otherwise a process-unique id. A generated id is not added to the
// upstream request, which would not be transparent.
func (p *Proxy) requestID(r *http.Request) string {
	if v := r.Header.Get("X-Request-Id"); v != "" {
		if len(v) > 128 {
			v = v[:128]
		}
		return v
	}
	return p.idPrefix + strconv.FormatUint(p.idSeq.Add(1), 36)
}

// trackUpgrade remembers a hijacked WebSocket connection until its session
// ends, so that shutdown can close it.
func (p *Proxy) trackUpgrade(c net.Conn) {
	p.tasks.add()
	p.upgradesMu.Lock()
	p.upgrades[c] = struct{}{}
	p.upgradesMu.Unlock()
}

// endUpgrade closes the client side of a finished WebSocket session: goproxy
// returns when either direction ends but leaves the hijacked connection open.
func (p *Proxy) endUpgrade(c net.Conn) {
	_ = c.Close()
	p.upgradesMu.Lock()
	delete(p.upgrades, c)
	p.upgradesMu.Unlock()
	p.tasks.done()
}

func (p *Proxy) closeUpgrades() {
	p.upgradesMu.Lock()
	defer p.upgradesMu.Unlock()
	for c := range p.upgrades {
		_ = c.Close()
	}
}

// hostPort returns u's host with the scheme's default port when it has none.
func hostPort(u *url.URL) string {
	if u.Port() != "" {
		return u.Host
	}
	port := "80"
	if u.Scheme == "https" {
		port = "443"
	}
	return net.JoinHostPort(u.Hostname(), port)
}

// goproxyLogger sends goproxy's messages (it only has warnings about copy
// errors, which are per-request noise) to the proxy's logger at Debug.
type goproxyLogger struct{ l *slog.Logger }

func (g goproxyLogger) Printf(format string, v ...any) {
	if g.l.Enabled(context.Background(), slog.LevelDebug) {
		g.l.Debug(strings.TrimSpace(fmt.Sprintf(format, v...)), "source", "goproxy")
	}
}

// tracker counts running work. Unlike sync.WaitGroup it allows add while
// someone waits, which happens when a request that was already running taps
// its exchange during shutdown.
type tracker struct {
	mu   sync.Mutex
	n    int
	idle chan struct{} // closed when n reaches 0 while someone waits
}

func (t *tracker) add() {
	t.mu.Lock()
	t.n++
	t.mu.Unlock()
}

func (t *tracker) done() {
	t.mu.Lock()
	t.n--
	if t.n == 0 && t.idle != nil {
		close(t.idle)
		t.idle = nil
	}
	t.mu.Unlock()
}

// wait returns when nothing is running, or with ctx's error.
func (t *tracker) wait(ctx context.Context) error {
	t.mu.Lock()
	if t.n == 0 {
		t.mu.Unlock()
		return nil
	}
	if t.idle == nil {
		t.idle = make(chan struct{})
	}
	idle := t.idle
	t.mu.Unlock()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
