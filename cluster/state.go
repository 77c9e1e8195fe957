package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/eventtap/eventtap/outbox"
)

// maxStateConflicts bounds the compare-and-set retries of one `changed`
// decision; each conflict means another node changed the same subject
// concurrently, so running out takes a storm on one order.
const maxStateConflicts = 32

// State returns the shared `changed` state, for outbox.Cluster.
func (n *Node) State() outbox.SharedState { return state{n} }

// state implements outbox.SharedState on the `<name>_state` bucket.
type state struct{ n *Node }

// stateValue is a `changed` value as stored: the value, and which node
// observed it when, for people reading the bucket.
type stateValue struct {
	V    json.RawMessage `json:"v"`
	Node string          `json:"node"`
	At   time.Time       `json:"at"`
}

var keyEncoding = base32.HexEncoding.WithPadding(base32.NoPadding)

// stateKey turns the outbox's state key (which may hold any bytes) into a
// key-value key: 130 bits of its SHA-256.
func stateKey(key string) string {
	sum := sha256.Sum256([]byte(key))
	return keyEncoding.EncodeToString(sum[:])[:26]
}

func (s state) Change(ctx context.Context, key string, decide func(prev []byte, found bool) ([]byte, bool)) error {
	b, err := s.n.ready()
	if err != nil {
		return err
	}
	k := stateKey(key)
	for range maxStateConflicts {
		var prev []byte
		var rev uint64
		e, err := b.state.Get(ctx, k)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return unavailable(err)
		default:
			var v stateValue
			if err := json.Unmarshal(e.Value(), &v); err != nil {
				return fmt.Errorf("cluster: state %s: %w", k, err)
			}
			prev, rev = v.V, e.Revision()
		}
		next, write := decide(prev, rev != 0)
		if !write {
			return nil
		}
		val, err := json.Marshal(stateValue{V: next, Node: s.n.cfg.Node, At: time.Now().UTC()})
		if err != nil {
			return err
		}
		if rev == 0 {
			_, err = b.state.Create(ctx, k, val)
		} else {
			_, err = b.state.Update(ctx, k, val, rev)
		}
		if err = kvError(err); !errors.Is(err, outbox.ErrConflict) {
			return err
		}
	}
	return fmt.Errorf("cluster: state %s: %d concurrent changes in a row: %w", k, maxStateConflicts, outbox.ErrUnavailable)
}

// writeBackChunk bounds the `changed` values written back per pass of
// the relay loop (one or two round trips each).
const writeBackChunk = 64

// writeBack is the outbox's side of the `changed` values it decided on
// its own while the shared state was unreachable.
type writeBack interface {
	TakeUnsharedStates() []outbox.UnsharedState
	ReturnUnsharedStates([]outbox.UnsharedState)
	UnsharedStates() int
	// ForgetUnsharedStates deletes the stored copies of values that need
	// no more writing back, so that a restart does not repeat them.
	ForgetUnsharedStates(context.Context, []outbox.UnsharedState) error
}

// writeBackStates writes the `changed` values this node decided during an
// outage to the shared state, each only where the shared value was
// observed earlier, so that after an outage in which several nodes
// decided transitions of one subject, the latest observation is the
// shared value whichever node writes first (best effort: it relies on
// the nodes' clocks). Those it cannot write go back for the next try.
func (n *Node) writeBackStates(ctx context.Context, local writeBack) {
	if local.UnsharedStates() == 0 {
		return
	}
	if _, err := n.ready(); err != nil {
		return // NATS or its buckets not usable yet: nothing to try
	}
	us := local.TakeUnsharedStates()
	if len(us) == 0 {
		return
	}
	if len(us) > writeBackChunk {
		// The relay loop runs this between its batches: a long list
		// goes a chunk per pass, so that new events are not held up.
		local.ReturnUnsharedStates(us[writeBackChunk:])
		us = us[:writeBackChunk]
	}
	st := state{n}
	written := 0
	done := us
	for i, u := range us {
		wrote, err := st.writeIfNewer(ctx, u)
		if err != nil {
			local.ReturnUnsharedStates(us[i:])
			n.log.Warn("writing back `changed` values decided during the outage failed; retrying later", "left", len(us)-i, "err", err)
			done = us[:i]
			break
		}
		if wrote {
			written++
		}
	}
	// A copy left by a failed delete is written back again after a
	// restart, which changes nothing: the shared value is then as new.
	if err := local.ForgetUnsharedStates(ctx, done); err != nil {
		n.log.Warn("deleting the stored copies of `changed` values written back failed; a restart writes them back again", "values", len(done), "err", err)
	}
	if len(done) == len(us) {
		n.log.Debug("wrote back `changed` values decided on this node during the outage", "values", len(us), "newer_than_shared", written)
	}
}

// writeIfNewer stores u's value under its key unless the shared value
// was observed at or after u.At.
func (s state) writeIfNewer(ctx context.Context, u outbox.UnsharedState) (bool, error) {
	b, err := s.n.ready()
	if err != nil {
		return false, err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	k := stateKey(u.Key)
	val, err := json.Marshal(stateValue{V: u.Value, Node: s.n.cfg.Node, At: u.At.UTC()})
	if err != nil {
		return false, err
	}
	for range maxStateConflicts {
		var rev uint64
		e, err := b.state.Get(ctx, k)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
		case err != nil:
			return false, unavailable(err)
		default:
			var v stateValue
			if json.Unmarshal(e.Value(), &v) == nil && !v.At.Before(u.At) {
				return false, nil
			}
			rev = e.Revision()
		}
		if rev == 0 {
			_, err = b.state.Create(ctx, k, val)
		} else {
			_, err = b.state.Update(ctx, k, val, rev)
		}
		if err = kvError(err); !errors.Is(err, outbox.ErrConflict) {
			return err == nil, err
		}
	}
	return false, fmt.Errorf("cluster: state %s: %d concurrent changes in a row: %w", k, maxStateConflicts, outbox.ErrUnavailable)
}
