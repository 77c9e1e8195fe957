package outbox

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/eventtap/eventtap/rules"
)

// TestPaginationStableWhileWriting pages through events and logs with
// small pages while new ones keep being written: every item that existed
// before paging started must be seen exactly once, in newest-first order.
func TestPaginationStableWhileWriting(t *testing.T) {
	o := openTest(t)
	rc := newReceiver(t, nil)
	o.hook(t, rc.URL, "ORDER_CREATED")
	for i := range 25 {
		o.commit(t, event("ORDER_CREATED", fmt.Sprintf("s%d", i%3), `{}`))
	}
	waitFor(t, 5*time.Second, "deliveries", func() bool { return rc.count() == 25 })
	waitFor(t, 5*time.Second, "logs", func() bool { return len(o.allLogs(t, LogFilter{})) == 25 })
	before := o.allEvents(t, EventFilter{})
	beforeLogs := o.allLogs(t, LogFilter{})

	ctx := context.Background()
	var seen []string
	after := ""
	for page := 0; ; page++ {
		p, err := o.Events(ctx, EventFilter{}, 4, after)
		if err != nil {
			t.Fatal(err)
		}
		for _, ev := range p.Items {
			seen = append(seen, ev.ID)
		}
		if page == 0 && p.Total != 25 {
			t.Errorf("total %d", p.Total)
		}
		// Writers keep going between pages.
		o.commit(t, event("ORDER_CREATED", "new", `{}`))
		if !p.HasNext {
			break
		}
		after = p.Cursors[len(p.Cursors)-1]
	}
	if len(seen) != len(before) {
		t.Fatalf("paged %d events, %d existed", len(seen), len(before))
	}
	for i := range seen {
		if seen[i] != before[i].ID {
			t.Fatalf("item %d is %s, want %s", i, seen[i], before[i].ID)
		}
	}

	var seenLogs []string
	after = ""
	for {
		p, err := o.Logs(ctx, LogFilter{}, 7, after)
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range p.Items {
			seenLogs = append(seenLogs, l.ID)
		}
		o.commit(t, event("ORDER_CREATED", "new", `{}`))
		if !p.HasNext {
			break
		}
		after = p.Cursors[len(p.Cursors)-1]
	}
	if len(seenLogs) < len(beforeLogs) {
		t.Fatalf("paged %d logs, %d existed", len(seenLogs), len(beforeLogs))
	}
	// New logs may appear only before the old ones (newest first).
	offset := len(seenLogs) - len(beforeLogs)
	for i, l := range beforeLogs {
		if seenLogs[offset+i] != l.ID {
			t.Fatalf("log %d is %s, want %s", i, seenLogs[offset+i], l.ID)
		}
	}

	// Subject filter and cursors of another listing.
	s0 := o.allEvents(t, EventFilter{Subject: "s0"})
	if len(s0) != 9 {
		t.Errorf("%d events of s0, want 9", len(s0))
	}
	p, _ := o.Events(ctx, EventFilter{Subject: "s0"}, 2, "")
	if _, err := o.Events(ctx, EventFilter{}, 2, p.Cursors[1]); !errors.Is(err, ErrBadCursor) {
		t.Errorf("cursor of the subject listing accepted by the full listing: %v", err)
	}
	for _, c := range []string{"x", "ZS8", "!!!", p.Cursors[1] + "A"} {
		if _, err := o.Events(ctx, EventFilter{Subject: "s0"}, 2, c); !errors.Is(err, ErrBadCursor) {
			t.Errorf("cursor %q: %v", c, err)
		}
		if _, err := o.Logs(ctx, LogFilter{}, 2, c); !errors.Is(err, ErrBadCursor) {
			t.Errorf("log cursor %q: %v", c, err)
		}
	}
	p2, err := o.Events(ctx, EventFilter{Subject: "s0"}, 2, p.Cursors[1])
	if err != nil || p2.Total != 9 || p2.Items[0].ID != s0[2].ID {
		t.Errorf("second subject page: %v total %d", err, p2.Total)
	}
	if p, _ := o.Events(ctx, EventFilter{}, 0, ""); len(p.Items) != 0 || !p.HasNext || p.Total == 0 {
		t.Errorf("first=0: %+v", p)
	}
	if p, _ := o.Events(ctx, EventFilter{Type: "SHIPMENT_CREATED"}, 10, ""); p.Total != 0 || len(p.Items) != 0 {
		t.Errorf("type filter: %+v", p)
	}
	okTrue := true
	if p, _ := o.Logs(ctx, LogFilter{Succeeded: &okTrue, Type: "ORDER_CREATED", CreatedAfter: time.Now().Add(-time.Hour)}, 3, ""); p.Total < 25 || len(p.Items) != 3 {
		t.Errorf("log filters: total %d items %d", p.Total, len(p.Items))
	}
	if p, _ := o.Logs(ctx, LogFilter{CreatedBefore: time.Now().Add(-time.Hour)}, 3, ""); p.Total != 0 {
		t.Errorf("createdBefore filter: total %d", p.Total)
	}
}

// TestRestartResumesScheduledRetries closes the store while a retry is
// scheduled; after reopening, the retry happens at the stored time.
func TestRestartResumesScheduledRetries(t *testing.T) {
	slow := func(_ *StorageConfig, d *DeliveryConfig, _ *openHooks) {
		d.RetrySchedule = []time.Duration{1500 * time.Millisecond}
	}
	o := openTest(t, slow)
	rc := newReceiver(t, func(n int, _ *received, w http.ResponseWriter) {
		if n == 0 {
			w.WriteHeader(http.StatusInternalServerError)
		}
	})
	hook := o.hook(t, rc.URL, "ORDER_CREATED")
	o.commit(t, event("ORDER_CREATED", "1", `{}`))
	waitFor(t, 5*time.Second, "first attempt logged", func() bool { return len(o.allLogs(t, LogFilter{})) == 1 })
	first := rc.requests()[0]
	next := o.deliveryState(t, first.ID, hook.ID).NextAttemptAt
	if d := next.Sub(first.At); d < 1400*time.Millisecond || d > 1700*time.Millisecond {
		t.Errorf("next attempt scheduled %s after the first", d)
	}
	o.close(t)

	o = openTestDir(t, o.dir, slow)
	if v := o.metric(t, "eventtap_outbox_pending", nil); v != 1 {
		t.Errorf("pending after reopen = %v", v)
	}
	waitFor(t, 5*time.Second, "retry after restart", func() bool { return rc.count() == 2 })
	second := rc.requests()[1]
	if second.At.Before(next.Add(-50 * time.Millisecond)) {
		t.Errorf("retried at %s, before the stored next attempt %s", second.At, next)
	}
	if second.ID != first.ID {
		t.Errorf("retry has webhook-id %s, want %s", second.ID, first.ID)
	}
	waitFor(t, 5*time.Second, "SUCCEEDED", func() bool { return o.deliveryState(t, first.ID, hook.ID).State == Succeeded })
}

func TestRetention(t *testing.T) {
	var mu sync.Mutex
	clock := time.Now()
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	o := openTest(t, func(s *StorageConfig, _ *DeliveryConfig, h *openHooks) {
		s.Retention = time.Hour
		h.now = now
		h.retentionEvery = time.Hour // run by hand below
	})
	ok := newReceiver(t, nil)
	okHook := o.hook(t, ok.URL, "ORDER_CREATED")
	paused := newReceiver(t, nil)
	pausedHook := o.hook(t, paused.URL, "SHIPMENT_CREATED")
	disabled := Disabled
	if _, err := o.UpdateWebhook(context.Background(), WebhookUpdate{ID: pausedHook.ID, Status: &disabled}); err != nil {
		t.Fatal(err)
	}
	o.commit(t, event("ORDER_CREATED", "a", `{}`), event("ORDER_CREATED", "b", `{}`), event("ORDER_UPDATED", "c", `{}`))
	waitFor(t, 5*time.Second, "delivered", func() bool { return len(o.allLogs(t, LogFilter{WebhookID: okHook.ID})) == 2 })
	// A pending delivery (paused on a disabled webhook) keeps its event.
	o.commit(t, event("SHIPMENT_CREATED", "d", `{}`))
	if _, err := o.Replay(context.Background(), pausedHook.ID, time.Time{}); err != nil {
		t.Fatal(err)
	}

	mu.Lock()
	clock = clock.Add(30 * time.Minute)
	mu.Unlock()
	o.commit(t, event("ORDER_UPDATED", "young", `{}`))

	if err := o.retain(now()); err != nil {
		t.Fatal(err)
	}
	if n := len(o.allEvents(t, EventFilter{})); n != 5 {
		t.Fatalf("%d events after a pass with nothing expired, want 5", n)
	}
	mu.Lock()
	clock = clock.Add(45 * time.Minute)
	mu.Unlock()
	if err := o.retain(now()); err != nil {
		t.Fatal(err)
	}
	var subjects []string
	for _, ev := range o.allEvents(t, EventFilter{}) {
		subjects = append(subjects, ev.Subject)
	}
	if strings.Join(subjects, ",") != "young,d" {
		t.Errorf("kept events %v, want [young d] (young is within retention, d is pending)", subjects)
	}
	if n := len(o.allLogs(t, LogFilter{})); n != 0 {
		t.Errorf("%d logs kept, want 0", n)
	}
	if n := len(o.allEvents(t, EventFilter{Subject: "a"})); n != 0 {
		t.Errorf("subject index still lists %d events of a", n)
	}
	// No orphaned index or delivery keys remain.
	err := o.db.View(func(txn *badger.Txn) error {
		for _, p := range [][]byte{prefixDelivery, prefixLogByWH, prefixLogByEvt, prefixSubject} {
			n := 0
			scanKeys(txn, p, func([]byte) bool { n++; return true })
			want := map[string]int{"d/": 1, "s/": 2}[string(p)]
			if n != want {
				t.Errorf("%d keys under %s, want %d", n, p, want)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestNoGoroutineLeak(t *testing.T) {
	before := runtime.NumGoroutine()
	for range 3 {
		o := openTest(t)
		rc := newReceiver(t, nil)
		o.hook(t, rc.URL, "ORDER_CREATED")
		o.commit(t, event("ORDER_CREATED", "1", `{}`))
		waitFor(t, 5*time.Second, "delivered", func() bool { return rc.count() == 1 })
		o.close(t)
		rc.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for runtime.NumGoroutine() > before+2 {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines before, %d after:\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestCloseWaitsForInFlightAttempts closes while a receiver is slow: with
// a generous deadline the attempt completes and is recorded; with a short
// one it is cancelled, not recorded, and retried after reopening.
func TestCloseWaitsForInFlightAttempts(t *testing.T) {
	for _, tc := range []struct {
		name     string
		deadline time.Duration
		recorded bool
	}{{"finishes", 3 * time.Second, true}, {"cancelled", 50 * time.Millisecond, false}} {
		t.Run(tc.name, func(t *testing.T) {
			o := openTest(t)
			started := make(chan struct{}, 1)
			rc := newReceiver(t, func(n int, r *received, w http.ResponseWriter) {
				if n == 0 {
					started <- struct{}{}
					time.Sleep(400 * time.Millisecond)
				}
			})
			hook := o.hook(t, rc.URL, "ORDER_CREATED")
			o.commit(t, event("ORDER_CREATED", "1", `{}`))
			<-started
			ctx, cancel := context.WithTimeout(context.Background(), tc.deadline)
			err := o.Close(ctx)
			cancel()
			if (err == nil) != tc.recorded {
				t.Errorf("Close = %v", err)
			}
			o = openTestDir(t, o.dir)
			id := rc.requests()[0].ID
			if tc.recorded {
				if d := o.deliveryState(t, id, hook.ID); d.State != Succeeded {
					t.Errorf("state after reopen %+v", d)
				}
				return
			}
			waitFor(t, 5*time.Second, "retried after reopen", func() bool { return o.deliveryState(t, id, hook.ID).State == Succeeded })
			if rc.count() != 2 {
				t.Errorf("%d requests", rc.count())
			}
		})
	}
}

func TestCommitContextCancelled(t *testing.T) {
	o := openTest(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := o.Commit(ctx, []rules.Event{event("ORDER_CREATED", "1", `{}`)}); !errors.Is(err, context.Canceled) {
		t.Errorf("Commit with a cancelled context = %v", err)
	}
	if err := o.Commit(context.Background(), nil); err != nil {
		t.Errorf("empty Commit = %v", err)
	}
}

// TestPendingOverflow bounds the in-memory index to a few items: the
// backlog then lives only in Badger and is reloaded as it drains, still in
// order per subject.
func TestPendingOverflow(t *testing.T) {
	o := openTest(t, func(_ *StorageConfig, d *DeliveryConfig, h *openHooks) {
		h.pendingLimit = 8
		d.Workers = 3
	})
	release := make(chan struct{})
	rc := newReceiver(t, func(_ int, _ *received, _ http.ResponseWriter) { <-release })
	o.hook(t, rc.URL, "ORDER_UPDATED")
	const subjects, per = 5, 20
	for n := range per {
		var evs []rules.Event
		for s := range subjects {
			evs = append(evs, event("ORDER_UPDATED", fmt.Sprintf("s%d", s), fmt.Sprintf(`{"n":%d}`, n)))
		}
		o.commit(t, evs...)
	}
	if v := o.metric(t, "eventtap_outbox_pending", nil); v != subjects*per {
		t.Errorf("pending = %v, want %d", v, subjects*per)
	}
	held, overflow := o.disp.Held()
	if held > 8 || !overflow {
		t.Errorf("held %d items, overflow %v; want at most the limit, overflowing", held, overflow)
	}
	close(release)
	waitFor(t, 20*time.Second, "all delivered", func() bool {
		return len(o.allEvents(t, EventFilter{State: Succeeded})) == subjects*per
	})
	last := map[string]int{}
	for _, r := range rc.requests() {
		var d struct{ N int }
		if err := jsonUnmarshal(r.Payload.Data, &d); err != nil {
			t.Fatal(err)
		}
		if p, ok := last[r.Payload.Subject]; ok && d.N < p {
			t.Fatalf("subject %s: n=%d after n=%d", r.Payload.Subject, d.N, p)
		}
		last[r.Payload.Subject] = d.N
	}
	waitFor(t, 5*time.Second, "pending 0", func() bool { return o.metric(t, "eventtap_outbox_pending", nil) == 0 })
	// Also across a restart with more stored than the limit.
	release2 := make(chan struct{})
	rc.setAnswer(func(_ int, _ *received, _ http.ResponseWriter) { <-release2 })
	for n := range 30 {
		o.commit(t, event("ORDER_UPDATED", "r", fmt.Sprintf(`{"n":%d}`, n)))
	}
	close(release2)
	o.close(t)
	rc.setAnswer(nil)
	o = openTestDir(t, o.dir, func(_ *StorageConfig, _ *DeliveryConfig, h *openHooks) { h.pendingLimit = 8 })
	waitFor(t, 20*time.Second, "all delivered after restart", func() bool {
		return len(o.allEvents(t, EventFilter{State: Succeeded})) == subjects*per+30
	})
}

// TestNoSpace checks that a nearly full storage.dir turns into commit and
// admin errors (ErrNoSpace) instead of writes Badger would die of, and that
// writing resumes by itself once space is back. The real full disk is in
// the root package's TestFaultDiskFull.
func TestNoSpace(t *testing.T) {
	var free atomic.Uint64
	free.Store(1 << 30)
	o := openTest(t, func(_ *StorageConfig, _ *DeliveryConfig, h *openHooks) {
		h.freeBytes = func(string) (uint64, error) { return free.Load(), nil }
	})
	rc := newReceiver(t, nil)
	hook := o.hook(t, rc.URL, "ORDER_CREATED")
	o.commit(t, event("ORDER_CREATED", "o1", `{"n":1}`))

	free.Store(minFreeBytes - 1)
	err := o.Commit(context.Background(), []rules.Event{event("ORDER_CREATED", "o2", `{"n":2}`)})
	if !errors.Is(err, ErrNoSpace) || !strings.Contains(err.Error(), "free") {
		t.Fatalf("commit with the disk nearly full: %v, want ErrNoSpace", err)
	}
	if _, err := o.CreateWebhook(context.Background(), WebhookCreate{URL: rc.URL, Type: "ORDER_CREATED"}); !errors.Is(err, ErrNoSpace) {
		t.Errorf("creating a webhook with the disk nearly full: %v", err)
	}
	if _, err := o.RotateSecret(context.Background(), hook.ID); !errors.Is(err, ErrNoSpace) {
		t.Errorf("rotating with the disk nearly full: %v", err)
	}

	free.Store(1 << 30)
	o.commit(t, event("ORDER_CREATED", "o3", `{"n":3}`))
	waitFor(t, 5*time.Second, "both committed events delivered", func() bool { return rc.count() >= 2 })
	subjects := map[string]bool{}
	for _, r := range rc.requests() {
		subjects[r.Payload.Subject] = true
	}
	if !subjects["o1"] || !subjects["o3"] || subjects["o2"] {
		t.Errorf("delivered subjects %v, want o1 and o3 (o2 was refused)", subjects)
	}
}
