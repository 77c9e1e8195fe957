package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

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
}

func startTestNode(t *testing.T, url, name string) *testNode {
	t.Helper()
	storage := outbox.DefaultStorageConfig()
	storage.Dir = t.TempDir()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	reg := prometheus.NewRegistry()
	ob, err := outbox.Open(context.Background(), storage, outbox.DefaultDeliveryConfig(), rules.EventTypes(nil), logger, reg)
	if err != nil {
		t.Fatal(err)
	}
	cfg := DefaultConfig()
	cfg.NATS.URLs, cfg.Node = []string{url}, name
	node, err := New(cfg, Options{Local: ob, StateTTL: ob.StateTTL(), Retention: storage.Retention, Delivery: outbox.DefaultDeliveryConfig()}, logger, reg)
	if err != nil {
		t.Fatal(err)
	}
	ob.SetCluster(outbox.Cluster{Registry: node.Registry(), State: node.State()})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = node.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		node.Close()
		_ = ob.Close(context.Background())
	})
	deadline := time.Now().Add(10 * time.Second)
	for node.Check(context.Background()) != nil || !node.streamsReady.Load() {
		if time.Now().After(deadline) {
			t.Fatal("the node did not reach NATS within 10 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	return &testNode{ob: ob, node: node}
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
