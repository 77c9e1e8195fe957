// Package watch holds the active rules and replaces them while the
// sidecar runs: on SIGHUP and when a rules file changes (SPEC §1). A new
// set replaces the old one atomically; a set that does not load leaves the
// old one in place, and its problems are logged and counted.
//
// The Watcher implements the proxy's Rules interface (Route and Evaluate),
// so the proxy always evaluates against whichever set is active.
package watch

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/eventtap/eventtap/rules"
)

// debounce is how long Run waits after the last file event before
// reloading: editors and ConfigMap updates change several files in a burst.
const debounce = 100 * time.Millisecond

// Watcher holds the active *rules.Engine. Engine, Route, Evaluate and
// Reload are safe for concurrent use; Run is called once, by the owner
// (package main), which cancels its context to stop it.
type Watcher struct {
	logger   *slog.Logger
	load     func() (*rules.Engine, error)
	paths    []string
	debounce time.Duration

	engine atomic.Pointer[rules.Engine]

	// mu serialises reloads, so that a slow load cannot overwrite a
	// newer one, and guards seen.
	mu sync.Mutex
	// seen is the content of paths when the last reload started, so that
	// Run reloads only when a file really changed.
	seen fingerprint

	reloads     *prometheus.CounterVec
	loaded      prometheus.Gauge
	lastSuccess prometheus.Gauge

	// onActivate are called, under mu, with each set made active.
	onActivate []func(*rules.Engine)

	// ready, when set, is closed once Run has installed its signal
	// handler and file watches (for tests).
	ready chan struct{}
}

// New returns a Watcher whose active set is initial (no rules when nil).
// load builds a new set, re-reading whatever files it needs; paths are the
// files Run watches (the rules file, or the configuration file holding
// inline rules), none to reload on SIGHUP only. Metrics are registered on
// reg (nothing is registered when reg is nil):
//
//	eventtap_rules_reloads_total{result="success"|"failure"}
//	eventtap_rules_loaded                                   rules in the active set
//	eventtap_rules_last_reload_success_timestamp_seconds    when the active set was loaded
func New(logger *slog.Logger, reg prometheus.Registerer, initial *rules.Engine, paths []string,
	load func() (*rules.Engine, error)) (*Watcher, error) {
	if load == nil {
		return nil, errors.New("watch: load function is nil")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if initial == nil {
		var err error
		if initial, err = rules.Compile("", nil, nil); err != nil {
			return nil, err
		}
	}
	w := &Watcher{
		logger:   logger.With("component", "rules"),
		load:     load,
		debounce: debounce,
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventtap_rules_reloads_total",
			Help: "Rule reloads (SIGHUP or a rules file change), by result.",
		}, []string{"result"}),
		loaded: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "eventtap_rules_loaded",
			Help: "Number of rules in the active set.",
		}),
		lastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "eventtap_rules_last_reload_success_timestamp_seconds",
			Help: "Unix time at which the active rule set was loaded.",
		}),
	}
	for _, p := range paths {
		w.paths = append(w.paths, filepath.Clean(p))
	}
	w.reloads.WithLabelValues("success")
	w.reloads.WithLabelValues("failure")
	if reg != nil {
		for _, c := range []prometheus.Collector{w.reloads, w.loaded, w.lastSuccess} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("watch: registering metrics: %w", err)
			}
		}
	}
	w.seen = w.fingerprint()
	w.activate(initial)
	return w, nil
}

// Engine returns the active rules.
func (w *Watcher) Engine() *rules.Engine { return w.engine.Load() }

// Route delegates to the active rules' Route.
func (w *Watcher) Route(method, path string) (string, bool) { return w.Engine().Route(method, path) }

// Evaluate delegates to the active rules' Evaluate.
func (w *Watcher) Evaluate(ex *rules.Exchange) ([]rules.Event, []error) {
	return w.Engine().Evaluate(ex)
}

// OnActivate calls fn with the active rules now and with every set a
// reload makes active, one call at a time, so that per-rule state kept
// elsewhere (the metrics of every rule existing at 0, SPEC §6) follows
// the active set. fn must not call Reload.
func (w *Watcher) OnActivate(fn func(*rules.Engine)) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.onActivate = append(w.onActivate, fn)
	fn(w.Engine())
}

func (w *Watcher) activate(e *rules.Engine) {
	w.engine.Store(e)
	for _, fn := range w.onActivate {
		fn(e)
	}
	w.loaded.Set(float64(e.Len()))
	w.lastSuccess.SetToCurrentTime()
}

// Reload calls load and, when it succeeds, makes its rules the active set.
// When it fails, the active set stays, and every problem is logged (each
// positioned problem on its own line) and counted. It returns load's
// error.
func (w *Watcher) Reload() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	// Taken before loading: a change made while load runs is seen as a
	// change by the next check, and loaded again.
	w.seen = w.fingerprint()
	e, err := w.load()
	if err == nil && e == nil {
		err = errors.New("loading rules returned no rules")
	}
	if err != nil {
		w.reloads.WithLabelValues("failure").Inc()
		problems := []error{err}
		if j, ok := err.(interface{ Unwrap() []error }); ok {
			problems = j.Unwrap()
		}
		w.logger.Error("reloading rules failed; the active rules stay",
			"active_rules", w.Engine().Len(), "problems", len(problems))
		for _, p := range problems {
			w.logger.Error("invalid rules", "error", p.Error())
		}
		return err
	}
	w.activate(e)
	w.reloads.WithLabelValues("success").Inc()
	w.logger.Info("rules reloaded", "rules", e.Len())
	return nil
}

// Run reloads the rules on SIGHUP and when one of the watched files
// changes, until ctx ends; it then returns nil. It watches the files'
// directories rather than the files, so that editors that write a new file
// and rename it over the old one, and Kubernetes ConfigMap volumes that swap
// a symlink, are seen; bursts of events are debounced, and a reload happens
// only when a file's content changed. If file watching cannot be set up,
// Run logs why and still reloads on SIGHUP.
func (w *Watcher) Run(ctx context.Context) error {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	var events <-chan fsnotify.Event
	var watchErrs <-chan error
	if len(w.paths) > 0 {
		fw, err := fsnotify.NewWatcher()
		if err != nil {
			w.logger.Warn("cannot watch the rules files; reload them with SIGHUP", "error", err)
		} else {
			defer fw.Close()
			for _, dir := range w.dirs() {
				if err := fw.Add(dir); err != nil {
					w.logger.Warn("cannot watch a rules directory; reload with SIGHUP after changing files in it", "dir", dir, "error", err)
				}
			}
			events, watchErrs = fw.Events, fw.Errors
		}
	}
	if w.ready != nil {
		close(w.ready)
	}
	// Catch up with changes made between New and Run.
	w.reloadIfChanged()

	timer := time.NewTimer(w.debounce)
	timer.Stop()
	defer timer.Stop()
	var fire <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-hup:
			w.logger.Info("SIGHUP: reloading rules")
			_ = w.Reload() // logged and counted
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			w.logger.Debug("rules directory changed", "event", ev.String())
			timer.Reset(w.debounce)
			fire = timer.C
		case err, ok := <-watchErrs:
			if !ok {
				watchErrs = nil
				continue
			}
			w.logger.Warn("watching the rules files", "error", err)
		case <-fire:
			fire = nil
			w.reloadIfChanged()
		}
	}
}

func (w *Watcher) reloadIfChanged() {
	w.mu.Lock()
	changed := !w.fingerprint().equal(w.seen)
	w.mu.Unlock()
	if changed {
		w.logger.Info("rules file changed: reloading rules")
		_ = w.Reload() // logged and counted
	}
}

// dirs returns the directories to watch: each path's directory, and the
// directory of the file it resolves to when it is a symlink.
func (w *Watcher) dirs() []string {
	var dirs []string
	add := func(d string) {
		if !slices.Contains(dirs, d) {
			dirs = append(dirs, d)
		}
	}
	for _, p := range w.paths {
		add(filepath.Dir(p))
		if real, err := filepath.EvalSymlinks(p); err == nil {
			add(filepath.Dir(real))
		}
	}
	return dirs
}

// fingerprint identifies the content of the watched files.
type fingerprint [][sha256.Size]byte

func (w *Watcher) fingerprint() fingerprint {
	f := make(fingerprint, len(w.paths))
	for i, p := range w.paths {
		data, err := os.ReadFile(p)
		if err != nil {
			// A missing or unreadable file has its own fingerprint, so
			// that it coming back counts as a change.
			data = []byte("\x00unreadable: " + err.Error())
		}
		f[i] = sha256.Sum256(data)
	}
	return f
}

func (f fingerprint) equal(g fingerprint) bool { return slices.Equal(f, g) }
