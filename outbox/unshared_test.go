package outbox

import (
	"bytes"
	"context"
	"math"
	"testing"
	"time"
)

// TestUnsharedStatesSurviveRestart: the `changed` values decided while the
// cluster's shared state is unreachable are kept on disk with the events,
// so a restart before they are written back still has them (the latest of
// each key); once forgotten they do not come back, and forgetting an
// older decision keeps a newer one.
func TestUnsharedStatesSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	o := openTestDir(t, dir)
	o.cl.local.Store(true) // the shared state is unreachable
	o.commit(t, stateEvent("1", "order/1", `"PAID"`))
	time.Sleep(2 * time.Millisecond)
	o.commit(t, stateEvent("1", "order/1", `"SHIPPED"`))
	o.commit(t, stateEvent("2", "order/2", `"PAID"`))
	if n := o.UnsharedStates(); n != 2 {
		t.Fatalf("%d values waiting before the restart, want 2", n)
	}
	o.close(t)

	o = openTestDir(t, dir)
	got := map[string]UnsharedState{}
	for _, u := range o.TakeUnsharedStates() {
		got[u.Key] = u
	}
	if len(got) != 2 || string(got["order/1"].Value) != `"SHIPPED"` || string(got["order/2"].Value) != `"PAID"` {
		t.Fatalf("after the restart: %+v; want order/1 SHIPPED (its latest) and order/2 PAID", got)
	}
	// order/1 written back; for order/2 only a decision older than the
	// stored one: its copy stays.
	older := got["order/2"]
	older.At = older.At.Add(-time.Millisecond)
	if err := o.ForgetUnsharedStates(context.Background(), []UnsharedState{got["order/1"], older}); err != nil {
		t.Fatal(err)
	}
	o.close(t)

	o = openTestDir(t, dir)
	us := o.TakeUnsharedStates()
	if len(us) != 1 || us[0].Key != "order/2" || string(us[0].Value) != `"PAID"` {
		t.Fatalf("after forgetting order/1: %+v; want order/2 PAID alone", us)
	}
	if err := o.ForgetUnsharedStates(context.Background(), us); err != nil {
		t.Fatal(err)
	}
	o.close(t)
	if o = openTestDir(t, dir); o.UnsharedStates() != 0 {
		t.Fatalf("%d values after forgetting all, want 0", o.UnsharedStates())
	}
}

// FuzzUnsharedKey: a u/ key read back from the store never panics the
// parser, and a key built from any state key and time parses back to them.
func FuzzUnsharedKey(f *testing.F) {
	f.Add("order/1", int64(1796524507000000000), []byte("u/\x00\x07order/1\x18\xec\x63\x2e\xad\x5c\x10\x00"))
	f.Add("", int64(0), []byte("u/"))
	f.Add("x", int64(-1), []byte("u/\xff\xff"))
	f.Fuzz(func(t *testing.T, key string, ns int64, raw []byte) {
		if !bytes.HasPrefix(raw, prefixUnshared) {
			raw = append(bytes.Clone(prefixUnshared), raw...)
		}
		_, _, _ = parseUnsharedKey(raw)
		p, ok := unsharedPrefix(key)
		if !ok {
			if len(key) <= math.MaxUint16 {
				t.Fatalf("a key of %d bytes refused", len(key))
			}
			return
		}
		k, at, ok := parseUnsharedKey(u64(p, uint64(ns)))
		if !ok || k != key || at.UnixNano() != ns {
			t.Fatalf("round trip of (%q, %d): (%q, %d, %v)", key, ns, k, at.UnixNano(), ok)
		}
	})
}
