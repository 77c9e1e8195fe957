package proxy

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// routeOther is the route label of requests no rule could match.
const routeOther = "other"

// Reasons for eventtap_events_dropped_total.
const (
	dropOutboxError = "outbox_error"
	dropTapPanic    = "tap_panic"
	dropBudget      = "capture_budget"
)

// durationBuckets start at a tenth of a millisecond: a pass-through adds far
// less than the upstream takes, and the interesting changes are small.
var durationBuckets = []float64{
	.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30,
}

// metrics holds the proxy's collectors (SPEC §6). Label values are bounded:
// methods are the standard ones or OTHER, routes are rule templates or
// "other", codes are three digits.
type metrics struct {
	requests       *prometheus.CounterVec
	duration       *prometheus.HistogramVec
	upstreamErrors prometheus.Counter
	dropped        *prometheus.CounterVec
	droppedOutbox  prometheus.Counter
	droppedPanic   prometheus.Counter
	droppedBudget  prometheus.Counter
	ruleErrors     *prometheus.CounterVec
	// ruleNames are the rules whose error series exist (see SetRules).
	ruleMu    sync.Mutex
	ruleNames map[string]bool

	// The per-request children are looked up in copy-on-write maps: a
	// lock-free read per request instead of the vector's label hashing and
	// locking. New label combinations are rare and take mu.
	mu        sync.Mutex
	counters  atomic.Pointer[map[requestKey]prometheus.Counter]
	observers atomic.Pointer[map[string]prometheus.Observer]
}

type requestKey struct {
	method, route string
	code          int
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventtap_proxy_requests_total",
			Help: "Requests forwarded by the proxy, by method, route (rule path template or \"other\") and status code.",
		}, []string{"method", "route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "eventtap_proxy_request_duration_seconds",
			Help:    "Time from receiving a request to finishing its response, by route.",
			Buckets: durationBuckets,
		}, []string{"route"}),
		upstreamErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "eventtap_proxy_upstream_errors_total",
			Help: "Requests the upstream did not answer (connection failure or timeout).",
		}),
		dropped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventtap_events_dropped_total",
			Help: "Events lost by the tap, by reason (outbox_error: the commit failed; tap_panic: the tap panicked, counted once per exchange when the number is unknown; capture_budget: a body on a tapped route passed uncaptured because proxy.capture_budget_bytes was spent, once per exchange).",
		}, []string{"reason"}),
		ruleErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventtap_rule_errors_total",
			Help: "Rule evaluations that failed at run time, by rule.",
		}, []string{"rule"}),
	}
	m.droppedOutbox = m.dropped.WithLabelValues(dropOutboxError)
	m.droppedPanic = m.dropped.WithLabelValues(dropTapPanic)
	m.droppedBudget = m.dropped.WithLabelValues(dropBudget)
	m.counters.Store(&map[requestKey]prometheus.Counter{})
	m.observers.Store(&map[string]prometheus.Observer{})

	for _, c := range []prometheus.Collector{m.requests, m.duration, m.upstreamErrors, m.dropped, m.ruleErrors} {
		if err := reg.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return nil, fmt.Errorf("proxy: metrics already registered (one Proxy per registry): %w", err)
			}
			return nil, fmt.Errorf("proxy: register metrics: %w", err)
		}
	}
	return m, nil
}

// SetRules makes eventtap_rule_errors_total{rule} exist at 0 for every
// name, and deletes the series of rules no longer in the set (SPEC §6), so
// that dashboards and rate() alerts see every rule from the first scrape.
// Call it with the names of the active rules at start and after each
// reload. An evaluation by the previous set still in flight may bring back
// a removed rule's series until the next call.
func (p *Proxy) SetRules(names []string) {
	m := p.m
	m.ruleMu.Lock()
	defer m.ruleMu.Unlock()
	next := make(map[string]bool, len(names))
	for _, n := range names {
		next[n] = true
		m.ruleErrors.WithLabelValues(n)
	}
	for n := range m.ruleNames {
		if !next[n] {
			m.ruleErrors.DeleteLabelValues(n)
		}
	}
	m.ruleNames = next
}

// observe records one finished request. method must come from methodLabel.
func (m *metrics) observe(method, route string, code int, d time.Duration) {
	k := requestKey{method: method, route: route, code: code}
	c, ok := (*m.counters.Load())[k]
	if !ok {
		c = m.counter(k)
	}
	c.Inc()
	o, ok := (*m.observers.Load())[route]
	if !ok {
		o = m.observer(route)
	}
	o.Observe(d.Seconds())
}

func (m *metrics) counter(k requestKey) prometheus.Counter {
	return addCached(&m.mu, &m.counters, k, func() prometheus.Counter {
		return m.requests.WithLabelValues(k.method, k.route, strconv.Itoa(k.code))
	})
}

func (m *metrics) observer(route string) prometheus.Observer {
	return addCached(&m.mu, &m.observers, route, func() prometheus.Observer { return m.duration.WithLabelValues(route) })
}

// addCached returns cache's value for k, creating it with create and
// publishing a copy of the map that holds it when it is missing: readers
// load the map without a lock, so it is never changed in place. mu
// serializes the writers.
func addCached[K comparable, V any](mu *sync.Mutex, cache *atomic.Pointer[map[K]V], k K, create func() V) V {
	mu.Lock()
	defer mu.Unlock()
	old := *cache.Load()
	if v, ok := old[k]; ok {
		return v
	}
	v := create()
	next := make(map[K]V, len(old)+1)
	for kk, vv := range old {
		next[kk] = vv
	}
	next[k] = v
	cache.Store(&next)
	return v
}

// methodLabel keeps the method label bounded: a client can send any token
// as a method.
func methodLabel(method string) string {
	switch method {
	case "GET":
		return "GET"
	case "HEAD":
		return "HEAD"
	case "POST":
		return "POST"
	case "PUT":
		return "PUT"
	case "PATCH":
		return "PATCH"
	case "DELETE":
		return "DELETE"
	case "OPTIONS":
		return "OPTIONS"
	case "CONNECT":
		return "CONNECT"
	case "TRACE":
		return "TRACE"
	}
	return "OTHER"
}
