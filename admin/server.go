// Package admin is eventtap's admin HTTP server: the GraphQL API that
// manages webhooks and inspects events and delivery logs (SPEC §5, shaped
// like Zonos' webhook API), an in-browser explorer for it, Prometheus
// metrics, and health and readiness probes.
//
// The server reads and changes state only through the Store interface,
// which the outbox implements; it never touches storage itself. It listens
// on its own port, separate from the proxy's.
package admin

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/graphql-go/graphql"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/eventtap/eventtap/outbox"
)

// Store is what the admin API needs from the outbox: exactly the
// admin-facing methods of *outbox.Outbox. Implementations must be safe for
// concurrent use; every method is called from request goroutines.
type Store interface {
	Webhook(ctx context.Context, id string) (outbox.Webhook, error)
	Webhooks(ctx context.Context, filter outbox.WebhookFilter, first int, after string) (outbox.Page[outbox.Webhook], error)
	CreateWebhook(ctx context.Context, in outbox.WebhookCreate) (outbox.Webhook, error)
	UpdateWebhook(ctx context.Context, in outbox.WebhookUpdate) (outbox.Webhook, error)
	DeleteWebhook(ctx context.Context, id string) error
	RotateSecret(ctx context.Context, id string) (outbox.Webhook, error)
	Logs(ctx context.Context, filter outbox.LogFilter, first int, after string) (outbox.Page[outbox.Log], error)
	Event(ctx context.Context, id string) (outbox.Event, error)
	Events(ctx context.Context, filter outbox.EventFilter, first int, after string) (outbox.Page[outbox.Event], error)
	TestWebhook(ctx context.Context, id string) (outbox.Log, error)
	Replay(ctx context.Context, webhookID string, since time.Time) (int, error)
	Redeliver(ctx context.Context, eventID, webhookID string) (outbox.Event, error)
}

// Check is one readiness check (the store is open, the upstream answers).
// It must return promptly once ctx is done.
type Check func(ctx context.Context) error

// HTTP server limits. The write timeout leaves room for executeTimeout.
const (
	readHeaderTimeout = 5 * time.Second
	readTimeout       = 30 * time.Second
	writeTimeout      = executeTimeout + 10*time.Second
	idleTimeout       = 2 * time.Minute
	maxHeaderBytes    = 64 << 10
	shutdownTimeout   = 10 * time.Second
	checkTimeout      = 2 * time.Second
)

// Server is the admin HTTP server. It is immutable after New and safe for
// concurrent use; Run may be called once.
type Server struct {
	cfg    Config
	logger *slog.Logger
	schema graphql.Schema
	// limits runs before rules, and countFields before both: the specified
	// rules and overlapRule follow fragments, and only see documents
	// without cycles, of bounded size as written and once expanded.
	limits    []graphql.ValidationRuleFn
	rules     []graphql.ValidationRuleFn
	ready     map[string]Check
	hasToken  bool
	tokenHash [sha256.Size]byte
	explorer  *explorer
	handler   http.Handler
}

// New builds the server. g is what /metrics exposes; store backs the
// GraphQL API; eventTypes are the WebhookType enum's values (built-ins plus
// config event_types, as rules.EventTypes returns them); ready are the
// checks /readyz runs, by name. New starts nothing: see Run and Handler.
func New(cfg Config, logger *slog.Logger, g prometheus.Gatherer, store Store, eventTypes []string, ready map[string]Check) (*Server, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	if g == nil || store == nil {
		return nil, errors.New("admin: New needs a gatherer and a store")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	logger = logger.With("component", "admin")
	schema, err := newSchema(&api{store: store, logger: logger}, eventTypes)
	if err != nil {
		return nil, err
	}
	explorer, err := newExplorer(cfg.Token != "")
	if err != nil {
		return nil, err
	}
	rules, err := validationRules()
	if err != nil {
		return nil, err
	}
	s := &Server{
		cfg:      cfg,
		logger:   logger,
		schema:   schema,
		limits:   []graphql.ValidationRuleFn{graphql.NoFragmentCyclesRule, limitsRule(maxDepth, maxSelections), valueSizeRule},
		rules:    rules,
		ready:    maps.Clone(ready),
		hasToken: cfg.Token != "",
		explorer: explorer,
	}
	if s.hasToken {
		s.tokenHash = sha256.Sum256([]byte(cfg.Token))
	}

	mux := http.NewServeMux()
	mux.HandleFunc("POST /graphql", s.localOnly(s.serveGraphQLPost))
	mux.HandleFunc("GET /graphql", s.localOnly(s.serveGraphQLGet))
	mux.HandleFunc("GET "+explorerPrefix, s.localOnly(s.explorer.serveAsset))
	mux.Handle("GET /metrics", promhttp.HandlerFor(g, promhttp.HandlerOpts{
		ErrorLog:          slogPrintln{logger},
		ErrorHandling:     promhttp.ContinueOnError,
		EnableOpenMetrics: true,
	}))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		_, _ = w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /readyz", s.serveReady)
	s.handler = mux
	return s, nil
}

// Handler returns the server's routes, for tests and for embedding.
func (s *Server) Handler() http.Handler { return s.handler }

// Run listens on cfg.Listen and serves until ctx ends, then shuts down
// gracefully: in-flight requests get shutdownTimeout to finish, after which
// their contexts are canceled and connections closed. It returns nil after a
// clean shutdown.
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		return fmt.Errorf("admin: listen: %w", err)
	}
	return s.Serve(ctx, ln)
}

// Serve is Run on a listener the caller bound (and Serve closes), for a
// caller that must know the address before the server starts.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	// Requests do not inherit ctx: shutdown lets them finish first, and
	// cancels them only when the deadline passes.
	base, cancelBase := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelBase()
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: readHeaderTimeout,
		ReadTimeout:       readTimeout,
		WriteTimeout:      writeTimeout,
		IdleTimeout:       idleTimeout,
		MaxHeaderBytes:    maxHeaderBytes,
		ErrorLog:          slog.NewLogLogger(s.logger.Handler(), slog.LevelWarn),
		BaseContext:       func(net.Listener) context.Context { return base },
	}
	s.logger.Info("admin server listening", "addr", ln.Addr().String())

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("admin: serve: %w", err)
	case <-ctx.Done():
	}

	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	err := srv.Shutdown(shutdownCtx)
	if err != nil {
		s.logger.Warn("admin server shutdown deadline passed; closing connections", "err", err)
		cancelBase()
		err = srv.Close()
	}
	if serveErr := <-served; !errors.Is(serveErr, http.ErrServerClosed) {
		return fmt.Errorf("admin: serve: %w", serveErr)
	}
	if err != nil {
		return fmt.Errorf("admin: shutdown: %w", err)
	}
	s.logger.Info("admin server stopped")
	return nil
}

// Advisory wraps a readiness check whose failure /readyz reports (status
// "warn") without failing: NATS in cluster mode, without which the proxy
// still serves.
func Advisory(c Check) Check {
	return func(ctx context.Context) error {
		if err := c(ctx); err != nil {
			return advisoryError{err}
		}
		return nil
	}
}

type advisoryError struct{ error }

func (e advisoryError) Unwrap() error { return e.error }

// checkResult is one check's entry in /readyz's body.
type checkResult struct {
	Status string `json:"status"`
	Error  string `json:"error,omitempty"`
}

// serveReady runs every check concurrently, each bounded by checkTimeout,
// and answers 503 if any fails, so that an orchestrator stops routing to an
// instance whose store or upstream is gone.
func (s *Server) serveReady(w http.ResponseWriter, r *http.Request) {
	results := make(map[string]checkResult, len(s.ready))
	var (
		mu sync.Mutex
		wg sync.WaitGroup
	)
	for name, check := range s.ready {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(r.Context(), checkTimeout)
			defer cancel()
			res := checkResult{Status: "ok"}
			if err := runCheck(ctx, check); err != nil {
				res = checkResult{Status: "fail", Error: err.Error()}
				if errors.As(err, new(advisoryError)) {
					res.Status = "warn"
				}
			}
			mu.Lock()
			results[name] = res
			mu.Unlock()
		})
	}
	wg.Wait()

	status, code := "ok", http.StatusOK
	for name, res := range results {
		if res.Status == "fail" {
			status, code = "fail", http.StatusServiceUnavailable
			s.logger.WarnContext(r.Context(), "readiness check failed", "check", name, "err", res.Error)
		}
	}
	body, _ := json.Marshal(struct {
		Status string                 `json:"status"`
		Checks map[string]checkResult `json:"checks"`
	}{status, results})
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write(append(body, '\n'))
}

// runCheck turns a panicking check into a failed one: a probe must answer.
func runCheck(ctx context.Context, check Check) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = fmt.Errorf("check panicked: %v", v)
		}
	}()
	if check == nil {
		return errors.New("no check function")
	}
	return check(ctx)
}
