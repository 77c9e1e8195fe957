package cluster

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/eventtap/eventtap/internal/natstest"
	"github.com/eventtap/eventtap/internal/testkit"
	"github.com/eventtap/eventtap/outbox"
)

// writeKey writes a fresh 32-byte AES key, hex, to a file of its own.
func writeKey(t *testing.T) string {
	t.Helper()
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	path := filepath.Join(t.TempDir(), "storage.key")
	if err := os.WriteFile(path, []byte(hex.EncodeToString(key)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func withKey(path string) func(*outbox.StorageConfig) {
	return func(s *outbox.StorageConfig) { s.EncryptionKeyFile = path }
}

// TestRegistrySealed: with storage.encryption_key_file set, what the
// registry bucket holds of a webhook (its URL, its secrets) is sealed;
// nodes with the same key share it, created and rotated on either; a node
// with another key or none never takes it.
func TestRegistrySealed(t *testing.T) {
	ns := natstest.Start(t)
	ctx := context.Background()
	key := writeKey(t)
	a := startTestNodeIn(t, t.TempDir(), []string{ns.URL()}, "a", 1, withKey(key))
	b := startTestNodeIn(t, t.TempDir(), []string{ns.URL()}, "b", 1, withKey(key))
	other := startTestNodeIn(t, t.TempDir(), []string{ns.URL()}, "other", 1, withKey(writeKey(t)))
	none := startTestNodeIn(t, t.TempDir(), []string{ns.URL()}, "none", 1)

	var received atomic.Int32
	rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { received.Add(1) }))
	t.Cleanup(rc.Close)
	url := rc.URL + "/hooks/orders?token=tok-123456"
	hook, err := a.ob.CreateWebhook(ctx, outbox.WebhookCreate{URL: url, Type: "ORDER_CREATED"})
	if err != nil {
		t.Fatal(err)
	}
	_, js := connect(t, ns.Server())
	kv, err := js.KeyValue(ctx, "eventtap_webhooks")
	if err != nil {
		t.Fatal(err)
	}
	e, err := kv.Get(ctx, hook.ID)
	if err != nil {
		t.Fatal(err)
	}
	for _, plain := range []string{hook.Secret, url, "tok-123456", "/hooks/orders"} {
		if bytes.Contains(e.Value(), []byte(plain)) {
			t.Fatalf("the registry holds %q in the clear", plain)
		}
	}

	sameSecret := func(n *testNode, want string) func() bool {
		return func() bool {
			got, err := n.ob.Webhook(ctx, hook.ID)
			return err == nil && got.Secret == want && got.URL == url
		}
	}
	testkit.Eventually(t, 5*time.Second, "the sealed webhook on node b, with its secret", sameSecret(b, hook.Secret))
	rotated, err := b.ob.RotateSecret(ctx, hook.ID)
	if err != nil {
		t.Fatal(err)
	}
	testkit.Eventually(t, 5*time.Second, "the secret rotated on node b seen by node a", sameSecret(a, rotated.Secret))

	// The registry's watchers deliver in order, so once node a has the
	// rotation every node has been offered both revisions.
	time.Sleep(500 * time.Millisecond)
	blind := map[string]*testNode{"another key": other, "no key": none}
	for name, n := range blind {
		if _, err := n.ob.Webhook(ctx, hook.ID); err == nil {
			t.Errorf("the node with %s took the sealed webhook", name)
		}
		if err := n.node.Check(ctx); !errors.Is(err, outbox.ErrSealed) {
			t.Errorf("the node with %s: readiness says %v, want that it cannot read the registry", name, err)
		}
	}
	// The nodes that cannot read the registry take no partitions (they
	// would not know whom to deliver to); what they commit is delivered
	// by the others.
	testkit.Eventually(t, 10*time.Second, "all partitions on the nodes with the key", func() bool {
		return testutil.ToFloat64(a.node.partitions)+testutil.ToFloat64(b.node.partitions) == Partitions
	})
	for name, n := range blind {
		if p := testutil.ToFloat64(n.node.partitions); p != 0 {
			t.Errorf("the node with %s owns %v partitions", name, p)
		}
	}
	const perNode = 20
	for i := range perNode {
		for _, n := range []*testNode{a, other, none} {
			n.commit(t, fmt.Sprintf("order-%s-%d", n.node.Name(), i))
		}
	}
	testkit.Eventually(t, 20*time.Second, "every event delivered", func() bool { return received.Load() >= 3*perNode })
	time.Sleep(300 * time.Millisecond)
	if got := received.Load(); got != 3*perNode {
		t.Errorf("%d deliveries, want %d", got, 3*perNode)
	}
}
