package main

// Tests for the operations files under docs/: the Grafana dashboard, the Prometheus alerting
// rules and scrape config, and the Kubernetes manifest. They check that every query names a
// metric eventtap exposes, that the files are well formed, and, when promtool is on PATH, that
// Prometheus itself accepts every alert and dashboard expression.

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
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"text/template"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/eventtap/eventtap/internal/natstest"
	"github.com/eventtap/eventtap/internal/testkit"
)

const (
	dashboardFile  = "docs/grafana/eventtap.json"
	alertsFile     = "docs/prometheus/alerts.yaml"
	alertsTestFile = "docs/prometheus/alerts_test.yaml"
	scrapeFile     = "docs/prometheus/scrape.yaml"
	podFile        = "docs/kubernetes/pod.yaml"
)

// exposedMetricNames returns the metric families served on the admin /metrics endpoint
// (histograms by their base name, without _bucket/_sum/_count).
func exposedMetricNames(t *testing.T) map[string]bool {
	t.Helper()
	exposedOnce.Do(func() { exposedNames, exposedLabels, exposedErr = gatherAfterTraffic(t) })
	if exposedErr != nil {
		t.Fatal(exposedErr)
	}
	return exposedNames
}

// exposedLabelNames returns, per metric family served on /metrics, the
// label names its series carry.
func exposedLabelNames(t *testing.T) map[string]map[string]bool {
	t.Helper()
	exposedMetricNames(t)
	return exposedLabels
}

var (
	exposedOnce   sync.Once
	exposedNames  map[string]bool
	exposedLabels map[string]map[string]bool
	exposedErr    error
)

// gatherAfterTraffic runs the real sidecar, sends it traffic that touches
// every metric (an event delivered, a rule failing at run time, an upstream
// that hangs up), and returns the metric families its /metrics serves.
func gatherAfterTraffic(t *testing.T) (map[string]bool, map[string]map[string]bool, error) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/orders":
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusCreated)
			io.WriteString(w, `{"id": 7, "status": "OPEN"}`)
		case "/broken":
			io.WriteString(w, "not json")
		case "/hangup":
			if c, _, err := http.NewResponseController(w).Hijack(); err == nil {
				c.Close()
			}
		}
	}))
	defer upstream.Close()
	rulesYAML := `rules:
  - name: order-created
    event: ORDER_CREATED
    when: {method: POST, path: /orders, status: 201}
    subject: response.body.id
  - name: broken
    event: ORDER_UPDATED
    when: {method: POST, path: /broken}
    subject: response.body.id
`
	// In cluster mode, which exposes every single-node metric plus the
	// cluster's own (README "Running several replicas").
	ns := natstest.Start(t)
	sc := startSidecar(t, upstream.URL, rulesYAML, fmt.Sprintf("cluster: {nats: {urls: [%q]}}\n", ns.URL()))
	waitNATS(t, sc, "ok")
	rc := newHookReceiver(t)
	rc.register(t, sc.adminURL, "ORDER_CREATED")
	do(t, http.MethodPost, sc.proxyURL+"/orders", `{}`)
	do(t, http.MethodPost, sc.proxyURL+"/broken", `{}`)
	do(t, http.MethodGet, sc.proxyURL+"/hangup", "")
	rc.waitFor(t, "ORDER_CREATED", 1)
	// The receiver has answered; the outbox records the attempt just after.
	var names map[string]bool
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		names = map[string]bool{}
		labels := map[string]map[string]bool{}
		for key := range scrape(t, sc.adminURL) {
			name, rest, _ := strings.Cut(key, "{")
			name = strings.TrimSuffix(name, "_count")
			names[name] = true
			if labels[name] == nil {
				labels[name] = map[string]bool{}
			}
			for _, m := range exposedLabelRE.FindAllStringSubmatch(rest, -1) {
				labels[name][m[1]] = true
			}
		}
		if names["eventtap_rule_errors_total"] && names["eventtap_delivery_lag_seconds"] {
			return names, labels, nil
		}
	}
	return nil, nil, fmt.Errorf("the traffic did not reach every metric: %v", names)
}

var exposedLabelRE = regexp.MustCompile(`([A-Za-z_][A-Za-z0-9_]*)="`)

// prometheusSeries are series Prometheus synthesizes for every target; eventtap does not expose them.
var prometheusSeries = map[string]bool{"up": true}

// Every SPEC §6 dashboard topic: at least one panel must query each of these.
var dashboardTopics = []string{
	"eventtap_proxy_requests_total",
	"eventtap_proxy_request_duration_seconds",
	"eventtap_events_total",
	"eventtap_events_dropped_total",
	"eventtap_rule_errors_total",
	"eventtap_outbox_pending",
	"eventtap_outbox_oldest_pending_seconds",
	"eventtap_delivery_attempts_total",
	"eventtap_delivery_duration_seconds",
	"eventtap_delivery_lag_seconds",
	"eventtap_deliveries_failed_total",
	"eventtap_webhook_pending",
	"eventtap_webhook_oldest_pending_seconds",
	"eventtap_webhooks",
	"eventtap_cluster_connected",
	"eventtap_cluster_relay_pending",
}

// Every condition the alerts must cover, by the metric its rule reads.
var alertTopics = []string{
	"up",
	"eventtap_outbox_pending",
	"eventtap_outbox_oldest_pending_seconds",
	"eventtap_delivery_attempts_total",
	"eventtap_proxy_upstream_errors_total",
	"eventtap_events_dropped_total",
	"eventtap_rule_errors_total",
	"eventtap_rules_reloads_total",
	"eventtap_deliveries_failed_total",
	"eventtap_webhooks",
	"eventtap_cluster_connected",
	"eventtap_cluster_relay_pending",
}

// ---- PromQL metric-name extraction

// promqlWords are identifiers that are not metric names when not followed by "(":
// aggregation operators (which may be followed by by/without), binary and set operators,
// modifiers and literals.
var promqlWords = map[string]bool{
	"sum": true, "avg": true, "min": true, "max": true, "count": true, "stddev": true,
	"stdvar": true, "topk": true, "bottomk": true, "quantile": true, "count_values": true,
	"group": true, "limitk": true, "limit_ratio": true,
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true,
	"group_right": true, "offset": true, "bool": true, "and": true, "or": true, "unless": true,
	"atan2": true, "start": true, "end": true, "inf": true, "nan": true,
}

// labelListWords are followed by a parenthesized list of label names, not an expression.
var labelListWords = map[string]bool{
	"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true,
}

// promqlMetricNames returns the metric names an expression selects, in order of appearance,
// without duplicates. It skips strings, comments, label matchers ({…}), ranges and subquery
// steps ([…]), numbers and durations, function calls, keywords, and the label lists of
// by/without/on/ignoring/group_left/group_right. The expression must be plain PromQL (Grafana
// variables already substituted).
func promqlMetricNames(expr string) []string {
	var names []string
	seen := map[string]bool{}
	isIdentStart := func(c byte) bool { return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
	isIdent := func(c byte) bool { return isIdentStart(c) || c >= '0' && c <= '9' }
	isDigit := func(c byte) bool { return c >= '0' && c <= '9' }
	skipSpace := func(i int) int {
		for i < len(expr) && strings.IndexByte(" \t\r\n", expr[i]) >= 0 {
			i++
		}
		return i
	}
	// skipString returns the index after the string literal starting at i.
	skipString := func(i int) int {
		q := expr[i]
		for i++; i < len(expr); i++ {
			switch {
			case expr[i] == '\\' && q != '`':
				i++
			case expr[i] == q:
				return i + 1
			}
		}
		return i
	}
	// skipGroup returns the index after the bracket group opened at i, honoring strings.
	skipGroup := func(i int, open, close byte) int {
		depth := 0
		for i < len(expr) {
			switch c := expr[i]; {
			case c == '"' || c == '\'' || c == '`':
				i = skipString(i)
				continue
			case c == open:
				depth++
			case c == close:
				depth--
				if depth == 0 {
					return i + 1
				}
			}
			i++
		}
		return i
	}
	for i := 0; i < len(expr); {
		c := expr[i]
		switch {
		case c == '#':
			for i < len(expr) && expr[i] != '\n' {
				i++
			}
		case c == '"' || c == '\'' || c == '`':
			i = skipString(i)
		case c == '{':
			i = skipGroup(i, '{', '}')
		case c == '[':
			i = skipGroup(i, '[', ']')
		case isDigit(c) || c == '.' && i+1 < len(expr) && isDigit(expr[i+1]):
			// Numbers (1, 0.99, 1e-3, 0x1f) and durations (5m, 1h30m).
			start := i
			for i < len(expr) && (isIdent(expr[i]) || expr[i] == '.' ||
				(expr[i] == '+' || expr[i] == '-') && (expr[i-1] == 'e' || expr[i-1] == 'E') &&
					!strings.HasPrefix(strings.ToLower(expr[start:]), "0x")) {
				i++
			}
		case isIdentStart(c):
			start := i
			for i < len(expr) && isIdent(expr[i]) {
				i++
			}
			word := expr[start:i]
			next := skipSpace(i)
			lower := strings.ToLower(word)
			switch {
			case labelListWords[lower]:
				if next < len(expr) && expr[next] == '(' {
					i = skipGroup(next, '(', ')')
				}
			case promqlWords[lower]:
			case next < len(expr) && expr[next] == '(':
				// A function call.
			default:
				if !seen[word] {
					seen[word] = true
					names = append(names, word)
				}
			}
		default:
			i++
		}
	}
	return names
}

// unknownMetrics returns the names in expr that are neither exposed (histograms by base name)
// nor synthesized by Prometheus.
func unknownMetrics(expr string, exposed map[string]bool) (names, unknown []string) {
	names = promqlMetricNames(expr)
	for _, n := range names {
		if base := metricBase(n, exposed); !exposed[base] && !prometheusSeries[base] {
			unknown = append(unknown, n)
		}
	}
	return names, unknown
}

// metricBase strips a histogram series suffix when the base is a known family.
func metricBase(name string, exposed map[string]bool) string {
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if b, ok := strings.CutSuffix(name, suffix); ok && exposed[b] {
			return b
		}
	}
	return name
}

func TestPromQLMetricNames(t *testing.T) {
	tests := []struct {
		expr string
		want []string
	}{
		{`up`, []string{"up"}},
		{`sum by (route, code) (rate(eventtap_proxy_requests_total{job=~"a|b", code=~"5.."}[5m]))`,
			[]string{"eventtap_proxy_requests_total"}},
		{`histogram_quantile(0.99, sum(rate(x_bucket{le!="+Inf"}[1m])) by (le, instance))`, []string{"x_bucket"}},
		{`a / on (job, instance) group_left(type) b > bool 0.5`, []string{"a", "b"}},
		{`a offset 5m unless b offset -1h30m and c @ start()`, []string{"a", "b", "c"}},
		{`max_over_time(timestamp(changes(a[2m]) > 0)[1d:1m]) > 1e-3 * b + 0x1F + Inf - NaN`, []string{"a", "b"}},
		{"# comment with words rate(x)\na{l=\"}{[(\"} # trailing a_b\n or vector(0)", []string{"a"}},
		{`label_replace(a, "dst", "$1", "src", "(.*)") or sum without (le) (b:recorded:rate5m)`, []string{"a", "b:recorded:rate5m"}},
		{`count_values("v", a) + topk(3, b) + quantile(0.5, c) + group(d) + time()`, []string{"a", "b", "c", "d"}},
		{`sum(a) by (l) + sum(a)`, []string{"a"}},
	}
	for _, tt := range tests {
		t.Run(tt.expr, func(t *testing.T) {
			if got := promqlMetricNames(tt.expr); !slices.Equal(got, tt.want) {
				t.Errorf("promqlMetricNames(%q) = %q, want %q", tt.expr, got, tt.want)
			}
		})
	}
}

// ---- Grafana dashboard

type grafanaDatasource struct {
	Type string `json:"type"`
	UID  string `json:"uid"`
}

type grafanaTarget struct {
	Expr       string             `json:"expr"`
	RefID      string             `json:"refId"`
	Datasource *grafanaDatasource `json:"datasource"`
}

type grafanaPanel struct {
	ID          int                       `json:"id"`
	Type        string                    `json:"type"`
	Title       string                    `json:"title"`
	Description string                    `json:"description"`
	Datasource  *grafanaDatasource        `json:"datasource"`
	GridPos     *struct{ X, Y, W, H int } `json:"gridPos"`
	FieldConfig struct {
		Defaults struct {
			Unit string `json:"unit"`
		} `json:"defaults"`
	} `json:"fieldConfig"`
	Targets []grafanaTarget `json:"targets"`
	Panels  []grafanaPanel  `json:"panels"` // a collapsed row's panels
}

type grafanaVariable struct {
	Name       string             `json:"name"`
	Type       string             `json:"type"`
	Query      json.RawMessage    `json:"query"` // a string, or {"query": "…"} in newer Grafana
	Datasource *grafanaDatasource `json:"datasource"`
	IncludeAll bool               `json:"includeAll"`
	AllValue   string             `json:"allValue"`
}

func (v grafanaVariable) queryText() string {
	var s string
	if json.Unmarshal(v.Query, &s) == nil {
		return s
	}
	var o struct {
		Query string `json:"query"`
	}
	_ = json.Unmarshal(v.Query, &o)
	return o.Query
}

type grafanaInput struct {
	Name     string `json:"name"`
	Type     string `json:"type"`
	PluginID string `json:"pluginId"`
}

type grafanaDashboard struct {
	UID           string         `json:"uid"`
	Title         string         `json:"title"`
	SchemaVersion int            `json:"schemaVersion"`
	Inputs        []grafanaInput `json:"__inputs"`
	Templating    struct {
		List []grafanaVariable `json:"list"`
	} `json:"templating"`
	Panels []grafanaPanel `json:"panels"`
}

// dashboardQuery is one PromQL target of a panel, with Grafana variables already substituted.
type dashboardQuery struct {
	Panel grafanaPanel
	RefID string
	Raw   string // as written in the dashboard
	Expr  string // plain PromQL
}

const dashboardDatasource = "${DS_PROMETHEUS}"

func loadDashboard(t *testing.T) grafanaDashboard {
	t.Helper()
	data, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d grafanaDashboard
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return d
}

// flattenPanels returns every panel, rows' nested panels included, rows themselves too.
func flattenPanels(panels []grafanaPanel) []grafanaPanel {
	var out []grafanaPanel
	for _, p := range panels {
		out = append(out, p)
		out = append(out, flattenPanels(p.Panels)...)
	}
	return out
}

var grafanaVarRE = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)(?::[^}]*)?\}|\[\[([A-Za-z_][A-Za-z0-9_]*)(?::[^\]]*)?\]\]|\$([A-Za-z_][A-Za-z0-9_]*)`)

// grafanaValues are concrete stand-ins for Grafana's built-in variables and the dashboard's own.
func grafanaValues(d grafanaDashboard) map[string]string {
	vals := map[string]string{
		"__rate_interval": "5m", "__interval": "1m", "__range": "1h",
		"__interval_ms": "60000", "__range_s": "3600", "__range_ms": "3600000",
	}
	for _, v := range d.Templating.List {
		switch v.Type {
		case "datasource":
			// Never valid inside a query.
		case "interval":
			vals[v.Name] = "5m"
		default:
			vals[v.Name] = ".*"
		}
	}
	return vals
}

// substituteGrafanaVars replaces $var, ${var}, ${var:fmt} and [[var]] with concrete values.
func substituteGrafanaVars(expr string, vals map[string]string) (string, error) {
	var unknown []string
	out := grafanaVarRE.ReplaceAllStringFunc(expr, func(m string) string {
		sub := grafanaVarRE.FindStringSubmatch(m)
		name := sub[1] + sub[2] + sub[3]
		v, ok := vals[name]
		if !ok {
			unknown = append(unknown, name)
			return m
		}
		return v
	})
	if len(unknown) > 0 {
		return "", fmt.Errorf("unknown Grafana variables %q", unknown)
	}
	return out, nil
}

func dashboardQueries(t *testing.T, d grafanaDashboard) []dashboardQuery {
	t.Helper()
	vals := grafanaValues(d)
	var qs []dashboardQuery
	for _, p := range flattenPanels(d.Panels) {
		for _, tg := range p.Targets {
			expr, err := substituteGrafanaVars(tg.Expr, vals)
			if err != nil {
				t.Errorf("panel %d %q target %s: %v", p.ID, p.Title, tg.RefID, err)
				continue
			}
			qs = append(qs, dashboardQuery{Panel: p, RefID: tg.RefID, Raw: tg.Expr, Expr: expr})
		}
	}
	if len(qs) == 0 {
		t.Fatalf("%s: no queries", dashboardFile)
	}
	return qs
}

var labelValuesRE = regexp.MustCompile(`^\s*label_values\((.*),\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)\s*$`)

func TestDashboardQueries(t *testing.T) {
	d := loadDashboard(t)
	exposed := exposedMetricNames(t)

	t.Run("structure", func(t *testing.T) {
		if d.UID == "" || d.Title == "" {
			t.Errorf("uid %q, title %q: both required", d.UID, d.Title)
		}
		if d.SchemaVersion < 36 {
			t.Errorf("schemaVersion %d: want ≥ 36 (Grafana 9+)", d.SchemaVersion)
		}
		if !slices.ContainsFunc(d.Inputs, func(in grafanaInput) bool {
			return in.Name == "DS_PROMETHEUS" && in.Type == "datasource" && in.PluginID == "prometheus"
		}) {
			t.Errorf("__inputs: want a prometheus datasource input DS_PROMETHEUS")
		}
		vars := map[string]grafanaVariable{}
		for _, v := range d.Templating.List {
			vars[v.Name] = v
		}
		if v, ok := vars["DS_PROMETHEUS"]; !ok || v.Type != "datasource" || v.queryText() != "prometheus" {
			t.Errorf("templating: want a datasource variable DS_PROMETHEUS of type prometheus, got %+v", v)
		}
		for _, name := range []string{"job", "instance", "webhook"} {
			v, ok := vars[name]
			if !ok || v.Type != "query" {
				t.Errorf("templating: want a query variable %q", name)
				continue
			}
			if v.Datasource == nil || v.Datasource.UID != dashboardDatasource {
				t.Errorf("variable %q: datasource %+v, want uid %s", name, v.Datasource, dashboardDatasource)
			}
			if !v.IncludeAll || v.AllValue != ".*" {
				t.Errorf("variable %q: want includeAll with allValue \".*\" (queries use =~)", name)
			}
			m := labelValuesRE.FindStringSubmatch(v.queryText())
			if m == nil {
				t.Errorf("variable %q: query %q is not label_values(selector, label)", name, v.queryText())
				continue
			}
			sel, err := substituteGrafanaVars(m[1], grafanaValues(d))
			if err != nil {
				t.Errorf("variable %q: %v", name, err)
			}
			names, unknown := unknownMetrics(sel, exposed)
			if len(names) == 0 || len(unknown) > 0 {
				t.Errorf("variable %q: query %q: metrics %q, not exposed %q", name, v.queryText(), names, unknown)
			}
			for _, n := range names {
				if l := m[2]; l != "job" && l != "instance" && !exposedLabelNames(t)[n][l] {
					t.Errorf("variable %q: %s has no label %q on /metrics", name, n, l)
				}
			}
		}

		ids := map[int]string{}
		for _, p := range flattenPanels(d.Panels) {
			if prev, dup := ids[p.ID]; dup || p.ID == 0 {
				t.Errorf("panel %q: id %d missing or already used by %q", p.Title, p.ID, prev)
			}
			ids[p.ID] = p.Title
			if p.GridPos == nil || p.GridPos.W == 0 || p.GridPos.H == 0 {
				t.Errorf("panel %d %q: no gridPos", p.ID, p.Title)
			}
			if p.Type == "row" {
				if len(p.Targets) > 0 {
					t.Errorf("row %q has targets", p.Title)
				}
				continue
			}
			if p.Title == "" || p.Description == "" {
				t.Errorf("panel %d %q: title and description are required", p.ID, p.Title)
			}
			if p.Datasource == nil || p.Datasource.UID != dashboardDatasource || p.Datasource.Type != "prometheus" {
				t.Errorf("panel %d %q: datasource %+v, want prometheus %s", p.ID, p.Title, p.Datasource, dashboardDatasource)
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %d %q: no targets", p.ID, p.Title)
			}
			for _, tg := range p.Targets {
				if tg.Datasource != nil && tg.Datasource.UID != dashboardDatasource {
					t.Errorf("panel %d %q target %s: datasource %+v, want %s", p.ID, p.Title, tg.RefID, tg.Datasource, dashboardDatasource)
				}
				if strings.Contains(tg.Expr, "histogram_quantile") && p.FieldConfig.Defaults.Unit != "s" {
					t.Errorf("panel %d %q: quantiles of a seconds histogram, unit %q, want s", p.ID, p.Title, p.FieldConfig.Defaults.Unit)
				}
			}
			if p.FieldConfig.Defaults.Unit == "" {
				t.Errorf("panel %d %q: no unit", p.ID, p.Title)
			}
		}
	})

	queries := dashboardQueries(t, d)
	referenced := map[string]bool{}
	for _, q := range queries {
		// Outside the subtest, so that -run filters do not change the topics check.
		for _, n := range promqlMetricNames(q.Expr) {
			referenced[metricBase(n, exposed)] = true
		}
		t.Run(fmt.Sprintf("panel %d %s/%s", q.Panel.ID, q.Panel.Title, q.RefID), func(t *testing.T) {
			if strings.TrimSpace(q.Raw) == "" {
				t.Fatal("empty expr")
			}
			names, unknown := unknownMetrics(q.Expr, exposed)
			if len(names) == 0 {
				t.Errorf("expr %q selects no metric", q.Raw)
			}
			if len(unknown) > 0 {
				t.Errorf("expr %q: metrics not exposed by eventtap: %q", q.Raw, unknown)
			}
			if strings.Contains(q.Expr, "eventtap_") && !strings.Contains(q.Raw, `job=~"$job"`) {
				t.Errorf("expr %q: eventtap selectors should filter on job=~\"$job\", instance=~\"$instance\"", q.Raw)
			}
			// A query filtering by $webhook only selects metrics that carry the label.
			if strings.Contains(q.Raw, `webhook=~"$webhook"`) {
				for _, m := range webhookSelectorRE.FindAllStringSubmatch(q.Raw, -1) {
					if !exposedLabelNames(t)[metricBase(m[1], exposed)]["webhook"] {
						t.Errorf("expr %q: %s has no webhook label on /metrics", q.Raw, m[1])
					}
				}
			}
		})
	}

	t.Run("topics", func(t *testing.T) {
		for _, m := range dashboardTopics {
			if !referenced[m] {
				t.Errorf("no panel queries %s", m)
			}
		}
	})

	// The webhook row: every question about one receiver, each filtered by $webhook.
	t.Run("webhook row", func(t *testing.T) {
		var row []grafanaPanel
		in := false
		for _, p := range d.Panels {
			if p.Type == "row" {
				if in = strings.HasPrefix(p.Title, "Webhooks"); in {
					row = append(row, p.Panels...) // collapsed
				}
				continue
			}
			if in {
				row = append(row, p)
			}
		}
		want := map[string]bool{ // metric → found in the row
			"eventtap_delivery_attempts_total": false, "eventtap_delivery_duration_seconds": false,
			"eventtap_webhook_pending": false, "eventtap_webhook_oldest_pending_seconds": false,
		}
		for _, p := range row {
			for _, tg := range p.Targets {
				if !strings.Contains(tg.Expr, `webhook=~"$webhook"`) || !strings.Contains(tg.Expr, "by (webhook") {
					t.Errorf("panel %d %q: %q does not filter on webhook=~\"$webhook\" and split by webhook", p.ID, p.Title, tg.Expr)
				}
				for _, n := range promqlMetricNames(tg.Expr) {
					want[metricBase(n, exposed)] = true
				}
			}
		}
		for m, found := range want {
			if !found {
				t.Errorf("the Webhooks row has no panel on %s", m)
			}
		}
	})
}

// webhookSelectorRE finds selectors filtering on the webhook variable.
var webhookSelectorRE = regexp.MustCompile(`([A-Za-z_:][A-Za-z0-9_:]*)\{[^}]*webhook=~"\$webhook"`)

// ---- Prometheus rules

type promRuleFile struct {
	Groups []promRuleGroup `yaml:"groups"`
}

type promRuleGroup struct {
	Name     string     `yaml:"name"`
	Interval string     `yaml:"interval,omitempty"`
	Limit    int        `yaml:"limit,omitempty"`
	Rules    []promRule `yaml:"rules"`
}

type promRule struct {
	Record        string            `yaml:"record,omitempty"`
	Alert         string            `yaml:"alert,omitempty"`
	Expr          string            `yaml:"expr"`
	For           string            `yaml:"for,omitempty"`
	KeepFiringFor string            `yaml:"keep_firing_for,omitempty"`
	Labels        map[string]string `yaml:"labels,omitempty"`
	Annotations   map[string]string `yaml:"annotations,omitempty"`
}

var (
	promDurationRE = regexp.MustCompile(`^(0|([0-9]+(ms|s|m|h|d|w|y))+)$`)
	alertNameRE    = regexp.MustCompile(`^Eventtap[A-Z][A-Za-z0-9]*$`)
	runbookRE      = regexp.MustCompile(`README\.md#(operations|debugging-a-failing-webhook)$`)
	severities     = map[string]bool{"critical": true, "warning": true, "info": true}
)

// prometheusTemplateFuncs stands in for the functions Prometheus offers alert templates, so
// text/template can parse annotations the way Prometheus does.
var prometheusTemplateFuncs = func() template.FuncMap {
	fm := template.FuncMap{}
	for _, name := range []string{
		"query", "first", "label", "value", "strvalue", "sortByLabel", "args", "reReplaceAll",
		"safeHtml", "match", "title", "toUpper", "toLower", "stripPort", "stripDomain",
		"humanize", "humanize1024", "humanizeDuration", "humanizePercentage", "humanizeTimestamp",
		"toTime", "toDuration", "parseDuration", "pathPrefix", "externalURL", "graphLink",
		"tableLink", "now", "urlQueryEscape",
	} {
		fm[name] = func(...any) any { return nil }
	}
	return fm
}()

// Prometheus prepends these definitions to every alert template.
const prometheusTemplatePreamble = "{{$labels := .Labels}}{{$externalLabels := .ExternalLabels}}{{$externalURL := .ExternalURL}}{{$value := .Value}}"

func loadRules(t *testing.T) promRuleFile {
	t.Helper()
	data, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	var f promRuleFile
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		t.Fatalf("%s: %v", alertsFile, err)
	}
	if len(f.Groups) == 0 {
		t.Fatalf("%s: no groups", alertsFile)
	}
	return f
}

// promtool runs promtool with args (see testkit.RequireTool when it is not installed).
func promtool(t *testing.T, args ...string) {
	t.Helper()
	path := testkit.RequireTool(t, "Debian/Ubuntu: apt-get install prometheus", "promtool")
	out, err := exec.Command(path, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	t.Logf("promtool %s:\n%s", strings.Join(args, " "), out)
}

func TestAlertRules(t *testing.T) {
	f := loadRules(t)
	exposed := exposedMetricNames(t)
	referenced := map[string]bool{}
	groups := map[string]bool{}
	alerts := map[string]bool{}

	for _, g := range f.Groups {
		if g.Name == "" || groups[g.Name] {
			t.Errorf("group %q: name missing or not unique", g.Name)
		}
		groups[g.Name] = true
		if len(g.Rules) == 0 {
			t.Errorf("group %q: no rules", g.Name)
		}
		for _, r := range g.Rules {
			for _, n := range promqlMetricNames(r.Expr) {
				referenced[metricBase(n, exposed)] = true
			}
			key := r.Alert + "/" + r.Labels["severity"]
			duplicate := alerts[key]
			alerts[key] = true
			t.Run(g.Name+"/"+r.Alert+"/"+r.Labels["severity"], func(t *testing.T) {
				if r.Record != "" || !alertNameRE.MatchString(r.Alert) {
					t.Errorf("alert %q (record %q): want an alerting rule named Eventtap…", r.Alert, r.Record)
				}
				if duplicate {
					t.Errorf("alert %s defined twice with the same severity", key)
				}
				if strings.TrimSpace(r.Expr) == "" {
					t.Fatal("empty expr")
				}
				if !promDurationRE.MatchString(r.For) {
					t.Errorf("for %q: want a Prometheus duration", r.For)
				}
				if !severities[r.Labels["severity"]] {
					t.Errorf("labels.severity %q: want critical, warning or info", r.Labels["severity"])
				}
				for _, a := range []string{"summary", "description"} {
					if strings.TrimSpace(r.Annotations[a]) == "" {
						t.Errorf("annotations.%s missing", a)
					}
				}
				if !strings.Contains(r.Annotations["description"], "{{") {
					t.Errorf("annotations.description has no templated value")
				}
				if !runbookRE.MatchString(r.Annotations["runbook_url"]) {
					t.Errorf("annotations.runbook_url %q: want the README section Operations or Debugging a failing webhook", r.Annotations["runbook_url"])
				}
				for k, text := range r.Annotations {
					if _, err := template.New(k).Funcs(prometheusTemplateFuncs).Parse(prometheusTemplatePreamble + text); err != nil {
						t.Errorf("annotations.%s: %v", k, err)
					}
				}
				names, unknown := unknownMetrics(r.Expr, exposed)
				if len(names) == 0 {
					t.Errorf("expr %q selects no metric", r.Expr)
				}
				if len(unknown) > 0 {
					t.Errorf("expr %q: metrics not exposed by eventtap: %q", r.Expr, unknown)
				}
			})
		}
	}

	t.Run("topics", func(t *testing.T) {
		for _, m := range alertTopics {
			if !referenced[m] {
				t.Errorf("no alert reads %s", m)
			}
		}
		for _, want := range []string{"EventtapOutboxOldestPendingTooOld/warning", "EventtapOutboxOldestPendingTooOld/critical", "EventtapWebhooksDisabled/info", "EventtapWebhookFailing/warning"} {
			if !alerts[want] {
				t.Errorf("missing alert %s", want)
			}
		}
	})

	t.Run("promtool check rules alerts", func(t *testing.T) {
		promtool(t, "check", "rules", alertsFile)
	})

	// Unit tests of the alerts (input series → expected alerts), e.g. that
	// EventtapWebhookFailing fires for the one failing webhook only.
	t.Run("promtool test rules", func(t *testing.T) {
		promtool(t, "test", "rules", alertsTestFile)
	})

	t.Run("promtool check rules dashboard", func(t *testing.T) {
		testkit.RequireTool(t, "Debian/Ubuntu: apt-get install prometheus", "promtool")
		d := loadDashboard(t)
		g := promRuleGroup{Name: "dashboard"}
		for _, q := range dashboardQueries(t, d) {
			g.Rules = append(g.Rules, promRule{
				Record: fmt.Sprintf("dashboard:panel_%d:%s", q.Panel.ID, strings.ToLower(q.RefID)),
				Expr:   q.Expr,
			})
		}
		data, err := yaml.Marshal(promRuleFile{Groups: []promRuleGroup{g}})
		if err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(t.TempDir(), "dashboard.rules.yaml")
		if err := os.WriteFile(file, data, 0o644); err != nil {
			t.Fatal(err)
		}
		promtool(t, "check", "rules", file)
	})
}

// ---- Scrape config and Kubernetes manifest

func TestOpsManifests(t *testing.T) {
	t.Run("scrape config", func(t *testing.T) {
		data, err := os.ReadFile(scrapeFile)
		if err != nil {
			t.Fatal(err)
		}
		var cfg struct {
			RuleFiles     []string `yaml:"rule_files"`
			ScrapeConfigs []struct {
				JobName     string `yaml:"job_name"`
				MetricsPath string `yaml:"metrics_path"`
			} `yaml:"scrape_configs"`
		}
		if err := yaml.Unmarshal(data, &cfg); err != nil {
			t.Fatal(err)
		}
		if !slices.Contains(cfg.RuleFiles, filepath.Base(alertsFile)) {
			t.Errorf("rule_files %q: want %s", cfg.RuleFiles, filepath.Base(alertsFile))
		}
		if len(cfg.ScrapeConfigs) == 0 {
			t.Fatal("no scrape_configs")
		}
		for _, sc := range cfg.ScrapeConfigs {
			// EventtapDown matches up{job=~"eventtap.*"}.
			if !strings.HasPrefix(sc.JobName, "eventtap") {
				t.Errorf("job %q: EventtapDown only sees jobs named eventtap…", sc.JobName)
			}
			if sc.MetricsPath != "" && sc.MetricsPath != "/metrics" {
				t.Errorf("job %q: metrics_path %q", sc.JobName, sc.MetricsPath)
			}
		}
	})

	t.Run("kubernetes", func(t *testing.T) {
		data, err := os.ReadFile(podFile)
		if err != nil {
			t.Fatal(err)
		}
		type probe struct {
			HTTPGet struct {
				Path string `yaml:"path"`
				Port any    `yaml:"port"`
			} `yaml:"httpGet"`
		}
		type envVar struct {
			Name      string `yaml:"name"`
			ValueFrom *struct {
				SecretKeyRef *struct{ Name string } `yaml:"secretKeyRef"`
			} `yaml:"valueFrom"`
		}
		type container struct {
			Name  string   `yaml:"name"`
			Image string   `yaml:"image"`
			Args  []string `yaml:"args"`
			Ports []struct {
				Name          string `yaml:"name"`
				ContainerPort int    `yaml:"containerPort"`
			} `yaml:"ports"`
			ReadinessProbe *probe `yaml:"readinessProbe"`
			LivenessProbe  *probe `yaml:"livenessProbe"`
			Resources      struct {
				Limits map[string]string `yaml:"limits"`
			} `yaml:"resources"`
			SecurityContext struct {
				RunAsNonRoot           bool `yaml:"runAsNonRoot"`
				ReadOnlyRootFilesystem bool `yaml:"readOnlyRootFilesystem"`
			} `yaml:"securityContext"`
			Env []envVar `yaml:"env"`
		}
		type object struct {
			Kind     string `yaml:"kind"`
			Metadata struct {
				Name        string            `yaml:"name"`
				Annotations map[string]string `yaml:"annotations"`
			} `yaml:"metadata"`
			Data map[string]string `yaml:"data"`
			Spec struct {
				ClusterIP string `yaml:"clusterIP"`
				Ports     []struct {
					Port       int `yaml:"port"`
					TargetPort any `yaml:"targetPort"`
				} `yaml:"ports"`
				Template struct {
					Metadata struct {
						Annotations map[string]string `yaml:"annotations"`
					} `yaml:"metadata"`
					Spec struct {
						Containers []container `yaml:"containers"`
					} `yaml:"spec"`
				} `yaml:"template"`
				VolumeClaimTemplates []struct {
					Metadata struct{ Name string } `yaml:"metadata"`
				} `yaml:"volumeClaimTemplates"`
			} `yaml:"spec"`
		}
		objs := map[string]object{}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		for {
			var o object
			if err := dec.Decode(&o); err != nil {
				if !errors.Is(err, io.EOF) {
					t.Fatalf("%s: %v", podFile, err)
				}
				break
			}
			if o.Kind == "Service" && o.Spec.ClusterIP == "None" {
				o.Kind = "HeadlessService"
			}
			objs[o.Kind] = o
		}
		var kinds []string
		for k := range objs {
			kinds = append(kinds, k)
		}
		sort.Strings(kinds)
		for _, want := range []string{"ConfigMap", "Secret", "Service", "StatefulSet"} {
			if _, ok := objs[want]; !ok {
				t.Fatalf("kinds %q: want %s", kinds, want)
			}
		}

		var cfg struct {
			Proxy   struct{ Listen, Upstream string } `yaml:"proxy"`
			Admin   struct{ Listen string }           `yaml:"admin"`
			Storage struct{ Dir string }              `yaml:"storage"`
			Rules   string                            `yaml:"rules_file"`
		}
		if err := yaml.Unmarshal([]byte(objs["ConfigMap"].Data["config.yaml"]), &cfg); err != nil {
			t.Fatalf("ConfigMap config.yaml: %v", err)
		}
		var rules struct {
			Rules []map[string]any `yaml:"rules"`
		}
		if err := yaml.Unmarshal([]byte(objs["ConfigMap"].Data["rules.yaml"]), &rules); err != nil || len(rules.Rules) == 0 {
			t.Errorf("ConfigMap rules.yaml: %d rules, %v", len(rules.Rules), err)
		}

		sts := objs["StatefulSet"]
		var tap *container
		for i, c := range sts.Spec.Template.Spec.Containers {
			if c.Name == "eventtap" {
				tap = &sts.Spec.Template.Spec.Containers[i]
			}
		}
		if tap == nil || len(sts.Spec.Template.Spec.Containers) != 2 {
			t.Fatalf("want the eventtap container beside the order service")
		}
		ports := map[string]int{}
		for _, p := range tap.Ports {
			ports[p.Name] = p.ContainerPort
		}
		hasSecretEnv := slices.ContainsFunc(tap.Env, func(e envVar) bool {
			return e.Name == "EVENTTAP_ADMIN_TOKEN" && e.ValueFrom != nil && e.ValueFrom.SecretKeyRef != nil
		})
		svc := objs["Service"]
		svcPorts := map[int]any{}
		for _, p := range svc.Spec.Ports {
			svcPorts[p.Port] = p.TargetPort
		}

		tests := []struct {
			what      string
			got, want any
		}{
			{"config proxy.listen", cfg.Proxy.Listen, "0.0.0.0:8080"},
			{"config proxy.upstream", cfg.Proxy.Upstream, "http://127.0.0.1:3000"},
			{"config admin.listen", cfg.Admin.Listen, "0.0.0.0:9090"},
			{"config storage.dir", cfg.Storage.Dir, "/data"},
			{"config rules_file", cfg.Rules, "/etc/eventtap/rules.yaml"},
			{"eventtap args", strings.Join(tap.Args, " "), "serve --config /etc/eventtap/config.yaml"},
			{"proxy port", ports["proxy"], 8080},
			{"admin port", ports["admin"], 9090},
			{"readiness probe", tap.ReadinessProbe != nil && tap.ReadinessProbe.HTTPGet.Path == "/readyz", true},
			{"liveness probe", tap.LivenessProbe != nil && tap.LivenessProbe.HTTPGet.Path == "/healthz", true},
			{"memory limit", tap.Resources.Limits["memory"], "256Mi"},
			{"runAsNonRoot", tap.SecurityContext.RunAsNonRoot, true},
			{"readOnlyRootFilesystem", tap.SecurityContext.ReadOnlyRootFilesystem, true},
			{"admin token from a Secret", hasSecretEnv, true},
			{"PVC per replica", len(sts.Spec.VolumeClaimTemplates) == 1 && sts.Spec.VolumeClaimTemplates[0].Metadata.Name == "data", true},
			{"service 80 → proxy", svcPorts[80], "proxy"},
			{"service metrics port", svcPorts[9090], "admin"},
			{"service prometheus.io/port", svc.Metadata.Annotations["prometheus.io/port"], "9090"},
			{"pod prometheus.io/scrape", sts.Spec.Template.Metadata.Annotations["prometheus.io/scrape"], "true"},
			{"pod prometheus.io/path", sts.Spec.Template.Metadata.Annotations["prometheus.io/path"], "/metrics"},
		}
		for _, tt := range tests {
			if fmt.Sprint(tt.got) != fmt.Sprint(tt.want) {
				t.Errorf("%s: got %v, want %v", tt.what, tt.got, tt.want)
			}
		}
	})
}
