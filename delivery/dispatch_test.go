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
