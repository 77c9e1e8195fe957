package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/eventtap/eventtap/internal/testkit"
	"github.com/eventtap/eventtap/outbox"
	"github.com/eventtap/eventtap/rules"
)

// TestR3LosesServer: on a NATS cluster of three servers with replicas 3,
// the server leading the events stream is shut down under load; every
// event whose Commit returned is delivered, in order per subject.
func TestR3LosesServer(t *testing.T) {
	if testing.Short() {
		t.Skip("runs three NATS servers; skipped with -short")
	}
	servers := startNATSCluster(t)
	var urls []string
	for _, s := range servers {
		urls = append(urls, s.ClientURL())
	}
	tn := startTestNodeWith(t, urls, "r3", 3)

	var mu sync.Mutex
	got := map[string][]int{} // subject → n, in arrival order
	rcv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var ev struct {
			Subject string
			Data    struct{ N int }
		}
		if json.Unmarshal(body, &ev) == nil {
			mu.Lock()
			got[ev.Subject] = append(got[ev.Subject], ev.Data.N)
			mu.Unlock()
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	defer rcv.Close()
	if _, err := tn.ob.CreateWebhook(context.Background(), outbox.WebhookCreate{URL: rcv.URL, Type: "ORDER_CREATED"}); err != nil {
		t.Fatal(err)
	}

	_, js := connect(t, servers[0])
	info, err := js.Stream(context.Background(), "eventtap_events")
	if err != nil {
		t.Fatal(err)
	}
	leader := info.CachedInfo().Cluster.Leader
	const total, subjects = 300, 10
	acked := map[string][]int{}
	for n := range total {
		if n == total/3 {
			for _, s := range servers {
				if s.Name() == leader {
					t.Logf("shutting down %s, leader of the events stream, after %d commits", leader, n)
					s.Shutdown()
				}
			}
		}
		subject := fmt.Sprint("o", n%subjects)
		ev := rules.Event{Rule: "r", Type: "ORDER_CREATED", Subject: subject, Data: []byte(fmt.Sprintf(`{"n":%d}`, n)), ObservedAt: time.Now()}
		if err := tn.ob.Commit(context.Background(), []rules.Event{ev}); err != nil {
			t.Fatalf("commit %d: %v", n, err)
		}
		acked[subject] = append(acked[subject], n)
	}
	testkit.Eventually(t, 60*time.Second, "every committed event delivered", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for s, ns := range acked {
			seen := map[int]bool{}
			for _, n := range got[s] {
				seen[n] = true
			}
			if len(seen) < len(ns) {
				return false
			}
		}
		return true
	})
	mu.Lock()
	defer mu.Unlock()
	dups := 0
	for s, ns := range got {
		last := -1
		seen := map[int]bool{}
		for _, n := range ns {
			if seen[n] {
				dups++
				continue
			}
			seen[n] = true
			if n < last {
				t.Errorf("subject %s: %d delivered after %d", s, n, last)
			}
			last = n
		}
	}
	t.Logf("%d events delivered, %d redeliveries", total, dups)
}
