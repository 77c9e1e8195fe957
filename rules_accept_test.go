package main

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestChangedAndEachAgainstTheBinary is issue 13's acceptance, run the way
// users run it: the built binary serving docs/examples/orders.rules.yaml
// in front of the demo's order API, a receiver verifying signed webhooks,
// and changes made straight in the API behind the sidecar's back.
func TestChangedAndEachAgainstTheBinary(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary; skipped with -short")
	}
	api := httptest.NewServer(newOrderAPI().handler())
	defer api.Close()
	rc := newHookReceiver(t)

	dir := t.TempDir()
	rulesPath := filepath.Join(dir, "orders.rules.yaml")
	example := readFile(t, "docs/examples/orders.rules.yaml")
	if err := os.WriteFile(rulesPath, []byte(example), 0o644); err != nil {
		t.Fatal(err)
	}
	cfgPath := filepath.Join(dir, "eventtap.yaml")
	// Port 0: the binary binds free ports and logs them (at info).
	cfg := fmt.Sprintf(`proxy: {listen: "127.0.0.1:0", upstream: %q}
admin: {listen: "127.0.0.1:0"}
storage: {dir: %q}
delivery: {allow_private_networks: true, retry_schedule: [100ms, 200ms, 500ms]}
rules_file: orders.rules.yaml
log: {level: info}
`, api.URL, filepath.Join(dir, "data"))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	p := startBinary(t, "serve", "--config", cfgPath)
	proxyAddr, adminAddr := p.addrs(t, 20*time.Second)
	proxyURL, adminURL := "http://"+proxyAddr, "http://"+adminAddr
	waitHTTP(t, adminURL+"/healthz")
	waitTCP(t, proxyAddr)

	// Right after start, every rule's counters exist at 0.
	rulesOf := map[string]string{
		"order-created": "ORDER_CREATED", "order-status-changed": "ORDER_STATUS_CHANGED", "order-canceled": "ORDER_CANCELED",
		"shipment-created": "SHIPMENT_CREATED", "shipment-canceled": "SHIPMENT_CANCELED",
	}
	m := scrape(t, adminURL)
	for rule, typ := range rulesOf {
		for _, k := range []string{
			fmt.Sprintf(`eventtap_rule_errors_total{rule=%q}`, rule),
			fmt.Sprintf(`eventtap_events_total{rule=%q,type=%q}`, rule, typ),
		} {
			if v, ok := m[k]; !ok || v != 0 {
				t.Errorf("right after start: %s = %v (present %v), want 0", k, v, ok)
			}
		}
	}

	rc.register(t, adminURL, "ORDER_CREATED")
	rc.register(t, adminURL, "ORDER_STATUS_CHANGED")
	send := func(method, url, body string, want int) {
		t.Helper()
		if code, b := do(t, method, url, body); code != want {
			t.Fatalf("%s %s: %d %s", method, url, code, b)
		}
	}
	// changes waits for the status changes delivered so far to be
	// exactly want ("subject:previous->current", in order), leaving time
	// for a wrong extra one to arrive.
	changes := func(what string, want ...string) {
		t.Helper()
		if len(want) > 0 {
			rc.waitFor(t, "ORDER_STATUS_CHANGED", len(want))
		}
		time.Sleep(400 * time.Millisecond)
		// In commit order (ids sort by sequence): deliveries of different
		// subjects may arrive in any order.
		ds := rc.of("ORDER_STATUS_CHANGED")
		slices.SortFunc(ds, func(a, b delivery) int { return strings.Compare(a.payload.ID, b.payload.ID) })
		var got []string
		for _, d := range ds {
			if ch := d.payload.Change; ch != nil {
				got = append(got, fmt.Sprintf("%s:%v->%v", d.payload.Subject, ch.Previous, ch.Current))
			} else {
				got = append(got, d.payload.Subject+": no change member")
			}
		}
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Fatalf("%s: status changes delivered %q, want %q", what, got, want)
		}
	}

	// The create seeds the state: the first update fires.
	send(http.MethodPost, proxyURL+"/orders", `{"customer":"ada"}`, http.StatusCreated)
	rc.waitFor(t, "ORDER_CREATED", 1)
	changes("after the create")
	send(http.MethodPatch, proxyURL+"/orders/1", `{"status":"PAID"}`, http.StatusOK)
	changes("first PATCH", "1:OPEN->PAID")

	// Reading an unchanged order fires nothing.
	send(http.MethodGet, proxyURL+"/orders/1", "", http.StatusOK)
	changes("unchanged read", "1:OPEN->PAID")

	// A change made straight in the API is noticed on the next read.
	send(http.MethodPatch, api.URL+"/orders/1", `{"status":"SHIPPED"}`, http.StatusOK)
	changes("behind the API, before any read", "1:OPEN->PAID")
	send(http.MethodGet, proxyURL+"/orders/1", "", http.StatusOK)
	changes("read after the change", "1:OPEN->PAID", "1:PAID->SHIPPED")

	// each over GET /orders: one event per order whose status changed.
	send(http.MethodPost, proxyURL+"/orders", `{"customer":"bob"}`, http.StatusCreated)
	send(http.MethodPost, proxyURL+"/orders", `{"customer":"cy"}`, http.StatusCreated)
	send(http.MethodPost, proxyURL+"/orders", `{"customer":"di"}`, http.StatusCreated)
	send(http.MethodPatch, api.URL+"/orders/2", `{"status":"PAID"}`, http.StatusOK)
	send(http.MethodPatch, api.URL+"/orders/4", `{"status":"CANCELED"}`, http.StatusOK)
	send(http.MethodGet, proxyURL+"/orders", "", http.StatusOK)
	changes("list after two changes behind the API", "1:OPEN->PAID", "1:PAID->SHIPPED", "2:OPEN->PAID", "4:OPEN->CANCELED")
	send(http.MethodGet, proxyURL+"/orders", "", http.StatusOK)
	send(http.MethodGet, proxyURL+"/orders/2", "", http.StatusOK)
	changes("unchanged list and read", "1:OPEN->PAID", "1:PAID->SHIPPED", "2:OPEN->PAID", "4:OPEN->CANCELED")

	m = scrape(t, adminURL)
	for k, want := range map[string]float64{
		`eventtap_events_total{rule="order-status-changed",type="ORDER_STATUS_CHANGED"}`: 4,
		`eventtap_events_total{rule="order-created",type="ORDER_CREATED"}`:               4,
		`eventtap_rule_errors_total{rule="order-status-changed"}`:                        0,
	} {
		if m[k] != want {
			t.Errorf("%s = %v, want %v", k, m[k], want)
		}
	}

	// After a reload, new rules' counters exist at 0 and removed rules'
	// series are gone.
	reloaded := strings.Replace(example, "name: shipment-canceled", "name: shipment-deleted", 1)
	if err := os.WriteFile(rulesPath, []byte(reloaded), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		m = scrape(t, adminURL)
		_, added := m[`eventtap_rule_errors_total{rule="shipment-deleted"}`]
		_, addedEv := m[`eventtap_events_total{rule="shipment-deleted",type="SHIPMENT_CANCELED"}`]
		_, kept := m[`eventtap_rule_errors_total{rule="shipment-canceled"}`]
		_, keptEv := m[`eventtap_events_total{rule="shipment-canceled",type="SHIPMENT_CANCELED"}`]
		if added && addedEv && !kept && !keptEv {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after the reload: new rule's series %v %v, removed rule's series %v %v", added, addedEv, kept, keptEv)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if v := m[`eventtap_events_total{rule="order-status-changed",type="ORDER_STATUS_CHANGED"}`]; v != 4 {
		t.Errorf("a kept rule's count after the reload: %v, want 4", v)
	}

	// `rules test` shows each element's outcome.
	code, out, errOut := runCLI("rules", "test", "--config", cfgPath, "--exchange", "testdata/exchange-list.json")
	for _, want := range []string{
		"rule order-status-changed: each gave 3 element(s)",
		`  [0]: emits ORDER_STATUS_CHANGED for subject "1"`,
		"  [1]: skipped, when.match was false",
		`  [2]: emits ORDER_STATUS_CHANGED for subject "3"`,
		`    data: {"id":3,"status":"OPEN","total":9.5}`,
	} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("rules test (exit %d) lacks %q:\n%s%s", code, want, out, errOut)
		}
	}
}
