package outbox

import (
	"context"
	"net/http"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// series returns every sample of the named metric as its labels in
// `k="v",…` form (sorted) → value (histograms: their count).
func series(t testing.TB, reg prometheus.Gatherer, name string) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var parts []string
			for _, lp := range m.GetLabel() {
				parts = append(parts, lp.GetName()+`="`+lp.GetValue()+`"`)
			}
			sort.Strings(parts)
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue() + float64(m.GetHistogram().GetSampleCount())
			out[strings.Join(parts, ",")] = v
		}
	}
	return out
}

// TestWebhookMetrics: delivery metrics carry the webhook id, so that one
// failing receiver among several of the same type shows as itself; every
// webhook's series exist at 0 from its creation (and after a restart), and
// disappear when it is deleted. No URL is ever a label value.
func TestWebhookMetrics(t *testing.T) {
	dir := t.TempDir()
	o := openTestDir(t, dir, func(_ *StorageConfig, d *DeliveryConfig, _ *openHooks) {
		d.RetrySchedule = []time.Duration{time.Hour} // the failing one stays pending
	})
	good := newReceiver(t, nil)
	bad := newReceiver(t, func(_ int, _ *received, w http.ResponseWriter) { w.WriteHeader(http.StatusServiceUnavailable) })
	g := o.hook(t, good.URL, "ORDER_CREATED")
	b := o.hook(t, bad.URL, "ORDER_CREATED")

	attempts := func(typ, id, outcome string) string {
		return `outcome="` + outcome + `",type="` + typ + `",webhook="` + id + `"`
	}
	got := series(t, o.reg, "eventtap_delivery_attempts_total")
	for _, id := range []string{g.ID, b.ID} {
		for _, oc := range []string{"success", "failure"} {
			if v, ok := got[attempts("ORDER_CREATED", id, oc)]; !ok || v != 0 {
				t.Errorf("after create: attempts{%s} = %v, %v; want 0, present", attempts("ORDER_CREATED", id, oc), v, ok)
			}
		}
		if v, ok := series(t, o.reg, "eventtap_webhook_pending")[`webhook="`+id+`"`]; !ok || v != 0 {
			t.Errorf("after create: eventtap_webhook_pending{webhook=%s} = %v, %v; want 0, present", id, v, ok)
		}
	}

	o.commit(t, event("ORDER_CREATED", "o1", `{}`), event("ORDER_CREATED", "o2", `{}`))
	waitFor(t, 5*time.Second, "both receivers called twice", func() bool { return good.count() == 2 && bad.count() == 2 })
	waitFor(t, 5*time.Second, "attempts counted", func() bool {
		got := series(t, o.reg, "eventtap_delivery_attempts_total")
		return got[attempts("ORDER_CREATED", g.ID, "success")] == 2 && got[attempts("ORDER_CREATED", b.ID, "failure")] == 2
	})
	got = series(t, o.reg, "eventtap_delivery_attempts_total")
	if got[attempts("ORDER_CREATED", g.ID, "failure")] != 0 || got[attempts("ORDER_CREATED", b.ID, "success")] != 0 {
		t.Errorf("attempts mixed up between webhooks: %v", got)
	}
	dur := series(t, o.reg, "eventtap_delivery_duration_seconds")
	if dur[`type="ORDER_CREATED",webhook="`+g.ID+`"`] != 2 || dur[`type="ORDER_CREATED",webhook="`+b.ID+`"`] != 2 {
		t.Errorf("eventtap_delivery_duration_seconds counts %v, want 2 per webhook", dur)
	}
	pending := series(t, o.reg, "eventtap_webhook_pending")
	if pending[`webhook="`+g.ID+`"`] != 0 || pending[`webhook="`+b.ID+`"`] != 2 {
		t.Errorf("eventtap_webhook_pending %v, want %s: 0, %s: 2", pending, g.ID, b.ID)
	}
	if old := series(t, o.reg, "eventtap_webhook_oldest_pending_seconds"); old[`webhook="`+b.ID+`"`] <= 0 || old[`webhook="`+g.ID+`"`] != 0 {
		t.Errorf("eventtap_webhook_oldest_pending_seconds %v, want > 0 only for %s", old, b.ID)
	}
	if total := series(t, o.reg, "eventtap_outbox_pending")[""]; total != 2 {
		t.Errorf("eventtap_outbox_pending = %v, want 2", total)
	}
	mfs, err := o.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			for _, lp := range m.GetLabel() {
				if strings.Contains(lp.GetValue(), "://") || strings.Contains(lp.GetValue(), "127.0.0.1") {
					t.Errorf("%s has a URL as label value: %s=%q", mf.GetName(), lp.GetName(), lp.GetValue())
				}
			}
		}
	}

	// Restart: existing webhooks' series exist from the start, the backlog
	// is counted again from the store.
	o.close(t)
	o = openTestDir(t, dir, func(_ *StorageConfig, d *DeliveryConfig, _ *openHooks) { d.RetrySchedule = []time.Duration{time.Hour} })
	got = series(t, o.reg, "eventtap_delivery_attempts_total")
	for _, k := range []string{attempts("ORDER_CREATED", g.ID, "success"), attempts("ORDER_CREATED", b.ID, "failure")} {
		if v, ok := got[k]; !ok || v != 0 {
			t.Errorf("after restart: attempts{%s} = %v, %v; want 0, present", k, v, ok)
		}
	}
	if v := series(t, o.reg, "eventtap_webhook_pending")[`webhook="`+b.ID+`"`]; v != 2 {
		t.Errorf("after restart: eventtap_webhook_pending{%s} = %v, want 2", b.ID, v)
	}

	// Delete: every series of the webhook goes.
	if err := o.DeleteWebhook(context.Background(), b.ID); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"eventtap_delivery_attempts_total", "eventtap_delivery_duration_seconds",
		"eventtap_deliveries_failed_total", "eventtap_webhook_pending", "eventtap_webhook_oldest_pending_seconds"} {
		s := series(t, o.reg, name)
		for k := range s {
			if strings.Contains(k, b.ID) {
				t.Errorf("after delete: %s{%s} still exposed", name, k)
			}
		}
		if !strings.Contains(strings.Join(keys(s), " "), g.ID) {
			t.Errorf("after deleting the other webhook: %s has no series for %s: %v", name, g.ID, s)
		}
	}
}

func keys(m map[string]float64) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	return out
}

// TestWebhookPendingUnloaded: deliveries beyond the in-memory limit are
// counted in their webhook's pending gauge too.
func TestWebhookPendingUnloaded(t *testing.T) {
	o := openTest(t, func(_ *StorageConfig, d *DeliveryConfig, h *openHooks) {
		d.RetrySchedule = []time.Duration{time.Hour}
		h.pendingLimit = 4
	})
	down := newReceiver(t, func(_ int, _ *received, w http.ResponseWriter) { w.WriteHeader(http.StatusBadGateway) })
	a := o.hook(t, down.URL, "ORDER_CREATED")
	b := o.hook(t, down.URL+"/b", "ORDER_CANCELED")
	for i := range 6 {
		o.commit(t, event("ORDER_CREATED", "a"+string(rune('0'+i)), `{}`))
	}
	for i := range 3 {
		o.commit(t, event("ORDER_CANCELED", "b"+string(rune('0'+i)), `{}`))
	}
	waitFor(t, 5*time.Second, "9 pending, split by webhook", func() bool {
		p := series(t, o.reg, "eventtap_webhook_pending")
		return p[`webhook="`+a.ID+`"`] == 6 && p[`webhook="`+b.ID+`"`] == 3 && series(t, o.reg, "eventtap_outbox_pending")[""] == 9
	})
}
