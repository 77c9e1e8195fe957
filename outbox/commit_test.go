package outbox

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eventtap/eventtap/rules"
)

func stateEvent(subject, key, value string) rules.Event {
	ev := event("ORDER_STATUS_CHANGED", subject, `{"status":`+value+`}`)
	ev.Rule = "status-changed"
	ev.State = &rules.State{Key: key, Value: json.RawMessage(value)}
	return ev
}

func TestChangedSemantics(t *testing.T) {
	type want struct{ prev, cur string } // one emitted event
	tests := []struct {
		name    string
		batches [][]rules.Event
		want    []want
	}{
		{"first sighting records only", [][]rules.Event{{stateEvent("1", "k1", `"OPEN"`)}}, nil},
		{"same value emits nothing", [][]rules.Event{{stateEvent("1", "k1", `"OPEN"`)}, {stateEvent("1", "k1", `"OPEN"`)}}, nil},
		{"formatting is not a change", [][]rules.Event{{stateEvent("1", "k1", `{"a": 1}`)}, {stateEvent("1", "k1", `{"a":1}`)}}, nil},
		{"different value emits", [][]rules.Event{{stateEvent("1", "k1", `"OPEN"`)}, {stateEvent("1", "k1", `"SHIPPED"`)}},
			[]want{{`"OPEN"`, `"SHIPPED"`}}},
		{"same key twice in one batch", [][]rules.Event{{stateEvent("1", "k1", `"OPEN"`), stateEvent("1", "k1", `"SHIPPED"`)}},
			[]want{{`"OPEN"`, `"SHIPPED"`}}},
		{"same key three times in one batch", [][]rules.Event{{stateEvent("1", "k1", `"A"`), stateEvent("1", "k1", `"B"`), stateEvent("1", "k1", `"B"`), stateEvent("1", "k1", `"C"`)}},
			[]want{{`"A"`, `"B"`}, {`"B"`, `"C"`}}},
		{"keys are independent", [][]rules.Event{{stateEvent("1", "k1", `"A"`), stateEvent("2", "k2", `"B"`)}, {stateEvent("1", "k1", `"A"`), stateEvent("2", "k2", `"C"`)}},
			[]want{{`"B"`, `"C"`}}},
		{"back and forth", [][]rules.Event{{stateEvent("1", "k1", `1`)}, {stateEvent("1", "k1", `2`)}, {stateEvent("1", "k1", `1`)}},
			[]want{{`1`, `2`}, {`2`, `1`}}},
		{"null neither records nor fires", [][]rules.Event{{stateEvent("1", "k1", `null`)}, {stateEvent("1", "k1", `"OPEN"`)}, {stateEvent("1", "k1", `null`)}, {stateEvent("1", "k1", `"PAID"`)}},
			[]want{{`"OPEN"`, `"PAID"`}}},
		{"null in a batch keeps the chain", [][]rules.Event{{stateEvent("1", "k1", `"OPEN"`), stateEvent("1", "k1", `null`), stateEvent("1", "k1", `"PAID"`), stateEvent("2", "k2", `"X"`)}},
			[]want{{`"OPEN"`, `"PAID"`}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := openTest(t)
			for _, b := range tt.batches {
				o.commit(t, b...)
			}
			evs := o.allEvents(t, EventFilter{})
			if len(evs) != len(tt.want) {
				t.Fatalf("%d events emitted, want %d", len(evs), len(tt.want))
			}
			for i, w := range tt.want {
				ev := evs[len(evs)-1-i] // newest first
				var p struct {
					Change struct{ Previous, Current json.RawMessage }
				}
				if err := json.Unmarshal(ev.Payload, &p); err != nil {
					t.Fatal(err)
				}
				if string(p.Change.Previous) != w.prev || string(p.Change.Current) != w.cur {
					t.Errorf("event %d change = %s → %s, want %s → %s", i, p.Change.Previous, p.Change.Current, w.prev, w.cur)
				}
			}
			if v := o.metric(t, "eventtap_events_total", map[string]string{"rule": "status-changed"}); int(v) != len(tt.want) {
				t.Errorf("eventtap_events_total = %v", v)
			}
		})
	}
}

func TestChangedStateSurvivesRestart(t *testing.T) {
	o := openTest(t)
	o.commit(t, stateEvent("1", "k1", `"OPEN"`))
	o.close(t)
	o = openTestDir(t, o.dir)
	o.commit(t, stateEvent("1", "k1", `"OPEN"`))
	o.commit(t, stateEvent("1", "k1", `"PAID"`))
	evs := o.allEvents(t, EventFilter{})
	if len(evs) != 1 {
		t.Fatalf("%d events after restart, want 1", len(evs))
	}
	if want := `"change":{"previous":"OPEN","current":"PAID"}`; !contains(string(evs[0].Payload), want) {
		t.Errorf("payload %s lacks %s", evs[0].Payload, want)
	}
}

func contains(s, sub string) bool {
	return len(sub) == 0 || (len(s) >= len(sub) && indexOf(s, sub) >= 0)
}

func indexOf(s, sub string) int {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return i
		}
	}
	return -1
}

func TestPayloadEncoding(t *testing.T) {
	ts := time.Date(2026, 11, 29, 13, 34, 18, 0, time.UTC)
	tests := []struct {
		name string
		data string
		ch   *change
		want string
	}{
		{"no data", "", nil, `{"id":"evt_x","type":"T","timestamp":"2026-11-29T13:34:18.000Z","subject":"s\"1","rule":"r","data":null}`},
		{"compacted", "{ \"a\" : [1, 2] }", nil, `{"id":"evt_x","type":"T","timestamp":"2026-11-29T13:34:18.000Z","subject":"s\"1","rule":"r","data":{"a":[1,2]}}`},
		{"invalid data becomes a string", "{nope", nil, `{"id":"evt_x","type":"T","timestamp":"2026-11-29T13:34:18.000Z","subject":"s\"1","rule":"r","data":"{nope"}`},
		{"change", "1", &change{previous: []byte(`"A"`), current: []byte(`"B"`)}, `{"id":"evt_x","type":"T","timestamp":"2026-11-29T13:34:18.000Z","subject":"s\"1","rule":"r","data":1,"change":{"previous":"A","current":"B"}}`},
	}
	for _, tt := range tests {
		got := string(appendPayload(nil, "evt_x", "T", ts, `s"1`, "r", []byte(tt.data), tt.ch))
		if got != tt.want {
			t.Errorf("%s:\n got %s\nwant %s", tt.name, got, tt.want)
		}
		if !json.Valid([]byte(got)) {
			t.Errorf("%s: invalid JSON", tt.name)
		}
	}
}

func TestCommitFansOutToEnabledSubscribers(t *testing.T) {
	o := openTest(t)
	rc := newReceiver(t, nil)
	a := o.hook(t, rc.URL+"/a", "ORDER_CREATED")
	b := o.hook(t, rc.URL+"/b", "ORDER_CREATED")
	disabled := Disabled
	c, err := o.CreateWebhook(context.Background(), WebhookCreate{URL: rc.URL + "/c", Type: "ORDER_CREATED", Status: disabled})
	if err != nil {
		t.Fatal(err)
	}
	o.hook(t, rc.URL+"/d", "SHIPMENT_CREATED")
	o.commit(t, event("ORDER_CREATED", "1", `{}`))
	ev := o.allEvents(t, EventFilter{})[0]
	got := map[string]bool{}
	for _, d := range ev.Deliveries {
		got[d.WebhookID] = true
	}
	if len(got) != 2 || !got[a.ID] || !got[b.ID] || got[c.ID] {
		t.Errorf("deliveries to %v; want exactly %s and %s", got, a.ID, b.ID)
	}
}

// TestOrderingPerSubject commits events for many subjects from concurrent
// committers while one subject's receiver keeps failing; that subject must
// still be delivered in order and the others must not wait for it.
func TestOrderingPerSubject(t *testing.T) {
	o := openTest(t, func(_ *StorageConfig, d *DeliveryConfig, _ *openHooks) {
		d.Workers = 8
		d.RetrySchedule = []time.Duration{20 * time.Millisecond, 20 * time.Millisecond, 20 * time.Millisecond, 20 * time.Millisecond}
	})
	var mu sync.Mutex
	attempts := map[string]int{} // webhook-id → attempts so far
	rc := newReceiver(t, func(_ int, r *received, w http.ResponseWriter) {
		mu.Lock()
		attempts[r.ID]++
		n := attempts[r.ID]
		mu.Unlock()
		// Subject "bad" fails its first three attempts of every event; the
		// others fail now and then.
		if (r.Payload.Subject == "bad" && n <= 3) || (r.Payload.Subject != "bad" && n == 1 && len(r.ID)%5 == 0) {
			w.WriteHeader(http.StatusInternalServerError)
		}
	})
	o.hook(t, rc.URL, "ORDER_UPDATED")

	const subjects, perSubject = 12, 15
	var wg sync.WaitGroup
	for s := range subjects {
		wg.Add(1)
		go func() {
			defer wg.Done()
			name := "s" + strconv.Itoa(s)
			if s == 0 {
				name = "bad"
			}
			for n := range perSubject {
				ev := event("ORDER_UPDATED", name, fmt.Sprintf(`{"n":%d}`, n))
				if err := o.Commit(context.Background(), []rules.Event{ev}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	waitFor(t, 20*time.Second, "all delivered", func() bool {
		return len(o.allEvents(t, EventFilter{State: Succeeded})) == subjects*perSubject
	})

	// Per subject, the first attempt of each event must come after the last
	// attempt of the event before it (which must have succeeded by then).
	bySubject := map[string][]received{}
	for _, r := range rc.requests() {
		bySubject[r.Payload.Subject] = append(bySubject[r.Payload.Subject], r)
	}
	for s, rs := range bySubject {
		maxN := -1
		for _, r := range rs {
			var d struct{ N int }
			_ = json.Unmarshal(r.Payload.Data, &d)
			if d.N < maxN {
				t.Fatalf("subject %s: event n=%d attempted after n=%d", s, d.N, maxN)
			}
			maxN = d.N
		}
	}
	// The failing subject needs 4 attempts per event with 20ms pauses, so it
	// finishes long after the others, which must not have waited for it.
	var lastBad, lastGood time.Time
	for _, r := range rc.requests() {
		if r.Payload.Subject == "bad" {
			lastBad = r.At
		} else if r.At.After(lastGood) {
			lastGood = r.At
		}
	}
	if !lastGood.Before(lastBad) {
		t.Errorf("other subjects finished at %s, after the failing one (%s): head-of-line blocking", lastGood, lastBad)
	}
}

func TestCommitAfterClose(t *testing.T) {
	o := openTest(t)
	o.close(t)
	if err := o.Commit(context.Background(), []rules.Event{event("ORDER_CREATED", "1", `{}`)}); !errors.Is(err, ErrClosed) {
		t.Errorf("Commit after Close = %v, want ErrClosed", err)
	}
	if _, err := o.Webhooks(context.Background(), WebhookFilter{}, 10, ""); !errors.Is(err, ErrClosed) {
		t.Errorf("Webhooks after Close = %v, want ErrClosed", err)
	}
	if err := o.Ping(context.Background()); !errors.Is(err, ErrClosed) {
		t.Errorf("Ping after Close = %v", err)
	}
	if err := o.Close(context.Background()); err != nil {
		t.Errorf("second Close = %v", err)
	}
}

// TestCloseDrainsQueuedCommits checks that commits racing Close either
// succeed (and are durable) or fail with ErrClosed, never anything else.
func TestCloseDrainsQueuedCommits(t *testing.T) {
	o := openTest(t)
	var wg sync.WaitGroup
	var mu sync.Mutex
	acked := 0
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				err := o.Commit(context.Background(), []rules.Event{event("ORDER_CREATED", fmt.Sprintf("g%d-%d", g, i), `{}`)})
				if errors.Is(err, ErrClosed) {
					return
				}
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				acked++
				mu.Unlock()
			}
		}()
	}
	time.Sleep(100 * time.Millisecond)
	o.close(t)
	wg.Wait()
	o = openTestDir(t, o.dir)
	if n := len(o.allEvents(t, EventFilter{})); n != acked {
		t.Errorf("%d events stored, %d acknowledged", n, acked)
	}
}

// TestCommitRefusesOverlongSubject checks that an event whose subject is
// too long for the store's keys fails its own Commit only, not the other
// exchanges committed in the same batch.
func TestCommitRefusesOverlongSubject(t *testing.T) {
	o := openTest(t)
	rc := newReceiver(t, nil)
	o.hook(t, rc.URL, "ORDER_CREATED")
	var wg sync.WaitGroup
	errs := make([]error, 40)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			subject := fmt.Sprintf("o%d", i)
			if i == 7 {
				subject = strings.Repeat("x", 100<<10)
			}
			errs[i] = o.Commit(context.Background(), []rules.Event{event("ORDER_CREATED", subject, `{}`)})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if i == 7 {
			if !errors.Is(err, ErrInvalid) || strings.Contains(err.Error(), "xxxx") {
				t.Errorf("overlong subject: %v, want ErrInvalid without the subject", err)
			}
		} else if err != nil {
			t.Errorf("commit %d beside the overlong subject: %v", i, err)
		}
	}
	waitFor(t, 5*time.Second, "39 deliveries", func() bool { return rc.count() == 39 })
}

// TestSetRulesInitialisesEventCounters: every rule's
// eventtap_events_total{type,rule} exists at 0, and a rule removed (or
// given another type) loses its series.
func TestSetRulesInitialisesEventCounters(t *testing.T) {
	o := openTest(t)
	series := func() []string {
		mfs, err := o.reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, mf := range mfs {
			if mf.GetName() != "eventtap_events_total" {
				continue
			}
			for _, m := range mf.GetMetric() {
				labels := map[string]string{}
				for _, lp := range m.GetLabel() {
					labels[lp.GetName()] = lp.GetValue()
				}
				out = append(out, fmt.Sprintf("%s/%s=%v", labels["rule"], labels["type"], m.GetCounter().GetValue()))
			}
		}
		return out
	}
	o.SetRules([]rules.RuleInfo{{Name: "a", Event: "ORDER_CREATED"}, {Name: "b", Event: "ORDER_UPDATED"}})
	if got := strings.Join(series(), " "); got != "a/ORDER_CREATED=0 b/ORDER_UPDATED=0" {
		t.Fatalf("after the first set: %s", got)
	}
	ev := event("ORDER_CREATED", "1", `{}`)
	ev.Rule = "a"
	o.commit(t, ev)
	o.SetRules([]rules.RuleInfo{{Name: "a", Event: "ORDER_CREATED"}, {Name: "b", Event: "ORDER_CANCELED"}, {Name: "c", Event: "ORDER_UPDATED"}})
	if got := strings.Join(series(), " "); got != "a/ORDER_CREATED=1 b/ORDER_CANCELED=0 c/ORDER_UPDATED=0" {
		t.Fatalf("after the reload: %s", got)
	}
}
