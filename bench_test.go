package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventtap/eventtap/internal/testkit"
)

// BenchmarkSidecar measures the whole sidecar as `eventtap serve` runs it
// (real goproxy, rules, Badger outbox with sync writes and group commit,
// delivery to a local receiver) against a bare goproxy and a bare
// httputil.ReverseProxy in front of the same upstream, in one run:
//
//	go test -run '^$' -bench Sidecar -benchtime 5s .
//
// eventtap/tapped is a POST /orders whose response is released only once
// its ORDER_CREATED event is durable; the receiver gets every event.
// Compare ns/op between sub-benchmarks (same concurrency): the ratio of two
// ns/op is the inverse ratio of their throughput. eventtap/tapped's time
// includes delivering every event. cpu-µs/op is the process's CPU time per
// request (everything in it, clients and receiver included), which other
// work on the machine skews far less than ns/op; batches/op is group
// commits per tapped request (events and attempt records share them).
func BenchmarkSidecar(b *testing.B) {
	var ids atomic.Int64
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		var id int64
		if r.Method == http.MethodPost {
			id = ids.Add(1)
		}
		body := `{"id":` + strconv.FormatInt(id, 10) + `,"status":"OPEN","customer":"c-1","total":12.5}`
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		if r.Method == http.MethodPost {
			w.WriteHeader(http.StatusCreated)
		}
		_, _ = io.WriteString(w, body)
	}))
	defer upstream.Close()
	upURL, _ := url.Parse(upstream.URL)

	var delivered atomic.Int64
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		delivered.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer receiver.Close()

	sc := startSidecar(b, upstream.URL, orderCreatedRules, "")
	var hook struct{ ID string }
	gql(b, sc.adminURL, fmt.Sprintf(`mutation { webhookCreate(input: {url: %q, type: ORDER_CREATED}) { id } }`, receiver.URL+"/hook"), nil).
		into(b, "webhookCreate", &hook)

	rp, gpSrv := testkit.BareProxies(b, upURL, testkit.BenchTransport)
	client := testkit.BenchClient(b)
	for _, tc := range []struct {
		name, method, url string
		want              int
	}{
		{"direct", http.MethodGet, upstream.URL + "/health", 200},
		{"httputil.ReverseProxy", http.MethodGet, rp.URL + "/health", 200},
		{"goproxy", http.MethodGet, gpSrv.URL + "/health", 200},
		{"eventtap/pass-through", http.MethodGet, sc.proxyURL + "/health", 200},
		{"eventtap/tapped", http.MethodPost, sc.proxyURL + "/orders", 201},
	} {
		b.Run(tc.name, func(b *testing.B) {
			tapped := tc.method == http.MethodPost
			cpu0 := testkit.CPUTime()
			var batches0 float64
			if tapped {
				batches0 = scrape(b, sc.adminURL)["eventtap_outbox_commit_duration_seconds_count"]
			}
			b.SetParallelism(16)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					req, _ := http.NewRequest(tc.method, tc.url, strings.NewReader(`{"customer":"c-1"}`))
					resp, err := client.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					_, _ = io.Copy(io.Discard, resp.Body)
					_ = resp.Body.Close()
					if resp.StatusCode != tc.want {
						b.Errorf("%s: status %d", tc.name, resp.StatusCode)
						return
					}
				}
			})
			if tapped {
				// Timed: the target is requests made durable and delivered.
				start, want := time.Now(), ids.Load()
				for delivered.Load() < want && time.Since(start) < 60*time.Second {
					time.Sleep(time.Millisecond)
				}
				if got := delivered.Load(); got < want {
					b.Fatalf("%d events delivered of %d orders created, 60 s after the last request", got, want)
				}
				batches := scrape(b, sc.adminURL)["eventtap_outbox_commit_duration_seconds_count"] - batches0
				b.ReportMetric(batches/float64(b.N), "batches/op")
			}
			// CPU time of the whole process (clients, upstream, proxy,
			// outbox, receiver) per request: steadier than ns/op on a
			// shared machine, where other work takes cores away.
			b.ReportMetric(float64((testkit.CPUTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
		})
	}
}
