package cluster

// The JetStream behaviours docs/cluster.md builds on, checked against the
// pinned server version so that an upgrade that changes one fails here
// rather than in production.

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

// The relay may publish an event twice (its ack lost, or a restart before
// the relay mark was removed): within the Duplicates window the stream keeps
// one copy and says so.
func TestPublishDedupeByEventID(t *testing.T) {
	s := startServer(t, false)
	_, js := connect(t, s)
	st := eventsStream(t, js)
	ctx := context.Background()
	first, err := js.Publish(ctx, "eventtap.events.3", payload, jetstream.WithMsgID("evt_a"))
	if err != nil {
		t.Fatal(err)
	}
	again, err := js.Publish(ctx, "eventtap.events.3", payload, jetstream.WithMsgID("evt_a"))
	if err != nil {
		t.Fatal(err)
	}
	if first.Duplicate || !again.Duplicate || again.Sequence != first.Sequence {
		t.Fatalf("first %+v, again %+v: want the second marked duplicate with the first's sequence", first, again)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.State.Msgs != 1 {
		t.Fatalf("stream holds %d messages, want 1", info.State.Msgs)
	}
}

// Two nodes deciding `changed` for one subject from the same read: exactly
// one compare-and-set wins; the other learns it lost and must read again.
func TestStateCASConflict(t *testing.T) {
	s := startServer(t, false)
	_, js := connect(t, s)
	kv := stateBucket(t, js)
	ctx := context.Background()
	if _, err := kv.Create(ctx, "k", []byte(`"OPEN"`)); err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Create(ctx, "k", []byte(`"OPEN"`)); !errors.Is(err, jetstream.ErrKeyExists) {
		t.Fatalf("second Create: %v, want ErrKeyExists (two first sightings: one seeds, one reads again)", err)
	}
	e, err := kv.Get(ctx, "k")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := kv.Update(ctx, "k", []byte(`"PAID"`), e.Revision()); err != nil {
		t.Fatal(err)
	}
	_, err = kv.Update(ctx, "k", []byte(`"SHIPPED"`), e.Revision())
	if !errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
		t.Fatalf("stale Update: %v, want ErrKeyRevisionMismatch", err)
	}
}

// Partition ownership: with a pinned priority group only one client
// receives a partition's messages even when two pull; when the owner stops
// pulling, the other is pinned after PinnedTTL and receives the rest,
// including what the dead owner never acknowledged.
func TestPinnedOwnerFailover(t *testing.T) {
	s := startServer(t, false)
	_, js := connect(t, s)
	eventsStream(t, js)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const pinnedTTL = 2 * time.Second
	cfg := jetstream.ConsumerConfig{
		Durable:        "eventtap_p3",
		FilterSubject:  "eventtap.events.3",
		AckPolicy:      jetstream.AckExplicitPolicy,
		AckWait:        3 * time.Second,
		PriorityPolicy: jetstream.PriorityPolicyPinned,
		PriorityGroups: []string{"owner"},
		PinnedTTL:      pinnedTTL,
	}
	if _, err := js.CreateConsumer(ctx, "eventtap_events", cfg); err != nil {
		t.Fatal(err)
	}

	type node struct {
		name string
		mu   sync.Mutex
		got  []string
		// redelivered: messages received with NumDelivered > 1, which a
		// new owner counts against the NumAckPending it read at takeover.
		redelivered int
		cc          jetstream.ConsumeContext
	}
	start := func(n *node, ack bool) {
		_, njs := connect(t, s)
		c, err := njs.Consumer(ctx, "eventtap_events", "eventtap_p3")
		if err != nil {
			t.Fatal(err)
		}
		n.cc, err = c.Consume(func(m jetstream.Msg) {
			n.mu.Lock()
			n.got = append(n.got, m.Headers().Get(jetstream.MsgIDHeader))
			if md, err := m.Metadata(); err == nil && md.NumDelivered > 1 {
				n.redelivered++
			}
			n.mu.Unlock()
			if ack {
				_ = m.Ack()
			}
		}, jetstream.PullPriorityGroup("owner"), jetstream.PullExpiry(time.Second))
		if err != nil {
			t.Fatal(err)
		}
	}
	count := func(n *node) int {
		n.mu.Lock()
		defer n.mu.Unlock()
		return len(n.got)
	}
	publish := func(from, to int) {
		for i := from; i < to; i++ {
			if _, err := js.Publish(ctx, "eventtap.events.3", payload, jetstream.WithMsgID("evt_"+strconv.Itoa(i))); err != nil {
				t.Fatal(err)
			}
		}
	}
	waitFor := func(what string, cond func() bool) time.Duration {
		begin := time.Now()
		for !cond() {
			if ctx.Err() != nil {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(20 * time.Millisecond)
		}
		return time.Since(begin)
	}

	// a acknowledges nothing after its first 10 (it "dies" holding them).
	a, b := &node{name: "a"}, &node{name: "b"}
	start(a, false)
	waitFor("a pinned", func() bool {
		publish(0, 1)
		time.Sleep(100 * time.Millisecond)
		return count(a) > 0
	})
	start(b, true)
	publish(1, 20)
	waitFor("a to receive 20", func() bool { return count(a) >= 20 })
	time.Sleep(300 * time.Millisecond)
	if n := count(b); n != 0 {
		t.Fatalf("b received %d messages while a was pinned; want 0", n)
	}

	a.cc.Stop() // a dies: no more pulls, 20 messages unacknowledged
	cons, err := js.Consumer(ctx, "eventtap_events", "eventtap_p3")
	if err != nil {
		t.Fatal(err)
	}
	info, err := cons.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.NumAckPending != 20 {
		t.Fatalf("NumAckPending %d after a stopped; want the 20 it held", info.NumAckPending)
	}
	publish(20, 30)
	took := waitFor("b to receive everything a held and the 10 new", func() bool {
		b.mu.Lock()
		defer b.mu.Unlock()
		seen := map[string]bool{}
		for _, id := range b.got {
			seen[id] = true
		}
		return len(seen) == 30
	})
	b.mu.Lock()
	// The server sends b the new messages first and the redeliveries after
	// AckWait, in no guaranteed order: that is why a new owner holds a
	// takeover barrier (docs/cluster.md) before attempting anything.
	t.Logf("failover: b had all 30 events %v after a stopped pulling (PinnedTTL %v, AckWait %v), in this order: %v", took.Round(100*time.Millisecond), pinnedTTL, cfg.AckWait, b.got)
	if b.redelivered != 20 {
		t.Errorf("b saw %d messages marked redelivered; want the 20 a held", b.redelivered)
	}
	b.mu.Unlock()
	b.cc.Stop()
}
