package outbox

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"
)

// fakeRequeuer records what the outbox asks the cluster to publish again.
type fakeRequeuer struct {
	mu    sync.Mutex
	calls [][]Requeued
	err   error
	// during, when set, runs once, in the first call with events.
	during func()
}

func (f *fakeRequeuer) Requeue(_ context.Context, evs []Requeued) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.err != nil {
		return f.err
	}
	if len(evs) > 0 {
		f.calls = append(f.calls, evs)
		if f.during != nil {
			f.during()
			f.during = nil
		}
	}
	return nil
}

func (f *fakeRequeuer) all() []Requeued {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []Requeued
	for _, c := range f.calls {
		out = append(out, c...)
	}
	return out
}

// TestClusterRequeue: in cluster mode Redeliver and Replay check as on one
// node, then hand copies of the view's events to the cluster (none to the
// node's lanes); the view does not list a copy; NATS unreachable refuses
// them with ErrUnavailable.
func TestClusterRequeue(t *testing.T) {
	ctx := context.Background()
	origin := openTest(t)
	origin.commit(t, event("ORDER_CREATED", "o1", `{"n":1}`), event("ORDER_STATUS_CHANGED", "o1", `{"n":2}`))
	origin.commit(t, event("ORDER_CREATED", "o2", `{"n":3}`))
	relayed, _, err := origin.RelayBatch(ctx, 0, 10)
	if err != nil || len(relayed) != 3 {
		t.Fatalf("RelayBatch: %d events, %v", len(relayed), err)
	}
	v := openTest(t)
	rq := &fakeRequeuer{}
	v.SetCluster(Cluster{StreamDelivery: true, Requeue: rq})
	created := v.hook(t, "https://example.com/c", "ORDER_CREATED")
	changed := v.hook(t, "https://example.com/s", "ORDER_STATUS_CHANGED")
	var batch []ViewEvent
	for i, ev := range relayed {
		batch = append(batch, ViewEvent{Pos: uint64(10 + i), Record: ev.Record})
	}
	if err := v.ApplyEvents(ctx, batch); err != nil {
		t.Fatal(err)
	}

	ev, err := v.Redeliver(ctx, relayed[0].ID, "")
	if err != nil {
		t.Fatalf("Redeliver: %v", err)
	}
	if len(ev.Deliveries) != 1 || ev.Deliveries[0].WebhookID != created.ID || ev.Deliveries[0].State != Pending {
		t.Errorf("Redeliver returned deliveries %+v, want %s PENDING", ev.Deliveries, created.ID)
	}
	got := rq.all()
	if len(got) != 1 || got[0].ID != relayed[0].ID || got[0].Subject != "o1" || !slices.Equal(got[0].Webhooks, []string{created.ID}) || string(got[0].Record) != string(relayed[0].Record) {
		t.Fatalf("requeued %+v", got)
	}
	if n := v.disp.PendingCount(); n != 0 {
		t.Errorf("the node's own dispatcher holds %v deliveries; the owner delivers copies", n)
	}
	// The copy comes back through the stream: not listed again.
	if err := v.ApplyEvents(ctx, []ViewEvent{{Pos: 13, Record: got[0].Record, Copy: true}}); err != nil {
		t.Fatal(err)
	}
	if all := v.allEvents(t, EventFilter{}); len(all) != 3 {
		t.Errorf("view lists %d events after a copy, want 3", len(all))
	}
	if pos, _ := v.EventViewPosition(ctx); pos != 13 {
		t.Errorf("view position %d after a copy, want 13", pos)
	}

	for _, c := range []struct {
		ev, wh string
		want   error
	}{
		{"evt_0000000000000000000000000", "", ErrNotFound},
		{"nope", "", ErrNotFound},
		{relayed[0].ID, "wh_00000000000000000000000000", ErrNotFound},
		{relayed[0].ID, changed.ID, ErrInvalid},
	} {
		if _, err := v.Redeliver(ctx, c.ev, c.wh); !errorsIs(err, c.want) {
			t.Errorf("Redeliver(%s, %s) = %v, want %v", c.ev, c.wh, err, c.want)
		}
	}
	// A webhook of another type that already has a delivery of the event
	// (from the logs) may have it again.
	if err := v.ApplyLog(ctx, Log{WebhookID: changed.ID, EventID: relayed[0].ID, Type: "ORDER_CREATED", Attempt: 1, Succeeded: true, CreatedAt: time.Now()}, LogOutcome{Final: true}, 1); err != nil {
		t.Fatal(err)
	}
	if _, err := v.Redeliver(ctx, relayed[0].ID, changed.ID); err != nil {
		t.Errorf("Redeliver to a webhook that had a delivery: %v", err)
	}

	// Replay: the webhook's type, oldest first, a delivery waiting for a
	// retry left alone.
	rq.calls = nil
	n, err := v.Replay(ctx, created.ID, time.Now().Add(-time.Hour))
	if err != nil || n != 2 {
		t.Fatalf("Replay = %d, %v; want 2", n, err)
	}
	got = rq.all()
	if len(got) != 2 || got[0].ID != relayed[0].ID || got[1].ID != relayed[2].ID || !slices.Equal(got[1].Webhooks, []string{created.ID}) {
		t.Errorf("replayed %+v", got)
	}
	if err := v.ApplyLog(ctx, Log{WebhookID: created.ID, EventID: relayed[2].ID, Type: "ORDER_CREATED", Attempt: 1, CreatedAt: time.Now()}, LogOutcome{Next: time.Now().Add(time.Minute)}, 2); err != nil {
		t.Fatal(err)
	}
	if n, err := v.Replay(ctx, created.ID, time.Now().Add(-time.Hour)); err != nil || n != 1 {
		t.Errorf("Replay with one delivery PENDING = %d, %v; want 1", n, err)
	}
	if n, err := v.Replay(ctx, created.ID, time.Now().Add(time.Hour)); err != nil || n != 0 {
		t.Errorf("Replay since an hour ahead = %d, %v; want 0", n, err)
	}
	if _, err := v.Replay(ctx, "wh_00000000000000000000000000", time.Time{}); !errorsIs(err, ErrNotFound) {
		t.Errorf("Replay of an unknown webhook: %v", err)
	}

	// NATS unreachable.
	rq.err = fmt.Errorf("%w: NATS down", ErrUnavailable)
	if _, err := v.Redeliver(ctx, relayed[0].ID, ""); !errorsIs(err, ErrUnavailable) {
		t.Errorf("Redeliver with NATS down: %v", err)
	}
	if _, err := v.Replay(ctx, created.ID, time.Now().Add(time.Hour)); !errorsIs(err, ErrUnavailable) {
		t.Errorf("Replay (nothing to send) with NATS down: %v", err)
	}
}

// TestClusterReplayBatches: a replay larger than one batch is handed over
// in bounded batches, in stream order.
func TestClusterReplayBatches(t *testing.T) {
	ctx := context.Background()
	origin := openTest(t)
	const total = requeueBatch + 44
	for i := range total {
		origin.commit(t, event("ORDER_CREATED", fmt.Sprintf("o%d", i), `{}`))
	}
	relayed, _, err := origin.RelayBatch(ctx, 0, total)
	if err != nil || len(relayed) != total {
		t.Fatalf("RelayBatch: %d, %v", len(relayed), err)
	}
	v := openTest(t)
	rq := &fakeRequeuer{}
	v.SetCluster(Cluster{StreamDelivery: true, Requeue: rq})
	wh := v.hook(t, "https://example.com/c", "ORDER_CREATED")
	var batch []ViewEvent
	for i, ev := range relayed {
		batch = append(batch, ViewEvent{Pos: uint64(i + 1), Record: ev.Record})
	}
	if err := v.ApplyEvents(ctx, batch); err != nil {
		t.Fatal(err)
	}
	// Events the view applies while the replay runs (here: as its first
	// batch is published) are not part of it.
	later := openTest(t)
	for i := range 3 {
		later.commit(t, event("ORDER_CREATED", fmt.Sprintf("later%d", i), `{}`))
	}
	more, _, err := later.RelayBatch(ctx, 0, 3)
	if err != nil || len(more) != 3 {
		t.Fatalf("RelayBatch: %d, %v", len(more), err)
	}
	rq.during = func() {
		var batch []ViewEvent
		for i, ev := range more {
			batch = append(batch, ViewEvent{Pos: uint64(total + 10 + i), Record: ev.Record})
		}
		if err := v.ApplyEvents(ctx, batch); err != nil {
			t.Error(err)
		}
	}
	n, err := v.Replay(ctx, wh.ID, time.Time{})
	if err != nil || n != total {
		t.Fatalf("Replay = %d, %v; want %d", n, err, total)
	}
	if len(rq.calls) != 2 || len(rq.calls[0]) != requeueBatch {
		t.Errorf("%d calls (first of %d), want 2 of at most %d", len(rq.calls), len(rq.calls[0]), requeueBatch)
	}
	for i, ev := range rq.all() {
		if ev.ID != relayed[i].ID {
			t.Fatalf("copy %d is %s, want %s (stream order)", i, ev.ID, relayed[i].ID)
		}
	}
}
