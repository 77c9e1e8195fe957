package outbox

// The relay's side of the outbox (cluster mode, docs/cluster.md §5): every
// committed event also goes to the cluster's stream. The events themselves
// are the relay queue: a cursor (m/relay) says up to which sequence they
// have been acknowledged by the stream, so committing needs no extra write.

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/eventtap/eventtap/delivery"
)

// keyMetaRelay holds the sequence up to which events were relayed.
var keyMetaRelay = []byte("m/relay")

// RelayEvent is a committed event on its way to the cluster's stream.
type RelayEvent struct {
	Seq     uint64
	ID      string
	Subject string
	// Record is the event as the outbox stores it; DecodeRelayed reads it.
	Record []byte
}

// relayState is the outbox's side of the relay; its zero value is a
// single node (Commit never waits).
type relayState struct {
	mu      sync.Mutex
	on      bool          // a relay runs: Commit waits for it
	down    bool          // the last publish failed: Commit does not wait
	relayed uint64        // cursor
	changed chan struct{} // closed and replaced when relayed or down changes
	wake    chan struct{} // pokes the relay
	saved   time.Time     // when the cursor was last written
}

// relaySaveEvery bounds how often the relay's position is written: each
// write is a Badger transaction with its sync, which per round of
// publishes cost the tapped path a third of its throughput. Losing up to
// this much progress in a crash only makes the relay send those events
// again, and the stream drops them by id (its dedupe window is 2 min).
const relaySaveEvery = time.Second

// StartRelay turns the relay on and returns the sequence it must resume
// after. From then on Commit releases an exchange only once its events are
// relayed (or the relay is failing, or the budget of Cluster.StateTimeout
// ran out), so that order across nodes is response order.
func (o *Outbox) StartRelay(ctx context.Context) (uint64, error) {
	after, err := o.metaU64(ctx, keyMetaRelay)
	if err != nil {
		return 0, fmt.Errorf("outbox: reading the relay position: %w", err)
	}
	r := &o.relay
	r.mu.Lock()
	r.on, r.relayed = true, after
	r.changed = make(chan struct{})
	r.wake = make(chan struct{}, 1)
	r.mu.Unlock()
	return after, nil
}

// RelayWake is signaled when an exchange waits for the relay.
func (o *Outbox) RelayWake() <-chan struct{} {
	o.relay.mu.Lock()
	defer o.relay.mu.Unlock()
	return o.relay.wake
}

// RelayBatch returns up to limit committed events after sequence after, in
// sequence order, and the highest sequence committed so far.
func (o *Outbox) RelayBatch(ctx context.Context, after uint64, limit int) ([]RelayEvent, uint64, error) {
	var out []RelayEvent
	var last uint64
	err := o.use(ctx, func() error {
		return o.db.View(func(txn *badger.Txn) error {
			if item, err := txn.Get(keyMetaSeq); err == nil {
				_ = item.Value(func(v []byte) error {
					if len(v) == 8 {
						last = binary.BigEndian.Uint64(v)
					}
					return nil
				})
			}
			it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 64, Prefix: prefixEvent})
			defer it.Close()
			for it.Seek(eventKey(after + 1)); it.ValidForPrefix(prefixEvent) && len(out) < limit; it.Next() {
				k := it.Item().Key()
				v, err := it.Item().ValueCopy(nil)
				if err != nil {
					return err
				}
				var rec eventRecord
				if err := rec.unmarshal(v); err != nil {
					return fmt.Errorf("event %x: %w", k, err)
				}
				out = append(out, RelayEvent{Seq: binary.BigEndian.Uint64(k[len(prefixEvent):]), ID: rec.ID, Subject: rec.Subject, Record: v})
			}
			return nil
		})
	})
	if n := len(out); n > 0 {
		last = max(last, out[n-1].Seq)
	}
	return out, last, err
}

// Relayed records the relay's progress: upTo is the last sequence the
// stream acknowledged (every one before it too), err the failure that
// stopped it, if any. The position is written at most every
// relaySaveEvery: after a crash the relay sends the events of that last
// second again, which the stream drops by id.
func (o *Outbox) Relayed(ctx context.Context, upTo uint64, err error) error {
	r := &o.relay
	r.mu.Lock()
	moved := upTo > r.relayed
	if moved {
		r.relayed = upTo
	}
	down := err != nil
	if moved || down != r.down {
		r.down = down
		close(r.changed)
		r.changed = make(chan struct{})
	}
	save := moved && time.Since(r.saved) >= relaySaveEvery
	if save {
		r.saved = time.Now()
	}
	r.mu.Unlock()
	if !save {
		return nil
	}
	return o.saveRelayed(ctx, upTo)
}

// SaveRelayed writes the relay's position now, for a relay that stops.
func (o *Outbox) SaveRelayed(ctx context.Context) error {
	r := &o.relay
	r.mu.Lock()
	upTo, on := r.relayed, r.on
	r.mu.Unlock()
	if !on {
		return nil
	}
	return o.saveRelayed(ctx, upTo)
}

func (o *Outbox) saveRelayed(ctx context.Context, upTo uint64) error {
	return o.use(ctx, func() error {
		return o.db.Update(func(txn *badger.Txn) error {
			return txn.Set(keyMetaRelay, binary.BigEndian.AppendUint64(nil, upTo))
		})
	})
}

// waitRelayed holds an acknowledged exchange whose last event is seq
// until the relay has sent it, within the cluster's budget. It never fails
// the exchange: its events are durable here, and relayed later.
func (o *Outbox) waitRelayed(ctx context.Context, seq uint64) {
	r := &o.relay
	r.mu.Lock()
	on := r.on
	r.mu.Unlock()
	if !on || seq == 0 {
		return
	}
	budget := time.Second
	if c := o.cl.hooks.Load(); c != nil {
		budget = c.StateTimeout
	}
	timer := time.NewTimer(budget)
	defer timer.Stop()
	select {
	case r.wake <- struct{}{}:
	default:
	}
	for {
		r.mu.Lock()
		done, down, changed := r.relayed >= seq, r.down, r.changed
		r.mu.Unlock()
		if done || down {
			return
		}
		select {
		case <-changed:
		case <-timer.C:
			return
		case <-ctx.Done():
			return
		}
	}
}

// DecodeRelayed returns the event a RelayEvent's Record holds.
func DecodeRelayed(record []byte) (Event, error) {
	var rec eventRecord
	if err := rec.unmarshal(record); err != nil {
		return Event{}, err
	}
	return Event{ID: rec.ID, Type: rec.Type, Subject: rec.Subject, Rule: rec.Rule, CreatedAt: rec.ObservedAt, Payload: rec.Payload}, nil
}

// keyMetaLogView holds the position of this node's copy of the cluster's
// log stream.
var keyMetaLogView = []byte("m/logview")

// ObserveStreamAttempt does for an attempt made from the cluster's stream
// what Record does for a local one, apart from storing it: it counts the
// attempt in the metrics and tracks the webhook's health (410,
// disable_after, through the shared registry). It returns the attempt's
// log, which the cluster shares with every node (ApplyLog).
func (o *Outbox) ObserveStreamAttempt(a *delivery.Attempt, ev Event) Log {
	rec := &eventRecord{ID: ev.ID, Type: ev.Type, Subject: ev.Subject, Rule: ev.Rule, ObservedAt: ev.CreatedAt, Payload: ev.Payload}
	failed := a.Failed()
	o.observeAttempt(a.WebhookID, rec, &a.Result, failed, a.At)
	if failed {
		o.log.Warn("delivery failed after its last retry", "webhook", a.WebhookID, "event", ev.ID, "attempts", a.Number)
	}
	o.recordHealth(a.WebhookID, a.Result.OK(), a.Result.Status == 410, a.At)
	return *attemptLog(rec, a)
}

// viewHasDelivery reports whether the view shows a delivery of the event
// to the webhook (a failed read counts as yes: a late log then leaves it).
func (o *Outbox) viewHasDelivery(eventID, webhookID string) bool {
	err := o.db.View(func(txn *badger.Txn) error {
		_, err := txn.Get(viewDeliveryKey(eventID, webhookID))
		return err
	})
	return !errors.Is(err, badger.ErrKeyNotFound)
}

// viewLogID is the id of the log at position pos of the cluster's log
// stream: the same on every node (the position, and bytes of a hash of what
// the log is about where a node's own ids have random ones), so that an id
// or a cursor from one node's webhookLogs names the same log on another.
func viewLogID(pos uint64, l *Log) string {
	h := fnv.New64a()
	_, _ = fmt.Fprintf(h, "%s/%s/%d/%d", l.EventID, l.WebhookID, l.Attempt, l.CreatedAt.UnixNano())
	var raw [16]byte
	binary.BigEndian.PutUint64(raw[:8], pos)
	binary.BigEndian.PutUint64(raw[8:], h.Sum64())
	return logIDPrefix + idEncoding.EncodeToString(raw[:])
}

// LogViewPosition returns the last position of the cluster's log stream
// applied here (0: none).
func (o *Outbox) LogViewPosition(ctx context.Context) (uint64, error) {
	return o.metaU64(ctx, keyMetaLogView)
}

// metaU64 reads a uint64 meta key; 0 when it does not exist.
func (o *Outbox) metaU64(ctx context.Context, key []byte) (uint64, error) {
	var v uint64
	err := o.use(ctx, func() error {
		return o.db.View(func(txn *badger.Txn) error {
			item, err := txn.Get(key)
			if errors.Is(err, badger.ErrKeyNotFound) {
				return nil
			}
			if err != nil {
				return err
			}
			return item.Value(func(b []byte) error {
				if len(b) == 8 {
					v = binary.BigEndian.Uint64(b)
				}
				return nil
			})
		})
	})
	return v, err
}

// ApplyLog stores the log of an attempt made by any node (position pos
// of the cluster's log stream), so that webhookLogs answers for the whole
// cluster, and sets the delivery of the events view to what the log and
// its outcome say (the latest log in stream order wins). The log gets
// this store's id and sequence; the position is written with it. A log
// of a webhook deleted meanwhile is dropped.
func (o *Outbox) ApplyLog(ctx context.Context, l Log, out LogOutcome, pos uint64) error {
	return o.use(ctx, func() error {
		// As Commit does: Close closes the queues only after it has seen
		// every sender that found the store open.
		o.closeMu.RLock()
		if o.closed {
			o.closeMu.RUnlock()
			return ErrClosed
		}
		req := o.queueAttempt(l.WebhookID, func(w entrySink) error {
			if err := w.set(badger.NewEntry(keyMetaLogView, binary.BigEndian.AppendUint64(nil, pos))); err != nil {
				return err
			}
			if !out.Test && len(l.EventID) == eventIDLen && len(l.WebhookID) == webhookIDLen && (!out.Late || !o.viewHasDelivery(l.EventID, l.WebhookID)) {
				d := viewDelivery(&l, out)
				if err := w.set(badger.NewEntry(viewDeliveryKey(l.EventID, l.WebhookID), d.marshal())); err != nil {
					return err
				}
			}
			l.ID = viewLogID(pos, &l)
			return writeLogAt(w, viewLogs, pos, &l)
		})
		o.closeMu.RUnlock()
		err := <-req.done
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		return err
	})
}
