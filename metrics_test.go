package main

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// scrape reads the admin /metrics exposition like Prometheus does, lints it
// with promlint, and returns every sample as `name{label="v",…}` → value
// (labels sorted; counters and gauges only, plus histogram _count). A series
// with a webhook label is also summed, over every webhook, under the key
// without it: tests that do not care which webhook a delivery went to read
// `eventtap_delivery_attempts_total{outcome="success",type="ORDER_CREATED"}`.
func scrape(t testing.TB, adminURL string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(adminURL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	problems, err := promlint.New(bytes.NewReader(raw)).Lint()
	if err != nil {
		t.Fatalf("lint: %v", err)
	}
	for _, p := range problems {
		if strings.HasPrefix(p.Metric, "eventtap_") {
			t.Errorf("promlint: %s: %s", p.Metric, p.Text)
		}
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(raw))
	if err != nil {
		t.Fatalf("exposition does not parse: %v", err)
	}
	out := map[string]float64{}
	summed := map[string]float64{}
	for name, mf := range families {
		for _, m := range mf.GetMetric() {
			var v float64
			sample := name
			switch {
			case m.Counter != nil:
				v = m.GetCounter().GetValue()
			case m.Gauge != nil:
				v = m.GetGauge().GetValue()
			case m.Histogram != nil:
				sample, v = name+"_count", float64(m.GetHistogram().GetSampleCount())
			default:
				continue
			}
			out[sample+labelString(m.GetLabel())] = v
			var others []*dto.LabelPair
			for _, l := range m.GetLabel() {
				if l.GetName() != "webhook" {
					others = append(others, l)
				}
			}
			if len(others) < len(m.GetLabel()) {
				summed[sample+labelString(others)] += v
			}
		}
	}
	for k, v := range summed {
		out[k] = v
	}
	return out
}

func labelString(labels []*dto.LabelPair) string {
	if len(labels) == 0 {
		return ""
	}
	parts := make([]string, 0, len(labels))
	for _, l := range labels {
		parts = append(parts, l.GetName()+`="`+l.GetValue()+`"`)
	}
	sort.Strings(parts)
	return "{" + strings.Join(parts, ",") + "}"
}

// TestMetricsPerWebhook runs the real sidecar with two webhooks on the same
// event type: /metrics labels delivery metrics with each webhook's id (not
// its URL), and a deleted webhook's series go.
func TestMetricsPerWebhook(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, `{"id": 7, "status": "OPEN"}`)
	}))
	defer upstream.Close()
	sc := startSidecar(t, upstream.URL, orderCreatedRules, "")
	rc1, rc2 := newHookReceiver(t), newHookReceiver(t)
	id1 := rc1.register(t, sc.adminURL, "ORDER_CREATED")
	id2 := rc2.register(t, sc.adminURL, "ORDER_CREATED")
	do(t, http.MethodPost, sc.proxyURL+"/orders", `{}`)
	rc1.waitFor(t, "ORDER_CREATED", 1)
	rc2.waitFor(t, "ORDER_CREATED", 1)

	key := func(id string) string {
		return `eventtap_delivery_attempts_total{outcome="success",type="ORDER_CREATED",webhook="` + id + `"}`
	}
	var m map[string]float64
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		m = scrape(t, sc.adminURL)
		if m[key(id1)] == 1 && m[key(id2)] == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("want one success for each of %s and %s; /metrics has %v", id1, id2, pick(m, "eventtap_delivery_attempts_total"))
		}
	}
	for _, id := range []string{id1, id2} {
		for _, k := range []string{
			`eventtap_delivery_attempts_total{outcome="failure",type="ORDER_CREATED",webhook="` + id + `"}`,
			`eventtap_deliveries_failed_total{type="ORDER_CREATED",webhook="` + id + `"}`,
			`eventtap_webhook_pending{webhook="` + id + `"}`,
		} {
			if v, ok := m[k]; !ok || v != 0 {
				t.Errorf("%s = %v (present %v), want 0", k, v, ok)
			}
		}
		if m[`eventtap_delivery_duration_seconds_count{type="ORDER_CREATED",webhook="`+id+`"}`] != 1 {
			t.Errorf("no duration observed for %s: %v", id, pick(m, "eventtap_delivery_duration_seconds"))
		}
	}
	for k := range m {
		if strings.Contains(k, "127.0.0.1") || strings.Contains(k, "://") {
			t.Errorf("a URL as label value: %s", k)
		}
	}

	gql(t, sc.adminURL, `mutation($id: ID!) { webhookDelete(id: $id) }`, map[string]any{"id": id2})
	m = scrape(t, sc.adminURL)
	for k := range m {
		if strings.Contains(k, id2) {
			t.Errorf("deleted webhook still on /metrics: %s", k)
		}
	}
	if m[key(id1)] != 1 {
		t.Errorf("the other webhook's series changed: %v", pick(m, "eventtap_delivery_attempts_total"))
	}
}

// pick returns the samples of one metric, for failure messages.
func pick(m map[string]float64, name string) map[string]float64 {
	out := map[string]float64{}
	for k, v := range m {
		if strings.HasPrefix(k, name) {
			out[k] = v
		}
	}
	return out
}

// orderCreatedRules is one rule: POST /orders answered 201 is ORDER_CREATED
// of the response's id.
const orderCreatedRules = `rules:
  - name: order-created
    event: ORDER_CREATED
    when: {method: POST, path: /orders, status: 201}
    subject: response.body.id
`
