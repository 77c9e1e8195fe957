package cluster

import (
	"slices"
	"testing"

	"github.com/nats-io/nats.go"
)

// TestRequeueTargets: an event as committed has no targets (nil: every
// subscriber); a copy names its webhooks, and a copy naming none is still
// a copy (delivered to nobody, skipped by the views).
func TestRequeueTargets(t *testing.T) {
	if got := requeueTargets(nats.Header{}); got != nil {
		t.Errorf("no header: %v, want nil", got)
	}
	h := nats.Header{}
	h.Set(requeueHeader, "wh_a, wh_b,")
	if got := requeueTargets(h); !slices.Equal(got, []string{"wh_a", "wh_b"}) {
		t.Errorf("targets %v", got)
	}
	h.Set(requeueHeader, ",")
	if got := requeueTargets(h); got == nil || len(got) != 0 {
		t.Errorf("a copy naming no webhook: %#v, want empty, not nil", got)
	}
}
