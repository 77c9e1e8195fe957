package main

// Fault scenario: the data directory's disk full (see fault_harness_test.go).

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

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
		msg := fmt.Sprintf("cannot mount a %s tmpfs to fill (needs root): %v: %s", size, err, bytes.TrimSpace(out))
		if os.Getenv("CI") == "true" {
			t.Fatal(msg + "; CI runs as root (.ci/run)") // a check that can silently not run is not a check
		}
		t.Skip(msg + "; skipped outside CI")
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
