package outbox

import (
	"context"
	"testing"
	"time"
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
