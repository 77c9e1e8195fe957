package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/eventtap/eventtap/internal/natstest"
	"github.com/eventtap/eventtap/internal/testkit"
)

// Cluster mode (issue 12, SPEC §8): several eventtap nodes in front of one
// order API, sharing a real nats-server run in this process.

// startNATSAndAPI starts an in-process NATS server and the demo's order
// API, both stopped when the test ends.
func startNATSAndAPI(t *testing.T) (*natstest.Server, *httptest.Server) {
	t.Helper()
	ns := natstest.Start(t)
	api := httptest.NewServer(newOrderAPI().handler())
	t.Cleanup(api.Close)
	return ns, api
}

// startClusterTest skips under -short; else it starts NATS, the order
// API, n sidecars joined to that NATS in front of it, and a receiver.
func startClusterTest(t *testing.T, n int) (*natstest.Server, []*sidecar, *hookReceiver) {
	t.Helper()
	if testing.Short() {
		t.Skip("runs cluster sidecars and a NATS server; skipped with -short")
	}
	ns, api := startNATSAndAPI(t)
	return ns, startClusterNodes(t, ns, api.URL, n), newHookReceiver(t)
}

// startClusterNodes runs n sidecars in front of upstream, all joined to ns.
func startClusterNodes(t *testing.T, ns *natstest.Server, upstream string, n int) []*sidecar {
	t.Helper()
	rulesYAML := readFile(t, "docs/examples/orders.rules.yaml")
	nodes := make([]*sidecar, n)
	for i := range nodes {
		nodes[i] = startSidecar(t, upstream, rulesYAML, fmt.Sprintf("cluster: {nats: {urls: [%q]}, node: n%d}\n", ns.URL(), i+1))
	}
	for _, sc := range nodes {
		waitNATS(t, sc, "ok")
	}
	// Each node rebalances every second once it sees the others' membership.
	time.Sleep(1500 * time.Millisecond)
	return nodes
}

// readyz returns /readyz's status code and the nats check's status.
func readyz(t testing.TB, sc *sidecar) (int, string) {
	t.Helper()
	code, raw := readyzBody(t, sc)
	var body struct {
		Checks map[string]struct{ Status string }
	}
	if err := json.Unmarshal([]byte(raw), &body); err != nil {
		t.Fatalf("/readyz: %v: %s", err, raw)
	}
	return code, body.Checks["nats"].Status
}

// readyzBody returns /readyz's status code and body.
func readyzBody(t testing.TB, sc *sidecar) (int, string) {
	t.Helper()
	resp, err := http.Get(sc.adminURL + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

// waitNATS waits until the node's /readyz says NATS is want ("ok" or
// "warn"), and checks that /readyz answers 200 either way.
func waitNATS(t testing.TB, sc *sidecar, want string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		code, got := readyz(t, sc)
		if code != http.StatusOK {
			t.Fatalf("/readyz answered %d; it must stay ready whatever NATS does", code)
		}
		if got == want {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("/readyz's nats check is %q after 15 s, want %q", got, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// registerAt creates a webhook for typ at rc's path on node sc and gives
// the receiver its secret.
func (rc *hookReceiver) registerAt(t testing.TB, sc *sidecar, typ, path string) string {
	t.Helper()
	var hook struct{ ID, Secret string }
	gql(t, sc.adminURL, `mutation($url: String!, $type: WebhookType!) { webhookCreate(input: {url: $url, type: $type, status: ENABLED}) { id secret } }`,
		map[string]any{"url": rc.srv.URL + path, "type": typ}).into(t, "webhookCreate", &hook)
	rc.mu.Lock()
	rc.secrets[path] = hook.Secret
	rc.mu.Unlock()
	return hook.ID
}

func (rc *hookReceiver) at(path string) []delivery {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	var out []delivery
	for _, d := range rc.got {
		if d.path == path {
			out = append(out, d)
		}
	}
	return out
}

// TestClusterSharedRegistryAndChanged: a webhook created on node 1 is used
// by nodes 2 and 3 within 1 s; 30 orders whose create and two updates each
// go through a different node give exactly created, OPEN->PAID and
// PAID->SHIPPED; a webhook disabled on one node receives nothing from the
// others.
func TestClusterSharedRegistryAndChanged(t *testing.T) {
	_, nodes, rc := startClusterTest(t, 3)

	created := rc.registerAt(t, nodes[0], "ORDER_CREATED", "/created")
	start := time.Now()
	for _, sc := range nodes[1:] {
		testkit.Eventually(t, time.Second-time.Since(start), "the webhook created on node 1 seen by "+sc.adminURL, func() bool {
			r := gql(t, sc.adminURL, `query($id: ID!) { webhook(id: $id) { id } }`, map[string]any{"id": created})
			return len(r.Errors) == 0 && strings.Contains(string(r.Data["webhook"]), created)
		})
	}
	t.Logf("webhook created on node 1 visible on nodes 2 and 3 after %s", time.Since(start))
	rc.registerAt(t, nodes[1], "ORDER_STATUS_CHANGED", "/changed")
	// A second ORDER_CREATED webhook, disabled on node 1 at once.
	paused := rc.registerAt(t, nodes[2], "ORDER_CREATED", "/paused")
	r := gql(t, nodes[0].adminURL, `mutation($id: ID!) { webhookUpdate(input: {id: $id, status: DISABLED}) { status } }`, map[string]any{"id": paused})
	if len(r.Errors) > 0 {
		t.Fatalf("webhookUpdate: %+v", r.Errors)
	}
	testkit.Eventually(t, time.Second, "both status changes seen everywhere", func() bool {
		for _, sc := range nodes {
			var hooks struct {
				Edges []struct{ Node struct{ ID, Status string } }
			}
			gql(t, sc.adminURL, `{ webhooks(first: 10) { edges { node { id status } } } }`, nil).into(t, "webhooks", &hooks)
			n := 0
			for _, e := range hooks.Edges {
				h := e.Node
				if h.ID != paused || h.Status == "DISABLED" {
					n++
				}
			}
			if n != 3 {
				return false
			}
		}
		return true
	})

	const orders = 30
	var wg sync.WaitGroup
	errs := make(chan error, orders)
	sem := make(chan struct{}, 8)
	var createdMu sync.Mutex
	createdVia := map[string]int{} // order id (the events' subject) → node that committed ORDER_CREATED
	for i := range orders {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			code, body := do(t, http.MethodPost, nodes[i%3].proxyURL+"/orders", `{"customer":"c`+strconv.Itoa(i)+`"}`)
			var o struct{ ID int }
			if code != http.StatusCreated || json.Unmarshal(body, &o) != nil {
				errs <- fmt.Errorf("POST /orders through node %d: %d %s", i%3+1, code, body)
				return
			}
			createdMu.Lock()
			createdVia[strconv.Itoa(o.ID)] = i % 3
			createdMu.Unlock()
			for k, status := range []string{"PAID", "SHIPPED"} {
				n := nodes[(i+1+k)%3]
				if code, body := do(t, http.MethodPatch, n.proxyURL+"/orders/"+strconv.Itoa(o.ID), `{"status":"`+status+`"}`); code != http.StatusOK {
					errs <- fmt.Errorf("PATCH %s: %d %s", status, code, body)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	testkit.Eventually(t, 15*time.Second, "every event delivered", func() bool {
		return len(rc.at("/created")) >= orders && len(rc.at("/changed")) >= 2*orders
	})
	time.Sleep(300 * time.Millisecond) // room for a wrong extra event to arrive
	perOrder := map[string][]string{}
	ids := map[string]bool{}
	for _, d := range rc.at("/changed") {
		if ids[d.payload.ID] {
			continue // a redelivery; receivers deduplicate on webhook-id
		}
		ids[d.payload.ID] = true
		ch := d.payload.Change
		if ch == nil {
			t.Fatalf("ORDER_STATUS_CHANGED without change: %s", d.body)
		}
		perOrder[d.payload.Subject] = append(perOrder[d.payload.Subject], fmt.Sprintf("%v->%v", ch.Previous, ch.Current))
	}
	if len(perOrder) != orders {
		t.Errorf("status changes for %d orders, want %d", len(perOrder), orders)
	}
	for subject, got := range perOrder {
		if len(got) != 2 || got[0] != "OPEN->PAID" || got[1] != "PAID->SHIPPED" {
			t.Errorf("order %s: status changes %v, want exactly OPEN->PAID, then PAID->SHIPPED", subject, got)
		}
	}
	if n := len(distinct(rc.at("/created"))); n != orders {
		t.Errorf("ORDER_CREATED delivered %d times, want %d", n, orders)
	}
	// One history: every node lists every attempt, whichever node made it.
	for _, sc := range nodes {
		testkit.Eventually(t, 5*time.Second, "webhookLogs on "+sc.adminURL+" showing the whole cluster", func() bool {
			var logs struct{ TotalCount int }
			gql(t, sc.adminURL, `{ webhookLogs(first: 1) { totalCount } }`, nil).into(t, "webhookLogs", &logs)
			return logs.TotalCount == 3*orders
		})
	}
	checkClusterLogPages(t, nodes)
	checkClusterEvents(t, nodes, createdVia, 3*orders)
	// One delivery system, spread over the nodes.
	total := 0.0
	for _, sc := range nodes {
		v := scrape(t, sc.adminURL)["eventtap_cluster_partitions"]
		if v == 0 {
			t.Errorf("%s delivers no partition", sc.adminURL)
		}
		total += v
	}
	if total != 32 {
		t.Errorf("the nodes deliver %v partitions in all, want 32", total)
	}
	for _, sc := range nodes {
		if v := scrape(t, sc.adminURL)[`eventtap_delivery_attempts_total{outcome="success",type="ORDER_STATUS_CHANGED"}`]; v == 0 {
			t.Errorf("%s made no delivery attempt: the partitions are not spread", sc.adminURL)
		}
	}
	if got := rc.at("/paused"); len(got) != 0 {
		t.Errorf("the webhook disabled on node 1 received %d deliveries from the other nodes", len(got))
	}
	// A webhookTest made on node 2 is in webhookLogs on node 3, by its id.
	var test struct{ ID string }
	gql(t, nodes[1].adminURL, `mutation($id: ID!) { webhookTest(id: $id) { id } }`, map[string]any{"id": created}).into(t, "webhookTest", &test)
	testkit.Eventually(t, 5*time.Second, "node 2's webhookTest log on node 3", func() bool {
		var logs struct {
			Edges []struct{ Node struct{ ID string } }
		}
		gql(t, nodes[2].adminURL, `query($id: ID!) { webhookLogs(first: 1, filter: {webhookId: $id}) { edges { node { id } } } }`,
			map[string]any{"id": created}).into(t, "webhookLogs", &logs)
		return len(logs.Edges) == 1 && logs.Edges[0].Node.ID == test.ID
	})
	if len(rc.bad) > 0 {
		t.Errorf("rejected deliveries: %v", rc.bad)
	}
}

// checkClusterLogPages: behind one admin Service, consecutive pages of
// webhookLogs may come from different nodes, so every node lists the same
// log ids in the same order and takes another node's cursor.
func checkClusterLogPages(t *testing.T, nodes []*sidecar) {
	t.Helper()
	type logPage struct {
		Edges []struct {
			Cursor string
			Node   struct{ ID string }
		}
		PageInfo struct{ EndCursor string }
	}
	page := func(sc *sidecar, after string) logPage {
		var p logPage
		gql(t, sc.adminURL, `query($after: String) { webhookLogs(first: 7, after: $after) { edges { cursor node { id } } pageInfo { endCursor } } }`,
			map[string]any{"after": after}).into(t, "webhookLogs", &p)
		return p
	}
	ids := func(p logPage) []string {
		var out []string
		for _, e := range p.Edges {
			out = append(out, e.Node.ID)
		}
		return out
	}
	first := page(nodes[0], "")
	for _, sc := range nodes[1:] {
		if got := ids(page(sc, "")); !slices.Equal(got, ids(first)) {
			t.Errorf("first page of webhookLogs on %s: %v, on node 1: %v", sc.adminURL, got, ids(first))
		}
	}
	second := ids(page(nodes[0], first.PageInfo.EndCursor))
	for _, sc := range nodes[1:] {
		if got := ids(page(sc, first.PageInfo.EndCursor)); len(second) == 0 || !slices.Equal(got, second) {
			t.Errorf("node 1's cursor on %s gives %v, on node 1 %v", sc.adminURL, got, second)
		}
	}
}

// clusterEvent is an event as the cluster tests read it.
type clusterEvent struct {
	ID, Type, Subject string
	CreatedAt         time.Time
	Deliveries        []struct {
		WebhookID string
		State     string
	}
}

// listEvents returns the first page of events(first: 500, filter) on sc.
func listEvents(t *testing.T, sc *sidecar, filter map[string]any) ([]clusterEvent, int) {
	t.Helper()
	var page struct {
		TotalCount int
		Edges      []struct{ Node clusterEvent }
	}
	gql(t, sc.adminURL, `query($f: EventsFilterInput) { events(first: 500, filter: $f) { totalCount edges { node { id type subject createdAt deliveries { webhookId state } } } } }`,
		map[string]any{"f": filter}).into(t, "events", &page)
	out := make([]clusterEvent, len(page.Edges))
	for i, e := range page.Edges {
		out[i] = e.Node
	}
	return out, page.TotalCount
}

// checkClusterEvents: events on every node list the whole cluster's
// events (want of them), the same ids in the same newest-first order,
// filtered by type and subject as on one node; event(id) on a node other
// than the one that committed the event returns it, with its deliveries
// SUCCEEDED once delivered.
func checkClusterEvents(t *testing.T, nodes []*sidecar, createdVia map[string]int, want int) {
	t.Helper()
	var first []clusterEvent
	for i, sc := range nodes {
		var got []clusterEvent
		testkit.Eventually(t, 5*time.Second, "events on "+sc.adminURL+" showing the whole cluster", func() bool {
			var total int
			got, total = listEvents(t, sc, nil)
			return len(got) == want && total == want
		})
		seen := map[string]bool{}
		for k, ev := range got {
			if seen[ev.ID] {
				t.Errorf("node %d lists event %s twice", i+1, ev.ID)
			}
			seen[ev.ID] = true
			if k > 0 && ev.CreatedAt.After(got[k-1].CreatedAt) && ev.Subject == got[k-1].Subject {
				t.Errorf("node %d: events of order %s not newest first: %s after %s", i+1, ev.Subject, ev.CreatedAt, got[k-1].CreatedAt)
			}
		}
		if i == 0 {
			first = got
			continue
		}
		for k := range got {
			if got[k].ID != first[k].ID {
				t.Fatalf("node %d lists event %d as %s, node 1 as %s: the order differs", i+1, k, got[k].ID, first[k].ID)
			}
		}
	}
	// Newest first per order: SHIPPED, PAID, created.
	bySubject := map[string][]clusterEvent{}
	for _, ev := range first {
		bySubject[ev.Subject] = append(bySubject[ev.Subject], ev)
	}
	for subject, evs := range bySubject {
		if len(evs) != 3 || evs[0].Type != "ORDER_STATUS_CHANGED" || evs[1].Type != "ORDER_STATUS_CHANGED" || evs[2].Type != "ORDER_CREATED" {
			t.Errorf("order %s: events %+v, want two status changes over the creation, newest first", subject, evs)
		}
	}
	for i, sc := range nodes {
		created, total := listEvents(t, sc, map[string]any{"type": "ORDER_CREATED"})
		if len(created) != want/3 || total != want/3 {
			t.Errorf("node %d: events(filter: {type: ORDER_CREATED}) lists %d (total %d), want %d", i+1, len(created), total, want/3)
		}
		subject := first[i].Subject
		one, _ := listEvents(t, sc, map[string]any{"subject": subject})
		if len(one) != 3 || one[0].ID != bySubject[subject][0].ID || one[2].ID != bySubject[subject][2].ID {
			t.Errorf("node %d: events(filter: {subject: %q}) lists %+v, want %+v", i+1, subject, one, bySubject[subject])
		}
	}
	// event(id) of an ORDER_CREATED on each other node than the one that
	// committed it; /created received them all, so each is SUCCEEDED
	// there, and its ORDER_CREATED webhook disabled on node 1 has none.
	checked := 0
	for _, ev := range first {
		via, ok := createdVia[ev.Subject]
		if ev.Type != "ORDER_CREATED" || !ok || checked >= 3 {
			continue
		}
		checked++
		sc := nodes[(via+1)%3]
		testkit.Eventually(t, 5*time.Second, "event "+ev.ID+" on another node than its own, delivered", func() bool {
			var got *clusterEvent
			gql(t, sc.adminURL, `query($id: ID!) { event(id: $id) { id type subject createdAt deliveries { webhookId state } } }`,
				map[string]any{"id": ev.ID}).into(t, "event", &got)
			if got == nil || got.ID != ev.ID || got.Subject != ev.Subject {
				t.Fatalf("event(id: %s) on node %d (committed on node %d): %+v", ev.ID, (via+1)%3+1, via+1, got)
			}
			return len(got.Deliveries) == 1 && got.Deliveries[0].State == "SUCCEEDED"
		})
	}
	if checked == 0 {
		t.Fatal("no ORDER_CREATED event whose node is known")
	}
}

// TestClusterNATSDown: with NATS stopped, the proxies keep serving and
// acknowledging, /readyz stays 200 and says NATS is unreachable,
// eventtap_cluster_connected is 0, the events wait in each node's outbox
// (eventtap_cluster_relay_pending) and webhook changes fail with
// UNAVAILABLE; once NATS is back, changes work again and the relays drain.
func TestClusterNATSDown(t *testing.T) {
	ns, nodes, rc := startClusterTest(t, 2)
	created := rc.registerAt(t, nodes[0], "ORDER_CREATED", "/created")
	for _, sc := range nodes {
		if v := scrape(t, sc.adminURL)["eventtap_cluster_connected"]; v != 1 {
			t.Fatalf("eventtap_cluster_connected = %v with NATS up", v)
		}
	}
	testkit.Eventually(t, time.Second, "the webhook on node 2", func() bool {
		var hooks struct{ TotalCount int }
		gql(t, nodes[1].adminURL, `{ webhooks(first: 1) { totalCount } }`, nil).into(t, "webhooks", &hooks)
		return hooks.TotalCount == 1
	})

	// An order whose status changes through both nodes during the outage.
	rc.registerAt(t, nodes[0], "ORDER_STATUS_CHANGED", "/changed")
	code, body := do(t, http.MethodPost, nodes[0].proxyURL+"/orders", `{"customer":"outage"}`)
	var order struct{ ID int }
	if code != http.StatusCreated || json.Unmarshal(body, &order) != nil {
		t.Fatalf("POST /orders: %d %s", code, body)
	}
	orderURL := func(sc *sidecar) string { return sc.proxyURL + "/orders/" + strconv.Itoa(order.ID) }
	testkit.Eventually(t, 10*time.Second, "the order's ORDER_CREATED delivered", func() bool { return len(rc.at("/created")) == 1 })

	ns.Stop()
	for _, sc := range nodes {
		waitNATS(t, sc, "warn")
		testkit.Eventually(t, 10*time.Second, "eventtap_cluster_connected 0", func() bool {
			return scrape(t, sc.adminURL)["eventtap_cluster_connected"] == 0
		})
	}
	for i, status := range []string{"PAID", "SHIPPED"} {
		if code, body := do(t, http.MethodPatch, orderURL(nodes[i]), `{"status":"`+status+`"}`); code != http.StatusOK {
			t.Fatalf("PATCH %s through node %d with NATS down: %d %s", status, i+1, code, body)
		}
		time.Sleep(20 * time.Millisecond) // observed one after the other
	}
	for i := range 10 {
		sc := nodes[i%2]
		start := time.Now()
		if code, body := do(t, http.MethodPost, sc.proxyURL+"/orders", `{"customer":"x"}`); code != http.StatusCreated {
			t.Fatalf("POST /orders with NATS down: %d %s", code, body)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("POST /orders with NATS down took %s", d)
		}
	}
	if v := scrape(t, nodes[0].adminURL)["eventtap_cluster_state_writeback_pending"]; v == 0 {
		t.Errorf("eventtap_cluster_state_writeback_pending is 0 on node 1 after changes decided alone")
	}
	for _, sc := range nodes {
		// 5 orders, and the status change when this node's own value for
		// the order said it changed (node 2 may have none: a first
		// sighting then fires nothing, best effort while NATS is down).
		if v := scrape(t, sc.adminURL)["eventtap_cluster_relay_pending"]; v != 5 && v != 6 {
			t.Errorf("eventtap_cluster_relay_pending = %v on %s after 5 orders and a status change with NATS down, want 5 or 6", v, sc.adminURL)
		}
	}
	r := gql(t, nodes[1].adminURL, `mutation($url: String!) { webhookCreate(input: {url: $url, type: ORDER_CREATED}) { id } }`,
		map[string]any{"url": rc.srv.URL + "/other"})
	if r.code() != "UNAVAILABLE" {
		t.Errorf("webhookCreate with NATS down: code %q, errors %+v; want UNAVAILABLE", r.code(), r.Errors)
	}
	r = gql(t, nodes[1].adminURL, `mutation($id: ID!) { webhookReplay(id: $id, since: "2020-01-01T00:00:00Z") }`, map[string]any{"id": created})
	if r.code() != "UNAVAILABLE" {
		t.Errorf("webhookReplay with NATS down: code %q, errors %+v; want UNAVAILABLE", r.code(), r.Errors)
	}
	// Reads answer from the node's last known state.
	var hooks struct{ TotalCount int }
	gql(t, nodes[1].adminURL, `{ webhooks(first: 1) { totalCount } }`, nil).into(t, "webhooks", &hooks)
	if hooks.TotalCount != 2 {
		t.Errorf("webhooks on node 2 with NATS down: %d, want 2", hooks.TotalCount)
	}

	ns.Restart()
	for _, sc := range nodes {
		waitNATS(t, sc, "ok")
	}
	rc.registerAt(t, nodes[1], "ORDER_CREATED", "/after")
	testkit.Eventually(t, 2*time.Second, "the webhook created after the outage on node 1", func() bool {
		var hooks struct{ TotalCount int }
		gql(t, nodes[0].adminURL, `{ webhooks(first: 5) { totalCount } }`, nil).into(t, "webhooks", &hooks)
		return hooks.TotalCount == 3
	})
	testkit.Eventually(t, 15*time.Second, "the orders of the outage delivered", func() bool { return len(distinct(rc.at("/created"))) >= 10 })
	for _, sc := range nodes {
		testkit.Eventually(t, 10*time.Second, "the relay drained on "+sc.adminURL, func() bool {
			return scrape(t, sc.adminURL)["eventtap_cluster_relay_pending"] == 0
		})
	}
	for _, sc := range nodes {
		testkit.Eventually(t, 10*time.Second, "the `changed` values of the outage written back on "+sc.adminURL, func() bool {
			return scrape(t, sc.adminURL)["eventtap_cluster_state_writeback_pending"] == 0
		})
	}
	// The values decided on each node during the outage were written back,
	// the latest observation winning: the next change, through node 1,
	// reports SHIPPED (decided on node 2), not PAID (node 1's own) nor
	// OPEN (the shared value from before the outage).
	if code, body := do(t, http.MethodPatch, orderURL(nodes[0]), `{"status":"DELIVERED"}`); code != http.StatusOK {
		t.Fatalf("PATCH DELIVERED: %d %s", code, body)
	}
	testkit.Eventually(t, 10*time.Second, "the change to DELIVERED delivered", func() bool {
		for _, d := range rc.at("/changed") {
			if d.payload.Change != nil && fmt.Sprint(d.payload.Change.Current) == "DELIVERED" {
				if prev := fmt.Sprint(d.payload.Change.Previous); prev != "SHIPPED" {
					t.Errorf("after the outage SHIPPED -> DELIVERED came as %s -> DELIVERED", prev)
				}
				return true
			}
		}
		return false
	})
}

// TestClusterWriteBackAfterRestart: `changed` values a node decided alone
// while NATS was down are written back to the shared state even when the
// node is stopped (SIGKILL, or SIGTERM as in a rolling restart) before
// NATS comes back: the next change, through another node, reports them
// as its previous value.
func TestClusterWriteBackAfterRestart(t *testing.T) {
	for _, sig := range []syscall.Signal{syscall.SIGKILL, syscall.SIGTERM} {
		t.Run(sig.String(), func(t *testing.T) {
			if testing.Short() {
				t.Skip("runs eventtap binaries and a NATS server; skipped with -short")
			}
			ns, api := startNATSAndAPI(t)
			dir := t.TempDir()
			n1 := startBinaryCommandIn(t, dir, "serve", ns, api.URL, "n1")
			n2 := startBinaryNode(t, ns, api.URL, "n2")
			rc := newHookReceiver(t)
			rc.registerAt(t, &sidecar{adminURL: n1.adminURL}, "ORDER_STATUS_CHANGED", "/changed")

			const orders = 4
			ids := make([]string, orders)
			for i := range ids {
				code, body := do(t, http.MethodPost, n1.proxyURL+"/orders", `{"customer":"restart"}`)
				var order struct{ ID int }
				if code != http.StatusCreated || json.Unmarshal(body, &order) != nil {
					t.Fatalf("POST /orders: %d %s", code, body)
				}
				ids[i] = strconv.Itoa(order.ID)
			}
			// The shared state holds OPEN for every order before the outage.
			time.Sleep(200 * time.Millisecond)

			ns.Stop()
			waitNATS(t, &sidecar{adminURL: n1.adminURL}, "warn")
			for _, id := range ids {
				if code, body := do(t, http.MethodPatch, n1.proxyURL+"/orders/"+id, `{"status":"PAID"}`); code != http.StatusOK {
					t.Fatalf("PATCH PAID with NATS down: %d %s", code, body)
				}
			}
			if v := scrape(t, n1.adminURL)["eventtap_cluster_state_writeback_pending"]; v < orders {
				t.Fatalf("eventtap_cluster_state_writeback_pending = %v after %d changes decided alone", v, orders)
			}
			if err := n1.proc.cmd.Process.Signal(sig); err != nil {
				t.Fatal(err)
			}
			_ = n1.proc.cmd.Wait()

			// Started again on its store while NATS is still down: the values
			// are waiting again, then written back once NATS is up.
			n1 = launchBinaryNode(t, dir, "serve", ns, api.URL, "n1") // NATS is down: no wait for it
			if v := scrape(t, n1.adminURL)["eventtap_cluster_state_writeback_pending"]; v < orders {
				t.Errorf("after the restart eventtap_cluster_state_writeback_pending = %v, want at least %d", v, orders)
			}
			ns.Restart()
			restarted := time.Now()
			testkit.Eventually(t, 20*time.Second, "node 1 connected again", func() bool {
				return scrape(t, n1.adminURL)["eventtap_cluster_connected"] == 1
			})
			connected := time.Now()
			testkit.Eventually(t, 20*time.Second, "node 2 connected again", func() bool {
				return scrape(t, n2.adminURL)["eventtap_cluster_connected"] == 1
			})
			t.Logf("NATS back: node 1 connected after %s, node 2 after %s", connected.Sub(restarted).Round(time.Millisecond), time.Since(restarted).Round(time.Millisecond))
			testkit.Eventually(t, 10*time.Second, "the values written back", func() bool {
				return scrape(t, n1.adminURL)["eventtap_cluster_state_writeback_pending"] == 0
			})
			t.Logf("written back %s after node 1 reported connected", time.Since(connected).Round(time.Millisecond))
			testkit.Eventually(t, 10*time.Second, "node 1's backlog relayed", func() bool {
				return scrape(t, n1.adminURL)["eventtap_cluster_relay_pending"] == 0
			})
			t.Logf("backlog relayed %s after node 1 reported connected", time.Since(connected).Round(time.Millisecond))
			waitNATS(t, &sidecar{adminURL: n2.adminURL}, "ok")
			for _, id := range ids {
				if code, body := do(t, http.MethodPatch, n2.proxyURL+"/orders/"+id, `{"status":"SHIPPED"}`); code != http.StatusOK {
					t.Fatalf("PATCH SHIPPED through node 2: %d %s", code, body)
				}
			}
			testkit.Eventually(t, 15*time.Second, "every order's PAID -> SHIPPED delivered", func() bool {
				shipped := map[string]string{}
				for _, d := range rc.at("/changed") {
					if d.payload.Change != nil && fmt.Sprint(d.payload.Change.Current) == "SHIPPED" {
						shipped[d.payload.Subject] = fmt.Sprint(d.payload.Change.Previous)
					}
				}
				if len(shipped) < orders {
					return false
				}
				for _, id := range ids {
					if shipped[id] != "PAID" {
						t.Fatalf("order %s: the change to SHIPPED through node 2 came from %q, want PAID (decided on node 1 during the outage, before its restart)", id, shipped[id])
					}
				}
				return true
			})
		})
	}
}

// binaryNode is an eventtap binary (a child process, so that it can be
// SIGKILLed) joined to a cluster.
type binaryNode struct {
	proc               *process
	proxyURL, adminURL string
}

func startBinaryNode(t *testing.T, ns *natstest.Server, upstream, name string) *binaryNode {
	t.Helper()
	return startBinaryCommand(t, "serve", ns, upstream, name)
}

// startBinaryCommand runs `eventtap serve` or `eventtap deliver` (no proxy).
func startBinaryCommand(t *testing.T, command string, ns *natstest.Server, upstream, name string) *binaryNode {
	t.Helper()
	return startBinaryCommandIn(t, t.TempDir(), command, ns, upstream, name)
}

// startBinaryCommandIn is startBinaryCommand with its config and store in
// dir, so that a node can be started again on the store it left.
func startBinaryCommandIn(t *testing.T, dir, command string, ns *natstest.Server, upstream, name string) *binaryNode {
	t.Helper()
	n := launchBinaryNode(t, dir, command, ns, upstream, name)
	waitNATS(t, &sidecar{adminURL: n.adminURL}, "ok")
	return n
}

// launchBinaryNode runs the binary on dir until its listeners are up,
// without waiting for NATS.
func launchBinaryNode(t *testing.T, dir, command string, ns *natstest.Server, upstream, name string) *binaryNode {
	t.Helper()
	path := writeTestConfig(t, dir, upstream, readFile(t, "docs/examples/orders.rules.yaml"), "{level: info, format: json}",
		fmt.Sprintf("cluster: {nats: {urls: [%q]}, node: %s}\n", ns.URL(), name))
	p := startBinary(t, command, "--config", path)
	n := &binaryNode{proc: p}
	if command == "serve" {
		proxy, admin := p.addrs(t, 20*time.Second)
		n.proxyURL, n.adminURL = "http://"+proxy, "http://"+admin
	} else {
		var admin string
		testkit.Eventually(t, 20*time.Second, "the delivery node's admin address in its log", func() bool {
			var ok bool
			admin, ok = testkit.ListeningAddr(p.logs(), "admin server listening")
			return ok
		})
		n.adminURL = "http://" + admin
	}
	return n
}

// acked is what the load generator saw acknowledged: the event each
// released response must produce.
type acked struct {
	mu      sync.Mutex
	created map[string]bool // order id
	changed map[string]bool // order id + "/" + status
}

// TestClusterNodeKilled: three binaries in front of one order API under
// load; one of them (owning about a third of the partitions) is SIGKILLed
// and never restarted; every event of every acknowledged
// response is delivered within 30 s of the kill, in order per order.
func TestClusterNodeKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three eventtap binaries under load for about 30 s; skipped with -short")
	}
	ns, api := startNATSAndAPI(t)
	rc := newHookReceiver(t)
	var nodes []*binaryNode
	for i := range 3 {
		nodes = append(nodes, startBinaryNode(t, ns, api.URL, fmt.Sprintf("k%d", i+1)))
	}
	n1 := &sidecar{adminURL: nodes[0].adminURL}
	rc.registerAt(t, n1, "ORDER_CREATED", "/created")
	rc.registerAt(t, n1, "ORDER_STATUS_CHANGED", "/changed")
	testkit.Eventually(t, 2*time.Second, "both webhooks on every node", func() bool {
		for _, n := range nodes {
			var hooks struct{ TotalCount int }
			gql(t, n.adminURL, `{ webhooks(first: 5) { totalCount } }`, nil).into(t, "webhooks", &hooks)
			if hooks.TotalCount != 2 {
				return false
			}
		}
		return true
	})

	ack := &acked{created: map[string]bool{}, changed: map[string]bool{}}
	client := &http.Client{Timeout: 5 * time.Second}
	send := func(method, url, body string) (int, []byte) {
		req, _ := http.NewRequest(method, url, strings.NewReader(body))
		resp, err := client.Do(req)
		if err != nil {
			return 0, nil
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	var killed atomic.Bool
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 6 {
		wg.Go(func() {
			for i := w; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				pick := func(k int) *binaryNode {
					n := nodes[(i+k)%3]
					if n == nodes[0] && killed.Load() {
						n = nodes[1+(i+k)%2]
					}
					return n
				}
				code, body := send(http.MethodPost, pick(0).proxyURL+"/orders", `{"customer":"load"}`)
				var o struct{ ID int }
				if code != http.StatusCreated || json.Unmarshal(body, &o) != nil {
					continue
				}
				id := strconv.Itoa(o.ID)
				ack.mu.Lock()
				ack.created[id] = true
				ack.mu.Unlock()
				for k, status := range []string{"PAID", "SHIPPED"} {
					if code, _ := send(http.MethodPatch, pick(1+k).proxyURL+"/orders/"+id, `{"status":"`+status+`"}`); code == http.StatusOK {
						ack.mu.Lock()
						ack.changed[id+"/"+status] = true
						ack.mu.Unlock()
					}
				}
			}
		})
	}
	time.Sleep(2 * time.Second)
	killed.Store(true)
	if err := nodes[0].proc.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	_ = nodes[0].proc.cmd.Wait()
	killedAt := time.Now()
	time.Sleep(3 * time.Second) // load on the two others
	close(stop)
	wg.Wait()
	ack.mu.Lock()
	defer ack.mu.Unlock()
	t.Logf("acknowledged: %d creates, %d status changes; node 1 SIGKILLed", len(ack.created), len(ack.changed))

	missing := func() []string {
		got := map[string]bool{}
		for _, d := range rc.at("/created") {
			got[d.payload.Subject] = true
		}
		for _, d := range rc.at("/changed") {
			if d.payload.Change != nil {
				got[d.payload.Subject+"/"+fmt.Sprint(d.payload.Change.Current)] = true
			}
		}
		var out []string
		for id := range ack.created {
			if !got[id] {
				out = append(out, "created "+id)
			}
		}
		for k := range ack.changed {
			if !got[k] {
				out = append(out, "changed "+k)
			}
		}
		return out
	}
	deadline := killedAt.Add(30 * time.Second)
	for len(missing()) > 0 && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	if m := missing(); len(m) > 0 {
		slices.Sort(m)
		t.Fatalf("%d acknowledged events not delivered within 30 s of the kill, e.g. %v", len(m), m[:min(len(m), 10)])
	}
	all := append(rc.at("/created"), rc.at("/changed")...)
	t.Logf("every acknowledged event delivered %s after the kill; %d deliveries, %d of them redeliveries (receivers drop them by webhook-id)",
		time.Since(killedAt).Round(100*time.Millisecond), len(all), len(all)-len(distinct(all)))
	// Order per order: PAID before SHIPPED, by first arrival, where both
	// were acknowledged (an unacknowledged PAID, cut by the kill, may be
	// lost: its response was never released).
	first := map[string]string{}
	for _, d := range rc.at("/changed") {
		if ch := d.payload.Change; ch != nil {
			if _, ok := first[d.payload.Subject]; !ok {
				first[d.payload.Subject] = fmt.Sprint(ch.Current)
			}
		}
	}
	for id := range ack.created {
		if ack.changed[id+"/PAID"] && ack.changed[id+"/SHIPPED"] && first[id] != "PAID" {
			t.Errorf("order %s: the first status change delivered was %q, want PAID", id, first[id])
		}
	}
}

// TestClusterDeliverNode: `eventtap deliver` runs a node with the admin
// API and delivery but no proxy: it takes its share of the partitions, so
// it delivers part of what a serving node proxies.
func TestClusterDeliverNode(t *testing.T) {
	if testing.Short() {
		t.Skip("runs two eventtap binaries; skipped with -short")
	}
	ns, api := startNATSAndAPI(t)
	d := startBinaryCommand(t, "deliver", ns, api.URL, "deliverer")
	if strings.Contains(d.proc.logs(), "proxy listening") {
		t.Fatal("eventtap deliver started a proxy")
	}
	s := startBinaryNode(t, ns, api.URL, "server")
	nodes := []*binaryNode{d, s}
	rc := newHookReceiver(t)
	rc.registerAt(t, &sidecar{adminURL: d.adminURL}, "ORDER_CREATED", "/created")
	testkit.Eventually(t, 2*time.Second, "the webhook on the serving node", func() bool {
		var hooks struct{ TotalCount int }
		gql(t, s.adminURL, `{ webhooks(first: 1) { totalCount } }`, nil).into(t, "webhooks", &hooks)
		return hooks.TotalCount == 1
	})
	time.Sleep(2 * time.Second) // both members seen: partitions balanced
	const orders = 20
	for range orders {
		if code, body := do(t, http.MethodPost, s.proxyURL+"/orders", `{"customer":"d"}`); code != http.StatusCreated {
			t.Fatalf("POST /orders: %d %s", code, body)
		}
	}
	testkit.Eventually(t, 15*time.Second, "every order delivered", func() bool { return len(distinct(rc.at("/created"))) == orders })
	// scrape also sums the per-webhook series under the key without it.
	const key = `eventtap_delivery_attempts_total{outcome="success",type="ORDER_CREATED"}`
	if a, b := scrape(t, d.adminURL)[key], scrape(t, s.adminURL)[key]; a == 0 || a+b != orders {
		t.Errorf("successful attempts: %v by the delivery node, %v by the serving node; want %d in all, some by each", a, b, orders)
	}

	// eventtap_outbox_pending counts what each owner holds: orders for a
	// receiver that does not answer.
	release := make(chan struct{})
	hang := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer hang.Close()
	defer close(release)
	r := gql(t, d.adminURL, `mutation($url: String!) { webhookCreate(input: {url: $url, type: ORDER_CREATED}) { id } }`, map[string]any{"url": hang.URL})
	if len(r.Errors) > 0 {
		t.Fatal(r.Errors)
	}
	testkit.Eventually(t, 2*time.Second, "the hanging webhook on the serving node", func() bool {
		var hooks struct{ TotalCount int }
		gql(t, s.adminURL, `{ webhooks(first: 1) { totalCount } }`, nil).into(t, "webhooks", &hooks)
		return hooks.TotalCount == 2
	})
	for range 4 {
		do(t, http.MethodPost, s.proxyURL+"/orders", `{"customer":"h"}`)
	}
	testkit.Eventually(t, 10*time.Second, "eventtap_outbox_pending 4 over the nodes", func() bool {
		var sum float64
		for _, n := range nodes {
			sum += scrape(t, n.adminURL)["eventtap_outbox_pending"]
		}
		return sum == 4
	})
}

// TestClusterStopsWithNATSDown: a node asked to stop (SIGTERM, as in a
// rolling restart) while NATS is unreachable exits within seconds. Giving
// its partitions back, stopping its registry watcher and leaving the
// membership cannot reach the server then; it once waited 2 s for each
// of the 32 partitions, then 5 s for the watcher.
func TestClusterStopsWithNATSDown(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the binary and a NATS server; skipped with -short")
	}
	ns, api := startNATSAndAPI(t)
	n := startBinaryNode(t, ns, api.URL, "stopper")
	testkit.Eventually(t, 20*time.Second, "eventtap_cluster_connected 1", func() bool {
		return scrape(t, n.adminURL)["eventtap_cluster_connected"] == 1
	})
	time.Sleep(1500 * time.Millisecond) // past a rebalance tick: it consumes every partition
	ns.Stop()
	testkit.Eventually(t, 10*time.Second, "eventtap_cluster_connected 0", func() bool {
		return scrape(t, n.adminURL)["eventtap_cluster_connected"] == 0
	})
	start := time.Now()
	_ = n.proc.cmd.Process.Signal(syscall.SIGTERM)
	exited := make(chan error, 1)
	go func() { exited <- n.proc.cmd.Wait() }()
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("exit after SIGTERM with NATS down: %v\n%s", err, n.proc.logs())
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Errorf("stopping with NATS down took %s, want under 5s", d)
		} else {
			t.Logf("stopped %s after SIGTERM with NATS down", d)
		}
	case <-time.After(40 * time.Second):
		t.Fatalf("no exit within 40s of SIGTERM with NATS down\n%s", n.proc.logs())
	}
}

// TestClusterNodeNameClash: two nodes given the same name (two processes
// on one host both default to the host name) count as one member, so one
// of them would idle unnoticed; they say so in their logs.
func TestClusterNodeNameClash(t *testing.T) {
	if testing.Short() {
		t.Skip("runs two binaries and a NATS server; skipped with -short")
	}
	ns, api := startNATSAndAPI(t)
	a := startBinaryNode(t, ns, api.URL, "twin")
	b := startBinaryNode(t, ns, api.URL, "twin")
	const clash = "another running node has this node's name"
	testkit.Eventually(t, 15*time.Second, "a node logging the name clash", func() bool {
		return strings.Contains(a.proc.logs(), clash) || strings.Contains(b.proc.logs(), clash)
	})
}
