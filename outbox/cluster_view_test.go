package outbox

import (
	"context"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// TestEventView: the events view of cluster mode lists what another node
// committed, by stream position, newest first, with the single node's
// filters, totals and cursors; copies and unreadable records are skipped;
// deliveries follow the applied logs; event(id) also finds this node's
// own events not relayed yet; a deleted webhook's deliveries and expired
// events leave the view.
func TestEventView(t *testing.T) {
	ctx := context.Background()
	origin := openTest(t)
	origin.commit(t, event("ORDER_CREATED", "o1", `{"n":1}`), event("ORDER_CREATED", "o2", `{"n":2}`))
	origin.commit(t, event("ORDER_STATUS_CHANGED", "o1", `{"n":3}`), event("ORDER_CREATED", "o3", `{"n":4}`))
	relayed, _, err := origin.RelayBatch(ctx, 0, 10)
	if err != nil || len(relayed) != 4 {
		t.Fatalf("RelayBatch: %d events, %v", len(relayed), err)
	}

	v := openTest(t)
	v.SetCluster(Cluster{StreamDelivery: true})
	var batch []ViewEvent
	for i, ev := range relayed {
		batch = append(batch, ViewEvent{Pos: uint64(100 + i), Record: ev.Record})
	}
	// A copy of the first event (relayed again after a crash) and a
	// record that cannot be read.
	batch = append(batch, ViewEvent{Pos: 104, Record: relayed[0].Record}, ViewEvent{Pos: 105, Record: []byte("junk")})
	if err := v.ApplyEvents(ctx, batch); err != nil {
		t.Fatalf("ApplyEvents: %v", err)
	}
	if pos, err := v.EventViewPosition(ctx); err != nil || pos != 105 {
		t.Fatalf("EventViewPosition = %d, %v; want 105", pos, err)
	}
	all := v.allEvents(t, EventFilter{})
	if len(all) != 4 {
		t.Fatalf("view lists %d events, want 4: %+v", len(all), all)
	}
	for i, ev := range all {
		if want := relayed[3-i].ID; ev.ID != want {
			t.Errorf("event %d is %s, want %s (newest first)", i, ev.ID, want)
		}
	}
	if got := v.allEvents(t, EventFilter{Subject: "o1"}); len(got) != 2 || got[0].Type != "ORDER_STATUS_CHANGED" {
		t.Errorf("subject o1: %+v", got)
	}
	if got := v.allEvents(t, EventFilter{Type: "ORDER_CREATED"}); len(got) != 3 {
		t.Errorf("type ORDER_CREATED: %d events, want 3", len(got))
	}
	p1, err := v.Events(ctx, EventFilter{}, 3, "")
	if err != nil || len(p1.Items) != 3 || !p1.HasNext || p1.Total != 4 {
		t.Fatalf("first page: %+v, %v", p1, err)
	}
	p2, err := v.Events(ctx, EventFilter{}, 3, p1.Cursors[2])
	if err != nil || len(p2.Items) != 1 || p2.HasNext || p2.Total != 4 || p2.Items[0].ID != relayed[0].ID {
		t.Fatalf("second page: %+v, %v", p2, err)
	}
	if _, err := v.Events(ctx, EventFilter{}, 3, origin.mustCursor(t)); !errorsIs(err, ErrBadCursor) {
		t.Errorf("a single node's cursor on the view: %v, want ErrBadCursor", err)
	}

	// This node's own event, not relayed yet: found by id, not listed.
	v.commit(t, event("ORDER_CREATED", "o9", `{}`))
	own, err := v.Outbox.Events(ctx, EventFilter{}, 10, "")
	if err != nil || own.Total != 4 {
		t.Fatalf("own unrelayed event listed: %+v, %v", own, err)
	}
	mine, _, err := v.RelayBatch(ctx, 0, 10)
	if err != nil || len(mine) != 1 {
		t.Fatalf("own commits: %d, %v", len(mine), err)
	}
	if ev, err := v.Event(ctx, mine[0].ID); err != nil || ev.Subject != "o9" {
		t.Errorf("event(own id) = %+v, %v", ev, err)
	}
	if _, err := v.Event(ctx, "evt_0000000000000000000000000"); !errorsIs(err, ErrNotFound) {
		t.Errorf("unknown id: %v", err)
	}

	// Deliveries follow the logs, in stream order.
	wh := v.hook(t, "https://example.com/h", "ORDER_CREATED")
	apply := func(evID string, attempt int, ok bool, out LogOutcome, pos uint64) {
		t.Helper()
		l := Log{WebhookID: wh.ID, EventID: evID, Type: "ORDER_CREATED", Attempt: attempt, Succeeded: ok, ResponseStatus: map[bool]int{true: 204, false: 500}[ok], CreatedAt: time.Now()}
		if err := v.ApplyLog(ctx, l, out, pos); err != nil {
			t.Fatalf("ApplyLog: %v", err)
		}
	}
	next := time.Now().Add(time.Minute).UTC().Truncate(time.Millisecond)
	apply(relayed[0].ID, 1, false, LogOutcome{Next: next}, 1)
	if d := v.deliveryState(t, relayed[0].ID, wh.ID); d.State != Pending || d.Attempts != 1 || d.LastResponseStatus != 500 || !d.NextAttemptAt.Equal(next) {
		t.Errorf("after a failed attempt: %+v", d)
	}
	if got := v.allEvents(t, EventFilter{State: Pending}); len(got) != 1 || got[0].ID != relayed[0].ID {
		t.Errorf("state PENDING: %+v", got)
	}
	apply(relayed[0].ID, 2, true, LogOutcome{Final: true}, 2)
	apply(relayed[1].ID, 3, false, LogOutcome{Final: true}, 3)
	if d := v.deliveryState(t, relayed[0].ID, wh.ID); d.State != Succeeded || d.Attempts != 2 || !d.NextAttemptAt.IsZero() {
		t.Errorf("after a success: %+v", d)
	}
	if d := v.deliveryState(t, relayed[1].ID, wh.ID); d.State != Failed || d.Attempts != 3 {
		t.Errorf("after the last retry failed: %+v", d)
	}
	if got := v.allEvents(t, EventFilter{State: Failed}); len(got) != 1 || got[0].ID != relayed[1].ID {
		t.Errorf("state FAILED: %+v", got)
	}
	// A log applied before its event (the streams are followed apart).
	apply("evt_zzzzzzzzzzzzzzzzzzzzzzzzzz", 1, true, LogOutcome{Final: true}, 4)

	if err := v.DeleteWebhook(ctx, wh.ID); err != nil {
		t.Fatal(err)
	}
	if ev, err := v.Event(ctx, relayed[0].ID); err != nil || len(ev.Deliveries) != 0 {
		t.Errorf("deliveries of a deleted webhook: %+v, %v", ev.Deliveries, err)
	}

	// Retention: the view follows the stream, by age.
	if err := v.retain(time.Now().Add(v.storage.Retention + time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got := v.allEvents(t, EventFilter{}); len(got) != 0 {
		t.Errorf("after retention the view lists %d events", len(got))
	}
	if _, err := v.Event(ctx, relayed[2].ID); !errorsIs(err, ErrNotFound) {
		t.Errorf("an expired view event: %v", err)
	}
}

// mustCursor returns the cursor of a single node's first event.
func (o *testOutbox) mustCursor(t *testing.T) string {
	t.Helper()
	p, err := o.Events(context.Background(), EventFilter{}, 1, "")
	if err != nil || len(p.Cursors) == 0 {
		t.Fatalf("events: %+v, %v", p, err)
	}
	return p.Cursors[0]
}

// TestLogViewPortable: in cluster mode webhookLogs lists the cluster's log
// stream by position, so two nodes with different histories of their own
// give every log the same id, and a cursor from one node's page resumes
// on the other at the same place; a webhookTest's log goes to the stream;
// view logs expire with retention.
func TestLogViewPortable(t *testing.T) {
	ctx := context.Background()
	a, b := openTest(t), openTest(t)
	// a has logs of its own from before cluster mode: its log numbers
	// differ from b's.
	rc := newReceiver(t, nil)
	hookA := a.hook(t, rc.URL, "ORDER_CREATED")
	for range 3 {
		if _, err := a.TestWebhook(ctx, hookA.ID); err != nil {
			t.Fatal(err)
		}
	}
	// The webhook the shared logs are about, known to both (the shared
	// registry's part).
	hook := a.hook(t, "https://r.example/hook", "ORDER_CREATED")
	rec := webhookRecord{Webhook: hook}
	if err := b.ApplyWebhook(ctx, hook.ID, rec.marshal(), 1); err != nil {
		t.Fatal(err)
	}
	at := time.Now().UTC().Add(-time.Minute)
	var shared []Log
	for i := range 5 {
		shared = append(shared, Log{WebhookID: hook.ID, EventID: newID(eventIDPrefix, uint64(i+1)), Type: "ORDER_CREATED",
			URL: "https://r.example/hook", CreatedAt: at.Add(time.Duration(i) * time.Second), ResponseStatus: 204, Attempt: 1, Succeeded: true})
	}
	for _, o := range []*testOutbox{a, b} {
		o.SetCluster(Cluster{StreamDelivery: true})
		for i, l := range shared {
			if err := o.ApplyLog(ctx, l, LogOutcome{Final: true}, uint64(10+i)); err != nil {
				t.Fatalf("ApplyLog: %v", err)
			}
		}
	}
	pa, err := a.Logs(ctx, LogFilter{}, 2, "")
	if err != nil || len(pa.Items) != 2 || pa.Total != 5 || !pa.HasNext {
		t.Fatalf("first page on a: %+v, %v (the node's own logs are not listed in cluster mode)", pa, err)
	}
	pb, err := b.Logs(ctx, LogFilter{}, 2, "")
	if err != nil || len(pb.Items) != 2 {
		t.Fatalf("first page on b: %+v, %v", pb, err)
	}
	for i := range pa.Items {
		if pa.Items[i].ID != pb.Items[i].ID || pa.Cursors[i] != pb.Cursors[i] {
			t.Errorf("log %d: id %s / cursor %s on a, %s / %s on b", i, pa.Items[i].ID, pa.Cursors[i], pb.Items[i].ID, pb.Cursors[i])
		}
	}
	if pa.Items[0].EventID != shared[4].EventID {
		t.Errorf("first log is of %s, want the newest (%s)", pa.Items[0].EventID, shared[4].EventID)
	}
	next, err := b.Logs(ctx, LogFilter{}, 2, pa.Cursors[1])
	if err != nil || len(next.Items) != 2 || next.Items[0].EventID != shared[2].EventID || next.Items[1].EventID != shared[1].EventID {
		t.Fatalf("a's cursor on b: %+v, %v; want the logs of %s and %s", next.Items, err, shared[2].EventID, shared[1].EventID)
	}
	byEvent, err := b.Logs(ctx, LogFilter{EventID: shared[3].EventID}, 10, "")
	if err != nil || len(byEvent.Items) != 1 || byEvent.Items[0].ID != pa.Items[1].ID {
		t.Errorf("logs of event %s on b: %+v, %v", shared[3].EventID, byEvent.Items, err)
	}

	// webhookTest in cluster mode: shared, and listed once applied.
	sharer := &fakeTestLogs{}
	a.SetCluster(Cluster{StreamDelivery: true, TestLogs: sharer})
	tl, err := a.TestWebhook(ctx, hookA.ID)
	if err != nil || len(sharer.logs) != 1 || !tl.Succeeded {
		t.Fatalf("TestWebhook in cluster mode: %+v, %v; shared %d", tl, err, len(sharer.logs))
	}
	if err := a.ApplyLog(ctx, sharer.logs[0], LogOutcome{Final: true, Test: true}, sharer.pos); err != nil {
		t.Fatal(err)
	}
	if got := a.allLogs(t, LogFilter{WebhookID: hookA.ID}); len(got) != 1 || got[0].ID != tl.ID {
		t.Errorf("the test log as listed: %+v; want id %s", got, tl.ID)
	}
	if ev, err := a.viewEvent(ctx, tl.EventID); err == nil {
		t.Errorf("a test log made an event with a delivery: %+v", ev)
	}

	// Retention: the view's logs go by age, as the node's own do.
	if err := b.retain(time.Now().Add(b.storage.Retention + time.Hour)); err != nil {
		t.Fatal(err)
	}
	if got := b.allLogs(t, LogFilter{}); len(got) != 0 {
		t.Errorf("after retention b lists %d logs", len(got))
	}
}

type fakeTestLogs struct {
	logs []Log
	pos  uint64
}

func (f *fakeTestLogs) ShareTestLog(_ context.Context, l Log) (uint64, error) {
	f.logs = append(f.logs, l)
	f.pos = 1000 + uint64(len(f.logs))
	return f.pos, nil
}

// TestLateLogKeepsDelivery: a log published again after NATS came back
// (Late) follows later attempts in the stream; it is listed, but the
// delivery it shows is left as the later attempt set it.
func TestLateLogKeepsDelivery(t *testing.T) {
	ctx := context.Background()
	o := openTest(t)
	hook := o.hook(t, "https://r.example/hook", "ORDER_CREATED")
	o.SetCluster(Cluster{StreamDelivery: true})
	ev := newID(eventIDPrefix, 7)
	at := time.Now().UTC()
	second := Log{WebhookID: hook.ID, EventID: ev, Type: "ORDER_CREATED", CreatedAt: at, ResponseStatus: 204, Attempt: 2, Succeeded: true}
	first := Log{WebhookID: hook.ID, EventID: ev, Type: "ORDER_CREATED", CreatedAt: at.Add(-time.Second), ResponseStatus: 503, Attempt: 1}
	if err := o.ApplyLog(ctx, second, LogOutcome{Final: true}, 1); err != nil {
		t.Fatal(err)
	}
	if err := o.ApplyLog(ctx, first, LogOutcome{Next: at, Late: true}, 2); err != nil {
		t.Fatal(err)
	}
	state := func(eventID string) deliveryRecord {
		t.Helper()
		var d deliveryRecord
		if err := o.db.View(func(txn *badger.Txn) error { return getRecord(txn, viewDeliveryKey(eventID, hook.ID), d.unmarshal) }); err != nil {
			t.Fatalf("delivery of %s: %v", eventID, err)
		}
		return d
	}
	if d := state(ev); d.State != Succeeded || d.Attempts != 2 {
		t.Errorf("after a late log of attempt 1 the delivery is %+v, want SUCCEEDED after 2 attempts", d)
	}
	if got := o.allLogs(t, LogFilter{EventID: ev}); len(got) != 2 {
		t.Errorf("logs of the event: %d, want 2 (the late one listed)", len(got))
	}
	// A late log of a delivery the view shows nothing of yet sets it.
	other := newID(eventIDPrefix, 8)
	late := Log{WebhookID: hook.ID, EventID: other, Type: "ORDER_CREATED", CreatedAt: at, ResponseStatus: 503, Attempt: 1}
	if err := o.ApplyLog(ctx, late, LogOutcome{Next: at, Late: true}, 3); err != nil {
		t.Fatal(err)
	}
	if d := state(other); d.State != Pending || d.Attempts != 1 {
		t.Errorf("a late log with no delivery shown gave %+v, want PENDING after 1 attempt", d)
	}
}
