package main

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/eventtap/eventtap/internal/testkit"
)

// buildBinary builds eventtap once per test run, the way README says.
var buildBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "eventtap-bin-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "eventtap")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build: %v\n%s", err, out)
	}
	return bin, nil
})

// process is the eventtap binary running as a child.
type process struct {
	cmd    *exec.Cmd
	stderr *strings.Builder
}

func startBinary(t *testing.T, args ...string) *process {
	t.Helper()
	bin, err := buildBinary()
	if err != nil {
		t.Fatal(err)
	}
	p := &process{cmd: exec.Command(bin, args...), stderr: &strings.Builder{}}
	p.cmd.Stderr = &lockedWriter{w: p.stderr}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			_ = p.cmd.Process.Kill()
			_ = p.cmd.Wait()
		}
	})
	return p
}

// logs returns what the process has written to stderr so far.
func (p *process) logs() string {
	lw := p.cmd.Stderr.(*lockedWriter)
	lw.mu.Lock()
	defer lw.mu.Unlock()
	return lw.w.String()
}

// addrs waits until the process has logged the addresses its proxy and
// admin servers bound. Configured with port 0, the kernel picks free ports
// as they are bound, so parallel tests cannot take each other's port (as
// they could when a test picked a free port, closed it and passed it on).
func (p *process) addrs(t testing.TB, timeout time.Duration) (proxy, admin string) {
	t.Helper()
	testkit.Eventually(t, timeout, "the binary logs its listening addresses", func() bool {
		logs := p.logs()
		var ok1, ok2 bool
		proxy, ok1 = testkit.ListeningAddr(logs, "proxy listening")
		admin, ok2 = testkit.ListeningAddr(logs, "admin server listening")
		return ok1 && ok2
	})
	return proxy, admin
}

type lockedWriter struct {
	mu sync.Mutex
	w  *strings.Builder
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// TestCrashKill9 kills the sidecar with SIGKILL under load and restarts it
// on the same data: every event whose response was released is delivered.
func TestCrashKill9(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and kills the binary; skipped with -short")
	}
	api := httptest.NewServer(newOrderAPI().handler())
	defer api.Close()
	rc := newHookReceiver(t)

	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "eventtap.yaml")
	cfg := fmt.Sprintf(`proxy: {listen: "127.0.0.1:0", upstream: %q}
admin: {listen: "127.0.0.1:0"}
storage: {dir: %q}
delivery: {allow_private_networks: true, retry_schedule: [100ms, 200ms, 500ms, 1s, 2s]}
rules_file: %q
log: {level: info}
`, api.URL, filepath.Join(dir, "data"), mustAbs(t, "docs/examples/orders.rules.yaml"))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}

	first := startBinary(t, "serve", "--config", cfgPath)
	proxyAddr, adminAddr := first.addrs(t, 20*time.Second)
	waitHTTP(t, "http://"+adminAddr+"/healthz")
	rc.register(t, "http://"+adminAddr, "ORDER_CREATED")

	// Load from 8 clients; remember every order whose 201 reached a client.
	var (
		mu    sync.Mutex
		acked = map[string]bool{}
	)
	ctx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	client := &http.Client{Timeout: 5 * time.Second}
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				resp, err := client.Post("http://"+proxyAddr+"/orders", "application/json", strings.NewReader(`{"total":1}`))
				if err != nil {
					continue
				}
				var body struct{ ID int }
				decodeErr := jsonDecode(resp, &body)
				if resp.StatusCode == http.StatusCreated && decodeErr == nil {
					mu.Lock()
					acked[fmt.Sprint(body.ID)] = true
					mu.Unlock()
				}
			}
		}()
	}
	time.Sleep(1500 * time.Millisecond)
	if err := first.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = first.cmd.Wait()
	time.Sleep(100 * time.Millisecond)
	stop()
	wg.Wait()
	mu.Lock()
	n := len(acked)
	mu.Unlock()
	if n < 20 {
		t.Fatalf("only %d orders acknowledged before the kill; the load did not run (stderr: %s)", n, first.stderr)
	}

	second := startBinary(t, "serve", "--config", cfgPath)
	_, adminAddr = second.addrs(t, 20*time.Second)
	waitHTTP(t, "http://"+adminAddr+"/healthz")
	deadline := time.Now().Add(45 * time.Second)
	var missing []string
	for {
		got := map[string]bool{}
		for _, d := range rc.of("ORDER_CREATED") {
			got[d.payload.Subject] = true
		}
		missing = missing[:0]
		for id := range acked {
			if !got[id] {
				missing = append(missing, id)
			}
		}
		if len(missing) == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if len(missing) > 0 {
		t.Fatalf("%d of %d acknowledged orders never delivered after restart (e.g. %v)\nstderr: %s",
			len(missing), n, missing[:min(5, len(missing))], second.stderr)
	}
	t.Logf("%d acknowledged orders before SIGKILL, all delivered after restart (%d deliveries incl. duplicates)",
		n, len(rc.of("ORDER_CREATED")))
	_ = second.cmd.Process.Signal(syscall.SIGTERM)
	if err := second.cmd.Wait(); err != nil {
		t.Errorf("graceful stop after SIGTERM: %v\n%s", err, second.stderr)
	}
}

func mustAbs(t *testing.T, p string) string {
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
