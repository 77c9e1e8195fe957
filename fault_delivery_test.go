package main

// Fault scenarios on the delivery side: receivers down or slow (see fault_harness_test.go).

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// ---- 2. a receiver down for a while, then back

// faultUpdateRules emit one ORDER_UPDATED per PATCH, carrying the request
// body, so that a test can number the events of each subject.
const faultUpdateRules = `rules:
  - name: order-updated
    event: ORDER_UPDATED
    when: {method: PATCH, path: "/orders/{id}", status: 2xx}
    subject: path.id
    data: request.body
`

// outagePlan is how long a receiver stays down and how much traffic the
// sidecar sees meanwhile.
type outagePlan struct {
	outage   time.Duration // the receiver is down this long
	every    time.Duration // one event per subject this often while it is down
	subjects int
	schedule string        // delivery.retry_schedule: must outlast the outage
	drain    time.Duration // the backlog must be delivered this soon after it is back
}

// receiverOutage takes a receiver down while events keep coming, brings it
// back at the same address, and checks that every event arrives, each
// subject's events in the order they happened, without a restart.
func receiverOutage(t *testing.T, plan outagePlan) {
	api := httptest.NewServer(newOrderAPI().handler())
	t.Cleanup(api.Close)
	s := startFault(t, faultConfig{upstream: api.URL, rules: faultUpdateRules,
		delivery: []string{"retry_schedule: " + plan.schedule}})
	rc := newHookReceiver(t)
	hookID := rc.register(t, s.adminURL, "ORDER_UPDATED")
	receiverAddr, verify := rc.srv.Listener.Addr().String(), rc.srv.Config.Handler

	var ids []string
	for range plan.subjects {
		ids = append(ids, createOrder(t, s, `{"total":1}`)) // no rule: no event
	}
	seq := map[string]int{}
	sent := 0
	round := func() {
		for _, id := range ids {
			seq[id]++
			body := fmt.Sprintf(`{"seq":%d}`, seq[id])
			if code, _, b := faultSend(t, http.MethodPatch, s.proxyURL+"/orders/"+id, body); code != http.StatusOK {
				t.Fatalf("PATCH /orders/%s: %d %s", id, code, b)
			}
			sent++
		}
	}

	round()
	rc.waitFor(t, "ORDER_UPDATED", len(ids))

	rc.srv.Close() // connections refused from now on
	downAt := time.Now()
	downSent := 0
	for time.Since(downAt) < plan.outage {
		round()
		downSent += len(ids)
		time.Sleep(plan.every)
	}
	m := s.metrics(t)
	if got := m["eventtap_outbox_pending"]; got != float64(downSent) {
		t.Errorf("eventtap_outbox_pending = %v while the receiver is down, want the %d events sent meanwhile", got, downSent)
	}
	if got := m[`eventtap_delivery_attempts_total{outcome="failure",type="ORDER_UPDATED"}`]; got < float64(len(ids)) {
		t.Errorf("failed attempts = %v while the receiver is down, want at least one per subject (%d)", got, len(ids))
	}
	if got := m["eventtap_outbox_oldest_pending_seconds"]; got < plan.outage.Seconds()/2 {
		t.Errorf("eventtap_outbox_oldest_pending_seconds = %v after a %v outage", got, plan.outage)
	}
	if failed := attemptLogs(t, s, hookID); len(failed) == 0 || failed[0].Succeeded || failed[0].ResponseStatus != nil || failed[0].Error == "" {
		t.Errorf("webhookLogs of the attempts to a receiver that is down: %+v (want failures with no responseStatus and an error)", failed)
	}

	rc.srv = serveAt(t, receiverAddr, verify)
	backAt := time.Now()
	round()
	faultEventually(t, s, plan.drain, fmt.Sprintf("all %d events to arrive after the receiver came back", sent), func() bool {
		return len(distinct(rc.of("ORDER_UPDATED"))) >= sent
	})
	t.Logf("receiver down %v with %d events queued; all %d delivered %v after it came back",
		plan.outage.Round(time.Millisecond), downSent, sent, time.Since(backAt).Round(time.Millisecond))

	// Per subject, first arrivals follow the order of the exchanges.
	order := map[string][]int{}
	for _, d := range distinct(rc.of("ORDER_UPDATED")) {
		order[d.payload.Subject] = append(order[d.payload.Subject], seqOf(t, d))
	}
	for _, id := range ids {
		want := make([]int, seq[id])
		for i := range want {
			want[i] = i + 1
		}
		if !slices.Equal(order[id], want) {
			t.Errorf("subject %s: events arrived as %v, want %v", id, order[id], want)
		}
	}
	if bad := rc.rejected(); len(bad) > 0 {
		t.Errorf("the receiver rejected deliveries: %v", bad)
	}
	faultEventually(t, s, 10*time.Second, "eventtap_outbox_pending to return to 0", func() bool {
		return s.metrics(t)["eventtap_outbox_pending"] == 0
	})
	if got := s.metrics(t)[`eventtap_deliveries_failed_total{type="ORDER_UPDATED"}`]; got != 0 {
		t.Errorf("eventtap_deliveries_failed_total = %v: the schedule gave up during the outage", got)
	}
}

func TestFaultReceiverDown(t *testing.T) {
	receiverOutage(t, outagePlan{
		outage:   6 * time.Second,
		every:    time.Second,
		subjects: 4,
		// 13.5 s of retries: more than the outage, short enough that the
		// backlog starts draining within a second of the receiver's return.
		schedule: "[100ms, 200ms, 400ms, 800ms, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s, 1s]",
		drain:    15 * time.Second,
	})
}

// ---- 3. a slow receiver does not starve the others

// TestFaultSlowReceiver subscribes two receivers to the same events: one
// answers only after delivery.timeout, the other at once. The fast one must
// get every event promptly while the slow one's attempts time out and are
// retried, its later events waiting behind the first of each subject.
func TestFaultSlowReceiver(t *testing.T) {
	const timeout = time.Second
	tests := []struct {
		name              string
		workers           int
		subjects, perSubj int
	}{
		// The slow receiver's lanes hold a few of the workers.
		{"few slow lanes", 8, 2, 4},
		// The slow receiver has more lanes than there are workers: one
		// slow endpoint must still not hold every worker.
		{"slow lanes outnumber workers", 4, 8, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			api := httptest.NewServer(newOrderAPI().handler())
			t.Cleanup(api.Close)
			s := startFault(t, faultConfig{upstream: api.URL, rules: faultUpdateRules, delivery: []string{
				fmt.Sprintf("timeout: %v", timeout), fmt.Sprintf("workers: %d", tt.workers),
				"retry_schedule: [200ms, 200ms, 200ms, 200ms, 200ms, 200ms, 200ms, 200ms, 200ms, 200ms]"}})

			fast := newHookReceiver(t)
			var mu sync.Mutex
			arrived := map[string]time.Time{} // webhook-id → first arrival at the fast receiver
			rehost(t, fast, func(verify http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					mu.Lock()
					if id := r.Header.Get("webhook-id"); arrived[id].IsZero() {
						arrived[id] = time.Now()
					}
					mu.Unlock()
					verify.ServeHTTP(w, r)
				})
			})
			slow := newHookReceiver(t)
			rehost(t, slow, func(verify http.Handler) http.Handler {
				return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					// Verified and recorded as an attempt, then answered too late.
					verify.ServeHTTP(httptest.NewRecorder(), r)
					select {
					case <-r.Context().Done():
					case <-time.After(10 * time.Second):
					}
				})
			})
			fast.register(t, s.adminURL, "ORDER_UPDATED")
			slowID := slow.register(t, s.adminURL, "ORDER_UPDATED")

			var ids []string
			for range tt.subjects {
				ids = append(ids, createOrder(t, s, `{"total":1}`))
			}
			sentAt := map[string]time.Time{} // "subject/seq" → when the client sent the exchange
			for n := 1; n <= tt.perSubj; n++ {
				for _, id := range ids {
					key := fmt.Sprintf("%s/%d", id, n)
					sentAt[key] = time.Now()
					if code, _, b := faultSend(t, http.MethodPatch, s.proxyURL+"/orders/"+id, fmt.Sprintf(`{"seq":%d}`, n)); code != http.StatusOK {
						t.Fatalf("PATCH %s: %d %s", key, code, b)
					}
					time.Sleep(100 * time.Millisecond)
				}
			}
			total := tt.subjects * tt.perSubj
			faultEventually(t, s, 10*time.Second, "the fast receiver to get every event", func() bool {
				return len(distinct(fast.of("ORDER_UPDATED"))) == total
			})
			var worst time.Duration
			for _, d := range distinct(fast.of("ORDER_UPDATED")) {
				key := d.payload.Subject + "/" + strconv.Itoa(seqOf(t, d))
				mu.Lock()
				lag := arrived[d.payload.ID].Sub(sentAt[key])
				mu.Unlock()
				worst = max(worst, lag)
			}
			if worst > timeout/2 {
				t.Errorf("the fast receiver waited up to %v for an event while the slow one was timing out "+
					"(delivery.timeout %v, %d workers, %d slow lanes)", worst.Round(time.Millisecond), timeout, tt.workers, tt.subjects)
			} else {
				t.Logf("fast receiver: every event within %v", worst.Round(time.Millisecond))
			}

			// The slow receiver's attempts time out and are retried, and only
			// the first event of each subject is ever attempted there.
			attempts := func() map[string]int {
				n := map[string]int{}
				for _, d := range slow.of("ORDER_UPDATED") {
					n[d.payload.ID]++
				}
				return n
			}
			faultEventually(t, s, 15*time.Second, "the first event of every subject to be attempted twice at the slow receiver", func() bool {
				a := attempts()
				for _, n := range a {
					if n < 2 {
						return false
					}
				}
				return len(a) >= tt.subjects
			})
			for _, d := range slow.of("ORDER_UPDATED") {
				if seq := seqOf(t, d); seq != 1 {
					t.Errorf("the slow receiver got event %d of subject %s before the first was delivered", seq, d.payload.Subject)
				}
			}
			if n := len(attempts()); n != tt.subjects {
				t.Errorf("the slow receiver got attempts of %d events, want the first of each of %d subjects", n, tt.subjects)
			}
			for _, n := range attemptLogs(t, s, slowID) {
				if n.Succeeded || n.ResponseStatus != nil || !strings.Contains(n.Error, "delivery.timeout") || n.DurationMs < int(timeout.Milliseconds())*9/10 {
					t.Errorf("log of an attempt at the slow receiver: %+v, want a timeout after ~%v", n, timeout)
				}
			}
			// An attempt is counted when it has timed out and been recorded.
			faultEventually(t, s, 2*timeout+time.Second, fmt.Sprintf("%d failed attempts to be counted", 2*tt.subjects), func() bool {
				return s.metrics(t)[`eventtap_delivery_attempts_total{outcome="failure",type="ORDER_UPDATED"}`] >= float64(2*tt.subjects)
			})
			m := s.metrics(t)
			if got := m[`eventtap_delivery_attempts_total{outcome="success",type="ORDER_UPDATED"}`]; got != float64(total) {
				t.Errorf("successful attempts = %v, want %d (the fast receiver's)", got, total)
			}
			if got := m["eventtap_outbox_pending"]; got != float64(total) {
				t.Errorf("eventtap_outbox_pending = %v, want the slow receiver's %d", got, total)
			}
		})
	}
}

// attemptLog is what webhookLogs says of one delivery attempt.
type attemptLog struct {
	Succeeded      bool
	ResponseStatus *int
	Error          string
	DurationMs     int
}

// attemptLogs returns the newest 100 attempt logs of a webhook.
func attemptLogs(t testing.TB, s *faultSidecar, hookID string) []attemptLog {
	t.Helper()
	var page struct{ Edges []struct{ Node attemptLog } }
	gql(t, s.adminURL, `query($id: ID!) { webhookLogs(first: 100, filter: {webhookId: $id}) { edges { node { succeeded responseStatus error durationMs } } } }`,
		map[string]any{"id": hookID}).into(t, "webhookLogs", &page)
	out := make([]attemptLog, 0, len(page.Edges))
	for _, e := range page.Edges {
		out = append(out, e.Node)
	}
	return out
}

// seqOf returns the "seq" a faultUpdateRules event carries.
func seqOf(t testing.TB, d delivery) int {
	t.Helper()
	var data struct{ Seq int }
	if err := json.Unmarshal(d.payload.Data, &data); err != nil {
		t.Fatalf("event data %s: %v", d.payload.Data, err)
	}
	return data.Seq
}
