package proxy

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eventtap/eventtap/internal/testkit"
	"github.com/eventtap/eventtap/rules"
)

// nopCommitter returns at once, so that the tapped benchmark measures the
// proxy and not an outbox.
type nopCommitter struct{}

func (nopCommitter) Commit(context.Context, []rules.Event) error { return nil }

// BenchmarkPassThrough compares, in one run against one upstream, the cost
// of a request sent directly, through a bare httputil.ReverseProxy, through
// a bare goproxy set up the way the brief describes (NonproxyHandler
// pointing at the upstream), and through eventtap on a route no rule matches
// and on one that is tapped. Every proxy uses the same tuned transport.
func BenchmarkPassThrough(b *testing.B) {
	body := []byte(`{"id":"42","status":"OPEN","customer":"c-1","total":12.5,"items":[{"sku":"A-1","qty":2},{"sku":"B-7","qty":1}]}`)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		_, _ = w.Write(body)
	}))
	defer up.Close()
	upURL, _ := url.Parse(up.URL)

	cfg := DefaultConfig()
	cfg.Upstream = up.URL

	rpSrv, gpSrv := testkit.BareProxies(b, upURL, func() *http.Transport { return NewTransport(cfg) })

	r := &fakeRules{
		routes: []fakeRoute{{method: "GET", prefix: "/orders/", template: "/orders/{id}"}},
		events: func(ex *rules.Exchange) ([]rules.Event, []error) {
			return []rules.Event{{Rule: "order-seen", Type: "ORDER_UPDATED", Subject: "42",
				Data: json.RawMessage(ex.Response.Body), ObservedAt: ex.End}}, nil
		},
	}
	p, err := New(cfg, nil, prometheus.NewRegistry(), benchRules{r}, nopCommitter{})
	if err != nil {
		b.Fatal(err)
	}
	etSrv := httptest.NewServer(p.Handler())
	defer etSrv.Close()

	client := testkit.BenchClient(b)

	targets := []struct{ name, url string }{
		{"direct", up.URL + "/items/1"},
		{"httputil.ReverseProxy", rpSrv.URL + "/items/1"},
		{"goproxy", gpSrv.URL + "/items/1"},
		{"eventtap/miss", etSrv.URL + "/items/1"},
		{"eventtap/tapped", etSrv.URL + "/orders/1"},
	}
	get := func(b *testing.B, url string) bool {
		resp, err := client.Get(url)
		if err != nil {
			b.Error(err)
			return false
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		_ = resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Errorf("status %d", resp.StatusCode)
			return false
		}
		return true
	}
	for _, tg := range targets {
		b.Run(tg.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetParallelism(4)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if !get(b, tg.url) {
						return
					}
				}
			})
		})
	}

	// The machine is shared, so load drifts between the sequential runs
	// above. The paired runs alternate eventtap and the bare goproxy request
	// by request, and report eventtap's throughput relative to goproxy
	// (mean goproxy latency / mean eventtap latency, same concurrency) as
	// x-goproxy; the target for the miss path is ≥ 0.9.
	pairs := []struct{ name, url string }{
		{"paired/eventtap-miss-vs-goproxy", etSrv.URL + "/items/1"},
		{"paired/eventtap-tapped-vs-goproxy", etSrv.URL + "/orders/1"},
	}
	for _, pr := range pairs {
		b.Run(pr.name, func(b *testing.B) {
			var ns, n [2]atomic.Int64 // 0: eventtap, 1: goproxy
			b.SetParallelism(4)
			b.RunParallel(func(pb *testing.PB) {
				for i := 0; pb.Next(); i++ {
					which, url := i%2, pr.url
					if which == 1 {
						url = gpSrv.URL + "/items/1"
					}
					start := time.Now()
					if !get(b, url) {
						return
					}
					ns[which].Add(int64(time.Since(start)))
					n[which].Add(1)
				}
			})
			if n[0].Load() > 0 && n[1].Load() > 0 {
				et := float64(ns[0].Load()) / float64(n[0].Load())
				gp := float64(ns[1].Load()) / float64(n[1].Load())
				b.ReportMetric(gp/et, "x-goproxy")
			}
		})
	}
}

// benchRules hides fakeRules' bookkeeping of evaluated exchanges, which
// would grow without bound in a benchmark.
type benchRules struct{ r *fakeRules }

func (b benchRules) Route(method, path string) (string, bool) { return b.r.Route(method, path) }

func (b benchRules) Evaluate(ex *rules.Exchange) ([]rules.Event, []error) { return b.r.events(ex) }
