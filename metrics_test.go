package main

import (
	"bytes"
	"io"
	"net/http"
	"sort"
	"strings"
	"testing"

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
			switch {
			case m.Counter != nil:
				v = m.GetCounter().GetValue()
			case m.Gauge != nil:
				v = m.GetGauge().GetValue()
			case m.Histogram != nil:
				name, v = name+"_count", float64(m.GetHistogram().GetSampleCount())
			default:
				continue
			}
			out[name+labelString(m.GetLabel())] = v
			var others []*dto.LabelPair
			for _, l := range m.GetLabel() {
				if l.GetName() != "webhook" {
					others = append(others, l)
				}
			}
			if len(others) < len(m.GetLabel()) {
				summed[name+labelString(others)] += v
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
