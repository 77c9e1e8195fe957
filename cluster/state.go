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
