package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/eventtap/eventtap/rules"
)

var testTypes = []string{"ORDER_CREATED", "ORDER_CANCELED", "ORDER_STATUS_CHANGED", "ORDER_UPDATED", "SHIPMENT_CREATED", "SHIPMENT_CANCELED"}

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("OUTBOX_TEST_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

func testConfigs(dir string) (StorageConfig, DeliveryConfig) {
	s := DefaultStorageConfig()
	s.Dir = dir
	d := DefaultDeliveryConfig()
	d.Workers = 8
	d.Timeout = 2 * time.Second
	d.RetrySchedule = []time.Duration{50 * time.Millisecond, 100 * time.Millisecond}
	d.Jitter = 0
	// Test receivers listen on loopback.
	d.AllowPrivateNetworks = true
	return s, d
}

type testOutbox struct {
	*Outbox
	dir string
	reg *prometheus.Registry
}

type testOpt func(*StorageConfig, *DeliveryConfig, *openHooks)

func openTest(t testing.TB, opts ...testOpt) *testOutbox {
	t.Helper()
	return openTestDir(t, t.TempDir(), opts...)
}

func openTestDir(t testing.TB, dir string, opts ...testOpt) *testOutbox {
	t.Helper()
	s, d := testConfigs(dir)
	h := &openHooks{}
	for _, o := range opts {
		o(&s, &d, h)
	}
	reg := prometheus.NewRegistry()
	o, err := open(context.Background(), s, d, testTypes, testLogger(t), reg, h)
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = o.Close(ctx)
	})
	return &testOutbox{Outbox: o, dir: dir, reg: reg}
}

func (o *testOutbox) close(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := o.Close(ctx); err != nil {
		t.Fatalf("close: %v", err)
	}
}

func (o *testOutbox) hook(t testing.TB, url, typ string) Webhook {
	t.Helper()
	w, err := o.CreateWebhook(context.Background(), WebhookCreate{URL: url, Type: typ})
	if err != nil {
		t.Fatalf("create webhook: %v", err)
	}
	return w
}

func (o *testOutbox) commit(t testing.TB, evs ...rules.Event) {
	t.Helper()
	if err := o.Commit(context.Background(), evs); err != nil {
		t.Fatalf("commit: %v", err)
	}
}

func event(typ, subject, data string) rules.Event {
	return rules.Event{Rule: "rule-" + typ, Type: typ, Subject: subject, Data: json.RawMessage(data), ObservedAt: time.Now()}
}

// received is one request a receiver got.
type received struct {
	ID, Timestamp, Signature, UserAgent, ContentType string
	Body                                             []byte
	Header                                           http.Header
	At                                               time.Time
	Payload                                          struct {
		ID        string          `json:"id"`
		Type      string          `json:"type"`
		Timestamp string          `json:"timestamp"`
		Subject   string          `json:"subject"`
		Rule      string          `json:"rule"`
		Data      json.RawMessage `json:"data"`
		Change    *struct {
			Previous json.RawMessage `json:"previous"`
			Current  json.RawMessage `json:"current"`
		} `json:"change"`
	}
}

// receiver is a webhook endpoint recording what it gets; answer decides the
// response to the n-th request (0-based) it receives.
type receiver struct {
	*httptest.Server
	mu     sync.Mutex
	got    []received
	answer func(n int, r *received, w http.ResponseWriter) // nil: 200
}

func newReceiver(t testing.TB, answer func(n int, r *received, w http.ResponseWriter)) *receiver {
	rc := &receiver{answer: answer}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rec := received{
			ID: r.Header.Get("webhook-id"), Timestamp: r.Header.Get("webhook-timestamp"),
			Signature: r.Header.Get("webhook-signature"), UserAgent: r.UserAgent(),
			ContentType: r.Header.Get("Content-Type"), Body: body, Header: r.Header.Clone(), At: time.Now(),
		}
		_ = json.Unmarshal(body, &rec.Payload)
		rc.mu.Lock()
		n := len(rc.got)
		rc.got = append(rc.got, rec)
		answer := rc.answer
		rc.mu.Unlock()
		if answer != nil {
			answer(n, &rec, w)
		}
	}))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) requests() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.got...)
}

func (rc *receiver) count() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.got)
}

func (rc *receiver) setAnswer(a func(n int, r *received, w http.ResponseWriter)) {
	rc.mu.Lock()
	rc.answer = a
	rc.mu.Unlock()
}

func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", timeout, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// deliveryState returns the state of the event's delivery to the webhook.
// waitDisabled waits until the webhook is DISABLED and returns it.
func (o *testOutbox) waitDisabled(t testing.TB, id string) Webhook {
	t.Helper()
	var w Webhook
	waitFor(t, 5*time.Second, "disabled", func() bool {
		w, _ = o.Webhook(context.Background(), id)
		return w.Status == Disabled
	})
	return w
}

func (o *testOutbox) deliveryState(t testing.TB, eventID, webhookID string) Delivery {
	t.Helper()
	ev, err := o.Event(context.Background(), eventID)
	if err != nil {
		t.Fatalf("event %s: %v", eventID, err)
	}
	for _, d := range ev.Deliveries {
		if d.WebhookID == webhookID {
			return d
		}
	}
	return Delivery{}
}

func (o *testOutbox) allEvents(t testing.TB, f EventFilter) []Event {
	t.Helper()
	var out []Event
	after := ""
	for {
		p, err := o.Events(context.Background(), f, 500, after)
		if err != nil {
			t.Fatalf("events: %v", err)
		}
		out = append(out, p.Items...)
		if !p.HasNext {
			return out
		}
		after = p.Cursors[len(p.Cursors)-1]
	}
}

func (o *testOutbox) allLogs(t testing.TB, f LogFilter) []Log {
	t.Helper()
	var out []Log
	after := ""
	for {
		p, err := o.Logs(context.Background(), f, 500, after)
		if err != nil {
			t.Fatalf("logs: %v", err)
		}
		out = append(out, p.Items...)
		if !p.HasNext {
			return out
		}
		after = p.Cursors[len(p.Cursors)-1]
	}
}

// counter returns the value of a metric with the given labels (0 if absent).
func (o *testOutbox) metric(t testing.TB, name string, labels map[string]string) float64 {
	t.Helper()
	mfs, err := o.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if v, ok := labels[lp.GetName()]; ok && v != lp.GetValue() {
					continue next
				}
			}
			switch {
			case m.Counter != nil:
				return m.Counter.GetValue()
			case m.Gauge != nil:
				return m.Gauge.GetValue()
			case m.Histogram != nil:
				return float64(m.Histogram.GetSampleCount())
			}
		}
	}
	return 0
}

func errorsIs(err, target error) bool { return errors.Is(err, target) }

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }
