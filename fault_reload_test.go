package main

// Fault scenario: broken rules files on reload (see fault_harness_test.go).

import (
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

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
