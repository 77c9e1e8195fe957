package outbox

import (
	"errors"
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eventtap/eventtap/rules"
)

// metrics are the outbox's Prometheus collectors (names and labels are fixed
// by SPEC §6). Labels are only event types, outcomes and statuses: never ids,
// URLs or subjects, whose cardinality is unbounded.
type metrics struct {
	events         *prometheus.CounterVec
	commitDuration prometheus.Histogram
	attempts       *prometheus.CounterVec
	duration       *prometheus.HistogramVec
	lag            *prometheus.HistogramVec
	failed         *prometheus.CounterVec
	webhooks       *prometheus.GaugeVec

	// rules are the rules whose event series exist (see SetRules).
	rulesMu sync.Mutex
	rules   map[rules.RuleInfo]bool
}

// SetRules makes eventtap_events_total{type,rule} exist at 0 for every
// rule with the type it emits, and deletes the series of rules (or rule
// and type pairs) no longer in the set (SPEC §6). Call it with the active
// rules at start and after each reload. An event of the previous set still
// being committed may bring back a removed rule's series until the next
// call.
func (o *Outbox) SetRules(rs []rules.RuleInfo) {
	m := o.metrics
	m.rulesMu.Lock()
	defer m.rulesMu.Unlock()
	next := make(map[rules.RuleInfo]bool, len(rs))
	for _, r := range rs {
		next[r] = true
		m.events.WithLabelValues(r.Event, r.Name)
	}
	for r := range m.rules {
		if !next[r] {
			m.events.DeleteLabelValues(r.Event, r.Name)
		}
	}
	m.rules = next
}

// newMetrics registers the outbox's metrics. Counters for every event type
// and outcome start at 0, so that rates and alerts work from the first
// scrape instead of from the first failure.
func newMetrics(reg prometheus.Registerer, eventTypes []string, pending, oldest func() float64) (*metrics, error) {
	m := &metrics{
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventtap_events_total",
			Help: "Events emitted (committed to the outbox), by type and rule.",
		}, []string{"type", "rule"}),
		commitDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "eventtap_outbox_commit_duration_seconds",
			Help:    "Time to make one group-commit batch durable.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5},
		}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventtap_delivery_attempts_total",
			Help: "Webhook delivery attempts, by event type and outcome (success or failure).",
		}, []string{"type", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "eventtap_delivery_duration_seconds",
			Help:    "Duration of one webhook delivery attempt.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"type"}),
		lag: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "eventtap_delivery_lag_seconds",
			Help: "Time from an event being observed to its successful delivery.",
			Buckets: []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900, 1800, 3600,
				7200, 14400, 43200, 86400, 172800},
		}, []string{"type"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventtap_deliveries_failed_total",
			Help: "Deliveries given up after the retry schedule was exhausted.",
		}, []string{"type"}),
		webhooks: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "eventtap_webhooks",
			Help: "Webhooks by status.",
		}, []string{"status"}),
	}
	cs := []prometheus.Collector{m.events, m.commitDuration, m.attempts, m.duration, m.lag, m.failed, m.webhooks,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "eventtap_outbox_pending",
			Help: "Deliveries not yet succeeded or failed (including those paused on disabled webhooks).",
		}, pending),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "eventtap_outbox_oldest_pending_seconds",
			Help: "Age of the oldest pending delivery's event, 0 when nothing is pending.",
		}, oldest),
	}
	for _, t := range eventTypes {
		m.attempts.WithLabelValues(t, "success")
		m.attempts.WithLabelValues(t, "failure")
		m.failed.WithLabelValues(t)
	}
	m.webhooks.WithLabelValues(string(Enabled))
	m.webhooks.WithLabelValues(string(Disabled))
	var errs []error
	for _, c := range cs {
		if err := reg.Register(c); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("outbox: registering metrics: %w", err)
	}
	return m, nil
}
