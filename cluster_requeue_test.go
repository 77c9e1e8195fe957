package main

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/eventtap/eventtap/internal/testkit"
)

// TestClusterRedeliverAndReplay (SPEC §5, §8 "behave as one system"):
// eventRedeliver on a node other than the one that committed the event
// sends it again, signed, with the same id, and webhookLogs on every node
// show the extra attempt; webhookReplay on a third node sends every event
// of the webhook's type again, and only those; the events are still
// listed once; unknown ids are NOT_FOUND and a webhook of another type is
// BAD_USER_INPUT, as on one node.
func TestClusterRedeliverAndReplay(t *testing.T) {
	_, nodes, rc := startClusterTest(t, 3)

	since := time.Now().UTC().Add(-time.Second)
	created := rc.registerAt(t, nodes[0], "ORDER_CREATED", "/created")
	changed := rc.registerAt(t, nodes[0], "ORDER_STATUS_CHANGED", "/changed")
	for _, sc := range nodes[1:] {
		testkit.Eventually(t, 2*time.Second, "the webhooks seen by "+sc.adminURL, func() bool {
			var hooks struct{ TotalCount int }
			gql(t, sc.adminURL, `{ webhooks(first: 10) { totalCount } }`, nil).into(t, "webhooks", &hooks)
			return hooks.TotalCount == 2
		})
	}

	// Three orders, one through each node; the first is also paid.
	var orders []string
	for i, sc := range nodes {
		code, body := do(t, http.MethodPost, sc.proxyURL+"/orders", `{"customer":"c`+strconv.Itoa(i)+`"}`)
		var o struct{ ID int }
		if code != http.StatusCreated || json.Unmarshal(body, &o) != nil {
			t.Fatalf("POST /orders through node %d: %d %s", i+1, code, body)
		}
		orders = append(orders, strconv.Itoa(o.ID))
	}
	if code, body := do(t, http.MethodPatch, nodes[0].proxyURL+"/orders/"+orders[0], `{"status":"PAID"}`); code != http.StatusOK {
		t.Fatalf("PATCH: %d %s", code, body)
	}
	testkit.Eventually(t, 15*time.Second, "every event delivered", func() bool {
		return len(rc.at("/created")) >= 3 && len(rc.at("/changed")) >= 1
	})
	idOf := map[string]string{} // order → its ORDER_CREATED event id
	for _, d := range rc.at("/created") {
		idOf[d.payload.Subject] = d.payload.ID
	}
	first := idOf[orders[0]] // committed through node 1
	if first == "" {
		t.Fatalf("no ORDER_CREATED for order %s: %v", orders[0], idOf)
	}
	// Node 2 has the event in its view, delivered, before it is asked.
	testkit.Eventually(t, 5*time.Second, "event "+first+" delivered, seen by node 2", func() bool {
		var ev *clusterEvent
		gql(t, nodes[1].adminURL, `query($id: ID!) { event(id: $id) { id deliveries { webhookId state } } }`,
			map[string]any{"id": first}).into(t, "event", &ev)
		return ev != nil && len(ev.Deliveries) == 1 && ev.Deliveries[0].State == "SUCCEEDED"
	})
	countID := func(path, id string) int {
		n := 0
		for _, d := range rc.at(path) {
			if d.payload.ID == id {
				n++
			}
		}
		return n
	}

	// eventRedeliver on node 2, every subscribed webhook.
	var ev struct {
		ID         string
		Deliveries []struct{ WebhookID, State string }
	}
	gql(t, nodes[1].adminURL, `mutation($id: ID!) { eventRedeliver(id: $id) { id deliveries { webhookId state } } }`,
		map[string]any{"id": first}).into(t, "eventRedeliver", &ev)
	if ev.ID != first || len(ev.Deliveries) != 1 || ev.Deliveries[0].WebhookID != created || ev.Deliveries[0].State != "PENDING" {
		t.Errorf("eventRedeliver on node 2 returned %+v, want %s with its delivery to %s PENDING", ev, first, created)
	}
	testkit.Eventually(t, 10*time.Second, "event "+first+" received again", func() bool { return countID("/created", first) == 2 })
	// And on node 3, naming the webhook.
	gql(t, nodes[2].adminURL, `mutation($id: ID!, $wh: ID) { eventRedeliver(id: $id, webhookId: $wh) { id } }`,
		map[string]any{"id": first, "wh": created}).into(t, "eventRedeliver", &ev)
	testkit.Eventually(t, 10*time.Second, "event "+first+" received a third time", func() bool { return countID("/created", first) == 3 })
	for i, sc := range nodes {
		testkit.Eventually(t, 5*time.Second, "webhookLogs on node "+strconv.Itoa(i+1)+" showing the redeliveries", func() bool {
			var logs struct{ TotalCount int }
			gql(t, sc.adminURL, `query($id: ID!) { webhookLogs(first: 10, filter: {eventId: $id}) { totalCount } }`,
				map[string]any{"id": first}).into(t, "webhookLogs", &logs)
			return logs.TotalCount == 3
		})
	}

	// Refused as on one node.
	for _, c := range []struct {
		vars map[string]any
		code string
	}{
		{map[string]any{"id": "evt_0000000000000000000000000"}, "NOT_FOUND"},
		{map[string]any{"id": "nope"}, "NOT_FOUND"},
		{map[string]any{"id": first, "wh": "wh_00000000000000000000000000"}, "NOT_FOUND"},
		{map[string]any{"id": first, "wh": changed}, "BAD_USER_INPUT"}, // another type, never delivered it
	} {
		r := gql(t, nodes[1].adminURL, `mutation($id: ID!, $wh: ID) { eventRedeliver(id: $id, webhookId: $wh) { id } }`, c.vars)
		if r.code() != c.code {
			t.Errorf("eventRedeliver(%v): %+v, want %s", c.vars, r.Errors, c.code)
		}
	}
	if r := gql(t, nodes[2].adminURL, `mutation($id: ID!, $since: DateTime!) { webhookReplay(id: $id, since: $since) }`,
		map[string]any{"id": "wh_00000000000000000000000000", "since": since.Format(time.RFC3339)}); r.code() != "NOT_FOUND" {
		t.Errorf("webhookReplay of an unknown webhook: %+v, want NOT_FOUND", r.Errors)
	}

	// webhookReplay on node 3: the three ORDER_CREATED events again, and
	// nothing for the other webhook.
	var n int
	gql(t, nodes[2].adminURL, `mutation($id: ID!, $since: DateTime!) { webhookReplay(id: $id, since: $since) }`,
		map[string]any{"id": created, "since": since.Format(time.RFC3339Nano)}).into(t, "webhookReplay", &n)
	if n != 3 {
		t.Errorf("webhookReplay on node 3 returned %d, want 3", n)
	}
	testkit.Eventually(t, 10*time.Second, "every ORDER_CREATED received again", func() bool {
		return countID("/created", first) == 4 && countID("/created", idOf[orders[1]]) == 2 && countID("/created", idOf[orders[2]]) == 2
	})
	var future int
	gql(t, nodes[0].adminURL, `mutation($id: ID!, $since: DateTime!) { webhookReplay(id: $id, since: $since) }`,
		map[string]any{"id": created, "since": time.Now().Add(time.Hour).UTC().Format(time.RFC3339)}).into(t, "webhookReplay", &future)
	if future != 0 {
		t.Errorf("webhookReplay since an hour ahead returned %d, want 0", future)
	}
	time.Sleep(300 * time.Millisecond) // room for a wrong extra delivery
	if got := len(rc.at("/created")); got != 8 {
		t.Errorf("/created received %d requests, want 3 + 2 redeliveries + 3 replayed", got)
	}
	if got := len(rc.at("/changed")); got != 1 {
		t.Errorf("/changed received %d requests, want 1: a replay of another webhook must not reach it", got)
	}
	for i, sc := range nodes {
		testkit.Eventually(t, 5*time.Second, "webhookLogs on node "+strconv.Itoa(i+1)+" showing the replay", func() bool {
			var logs struct{ TotalCount int }
			gql(t, sc.adminURL, `query($wh: ID!) { webhookLogs(first: 10, filter: {webhookId: $wh}) { totalCount } }`,
				map[string]any{"wh": created}).into(t, "webhookLogs", &logs)
			return logs.TotalCount == 8
		})
		// The copies are not listed as events.
		evs, total := listEvents(t, sc, nil)
		if total != 4 || len(evs) != 4 {
			t.Errorf("node %d lists %d events (total %d), want 4: copies must not be listed", i+1, len(evs), total)
		}
		for _, e := range evs {
			if e.ID == first && (len(e.Deliveries) != 1 || e.Deliveries[0].State != "SUCCEEDED") {
				t.Errorf("node %d: event %s deliveries %+v, want one SUCCEEDED", i+1, first, e.Deliveries)
			}
		}
	}
	if len(rc.bad) > 0 {
		t.Errorf("rejected deliveries: %s", strings.Join(rc.bad, "; "))
	}
}

// TestClusterRedeliverInBackoff (SPEC §5): eventRedeliver, on a node that
// may not own the delivery, sends a delivery waiting in backoff now, as
// one node does, rather than a copy after the wait; it is sent once, with
// the event's id, and its attempts count from 1 again.
func TestClusterRedeliverInBackoff(t *testing.T) {
	if testing.Short() {
		t.Skip("runs cluster sidecars and a NATS server; skipped with -short")
	}
	ns, api := startNATSAndAPI(t)
	rulesYAML := readFile(t, "docs/examples/orders.rules.yaml")
	var nodes []*sidecar
	for i := range 2 {
		nodes = append(nodes, startSidecar(t, api.URL, rulesYAML, fmt.Sprintf(
			"delivery: {allow_private_networks: true, retry_schedule: [100ms, 10m], jitter: 0}\ncluster: {nats: {urls: [%q]}, node: n%d}\n", ns.URL(), i+1)))
	}
	for _, sc := range nodes {
		waitNATS(t, sc, "ok")
	}
	rc := newHookReceiver(t)
	hook := rc.registerAt(t, nodes[0], "ORDER_CREATED", "/created")
	secret := rc.secrets["/created"]
	rc.mu.Lock()
	rc.secrets["/created"] = "whsec_" + base64.StdEncoding.EncodeToString([]byte("not the webhook's secret, 32 b!"))
	rc.mu.Unlock()

	if code, body := do(t, http.MethodPost, nodes[0].proxyURL+"/orders", `{"customer":"backoff"}`); code != http.StatusCreated {
		t.Fatalf("POST /orders: %d %s", code, body)
	}
	// Two attempts refused (401), then a wait of 10 minutes.
	var eventID string
	testkit.Eventually(t, 15*time.Second, "two failed attempts, the next one 10 minutes away", func() bool {
		var page struct {
			Edges []struct {
				Node struct {
					ID         string
					Deliveries []struct {
						State         string
						Attempts      int
						NextAttemptAt *string
					}
				}
			}
		}
		gql(t, nodes[1].adminURL, `{ events(first: 1, filter: {type: ORDER_CREATED}) { edges { node { id deliveries { state attempts nextAttemptAt } } } } }`, nil).into(t, "events", &page)
		if len(page.Edges) != 1 || len(page.Edges[0].Node.Deliveries) != 1 {
			return false
		}
		d := page.Edges[0].Node.Deliveries[0]
		eventID = page.Edges[0].Node.ID
		return d.State == "PENDING" && d.Attempts == 2
	})
	rc.mu.Lock()
	rc.secrets["/created"] = secret // the receiver is fixed
	rc.mu.Unlock()

	start := time.Now()
	var redelivered struct{ ID string }
	gql(t, nodes[1].adminURL, `mutation($id: ID!, $wh: ID) { eventRedeliver(id: $id, webhookId: $wh) { id } }`,
		map[string]any{"id": eventID, "wh": hook}).into(t, "eventRedeliver", &redelivered)
	testkit.Eventually(t, 10*time.Second, "the delivery in backoff sent now", func() bool { return len(rc.at("/created")) >= 1 })
	t.Logf("sent %s after eventRedeliver", time.Since(start).Round(time.Millisecond))
	time.Sleep(time.Second) // a copy sent besides would arrive by now
	got := rc.at("/created")
	if len(got) != 1 || got[0].header.Get("webhook-id") != eventID {
		t.Fatalf("%d deliveries after eventRedeliver, want one with webhook-id %s: %+v", len(got), eventID, got)
	}
	testkit.Eventually(t, 5*time.Second, "the delivery SUCCEEDED on both nodes, its attempts counted from 1 again", func() bool {
		for _, sc := range nodes {
			var ev struct {
				Deliveries []struct {
					State    string
					Attempts int
				}
			}
			gql(t, sc.adminURL, `query($id: ID!) { event(id: $id) { deliveries { state attempts } } }`, map[string]any{"id": eventID}).into(t, "event", &ev)
			if len(ev.Deliveries) != 1 || ev.Deliveries[0].State != "SUCCEEDED" || ev.Deliveries[0].Attempts != 1 {
				return false
			}
		}
		return true
	})
}
