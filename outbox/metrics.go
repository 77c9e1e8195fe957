package outbox

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eventtap/eventtap/delivery"
	"github.com/eventtap/eventtap/rules"
)

// metrics are the outbox's Prometheus collectors (names and labels are fixed
// by SPEC §6). Labels are event types, outcomes, statuses and webhook ids:
// never URLs, subjects or event ids, whose cardinality is unbounded. A
// webhook id is bounded by the number of webhooks, and its series are
// removed when the webhook is deleted (see initWebhook and forgetWebhook).
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

// newMetrics registers the outbox's metrics. The per-webhook counters of a
// webhook start at 0 when it is loaded or created (initWebhook), so that
// rates and alerts work from the first scrape instead of from the first
// failure. perWebhook reports every webhook's backlog at scrape time.
func newMetrics(reg prometheus.Registerer, pending, oldest func() float64, perWebhook func() []delivery.Backlog) (*metrics, error) {
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
			Help: "Webhook delivery attempts, by event type, webhook id and outcome (success or failure).",
		}, []string{"type", "webhook", "outcome"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "eventtap_delivery_duration_seconds",
			Help:    "Duration of one webhook delivery attempt, by event type and webhook id.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"type", "webhook"}),
		lag: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "eventtap_delivery_lag_seconds",
			Help: "Time from an event being observed to its successful delivery.",
			Buckets: []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 900, 1800, 3600,
				7200, 14400, 43200, 86400, 172800},
		}, []string{"type"}),
		failed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "eventtap_deliveries_failed_total",
			Help: "Deliveries given up after the retry schedule was exhausted, by event type and webhook id.",
		}, []string{"type", "webhook"}),
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
		webhookBacklogCollector(perWebhook),
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

// initWebhook creates a webhook's delivery series at 0 for the event type
// it subscribes to (again after a type change: the old type's series keep
// their counts until the webhook is deleted).
func (m *metrics) initWebhook(id, eventType string) {
	m.attempts.WithLabelValues(eventType, id, "success")
	m.attempts.WithLabelValues(eventType, id, "failure")
	m.failed.WithLabelValues(eventType, id)
	m.duration.WithLabelValues(eventType, id)
}

// forgetWebhook removes every series of a deleted webhook, so that ids of
// deleted webhooks do not accumulate in the exposition.
func (m *metrics) forgetWebhook(id string) {
	l := prometheus.Labels{"webhook": id}
	m.attempts.DeletePartialMatch(l)
	m.failed.DeletePartialMatch(l)
	m.duration.DeletePartialMatch(l)
}

// backlogCollector reports eventtap_webhook_pending and
// eventtap_webhook_oldest_pending_seconds from the dispatcher's state at
// scrape time: for exactly the webhooks that exist, so a created webhook
// shows 0 at once and a deleted one disappears with no bookkeeping.
type backlogCollector struct {
	pending, oldest *prometheus.Desc
	read            func() []delivery.Backlog
}

func webhookBacklogCollector(read func() []delivery.Backlog) prometheus.Collector {
	return &backlogCollector{
		pending: prometheus.NewDesc("eventtap_webhook_pending",
			"Deliveries of the webhook not yet succeeded or failed (including those paused while it is DISABLED).",
			[]string{"webhook"}, nil),
		oldest: prometheus.NewDesc("eventtap_webhook_oldest_pending_seconds",
			"Age of the event of the webhook's oldest pending delivery, 0 when nothing is pending.",
			[]string{"webhook"}, nil),
		read: read,
	}
}

func (c *backlogCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.pending
	ch <- c.oldest
}

func (c *backlogCollector) Collect(ch chan<- prometheus.Metric) {
	for _, b := range c.read() {
		ch <- prometheus.MustNewConstMetric(c.pending, prometheus.GaugeValue, float64(b.Pending), b.ID)
		ch <- prometheus.MustNewConstMetric(c.oldest, prometheus.GaugeValue, b.Oldest, b.ID)
	}
}

// webhookBacklogs reads every existing webhook's backlog, for the scrape.
func (o *Outbox) webhookBacklogs() []delivery.Backlog {
	o.whMu.RLock()
	ids := make([]string, 0, len(o.hooks))
	for id := range o.hooks {
		ids = append(ids, id)
	}
	o.whMu.RUnlock()
	return o.disp.Backlog(ids, o.now())
}

// observeAttempt counts a recorded attempt. It holds whMu shared so that a
// webhook deleted meanwhile (DeleteWebhook forgets its series under the
// exclusive lock) does not get its series back from a late attempt.
func (o *Outbox) observeAttempt(whID string, ev *eventRecord, res *delivery.Result, failed bool, now time.Time) {
	outcome := "failure"
	if res.OK() {
		outcome = "success"
		o.metrics.lag.WithLabelValues(ev.Type).Observe(max(now.Sub(ev.ObservedAt), 0).Seconds())
	}
	o.whMu.RLock()
	defer o.whMu.RUnlock()
	if o.hooks[whID] == nil {
		return
	}
	o.metrics.attempts.WithLabelValues(ev.Type, whID, outcome).Inc()
	o.metrics.duration.WithLabelValues(ev.Type, whID).Observe(res.Duration.Seconds())
	if failed {
		o.metrics.failed.WithLabelValues(ev.Type, whID).Inc()
	}
}
