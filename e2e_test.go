package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/eventtap/eventtap/internal/testkit"
)

// These tests run the sidecar the way users do: a config file on disk, the
// real proxy, outbox and admin servers on loopback ports, an order API
// behind it and webhook receivers in front of it.

// logWriter sends the sidecar's logs to the test log until the test ends.
type logWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *logWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

type sidecar struct {
	proxyURL, adminURL string
	cfgPath, dir       string
}

// writeTestConfig writes rulesYAML as dir/rules.yaml and, beside it, the
// config of a sidecar in front of upstream: ports chosen by the kernel,
// storage in dir/data, fast retries to private addresses, the log section
// logCfg, and extra appended. It returns the config's path.
func writeTestConfig(t testing.TB, dir, upstream, rulesYAML, logCfg, extra string) string {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, "rules.yaml"), []byte(rulesYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	// extra may bring its own delivery section.
	deliveryCfg := "delivery: {allow_private_networks: true, retry_schedule: [100ms, 200ms, 400ms], jitter: 0}\n"
	if strings.HasPrefix(extra, "delivery:") || strings.Contains(extra, "\ndelivery:") {
		deliveryCfg = ""
	}
	cfgText := fmt.Sprintf(`proxy: {listen: "127.0.0.1:0", upstream: %q}
admin: {listen: "127.0.0.1:0"}
storage: {dir: %q}
%srules_file: rules.yaml
log: %s
%s`, upstream, filepath.Join(dir, "data"), deliveryCfg, logCfg, extra)
	path := filepath.Join(dir, "eventtap.yaml")
	if err := os.WriteFile(path, []byte(cfgText), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// startSidecar writes a config (plus rulesYAML as rules_file) and runs
// serve until the test ends. extra is appended to the config.
func startSidecar(t testing.TB, upstream, rulesYAML, extra string) *sidecar {
	t.Helper()
	dir := t.TempDir()
	sc := &sidecar{dir: dir, cfgPath: writeTestConfig(t, dir, upstream, rulesYAML, "{level: warn, format: text}", extra)}
	cfg, eng, err := loadAll(sc.cfgPath)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	lw := &logWriter{t: t}
	// Port 0 and the addresses read back from the log: no other test can
	// take the ports between choosing and binding them.
	listening := testkit.NewListening(slog.NewTextHandler(lw, &slog.HandlerOptions{Level: slog.LevelWarn}))
	logger := slog.New(listening)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, cfg, eng, logger) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve: %v", err)
			}
		case <-time.After(40 * time.Second):
			t.Error("serve did not stop within 40s")
		}
		lw.mu.Lock()
		lw.done = true
		lw.mu.Unlock()
	})
	proxyAddr := listening.Addr(t, 20*time.Second, "proxy listening")
	sc.proxyURL = "http://" + proxyAddr
	sc.adminURL = "http://" + listening.Addr(t, 20*time.Second, "admin server listening")
	waitHTTP(t, sc.adminURL+"/healthz")
	waitTCP(t, proxyAddr)
	return sc
}

func waitHTTP(t testing.TB, url string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(url)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s did not answer 200 within 15s", url)
}

func waitTCP(t testing.TB, addr string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s did not accept connections within 15s", addr)
}

type gqlResult struct {
	Data   map[string]json.RawMessage `json:"data"`
	Errors []struct {
		Message    string         `json:"message"`
		Extensions map[string]any `json:"extensions"`
	} `json:"errors"`
}

func (r gqlResult) code() string {
	if len(r.Errors) == 0 {
		return ""
	}
	c, _ := r.Errors[0].Extensions["code"].(string)
	return c
}

// gql posts a GraphQL document to the admin API like any GraphQL client.
func gql(t testing.TB, adminURL, query string, vars map[string]any) gqlResult {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"query": query, "variables": vars})
	req, _ := http.NewRequest(http.MethodPost, adminURL+"/graphql", bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/graphql-response+json, application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out gqlResult
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("graphql answer is not JSON (status %d): %v", resp.StatusCode, err)
	}
	return out
}

func (r gqlResult) into(t testing.TB, field string, v any) {
	t.Helper()
	if len(r.Errors) > 0 {
		t.Fatalf("graphql errors: %+v", r.Errors)
	}
	if err := json.Unmarshal(r.Data[field], v); err != nil {
		t.Fatalf("data.%s: %v (%s)", field, err, r.Data[field])
	}
}

// delivery is one webhook request a receiver got, verified independently.
type delivery struct {
	path    string
	header  http.Header
	body    []byte
	payload struct {
		ID, Type, Subject, Rule, Timestamp string
		Data                               json.RawMessage
		Change                             *struct{ Previous, Current any }
	}
}

// hookReceiver verifies every request with the Standard Webhooks reference
// library (code this project did not write) and records it.
type hookReceiver struct {
	srv     *httptest.Server
	mu      sync.Mutex
	secrets map[string]string
	got     []delivery
	bad     []string
}

func newHookReceiver(t testing.TB) *hookReceiver {
	rc := &hookReceiver{secrets: map[string]string{}}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		defer rc.mu.Unlock()
		wh, err := standardwebhooks.NewWebhook(rc.secrets[r.URL.Path])
		if err == nil {
			err = wh.Verify(body, r.Header)
		}
		if err != nil {
			rc.bad = append(rc.bad, fmt.Sprintf("%s: %v", r.URL.Path, err))
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		d := delivery{path: r.URL.Path, header: r.Header.Clone(), body: body}
		if err := json.Unmarshal(body, &d.payload); err != nil {
			rc.bad = append(rc.bad, fmt.Sprintf("%s: body is not the event JSON: %v", r.URL.Path, err))
		}
		rc.got = append(rc.got, d)
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *hookReceiver) of(typ string) []delivery {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []delivery
	for _, d := range rc.got {
		// webhookTest sends events of the webhook's type too; they are not traffic.
		if d.payload.Type == typ && d.payload.Rule != "webhook-test" {
			out = append(out, d)
		}
	}
	return out
}

// waitFor polls until n deliveries of typ arrived.
func (rc *hookReceiver) waitFor(t testing.TB, typ string, n int) []delivery {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		if got := rc.of(typ); len(got) >= n {
			return got
		}
		time.Sleep(20 * time.Millisecond)
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	t.Fatalf("%d %s deliveries expected; got %d in all, rejected: %v", n, typ, len(rc.got), rc.bad)
	return nil
}

// register creates a webhook with the Zonos page's document (only the URL
// and type differ) and gives its secret to the receiver.
func (rc *hookReceiver) register(t testing.TB, adminURL, typ string) string {
	t.Helper()
	path := "/hooks/" + strings.ToLower(typ)
	doc := fmt.Sprintf(`mutation {
  webhookCreate(
    input: {
      url: "%s%s"
      type: %s
      status: ENABLED
    }
  ) {
    id
    url
    type
    status
  }
}`, rc.srv.URL, path, typ)
	var hook struct{ ID, URL, Type, Status string }
	gql(t, adminURL, doc, nil).into(t, "webhookCreate", &hook)
	if hook.Type != typ || hook.Status != "ENABLED" || hook.URL != rc.srv.URL+path {
		t.Fatalf("webhookCreate returned %+v", hook)
	}
	var withSecret struct{ Secret string }
	gql(t, adminURL, `query($id: ID!) { webhook(id: $id) { secret } }`, map[string]any{"id": hook.ID}).into(t, "webhook", &withSecret)
	rc.mu.Lock()
	rc.secrets[path] = withSecret.Secret
	rc.mu.Unlock()
	return hook.ID
}

func do(t testing.TB, method, url, body string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestEndToEnd(t *testing.T) {
	api := httptest.NewServer(newOrderAPI().handler())
	defer api.Close()
	rulesYAML := readFile(t, "docs/examples/orders.rules.yaml")
	sc := startSidecar(t, api.URL, rulesYAML, "")
	rc := newHookReceiver(t)
	for _, typ := range []string{"ORDER_CREATED", "ORDER_STATUS_CHANGED", "ORDER_UPDATED", "SHIPMENT_CREATED"} {
		rc.register(t, sc.adminURL, typ)
	}

	// POST /orders through the proxy: the client sees what the API said,
	// and the receiver gets ORDER_CREATED.
	code, body := do(t, http.MethodPost, sc.proxyURL+"/orders", `{"customer":"ada","total":42}`)
	if code != http.StatusCreated || !bytes.Contains(body, []byte(`"id":1`)) {
		t.Fatalf("POST /orders through the proxy: %d %s", code, body)
	}
	created := rc.waitFor(t, "ORDER_CREATED", 1)[0]
	if created.payload.Subject != "1" || created.payload.Rule != "order-created" || !strings.HasPrefix(created.payload.ID, "evt_") {
		t.Errorf("ORDER_CREATED payload: %s", created.body)
	}
	if created.header.Get("webhook-id") != created.payload.ID {
		t.Errorf("webhook-id %q != payload id %q", created.header.Get("webhook-id"), created.payload.ID)
	}

	// The same status twice, then a new one: the create recorded OPEN, so
	// exactly two ORDER_STATUS_CHANGED, OPEN->PAID and PAID->SHIPPED.
	for _, s := range []string{"PAID", "PAID", "SHIPPED"} {
		if code, body := do(t, http.MethodPatch, sc.proxyURL+"/orders/1", `{"status":"`+s+`"}`); code != http.StatusOK {
			t.Fatalf("PATCH: %d %s", code, body)
		}
	}
	// A 404 gives nothing.
	if code, _ := do(t, http.MethodPatch, sc.proxyURL+"/orders/999", `{"status":"LOST"}`); code != http.StatusNotFound {
		t.Fatalf("PATCH unknown order: %d", code)
	}
	rc.waitFor(t, "ORDER_STATUS_CHANGED", 2)
	time.Sleep(300 * time.Millisecond) // room for a wrong third event to arrive
	changed := rc.of("ORDER_STATUS_CHANGED")
	if len(changed) != 2 {
		t.Fatalf("ORDER_STATUS_CHANGED deliveries = %d, want 2", len(changed))
	}
	if ch := changed[0].payload.Change; ch == nil || ch.Previous != "OPEN" || ch.Current != "PAID" {
		t.Errorf("change = %s", changed[0].body)
	}
	if ch := changed[1].payload.Change; ch == nil || ch.Previous != "PAID" || ch.Current != "SHIPPED" {
		t.Errorf("change = %s", changed[1].body)
	}

	// Editing the rules file changes behaviour without a restart.
	if len(rc.of("ORDER_UPDATED")) != 0 {
		t.Fatal("ORDER_UPDATED before the rule exists")
	}
	newRules := rulesYAML + `
  - name: order-updated
    event: ORDER_UPDATED
    when: {method: PATCH, path: "/orders/{id}", status: 2xx}
    subject: path.id
`
	if err := os.WriteFile(filepath.Join(sc.dir, "rules.yaml"), []byte(newRules), 0o644); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(rc.of("ORDER_UPDATED")) == 0 && time.Now().Before(deadline) {
		do(t, http.MethodPatch, sc.proxyURL+"/orders/1", `{"note":"x"}`)
		time.Sleep(200 * time.Millisecond)
	}
	if len(rc.of("ORDER_UPDATED")) == 0 {
		t.Fatal("the edited rules file was not picked up")
	}

	// The Zonos webhookLogs document: its placeholder cursor is a clear
	// BAD_USER_INPUT, and a real cursor pages.
	zonosLogs := readFile(t, "admin/testdata/zonos/logs.graphql")
	if res := gql(t, sc.adminURL, zonosLogs, nil); res.code() != "BAD_USER_INPUT" {
		t.Errorf("placeholder cursor: %+v", res.Errors)
	}
	var page struct {
		Edges []struct {
			Cursor string
			Node   struct {
				Type           string
				ResponseStatus *int
			}
		}
		PageInfo   struct{ EndCursor string }
		TotalCount int
	}
	gql(t, sc.adminURL, `{ webhookLogs(first: 1, filter: {type: ORDER_STATUS_CHANGED}) { edges { cursor node { type responseStatus } } pageInfo { endCursor } totalCount } }`, nil).
		into(t, "webhookLogs", &page)
	if len(page.Edges) != 1 || page.Edges[0].Node.Type != "ORDER_STATUS_CHANGED" || page.Edges[0].Node.ResponseStatus == nil || *page.Edges[0].Node.ResponseStatus != 204 {
		t.Errorf("webhookLogs filtered by type: %+v", page)
	}
	zonosWithCursor := strings.Replace(zonosLogs, `"yyyyyyy"`, `"`+page.PageInfo.EndCursor+`"`, 1)
	zonosWithCursor = strings.Replace(zonosWithCursor, "ORDER_CREATED", "ORDER_STATUS_CHANGED", 1)
	if res := gql(t, sc.adminURL, zonosWithCursor, nil); len(res.Errors) > 0 {
		t.Errorf("Zonos webhookLogs with a real cursor: %+v", res.Errors)
	}

	// Metrics after the traffic above.
	m := scrape(t, sc.adminURL)
	for _, c := range []struct {
		metric string
		want   float64
	}{
		{`eventtap_events_total{rule="order-created",type="ORDER_CREATED"}`, 1},
		{`eventtap_events_total{rule="order-status-changed",type="ORDER_STATUS_CHANGED"}`, 2},
		{`eventtap_proxy_requests_total{code="201",method="POST",route="/orders"}`, 1},
		{`eventtap_delivery_attempts_total{outcome="success",type="ORDER_CREATED"}`, 1},
	} {
		if got := m[c.metric]; got != c.want {
			t.Errorf("%s = %v, want %v", c.metric, got, c.want)
		}
	}
}

func jsonDecode(resp *http.Response, v any) error {
	defer resp.Body.Close()
	return json.NewDecoder(resp.Body).Decode(v)
}

// TestAdminAgainstRealOutbox drives every mutation and query of the admin
// API against the real outbox, with real deliveries.
func TestAdminAgainstRealOutbox(t *testing.T) {
	api := httptest.NewServer(newOrderAPI().handler())
	defer api.Close()
	sc := startSidecar(t, api.URL, readFile(t, "docs/examples/orders.rules.yaml"), "")
	rc := newHookReceiver(t)
	id := rc.register(t, sc.adminURL, "ORDER_CREATED")

	// The Zonos webhookUpdate document, with a real id and our receiver.
	newPath := "/hooks/moved"
	var updated struct{ ID, URL, Type, Status string }
	gql(t, sc.adminURL, fmt.Sprintf(`mutation {
  webhookUpdate(
    input: {
      id: "%s"
      url: "%s%s"
      type: ORDER_CREATED
      status: ENABLED
    }
  ) {
    id
    url
    type
    status
  }
}`, id, rc.srv.URL, newPath), nil).into(t, "webhookUpdate", &updated)
	if updated.URL != rc.srv.URL+newPath || updated.ID != id {
		t.Fatalf("webhookUpdate: %+v", updated)
	}
	rc.mu.Lock()
	rc.secrets[newPath] = rc.secrets["/hooks/order_created"]
	rc.mu.Unlock()
	// The placeholder id of the Zonos page is NOT_FOUND.
	if res := gql(t, sc.adminURL, `mutation { webhookUpdate(input: {id: "webhook-id", url: "https://example.com/webhooks/zonos", type: ORDER_CREATED, status: ENABLED}) { id } }`, nil); res.code() != "NOT_FOUND" {
		t.Errorf("unknown id: %+v", res.Errors)
	}

	// webhookTest sends a signed test event now.
	var testLog struct {
		Succeeded      bool
		ResponseStatus *int
		WebhookID      string
	}
	gql(t, sc.adminURL, `mutation($id: ID!) { webhookTest(id: $id) { succeeded responseStatus webhookId } }`, map[string]any{"id": id}).
		into(t, "webhookTest", &testLog)
	if !testLog.Succeeded || testLog.ResponseStatus == nil || *testLog.ResponseStatus != 204 || testLog.WebhookID != id {
		t.Errorf("webhookTest: %+v", testLog)
	}

	for range 3 {
		do(t, http.MethodPost, sc.proxyURL+"/orders", `{"total":1}`)
	}
	rc.waitFor(t, "ORDER_CREATED", 3)

	// events: newest first, paginated, with delivery state.
	type eventsPage struct {
		Edges []struct {
			Node struct {
				ID, Subject, Payload string
				Deliveries           []struct {
					WebhookID, State string
					Attempts         int
				}
			}
		}
		PageInfo struct {
			HasNextPage bool
			EndCursor   string
		}
		TotalCount int
	}
	const eventsQ = `query($after: String) { events(first: 2, after: $after, filter: {type: ORDER_CREATED}) {
		edges { node { id subject payload deliveries { webhookId state attempts } } }
		pageInfo { hasNextPage endCursor } totalCount } }`
	var p1, p2 eventsPage
	deadline := time.Now().Add(10 * time.Second)
	for {
		gql(t, sc.adminURL, eventsQ, nil).into(t, "events", &p1)
		if len(p1.Edges) == 2 && p1.Edges[0].Node.Deliveries[0].State == "SUCCEEDED" && p1.Edges[1].Node.Deliveries[0].State == "SUCCEEDED" || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	gql(t, sc.adminURL, eventsQ, map[string]any{"after": p1.PageInfo.EndCursor}).into(t, "events", &p2)
	if p1.TotalCount != 3 || !p1.PageInfo.HasNextPage || len(p2.Edges) != 1 || p2.PageInfo.HasNextPage {
		t.Fatalf("events pages: %+v then %+v", p1, p2)
	}
	if p1.Edges[0].Node.Subject != "3" || p2.Edges[0].Node.Subject != "1" {
		t.Errorf("events are not newest first: %q … %q", p1.Edges[0].Node.Subject, p2.Edges[0].Node.Subject)
	}
	if d := p1.Edges[0].Node.Deliveries; len(d) != 1 || d[0].WebhookID != id || d[0].State != "SUCCEEDED" || d[0].Attempts != 1 {
		t.Errorf("deliveries: %+v", d)
	}
	first := p2.Edges[0].Node
	var delivered string
	for _, d := range rc.of("ORDER_CREATED") {
		if d.payload.ID == first.ID {
			delivered = string(d.body)
		}
	}
	if delivered != first.Payload {
		t.Errorf("event payload %q differs from the delivered body %q", first.Payload, delivered)
	}

	// eventRedeliver sends the same event again, with the same webhook-id.
	var redelivered struct{ ID string }
	gql(t, sc.adminURL, `mutation($id: ID!, $wh: ID) { eventRedeliver(id: $id, webhookId: $wh) { id } }`,
		map[string]any{"id": first.ID, "wh": id}).into(t, "eventRedeliver", &redelivered)
	got := rc.waitFor(t, "ORDER_CREATED", 4)
	if last := got[len(got)-1]; last.header.Get("webhook-id") != first.ID {
		t.Errorf("redelivery webhook-id = %q, want %q", last.header.Get("webhook-id"), first.ID)
	}
	// The receiver has the redelivery before the outbox records its
	// success; until then the delivery is PENDING, and webhookReplay
	// leaves pending deliveries alone (and does not count them).
	testkit.Eventually(t, 10*time.Second, "the redelivery recorded as SUCCEEDED", func() bool {
		var ev struct {
			Deliveries []struct{ State string }
		}
		gql(t, sc.adminURL, `query($id: ID!) { event(id: $id) { deliveries { state } } }`, map[string]any{"id": first.ID}).
			into(t, "event", &ev)
		return len(ev.Deliveries) == 1 && ev.Deliveries[0].State == "SUCCEEDED"
	})

	// webhookReplay queues every stored event of the type since then.
	var replayed int
	gql(t, sc.adminURL, `mutation($id: ID!, $since: DateTime!) { webhookReplay(id: $id, since: $since) }`,
		map[string]any{"id": id, "since": time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)}).into(t, "webhookReplay", &replayed)
	if replayed != 3 {
		t.Errorf("webhookReplay = %d, want 3", replayed)
	}
	rc.waitFor(t, "ORDER_CREATED", 7)

	// Rotation: the new secret verifies, and so does the old one for 24 h.
	oldSecret := rc.secrets[newPath]
	var rotated struct{ Secret string }
	gql(t, sc.adminURL, `mutation($id: ID!) { webhookSecretRotate(id: $id) { secret } }`, map[string]any{"id": id}).
		into(t, "webhookSecretRotate", &rotated)
	if rotated.Secret == oldSecret || !strings.HasPrefix(rotated.Secret, "whsec_") {
		t.Fatalf("rotated secret %q", rotated.Secret)
	}
	rc.mu.Lock()
	rc.secrets[newPath] = rotated.Secret
	rc.mu.Unlock()
	do(t, http.MethodPost, sc.proxyURL+"/orders", `{"total":1}`)
	var last delivery
	for _, d := range rc.waitFor(t, "ORDER_CREATED", 8) {
		if d.payload.Subject == "4" {
			last = d
		}
	}
	if sigs := strings.Fields(last.header.Get("webhook-signature")); len(sigs) != 2 {
		t.Errorf("after rotation, signatures = %q, want two", last.header.Get("webhook-signature"))
	}
	if wh, _ := standardwebhooks.NewWebhook(oldSecret); wh.Verify(last.body, last.header) != nil {
		t.Error("the old secret no longer verifies right after rotation")
	}

	// Delete: the id comes back, and the webhook is gone.
	var deleted string
	gql(t, sc.adminURL, `mutation($id: ID!) { webhookDelete(id: $id) }`, map[string]any{"id": id}).into(t, "webhookDelete", &deleted)
	if deleted != id {
		t.Errorf("webhookDelete = %q", deleted)
	}
	var gone *struct{ ID string }
	gql(t, sc.adminURL, `query($id: ID!) { webhook(id: $id) { id } }`, map[string]any{"id": id}).into(t, "webhook", &gone)
	if gone != nil {
		t.Errorf("deleted webhook still there: %+v", gone)
	}
	var list struct{ TotalCount int }
	gql(t, sc.adminURL, `{ webhooks { totalCount } }`, nil).into(t, "webhooks", &list)
	if list.TotalCount != 0 {
		t.Errorf("webhooks totalCount = %d after delete", list.TotalCount)
	}
}
