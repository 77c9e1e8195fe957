package watch

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/eventtap/eventtap/internal/testkit"
	"github.com/eventtap/eventtap/rules"
)

// rulesFor returns a rules file with one rule watching POST path.
func rulesFor(path string) string {
	return fmt.Sprintf(`rules:
  - name: r
    event: ORDER_CREATED
    when: {method: POST, path: %s}
    subject: response.body.id
`, path)
}

const invalidRules = `rules:
  - name: r
    event: ORDER_CREATD
    when: {method: POST, path: /x}
    subject: response.body.id
`

type fixture struct {
	w    *Watcher
	reg  *prometheus.Registry
	logs *testkit.SyncBuffer
	file string
}

// newFixture writes content to a rules file in a temporary directory and
// returns a Watcher over it, loaded.
func newFixture(t *testing.T, file, content string) *fixture {
	t.Helper()
	if err := os.WriteFile(file, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	load := func() (*rules.Engine, error) {
		data, err := os.ReadFile(file)
		if err != nil {
			return nil, err
		}
		return rules.CompileFile(file, data, nil)
	}
	initial, err := load()
	if err != nil {
		t.Fatal(err)
	}
	f := &fixture{reg: prometheus.NewRegistry(), logs: &testkit.SyncBuffer{}, file: file}
	logger := slog.New(slog.NewTextHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	f.w, err = New(logger, f.reg, initial, []string{file}, load)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// run starts Run and waits until it watches; the returned function stops it.
func (f *fixture) run(t *testing.T) {
	t.Helper()
	f.w.ready = make(chan struct{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after its context ended")
		}
	})
	select {
	case <-f.w.ready:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not start")
	}
}

func (f *fixture) count(result string) float64 {
	return testutil.ToFloat64(f.w.reloads.WithLabelValues(result))
}

func routes(w *Watcher, path string) bool {
	_, ok := w.Route("POST", path)
	return ok
}

// replaceFile writes content the way editors do: to a temporary file,
// renamed over the old one.
func replaceFile(t *testing.T, file, content string) {
	t.Helper()
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, file); err != nil {
		t.Fatal(err)
	}
}

func TestRunReloadsOnFileChange(t *testing.T) {
	f := newFixture(t, filepath.Join(t.TempDir(), "rules.yaml"), rulesFor("/a"))
	f.run(t)
	if !routes(f.w, "/a") {
		t.Fatal("initial rules not active")
	}

	// Rename-and-replace, as editors save.
	replaceFile(t, f.file, rulesFor("/b"))
	testkit.Eventually(t, 5*time.Second, "the new rules are active", func() bool { return routes(f.w, "/b") })
	if routes(f.w, "/a") {
		t.Fatal("old rules still active")
	}

	// An invalid file: the old set stays, the failure is counted and
	// every problem logged with its position.
	if err := os.WriteFile(f.file, []byte(invalidRules), 0o644); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 5*time.Second, "the failure is counted", func() bool { return f.count("failure") == 1 })
	if !routes(f.w, "/b") {
		t.Fatal("a failed reload replaced the rules")
	}
	if logs := f.logs.String(); !strings.Contains(logs, f.file+`:3:12: event: unknown event type \"ORDER_CREATD\"`) {
		t.Fatalf("the problem is not logged with its position:\n%s", logs)
	}

	// Fixed in place (truncate and write).
	if err := os.WriteFile(f.file, []byte(rulesFor("/c")), 0o644); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 5*time.Second, "the fixed rules are active", func() bool { return routes(f.w, "/c") })
	if got := f.count("success"); got != 2 {
		t.Fatalf("successes = %v, want 2", got)
	}
	if got := testutil.ToFloat64(f.w.loaded); got != 1 {
		t.Fatalf("eventtap_rules_loaded = %v", got)
	}

	// Unrelated files in the directory do not reload anything.
	before := f.count("success") + f.count("failure")
	if err := os.WriteFile(filepath.Join(filepath.Dir(f.file), "notes.txt"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	time.Sleep(5 * debounce)
	if after := f.count("success") + f.count("failure"); after != before {
		t.Fatalf("an unrelated file caused %v reloads", after-before)
	}
}

// TestRunConfigMapSwap updates rules the way Kubernetes updates a
// ConfigMap volume: the file is a symlink through ..data, which is swapped
// to a new directory.
func TestRunConfigMapSwap(t *testing.T) {
	dir := t.TempDir()
	mustDo := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	version := func(name, content string) {
		mustDo(os.Mkdir(filepath.Join(dir, name), 0o755))
		mustDo(os.WriteFile(filepath.Join(dir, name, "rules.yaml"), []byte(content), 0o644))
	}
	version("..v1", rulesFor("/a"))
	mustDo(os.Symlink("..v1", filepath.Join(dir, "..data")))
	mustDo(os.Symlink("..data/rules.yaml", filepath.Join(dir, "rules.yaml")))

	f := newFixture(t, filepath.Join(dir, "rules.yaml"), rulesFor("/a"))
	f.run(t)

	version("..v2", rulesFor("/b"))
	mustDo(os.Symlink("..v2", filepath.Join(dir, "..data_tmp")))
	mustDo(os.Rename(filepath.Join(dir, "..data_tmp"), filepath.Join(dir, "..data")))
	mustDo(os.RemoveAll(filepath.Join(dir, "..v1")))
	testkit.Eventually(t, 5*time.Second, "the swapped rules are active", func() bool { return routes(f.w, "/b") })
}

func TestRunSIGHUP(t *testing.T) {
	f := newFixture(t, filepath.Join(t.TempDir(), "rules.yaml"), rulesFor("/a"))
	var loads atomic.Int32
	load := f.w.load
	f.w.load = func() (*rules.Engine, error) {
		loads.Add(1)
		return load()
	}
	f.w.paths, f.w.seen = nil, nil // SIGHUP only
	f.run(t)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 5*time.Second, "SIGHUP reloads", func() bool { return loads.Load() == 1 && f.count("success") == 1 })
}

func TestReload(t *testing.T) {
	f := newFixture(t, filepath.Join(t.TempDir(), "rules.yaml"), rulesFor("/a"))
	first := f.w.Engine()
	if got := testutil.ToFloat64(f.w.lastSuccess); got <= 0 {
		t.Fatalf("last success timestamp = %v", got)
	}

	if err := os.WriteFile(f.file, []byte(invalidRules), 0o644); err != nil {
		t.Fatal(err)
	}
	err := f.w.Reload()
	if err == nil || !strings.Contains(err.Error(), "ORDER_CREATD") {
		t.Fatalf("Reload = %v", err)
	}
	if f.w.Engine() != first || f.count("failure") != 1 || f.count("success") != 0 {
		t.Fatal("a failed reload changed the rules or was not counted")
	}

	if err := os.WriteFile(f.file, []byte(rulesFor("/b")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := f.w.Reload(); err != nil {
		t.Fatal(err)
	}
	if !routes(f.w, "/b") || f.count("success") != 1 {
		t.Fatal("reload did not take effect")
	}
	evs, errs := f.w.Evaluate(&rules.Exchange{
		Request:  rules.Request{Method: "POST", Path: "/b"},
		Response: rules.Response{Status: 200, Body: []byte(`{"id": 7}`)},
	})
	if len(evs) != 1 || evs[0].Subject != "7" || len(errs) != 0 {
		t.Fatalf("Evaluate = %v, %v", evs, errs)
	}

	// A load that returns nothing is a failure too.
	f.w.load = func() (*rules.Engine, error) { return nil, nil }
	if err := f.w.Reload(); err == nil || !routes(f.w, "/b") {
		t.Fatalf("Reload with no engine = %v", err)
	}
}

func TestMetricsRegistered(t *testing.T) {
	f := newFixture(t, filepath.Join(t.TempDir(), "rules.yaml"), rulesFor("/a"))
	n, err := testutil.GatherAndCount(f.reg,
		"eventtap_rules_reloads_total", "eventtap_rules_loaded", "eventtap_rules_last_reload_success_timestamp_seconds")
	if err != nil || n != 4 { // two results, the gauge and the timestamp
		t.Fatalf("gathered %d series, %v", n, err)
	}
	if _, err := New(nil, f.reg, nil, nil, f.w.load); err == nil {
		t.Fatal("registering the metrics twice succeeded")
	}
	if _, err := New(nil, nil, nil, nil, nil); err == nil {
		t.Fatal("a nil load function was accepted")
	}
	w, err := New(nil, nil, nil, nil, f.w.load)
	if err != nil || w.Engine().Len() != 0 {
		t.Fatalf("New without initial rules: %v", err)
	}
}

// TestConcurrentUse evaluates while reloading, for the race detector.
func TestConcurrentUse(t *testing.T) {
	f := newFixture(t, filepath.Join(t.TempDir(), "rules.yaml"), rulesFor("/a"))
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			ex := &rules.Exchange{
				Request:  rules.Request{Method: "POST", Path: "/a"},
				Response: rules.Response{Status: 201, Body: []byte(`{"id": 1}`)},
			}
			for {
				select {
				case <-stop:
					return
				default:
				}
				f.w.Route("POST", "/a")
				f.w.Evaluate(ex)
			}
		})
	}
	for i := range 10 {
		if err := os.WriteFile(f.file, []byte(rulesFor(fmt.Sprintf("/%c", 'a'+i%2))), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := f.w.Reload(); err != nil {
			t.Fatal(err)
		}
	}
	close(stop)
	wg.Wait()
}

// TestOnActivateFollowsTheActiveSet: OnActivate sees the active rules at
// once and every set a reload activates, never a refused one.
func TestOnActivateFollowsTheActiveSet(t *testing.T) {
	f := newFixture(t, filepath.Join(t.TempDir(), "rules.yaml"), rulesFor("/a"))
	var seen []string
	f.w.OnActivate(func(e *rules.Engine) {
		_, a := e.Route("POST", "/a")
		_, b := e.Route("POST", "/b")
		seen = append(seen, fmt.Sprintf("%d:%v:%v", e.Len(), a, b))
	})
	replaceFile(t, f.file, invalidRules)
	if err := f.w.Reload(); err == nil {
		t.Fatal("invalid rules loaded")
	}
	replaceFile(t, f.file, rulesFor("/b"))
	if err := f.w.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(seen, " "); got != "1:true:false 1:false:true" {
		t.Errorf("OnActivate saw %q", got)
	}
}
