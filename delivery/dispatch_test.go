package delivery

import (
	"strings"
	"testing"
	"time"
)

// TestDispatcherPerWebhookLimit checks that one webhook gets at most half
// the workers, that the lanes parked meanwhile go out in order as its
// attempts finish, and that other webhooks are not held up.
func TestDispatcherPerWebhookLimit(t *testing.T) {
	d := newDispatcher(100, 4) // at most 2 attempts per webhook
	now := time.Now()
	for i, subject := range []string{"a1", "a2", "a3", "a4"} {
		d.add("slow", subject, Item{Seq: uint64(i + 1), Due: now.UnixNano()}, false)
	}
	d.add("fast", "b1", Item{Seq: 10, Due: now.Add(time.Millisecond).UnixNano()}, false)

	var got []string
	var slow []*lane
	for range 3 {
		l, _, _ := d.next(now.Add(time.Second))
		if l == nil {
			t.Fatalf("nothing handed out after %v", got)
		}
		got = append(got, l.id.subject)
		if l.id.webhookID == "slow" {
			slow = append(slow, l)
		}
	}
	if want := "a1 a2 b1"; strings.Join(got, " ") != want {
		t.Fatalf("handed out %s, want %s (a3 and a4 parked)", strings.Join(got, " "), want)
	}
	if l, _, _ := d.next(now.Add(time.Second)); l != nil {
		t.Fatalf("%s handed out while its webhook has 2 attempts in flight", l.id.subject)
	}
	d.finish(slow[0], Done, time.Time{})
	l, _, _ := d.next(now.Add(time.Second))
	if l == nil || l.id.subject != "a3" {
		t.Fatalf("after one slow attempt ended: %v, want a3", l)
	}
	if l2, _, _ := d.next(now.Add(time.Second)); l2 != nil {
		t.Fatalf("%s handed out beyond the limit", l2.id.subject)
	}
	d.finish(slow[1], Done, time.Time{})
	if l, _, _ := d.next(now.Add(time.Second)); l == nil || l.id.subject != "a4" {
		t.Fatalf("want a4, got %v", l)
	}
	if n := d.PendingCount(); n != 3 {
		t.Errorf("pending %v, want 3 (a3, a4, b1 in flight)", n)
	}
}

// TestSentFreesSlotNotLane checks that once a receiver has answered, the
// webhook's slot goes to its next lane while the lane itself stays busy
// (its record is not durable yet) until finish: per-subject order holds.
func TestSentFreesSlotNotLane(t *testing.T) {
	d := newDispatcher(100, 2) // one attempt per webhook
	now := time.Now()
	d.add("w", "a", Item{Seq: 1, Due: now.UnixNano()}, false)
	d.add("w", "a", Item{Seq: 2, Due: now.UnixNano()}, false)
	d.add("w", "b", Item{Seq: 3, Due: now.UnixNano()}, false)
	later := now.Add(time.Second)
	a, it, _ := d.next(later)
	if a == nil || it.Seq != 1 {
		t.Fatalf("first: %v %v", a, it)
	}
	if l, _, _ := d.next(later); l != nil {
		t.Fatalf("%s handed out beyond the limit", l.id.subject)
	}
	d.sent(a)
	l, it, _ := d.next(later)
	if l == nil || it.Seq != 3 {
		t.Fatalf("after a's receiver answered: %v %v, want b's seq 3", l, it)
	}
	d.sent(l)
	if l, it, _ := d.next(later); l != nil {
		t.Fatalf("seq %d of lane %s handed out while seq 1 is being recorded", it.Seq, l.id.subject)
	}
	d.finish(a, Done, time.Time{})
	if l, it, _ := d.next(later); l == nil || it.Seq != 2 {
		t.Fatalf("after seq 1 was recorded: %v %v, want seq 2", l, it)
	}
	d.sent(a) // twice: the second frees nothing
	d.sent(a)
	if n := d.inFlight["w"]; n != 0 {
		t.Errorf("in flight %d after every receiver answered", n)
	}
}
