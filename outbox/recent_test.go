package outbox

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// The first attempt of a delivery sends what the committer just made
// durable without reading it back: with the stored event removed behind
// the outbox's back, the delivery still goes out, with its payload.
func TestFirstAttemptReadsNothingBack(t *testing.T) {
	o := openTest(t)
	rc := newReceiver(t, nil)
	hook := o.hook(t, rc.URL, "ORDER_CREATED")
	o.disp.SetPaused(hook.ID, true) // the dispatcher only: the webhook stays ENABLED
	o.commit(t, event("ORDER_CREATED", "ord_1", `{"n":1}`))
	if err := o.db.Update(func(txn *badger.Txn) error { return txn.Delete(eventKey(o.seq)) }); err != nil {
		t.Fatal(err)
	}
	o.snaps.renew(o.db) // so that the workers' snapshot does not have it either
	o.disp.SetPaused(hook.ID, false)
	waitFor(t, 5*time.Second, "the delivery", func() bool { return rc.count() == 1 })
	got := rc.requests()[0]
	if got.Payload.Subject != "ord_1" || string(got.Payload.Data) != `{"n":1}` {
		t.Fatalf("payload %s", got.Body)
	}
	if o.recent.bytes != 0 || len(o.recent.m) != 0 {
		t.Errorf("after the only attempt the cache holds %d bytes in %d events", o.recent.bytes, len(o.recent.m))
	}
}

// A retry reads the store: only the first attempt may use what was
// committed, since the attempt changed the delivery record.
func TestRetryReadsTheStore(t *testing.T) {
	o := openTest(t)
	rc := newReceiver(t, func(n int, _ *received, w http.ResponseWriter) {
		if n == 0 {
			w.WriteHeader(500)
		}
	})
	hook := o.hook(t, rc.URL, "ORDER_CREATED")
	o.commit(t, event("ORDER_CREATED", "ord_1", `{"n":1}`))
	waitFor(t, 5*time.Second, "the retry", func() bool { return rc.count() == 2 })
	ev := o.allEvents(t, EventFilter{})[0]
	waitFor(t, 5*time.Second, "SUCCEEDED", func() bool { return o.deliveryState(t, ev.ID, hook.ID).State == Succeeded })
	if d := o.deliveryState(t, ev.ID, hook.ID); d.Attempts != 2 {
		t.Errorf("attempts %d, want 2", d.Attempts)
	}
}

// Disabling a webhook drops its claims at once (its deliveries may wait
// for days); they are read from the store when it is enabled again.
func TestRecentForgetsDisabledWebhook(t *testing.T) {
	o := openTest(t)
	rc := newReceiver(t, nil)
	hook := o.hook(t, rc.URL, "ORDER_CREATED")
	o.disp.SetPaused(hook.ID, true)
	o.commit(t, event("ORDER_CREATED", "ord_1", `{"n":1}`))
	if o.recent.bytes == 0 {
		t.Fatal("the committed event was not kept for its first attempt")
	}
	disabled, enabled := Disabled, Enabled
	if _, err := o.UpdateWebhook(context.Background(), WebhookUpdate{ID: hook.ID, Status: &disabled}); err != nil {
		t.Fatal(err)
	}
	if o.recent.bytes != 0 || len(o.recent.m) != 0 {
		t.Errorf("a disabled webhook's claims are kept: %d bytes", o.recent.bytes)
	}
	if _, err := o.UpdateWebhook(context.Background(), WebhookUpdate{ID: hook.ID, Status: &enabled}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the delivery", func() bool { return rc.count() == 1 })
}

func TestRecentEventsBounded(t *testing.T) {
	r := newRecentEvents(3 * (recentOverhead + 10))
	ev := func(seq uint64, hooks ...string) recentEvent {
		return recentEvent{seq: seq, ev: eventRecord{Payload: make([]byte, 10)}, waiting: hooks}
	}
	r.add([]recentEvent{ev(1, "a", "b"), ev(2, "a"), ev(3, "a"), ev(4, "a")})
	if len(r.m) != 3 {
		t.Fatalf("%d events kept, want 3 (the limit)", len(r.m))
	}
	if _, ok := r.take(4, "a"); ok {
		t.Error("an event refused for room was found")
	}
	if _, ok := r.take(1, "a"); !ok {
		t.Error("event 1 for a")
	}
	if _, ok := r.take(1, "a"); ok {
		t.Error("a delivery was taken twice")
	}
	if len(r.m) != 3 {
		t.Error("event 1 dropped while b still waits")
	}
	r.forget("b")
	if _, ok := r.take(1, "b"); ok || len(r.m) != 2 {
		t.Errorf("forget left b's claim (%d events)", len(r.m))
	}
	r.add([]recentEvent{ev(5, "a")})
	if _, ok := r.take(5, "a"); !ok {
		t.Error("room freed by take and forget is not reused")
	}
	for _, seq := range []uint64{2, 3} {
		r.take(seq, "a")
	}
	if r.bytes != 0 || len(r.m) != 0 {
		t.Errorf("%d bytes in %d events left", r.bytes, len(r.m))
	}
}
