package cluster

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/eventtap/eventtap/internal/natstest"
	"github.com/eventtap/eventtap/internal/testkit"
	"github.com/eventtap/eventtap/outbox"
)

// TestFreshNodeJoinsUnderLoad is a pod replaced in a rolling restart with
// an empty store (an emptyDir): it joins while events flow and must not
// take a partition before it knows every webhook, or the events it took
// would go to nobody. The registry holds many webhooks, the one that
// receives last. (The window is short: this test also passed with the
// node joining before it had read the registry; it guards the scenario,
// and mayDeliver closes the window by construction.)
func TestFreshNodeJoinsUnderLoad(t *testing.T) {
	ns := natstest.Start(t)
	ctx := context.Background()
	var mu sync.Mutex
	got := map[string]bool{}
	rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got[r.Header.Get("webhook-id")] = true
		mu.Unlock()
	}))
	t.Cleanup(rc.Close)
	a := startTestNode(t, ns.URL(), "a")
	for i := range 100 {
		if _, err := a.ob.CreateWebhook(ctx, outbox.WebhookCreate{URL: fmt.Sprintf("https://unused.example/%d", i), Type: "ORDER_UPDATED"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := a.ob.CreateWebhook(ctx, outbox.WebhookCreate{URL: rc.URL, Type: "ORDER_CREATED"}); err != nil {
		t.Fatal(err)
	}

	var committed atomic.Int64
	stop := make(chan struct{})
	loadDone := make(chan struct{})
	go func() {
		defer close(loadDone)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			a.commit(t, fmt.Sprint("order-", i%64))
			committed.Add(1)
		}
	}()
	time.Sleep(300 * time.Millisecond)
	b := startTestNode(t, ns.URL(), "b") // fresh store
	testkit.Eventually(t, 10*time.Second, "node b owns partitions", func() bool {
		return testutil.ToFloat64(b.node.partitions) > 0
	})
	time.Sleep(time.Second)
	close(stop)
	<-loadDone
	want := int(committed.Load())
	testkit.Eventually(t, 30*time.Second, fmt.Sprintf("all %d events delivered", want), func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) >= want
	})
}
