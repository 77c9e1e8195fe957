package outbox

import (
	"context"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/eventtap/eventtap/delivery/signature"
)

func verify(t *testing.T, secret string, r received) {
	t.Helper()
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	if err := wh.Verify(r.Body, r.Header); err != nil {
		t.Errorf("standard-webhooks verification of %s: %v", r.ID, err)
	}
}

func TestDeliverPayloadAndSignature(t *testing.T) {
	o := openTest(t)
	rc := newReceiver(t, nil)
	hook := o.hook(t, rc.URL+"/hooks", "ORDER_CREATED")
	other := newReceiver(t, nil)
	o.hook(t, other.URL, "ORDER_CANCELED")

	observed := time.Date(2026, 11, 29, 13, 34, 18, 123456789, time.FixedZone("X", 3600))
	ev := event("ORDER_CREATED", "1", `{"id": 1, "status": "OPEN"}`)
	ev.ObservedAt = observed
	o.commit(t, ev)
	waitFor(t, 5*time.Second, "delivery", func() bool { return rc.count() == 1 })
	r := rc.requests()[0]

	if !regexp.MustCompile(`^evt_[0-9a-v]{26}$`).MatchString(r.ID) {
		t.Errorf("webhook-id %q is not an evt_ id", r.ID)
	}
	want := `{"id":"` + r.ID + `","type":"ORDER_CREATED","timestamp":"2026-11-29T12:34:18.123Z","subject":"1","rule":"rule-ORDER_CREATED","data":{"id":1,"status":"OPEN"}}`
	if string(r.Body) != want {
		t.Errorf("body\n got %s\nwant %s", r.Body, want)
	}
	if r.ContentType != "application/json" {
		t.Errorf("content-type %q", r.ContentType)
	}
	if !strings.HasPrefix(r.UserAgent, "eventtap/") {
		t.Errorf("user-agent %q", r.UserAgent)
	}
	if ts, _ := strconv.ParseInt(r.Timestamp, 10, 64); time.Since(time.Unix(ts, 0)).Abs() > 5*time.Second {
		t.Errorf("webhook-timestamp %q is not now", r.Timestamp)
	}
	verify(t, hook.Secret, r)
	if strings.Contains(r.Signature, " ") {
		t.Errorf("one secret, but several signatures: %q", r.Signature)
	}
	if other.count() != 0 {
		t.Errorf("a webhook of another type got %d requests", other.count())
	}

	waitFor(t, 5*time.Second, "SUCCEEDED", func() bool { return o.deliveryState(t, r.ID, hook.ID).State == Succeeded })
	got, err := o.Event(context.Background(), r.ID)
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Payload) != want || got.Subject != "1" || got.Type != "ORDER_CREATED" || !got.CreatedAt.Equal(observed) {
		t.Errorf("stored event %+v", got)
	}
	if d := got.Deliveries[0]; d.Attempts != 1 || d.LastResponseStatus != 200 || !d.NextAttemptAt.IsZero() {
		t.Errorf("delivery %+v", d)
	}
	logs := o.allLogs(t, LogFilter{EventID: r.ID})
	if len(logs) != 1 || !logs[0].Succeeded || logs[0].ResponseStatus != 200 || logs[0].Request != want || logs[0].Attempt != 1 || logs[0].URL != rc.URL+"/hooks" {
		t.Errorf("logs %+v", logs)
	}
	if v := o.metric(t, "eventtap_events_total", map[string]string{"type": "ORDER_CREATED", "rule": "rule-ORDER_CREATED"}); v != 1 {
		t.Errorf("eventtap_events_total = %v", v)
	}
	if v := o.metric(t, "eventtap_delivery_attempts_total", map[string]string{"type": "ORDER_CREATED", "outcome": "success"}); v != 1 {
		t.Errorf("eventtap_delivery_attempts_total{success} = %v", v)
	}
	if v := o.metric(t, "eventtap_delivery_lag_seconds", map[string]string{"type": "ORDER_CREATED"}); v != 1 {
		t.Errorf("eventtap_delivery_lag_seconds count = %v", v)
	}
	if v := o.metric(t, "eventtap_outbox_pending", nil); v != 0 {
		t.Errorf("eventtap_outbox_pending = %v", v)
	}
	if v := o.metric(t, "eventtap_webhooks", map[string]string{"status": "ENABLED"}); v != 2 {
		t.Errorf("eventtap_webhooks{ENABLED} = %v", v)
	}
}

func TestFlakyReceiver(t *testing.T) {
	o := openTest(t, func(_ *StorageConfig, d *DeliveryConfig, _ *openHooks) {
		// The first retry waits over a second so that the Unix-seconds
		// timestamp, and so the signature, must differ.
		d.RetrySchedule = []time.Duration{1100 * time.Millisecond, 50 * time.Millisecond, 50 * time.Millisecond}
	})
	rc := newReceiver(t, func(n int, _ *received, w http.ResponseWriter) {
		if n < 2 {
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = w.Write([]byte("try again"))
		}
	})
	hook := o.hook(t, rc.URL, "ORDER_CREATED")
	o.commit(t, event("ORDER_CREATED", "o1", `{}`))
	waitFor(t, 5*time.Second, "3 attempts", func() bool { return rc.count() == 3 })
	got := rc.requests()
	for i, r := range got {
		verify(t, hook.Secret, r)
		if r.ID != got[0].ID {
			t.Errorf("attempt %d has webhook-id %s, want %s", i+1, r.ID, got[0].ID)
		}
		if string(r.Body) != string(got[0].Body) {
			t.Errorf("attempt %d body changed", i+1)
		}
	}
	if got[0].Timestamp == got[1].Timestamp || got[0].Signature == got[1].Signature {
		t.Errorf("retry reused timestamp %s / signature %s", got[1].Timestamp, got[1].Signature)
	}
	waitFor(t, 5*time.Second, "SUCCEEDED", func() bool { return o.deliveryState(t, got[0].ID, hook.ID).State == Succeeded })
	logs := o.allLogs(t, LogFilter{WebhookID: hook.ID})
	if len(logs) != 3 {
		t.Fatalf("%d logs, want 3", len(logs))
	}
	// Newest first.
	for i, l := range logs {
		wantAttempt := 3 - i
		if l.Attempt != wantAttempt || l.Succeeded != (wantAttempt == 3) {
			t.Errorf("log %d: attempt %d succeeded %v", i, l.Attempt, l.Succeeded)
		}
		if wantAttempt < 3 && (l.ResponseStatus != 500 || l.ResponseBody != "try again" || !strings.Contains(l.Error, "500")) {
			t.Errorf("failed log %+v", l)
		}
	}
	if d := o.deliveryState(t, got[0].ID, hook.ID); d.Attempts != 3 {
		t.Errorf("attempts = %d", d.Attempts)
	}
}

func TestDeadReceiverThenRedeliver(t *testing.T) {
	o := openTest(t)
	var alive atomic.Bool
	rc := newReceiver(t, func(_ int, _ *received, w http.ResponseWriter) {
		if !alive.Load() {
			panic(http.ErrAbortHandler) // drop the connection: no HTTP response
		}
	})
	hook := o.hook(t, rc.URL, "ORDER_CREATED")
	o.commit(t, event("ORDER_CREATED", "o1", `{}`))
	waitFor(t, 5*time.Second, "3 attempts", func() bool { return rc.count() == 3 })
	id := rc.requests()[0].ID
	waitFor(t, 5*time.Second, "FAILED", func() bool { return o.deliveryState(t, id, hook.ID).State == Failed })
	time.Sleep(300 * time.Millisecond)
	if n := rc.count(); n != 3 {
		t.Fatalf("%d attempts, want 1 + len(retry_schedule) = 3", n)
	}
	logs := o.allLogs(t, LogFilter{EventID: id})
	if len(logs) != 3 {
		t.Fatalf("%d logs", len(logs))
	}
	for _, l := range logs {
		if l.ResponseStatus != 0 || l.Error == "" || l.Succeeded {
			t.Errorf("log %+v: want status 0 and an error", l)
		}
	}
	if v := o.metric(t, "eventtap_deliveries_failed_total", map[string]string{"type": "ORDER_CREATED"}); v != 1 {
		t.Errorf("eventtap_deliveries_failed_total = %v", v)
	}
	if v := o.metric(t, "eventtap_delivery_attempts_total", map[string]string{"type": "ORDER_CREATED", "outcome": "failure"}); v != 3 {
		t.Errorf("failure attempts = %v", v)
	}
	if evs := o.allEvents(t, EventFilter{State: Failed}); len(evs) != 1 || evs[0].ID != id {
		t.Errorf("events in FAILED state: %d", len(evs))
	}

	alive.Store(true)
	ev, err := o.Redeliver(context.Background(), id, "")
	if err != nil {
		t.Fatal(err)
	}
	if ev.Deliveries[0].State != Pending || ev.Deliveries[0].Attempts != 0 {
		t.Errorf("after Redeliver: %+v", ev.Deliveries[0])
	}
	waitFor(t, 5*time.Second, "SUCCEEDED after redelivery", func() bool { return o.deliveryState(t, id, hook.ID).State == Succeeded })
	if got := rc.requests()[3]; got.ID != id {
		t.Errorf("redelivered webhook-id %s, want %s", got.ID, id)
	}
	if _, err := o.Redeliver(context.Background(), "evt_nope", ""); !errorsIs(err, ErrNotFound) {
		t.Errorf("Redeliver(unknown) = %v", err)
	}
}

func TestSlowReceiverDoesNotStarveOthers(t *testing.T) {
	o := openTest(t, func(_ *StorageConfig, d *DeliveryConfig, _ *openHooks) {
		d.Workers = 4
		d.Timeout = 200 * time.Millisecond
		d.RetrySchedule = []time.Duration{50 * time.Millisecond}
	})
	release := make(chan struct{})
	slow := newReceiver(t, func(_ int, _ *received, _ http.ResponseWriter) {
		select {
		case <-release:
		case <-time.After(2 * time.Second):
		}
	})
	defer close(release)
	fast := newReceiver(t, nil)
	slowHook := o.hook(t, slow.URL, "ORDER_CREATED")
	o.hook(t, fast.URL, "ORDER_CREATED")
	start := time.Now()
	for i := range 40 {
		o.commit(t, event("ORDER_CREATED", "o"+strconv.Itoa(i), `{}`))
	}
	waitFor(t, 5*time.Second, "fast receiver got everything", func() bool { return fast.count() == 40 })
	if d := time.Since(start); d > 3*time.Second {
		t.Errorf("fast receiver took %s", d)
	}
	waitFor(t, 5*time.Second, "timeouts logged", func() bool {
		return len(o.allLogs(t, LogFilter{WebhookID: slowHook.ID, Succeeded: new(bool)})) >= 4
	})
	for _, l := range o.allLogs(t, LogFilter{WebhookID: slowHook.ID}) {
		if !strings.Contains(l.Error, "delivery.timeout") || l.ResponseStatus != 0 {
			t.Errorf("slow log: status %d error %q", l.ResponseStatus, l.Error)
		}
		if l.Duration < 150*time.Millisecond || l.Duration > time.Second {
			t.Errorf("slow attempt lasted %s with a 200ms timeout", l.Duration)
		}
	}
}

func TestGoneDisablesWebhook(t *testing.T) {
	o := openTest(t)
	var gone atomic.Bool
	gone.Store(true)
	rc := newReceiver(t, func(_ int, _ *received, w http.ResponseWriter) {
		if gone.Load() {
			w.WriteHeader(http.StatusGone)
		}
	})
	hook := o.hook(t, rc.URL, "ORDER_CREATED")
	o.commit(t, event("ORDER_CREATED", "o1", `{}`))
	waitFor(t, 5*time.Second, "disabled", func() bool {
		w, _ := o.Webhook(context.Background(), hook.ID)
		return w.Status == Disabled
	})
	w, _ := o.Webhook(context.Background(), hook.ID)
	if w.DisabledReason == nil || !strings.Contains(*w.DisabledReason, "410") {
		t.Errorf("disabledReason = %v", w.DisabledReason)
	}
	time.Sleep(300 * time.Millisecond)
	if n := rc.count(); n != 1 {
		t.Errorf("%d attempts after a 410; a disabled webhook's deliveries must pause", n)
	}
	first := rc.requests()[0].ID
	if d := o.deliveryState(t, first, hook.ID); d.State != Pending {
		t.Errorf("paused delivery state %s", d.State)
	}
	// Events while DISABLED are not queued for it.
	o.commit(t, event("ORDER_CREATED", "o2", `{}`))
	evs := o.allEvents(t, EventFilter{Subject: "o2"})
	if len(evs) != 1 || len(evs[0].Deliveries) != 0 {
		t.Fatalf("event while disabled: %+v", evs)
	}
	if v := o.metric(t, "eventtap_webhooks", map[string]string{"status": "DISABLED"}); v != 1 {
		t.Errorf("eventtap_webhooks{DISABLED} = %v", v)
	}
	// Re-enabling resumes the paused delivery; replay queues the other.
	gone.Store(false)
	enabled := Enabled
	w, err := o.UpdateWebhook(context.Background(), WebhookUpdate{ID: hook.ID, Status: &enabled})
	if err != nil || w.DisabledReason != nil {
		t.Fatalf("re-enable: %v %+v", err, w)
	}
	waitFor(t, 5*time.Second, "resumed", func() bool { return o.deliveryState(t, first, hook.ID).State == Succeeded })
	n, err := o.Replay(context.Background(), hook.ID, time.Now().Add(-time.Minute))
	if err != nil || n != 2 {
		t.Fatalf("Replay = %d, %v; want 2 (one redone, one never queued)", n, err)
	}
	waitFor(t, 5*time.Second, "replayed", func() bool { return o.deliveryState(t, evs[0].ID, hook.ID).State == Succeeded })
}

func TestRetryAfterHonoured(t *testing.T) {
	o := openTest(t)
	rc := newReceiver(t, func(n int, _ *received, w http.ResponseWriter) {
		if n == 0 {
			w.Header().Set("Retry-After", "1")
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	o.hook(t, rc.URL, "ORDER_CREATED")
	o.commit(t, event("ORDER_CREATED", "o1", `{}`))
	waitFor(t, 5*time.Second, "retry", func() bool { return rc.count() == 2 })
	got := rc.requests()
	if gap := got[1].At.Sub(got[0].At); gap < 900*time.Millisecond {
		t.Errorf("retried after %s; Retry-After asked for 1s (schedule says 50ms)", gap)
	}
}

func TestRotationSendsTwoSignatures(t *testing.T) {
	o := openTest(t)
	rc := newReceiver(t, nil)
	hook := o.hook(t, rc.URL, "ORDER_CREATED")
	rotated, err := o.RotateSecret(context.Background(), hook.ID)
	if err != nil {
		t.Fatal(err)
	}
	if rotated.Secret == hook.Secret || len(rotated.PreviousSecrets) != 1 || rotated.PreviousSecrets[0].Secret != hook.Secret ||
		time.Until(rotated.PreviousSecrets[0].Until) < 23*time.Hour {
		t.Fatalf("rotated webhook %+v", rotated)
	}
	o.commit(t, event("ORDER_CREATED", "o1", `{}`))
	waitFor(t, 5*time.Second, "delivery", func() bool { return rc.count() == 1 })
	r := rc.requests()[0]
	if sigs := strings.Fields(r.Signature); len(sigs) != 2 {
		t.Fatalf("signature header %q: want two signatures", r.Signature)
	}
	verify(t, rotated.Secret, r)
	verify(t, hook.Secret, r)
	ts, _ := strconv.ParseInt(r.Timestamp, 10, 64)
	for _, s := range []string{rotated.Secret, hook.Secret} {
		k, _ := signature.Key(s)
		if !signature.Verify(k, r.Signature, r.ID, ts, r.Body) {
			t.Errorf("signature for %s… missing", s[:12])
		}
	}
	// A test send uses the same signing.
	l, err := o.TestWebhook(context.Background(), hook.ID)
	if err != nil || !l.Succeeded || l.ResponseStatus != 200 || l.Attempt != 1 {
		t.Fatalf("TestWebhook = %+v, %v", l, err)
	}
	tr := rc.requests()[1]
	verify(t, rotated.Secret, tr)
	if tr.Payload.Type != "ORDER_CREATED" || tr.ID != l.EventID || l.Request != string(tr.Body) {
		t.Errorf("test request %+v / log %+v", tr.Payload, l)
	}
	if logs := o.allLogs(t, LogFilter{EventID: l.EventID}); len(logs) != 1 {
		t.Errorf("test send logged %d times", len(logs))
	}

	// A second rotation within the 24 h: the first secret keeps its own
	// 24 h, so all three sign, and all three survive a restart.
	again, err := o.RotateSecret(context.Background(), hook.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(again.PreviousSecrets) != 2 || again.PreviousSecrets[0].Secret != rotated.Secret || again.PreviousSecrets[1] != rotated.PreviousSecrets[0] {
		t.Fatalf("twice rotated: %+v", again.PreviousSecrets)
	}
	o.close(t)
	o = openTestDir(t, o.dir)
	stored, err := o.Webhook(context.Background(), hook.ID)
	if err != nil || len(stored.PreviousSecrets) != 2 || stored.PreviousSecrets[1].Secret != hook.Secret {
		t.Fatalf("after restart: %+v, %v", stored.PreviousSecrets, err)
	}
	o.commit(t, event("ORDER_CREATED", "o2", `{}`))
	waitFor(t, 5*time.Second, "delivery", func() bool { return rc.count() == 3 })
	r = rc.requests()[2]
	if sigs := strings.Fields(r.Signature); len(sigs) != 3 {
		t.Fatalf("signature header %q: want three signatures", r.Signature)
	}
	for _, s := range []string{again.Secret, rotated.Secret, hook.Secret} {
		verify(t, s, r)
	}
}

func TestWebhookRecordCodec(t *testing.T) {
	until := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	for _, prev := range [][]PreviousSecret{
		nil,
		{{Secret: "whsec_a", Until: until}},
		{{Secret: "whsec_b", Until: until.Add(time.Hour)}, {Secret: "whsec_a", Until: until}},
	} {
		in := webhookRecord{Webhook: Webhook{ID: "wh_1", URL: "https://example.com", Type: "ORDER_CREATED", Status: Enabled,
			Secret: "whsec_c", PreviousSecrets: prev, CreatedAt: until, UpdatedAt: until}}
		var out webhookRecord
		if err := out.unmarshal(in.marshal()); err != nil {
			t.Fatal(err)
		}
		if len(out.PreviousSecrets) != len(prev) {
			t.Fatalf("previous secrets %+v, want %+v", out.PreviousSecrets, prev)
		}
		for i := range prev {
			if out.PreviousSecrets[i].Secret != prev[i].Secret || !out.PreviousSecrets[i].Until.Equal(prev[i].Until) {
				t.Errorf("previous secret %d: %+v, want %+v", i, out.PreviousSecrets[i], prev[i])
			}
		}
	}
}

func TestDisableAfter(t *testing.T) {
	o := openTest(t, func(_ *StorageConfig, d *DeliveryConfig, _ *openHooks) {
		d.DisableAfter = 300 * time.Millisecond
		d.RetrySchedule = []time.Duration{100 * time.Millisecond, 100 * time.Millisecond, 100 * time.Millisecond,
			100 * time.Millisecond, 100 * time.Millisecond, 100 * time.Millisecond, 100 * time.Millisecond}
	})
	rc := newReceiver(t, func(_ int, _ *received, w http.ResponseWriter) { w.WriteHeader(http.StatusBadGateway) })
	hook := o.hook(t, rc.URL, "ORDER_CREATED")
	o.commit(t, event("ORDER_CREATED", "o1", `{}`))
	waitFor(t, 5*time.Second, "disabled", func() bool {
		w, _ := o.Webhook(context.Background(), hook.ID)
		return w.Status == Disabled
	})
	w, _ := o.Webhook(context.Background(), hook.ID)
	if w.DisabledReason == nil || !strings.Contains(*w.DisabledReason, "disable_after") {
		t.Errorf("reason %v", w.DisabledReason)
	}
	if n := rc.count(); n < 3 || n > 6 {
		t.Errorf("%d attempts before disabling after 300ms of 100ms retries", n)
	}
}
