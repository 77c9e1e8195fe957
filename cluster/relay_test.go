package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/eventtap/eventtap/delivery"
	"github.com/eventtap/eventtap/internal/natstest"
	"github.com/eventtap/eventtap/internal/testkit"
	"github.com/eventtap/eventtap/outbox"
	"github.com/eventtap/eventtap/rules"
)

// testNode is one eventtap node without the proxy: a real outbox in a
// temporary directory joined to a NATS server through a Node.
type testNode struct {
	ob   *outbox.Outbox
	node *Node
	stop func() // idempotent
}

func startTestNode(t *testing.T, url, name string) *testNode {
	t.Helper()
	return startTestNodeWith(t, []string{url}, name, 1)
}

// startTestNodeWith starts a node on the NATS servers urls with the given
// replicas; it may deliver to loopback receivers.
func startTestNodeWith(t *testing.T, urls []string, name string, replicas int) *testNode {
	t.Helper()
	return startTestNodeIn(t, t.TempDir(), urls, name, replicas)
}

// startTestNodeIn is startTestNodeWith on the outbox in dir; each of
// configure changes the storage configuration before the outbox opens.
func startTestNodeIn(t *testing.T, dir string, urls []string, name string, replicas int, configure ...func(*outbox.StorageConfig)) *testNode {
	t.Helper()
	storage := outbox.DefaultStorageConfig()
	storage.Dir = dir
	for _, c := range configure {
		c(&storage)
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	reg := prometheus.NewRegistry()
	dcfg := outbox.DefaultDeliveryConfig()
	dcfg.AllowPrivateNetworks = true
	dcfg.RetrySchedule, dcfg.Jitter = []time.Duration{100 * time.Millisecond, 200 * time.Millisecond}, 0
	ob, err := outbox.Open(context.Background(), storage, dcfg, rules.EventTypes(nil), logger, reg)
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.NATS.URLs, cfg.Node, cfg.Replicas = urls, name, replicas
	node, err := New(cfg, Options{Local: ob, StateTTL: ob.StateTTL(), Retention: storage.Retention, Delivery: dcfg}, logger, reg)
	if err != nil {
		t.Fatal(err)
	}
	ob.SetCluster(outbox.Cluster{Registry: node.Registry(), State: node.State(), StreamDelivery: true, Owned: node.Owned()})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = node.Run(ctx) }()
	tn := &testNode{ob: ob, node: node}
	var once sync.Once
	tn.stop = func() {
		once.Do(func() {
			cancel()
			<-done
			node.Close()
			_ = ob.Close(context.Background())
		})
	}
	t.Cleanup(tn.stop)
	testkit.Eventually(t, 20*time.Second, "the node reaches NATS", func() bool {
		return node.Check(context.Background()) == nil && node.streamsReady.Load()
	})
	return tn
}

func (tn *testNode) commit(t *testing.T, subject string) {
	t.Helper()
	ev := rules.Event{Rule: "r", Type: "ORDER_CREATED", Subject: subject, Data: []byte(`{}`), ObservedAt: time.Now()}
	if err := tn.ob.Commit(context.Background(), []rules.Event{ev}); err != nil {
		t.Fatal(err)
	}
}

// streamIDs returns the Nats-Msg-Id of every message in the events stream.
func streamIDs(t *testing.T, js jetstream.JetStream) []string {
	t.Helper()
	ctx := context.Background()
	st, err := js.Stream(ctx, "eventtap_events")
	if err != nil {
		t.Fatal(err)
	}
	info, err := st.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for seq := info.State.FirstSeq; seq <= info.State.LastSeq && info.State.Msgs > 0; seq++ {
		m, err := st.GetMsg(ctx, seq)
		if err != nil {
			continue
		}
		ids = append(ids, m.Header.Get("Nats-Msg-Id"))
	}
	return ids
}

// TestRelayOutage: events committed on a node reach the events stream
// before Commit returns; with NATS stopped, Commit still returns within
// its budget, the events wait (eventtap_cluster_relay_pending) and, once
// NATS is back, every one of them is in the stream exactly once.
func TestRelayOutage(t *testing.T) {
	ns := natstest.Start(t)
	tn := startTestNode(t, ns.URL(), "n1")
	_, js := connect(t, ns.Server())
	for i := range 20 {
		tn.commit(t, fmt.Sprint("o", i))
	}
	// Published before Commit returned: nothing to wait for.
	if got := len(streamIDs(t, js)); got != 20 {
		t.Fatalf("stream holds %d events right after 20 commits, want 20", got)
	}

	ns.Stop()
	testkit.Eventually(t, 10*time.Second, "the node to notice the outage", func() bool { return tn.node.Check(context.Background()) != nil })
	for i := range 30 {
		start := time.Now()
		tn.commit(t, fmt.Sprint("down", i))
		if d := time.Since(start); d > 1500*time.Millisecond {
			t.Fatalf("Commit with NATS down took %s", d)
		}
	}
	testkit.Eventually(t, 5*time.Second, "relay_pending 30", func() bool { return testutil.ToFloat64(tn.node.relayPending) == 30 })

	ns.Restart()
	testkit.Eventually(t, 15*time.Second, "relay_pending 0", func() bool { return testutil.ToFloat64(tn.node.relayPending) == 0 })
	_, js = connect(t, ns.Server())
	ids := streamIDs(t, js)
	seen := map[string]bool{}
	for _, id := range ids {
		if seen[id] {
			t.Errorf("event %s twice in the stream", id)
		}
		seen[id] = true
	}
	if len(seen) != 50 {
		t.Fatalf("stream holds %d distinct events, want 50", len(seen))
	}
}

// TestRegistryJoinAndRejoin: a single node turning cluster mode on keeps
// its webhooks (they are uploaded to the registry); a node that was away
// while a webhook was deleted forgets it when it comes back.
func TestRegistryJoinAndRejoin(t *testing.T) {
	ns := natstest.Start(t)
	dir := t.TempDir()
	ctx := context.Background()
	storage := outbox.DefaultStorageConfig()
	storage.Dir = dir
	ob, err := outbox.Open(ctx, storage, outbox.DefaultDeliveryConfig(), rules.EventTypes(nil), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	local, err := ob.CreateWebhook(ctx, outbox.WebhookCreate{URL: "https://example.com/a", Type: "ORDER_CREATED"})
	if err != nil {
		t.Fatal(err)
	}
	_ = ob.Close(ctx)

	a := startTestNodeIn(t, dir, []string{ns.URL()}, "a", 1)
	_, js := connect(t, ns.Server())
	kv, err := js.KeyValue(ctx, "eventtap_webhooks")
	if err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 5*time.Second, "the single node's webhook uploaded to the registry", func() bool {
		_, err := kv.Get(ctx, local.ID)
		return err == nil
	})
	b := startTestNode(t, ns.URL(), "b")
	testkit.Eventually(t, 5*time.Second, "the uploaded webhook on node b", func() bool {
		_, err := b.ob.Webhook(ctx, local.ID)
		return err == nil
	})

	a.stop()
	if err := b.ob.DeleteWebhook(ctx, local.ID); err != nil {
		t.Fatal(err)
	}
	a = startTestNodeIn(t, dir, []string{ns.URL()}, "a", 1)
	testkit.Eventually(t, 5*time.Second, "the webhook deleted while node a was away forgotten by it", func() bool {
		_, err := a.ob.Webhook(ctx, local.ID)
		return errors.Is(err, outbox.ErrNotFound)
	})
}

// TestLogResentAfterOutage: the log of an attempt made as NATS went away
// is kept and published once it is back, marked late, so webhookLogs
// still lists every attempt.
func TestLogResentAfterOutage(t *testing.T) {
	ns := natstest.Start(t)
	tn := startTestNode(t, ns.URL(), "n1")
	ns.Stop()
	testkit.Eventually(t, 10*time.Second, "the node to notice the outage", func() bool { return tn.node.Check(context.Background()) != nil })
	l := outbox.Log{WebhookID: "wh_x", EventID: "evt_x", Type: "ORDER_CREATED", CreatedAt: time.Now().UTC(), ResponseStatus: 204, Attempt: 1, Succeeded: true}
	tn.node.shareLog(context.Background(), 3, l, &delivery.Attempt{Outcome: delivery.Done}, 0)
	tn.node.logsMu.Lock()
	kept := len(tn.node.unsentLogs)
	// The client library may also send the first publish from its
	// reconnect buffer; a log it holds only here must go out too.
	l.EventID = "evt_y"
	tn.node.unsentLogs = append(tn.node.unsentLogs, unsentLog{subject: "eventtap.logs.4", id: "evt_y/wh_x/1", log: sharedLog{Log: l, Final: true, Late: true}})
	tn.node.logsMu.Unlock()
	if kept != 1 {
		t.Fatalf("%d logs kept after a failed publish, want 1", kept)
	}

	ns.Restart()
	_, js := connect(t, ns.Server())
	logIn := func(subject, event string, late bool) bool {
		st, err := js.Stream(context.Background(), "eventtap_logs")
		if err != nil {
			return false
		}
		m, err := st.GetLastMsgForSubject(context.Background(), subject)
		if err != nil {
			return false
		}
		var got sharedLog
		return json.Unmarshal(m.Data, &got) == nil && got.EventID == event && (got.Late || !late)
	}
	testkit.Eventually(t, 15*time.Second, "both logs in the logs stream", func() bool {
		return logIn("eventtap.logs.3", "evt_x", false) && logIn("eventtap.logs.4", "evt_y", true)
	})
	tn.node.logsMu.Lock()
	defer tn.node.logsMu.Unlock()
	if len(tn.node.unsentLogs) != 0 {
		t.Errorf("%d logs still kept after NATS came back", len(tn.node.unsentLogs))
	}
}

// fakeWriteBack is the outbox's side of writeBackStates.
type fakeWriteBack struct {
	mu        sync.Mutex
	us        []outbox.UnsharedState
	forgotten []outbox.UnsharedState
}

func (f *fakeWriteBack) ForgetUnsharedStates(_ context.Context, us []outbox.UnsharedState) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.forgotten = append(f.forgotten, us...)
	return nil
}

func (f *fakeWriteBack) TakeUnsharedStates() []outbox.UnsharedState {
	f.mu.Lock()
	defer f.mu.Unlock()
	us := f.us
	f.us = nil
	return us
}

func (f *fakeWriteBack) UnsharedStates() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.us)
}

func (f *fakeWriteBack) ReturnUnsharedStates(us []outbox.UnsharedState) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.us = append(f.us, us...)
}

// TestWriteBackStates: values decided during an outage go to the shared
// state a chunk per pass, each only where the shared value is older.
func TestWriteBackStates(t *testing.T) {
	ns := natstest.Start(t)
	tn := startTestNode(t, ns.URL(), "n1")
	ctx := context.Background()
	at := time.Now().UTC()
	st := tn.node.State()
	// key-0 was changed through the shared state after the outage value
	// was observed: it keeps its value.
	if err := st.Change(ctx, "key-0", func([]byte, bool) ([]byte, bool) { return []byte(`"newer"`), true }); err != nil {
		t.Fatal(err)
	}
	wb := &fakeWriteBack{}
	for i := range 100 {
		wb.us = append(wb.us, outbox.UnsharedState{Key: fmt.Sprint("key-", i), Value: []byte(`"outage"`), At: at.Add(-time.Minute)})
	}
	tn.node.writeBackStates(ctx, wb)
	if left := len(wb.TakeUnsharedStates()); left != 100-writeBackChunk {
		t.Fatalf("%d values left after one pass, want %d", left, 100-writeBackChunk)
	}
	// Their stored copies are deleted, the written and the older alike.
	if n := len(wb.forgotten); n != writeBackChunk {
		t.Fatalf("%d values forgotten after one pass, want %d", n, writeBackChunk)
	}
	wb.us, wb.forgotten = nil, nil
	for i := range 100 {
		wb.us = append(wb.us, outbox.UnsharedState{Key: fmt.Sprint("key-", i), Value: []byte(`"outage"`), At: at.Add(-time.Minute)})
	}
	for range 3 {
		tn.node.writeBackStates(ctx, wb)
	}
	if n := len(wb.forgotten); n != 100 {
		t.Errorf("%d values forgotten after three passes, want 100", n)
	}
	for i, want := range map[int]string{0: `"newer"`, 1: `"outage"`, 99: `"outage"`} {
		var got []byte
		if err := st.Change(ctx, fmt.Sprint("key-", i), func(prev []byte, _ bool) ([]byte, bool) { got = prev; return nil, false }); err != nil {
			t.Fatal(err)
		}
		if string(got) != want {
			t.Errorf("key-%d holds %s, want %s", i, got, want)
		}
	}
}
