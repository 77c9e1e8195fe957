package outbox

// eventRedeliver and webhookReplay in cluster mode (docs/cluster.md §4,
// "As built" 8). A node's own events have no local deliveries there: the
// owner of each event's partition delivers it from the cluster's stream.
// So a redelivery or a replay does not touch this node's lanes; it reads
// the event from the events view (v/…, cluster_view.go), checks it as one
// node would, and hands it to Cluster.Requeue, which publishes a copy on
// the event's partition naming the webhooks it is for. The owner delivers
// the copy to those webhooks only, and the events view skips it (the
// event is listed once).

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Requeued is an event published again for some webhooks.
type Requeued struct {
	ID      string
	Subject string
	// Record is the event as the relay sends it (DecodeRelayed reads it).
	Record []byte
	// Webhooks are the ids the copy is for; the owner delivers it to
	// those that still exist when it takes the copy.
	Webhooks []string
}

// Requeuer publishes events again on the cluster's stream, each for the
// webhooks it names. It returns once the stream has stored all of evs, or
// an error wrapping ErrUnavailable. With no events it only reports
// whether the stream can be used now.
type Requeuer interface {
	Requeue(ctx context.Context, evs []Requeued) error
}

// requeueBatch bounds the events of one Requeue call during a replay, so
// that a large replay reads and publishes in steps of bounded memory.
const requeueBatch = 256

// replaySkew is how far back past since a replay keeps scanning the view:
// view positions follow relay order, and commit times come from each
// node's clock, so an event committed after since on a node whose clock is
// behind may sit before one committed earlier on another node.
const replaySkew = time.Minute

// streamRequeue returns the cluster's requeuer when events are delivered
// from the cluster's stream (nil, false on one node).
func (o *Outbox) streamRequeue() (Requeuer, bool) {
	c := o.cl.hooks.Load()
	if c == nil || !c.StreamDelivery {
		return nil, false
	}
	return c.Requeue, true
}

// readClusterEvent returns the record of event id from the view, or from
// this node's own commits (an event not relayed yet), with the view's
// deliveries of it.
func readClusterEvent(txn *badger.Txn, id string) (eventRecord, []byte, []Delivery, error) {
	var rec eventRecord
	var raw []byte
	var key []byte
	if pos, err := viewPosition(txn, id); err == nil {
		key = viewEventKey(pos)
	} else if !errors.Is(err, badger.ErrKeyNotFound) {
		return rec, nil, nil, err
	} else if seq, ok := parseID(eventIDPrefix, id); ok {
		key = eventKey(seq)
	} else {
		return rec, nil, nil, fmt.Errorf("event %q: %w", id, ErrNotFound)
	}
	err := getRecord(txn, key, func(v []byte) error {
		raw = append([]byte(nil), v...)
		return rec.unmarshal(v)
	})
	if errors.Is(err, badger.ErrKeyNotFound) || (err == nil && rec.ID != id) {
		return rec, nil, nil, fmt.Errorf("event %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return rec, nil, nil, err
	}
	ds, err := scanDeliveries(txn, viewDeliveryPrefix(id))
	return rec, raw, ds, err
}

// clusterRedeliver is Redeliver in cluster mode: the same checks, then a
// copy of the event on its partition for the chosen webhooks. The event
// returned shows those deliveries PENDING, due now, as one node's does;
// the view shows them from the copy's first attempt (its log).
func (o *Outbox) clusterRedeliver(ctx context.Context, rq Requeuer, eventID, webhookID string) (Event, error) {
	var rec eventRecord
	var raw []byte
	var ds []Delivery
	err := o.view(ctx, func(txn *badger.Txn) error {
		var err error
		rec, raw, ds, err = readClusterEvent(txn, eventID)
		return err
	})
	if err != nil {
		return Event{}, err
	}
	targets, err := o.redeliveryTargets(rec.Type, webhookID, ds)
	if err != nil {
		return Event{}, err
	}
	if len(targets) > 0 {
		if rq == nil {
			return Event{}, fmt.Errorf("outbox: redelivery: %w (no stream to publish to)", ErrUnavailable)
		}
		slices.Sort(targets)
		if err := rq.Requeue(ctx, []Requeued{{ID: rec.ID, Subject: rec.Subject, Record: raw, Webhooks: targets}}); err != nil {
			return Event{}, err
		}
	}
	now := o.now().UTC()
	for _, id := range targets {
		d := Delivery{WebhookID: id, State: Pending, NextAttemptAt: now}
		if i := slices.IndexFunc(ds, func(d Delivery) bool { return d.WebhookID == id }); i >= 0 {
			ds[i] = d
		} else {
			ds = append(ds, d)
		}
	}
	slices.SortFunc(ds, func(a, b Delivery) int { return cmp.Compare(a.WebhookID, b.WebhookID) })
	if ds == nil {
		ds = []Delivery{}
	}
	return rec.event(ds), nil
}

// clusterReplay is Replay in cluster mode: every event of the view of the
// webhook's type observed at or after since, oldest first, is published
// again for the webhook, in batches of requeueBatch (each stored by the
// stream before the next is read). As on one node, a delivery the view
// shows PENDING (waiting for a retry) is left alone and not counted. It
// returns how many were published, with the error that stopped it.
func (o *Outbox) clusterReplay(ctx context.Context, rq Requeuer, webhookID string, since time.Time) (int, error) {
	hook := o.webhookCopy(webhookID)
	if hook == nil {
		return 0, fmt.Errorf("webhook %q: %w", webhookID, ErrNotFound)
	}
	if rq == nil {
		return 0, fmt.Errorf("outbox: replay: %w (no stream to publish to)", ErrUnavailable)
	}
	// Refused at once, as other mutations are, while the stream cannot be
	// reached: not after a scan, nor with 0 when nothing matches.
	if err := rq.Requeue(ctx, nil); err != nil {
		return 0, err
	}
	// The replay's range of view positions, fixed now: newest first back
	// to since (less the clock skew), so that events applied while it
	// runs are not part of it and it ends. Only the two ends are kept;
	// the events are read again, a batch at a time, oldest first.
	var first, last uint64
	err := o.view(ctx, func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Reverse: true, Prefix: prefixViewEvent, PrefetchValues: true, PrefetchSize: 64})
		defer it.Close()
		for seekLast(it, prefixViewEvent); it.ValidForPrefix(prefixViewEvent); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			var rec eventRecord
			if err := it.Item().Value(rec.unmarshal); err != nil {
				return err
			}
			if rec.CommittedAt.Before(since.Add(-replaySkew)) {
				break
			}
			first = beUint64(it.Item().Key()[len(prefixViewEvent):])
			if last == 0 {
				last = first
			}
		}
		return nil
	})
	if err != nil || last == 0 {
		return 0, err
	}
	n := 0
	for next := first; next <= last; {
		var batch []Requeued
		err := o.view(ctx, func(txn *badger.Txn) error {
			var err error
			batch, next, err = replayBatch(ctx, txn, hook.Type, webhookID, since, next, last)
			return err
		})
		if err == nil && len(batch) > 0 {
			err = rq.Requeue(ctx, batch)
		}
		if err != nil {
			return n, err
		}
		n += len(batch)
	}
	return n, nil
}

// replayBatch reads the view from position next, oldest first, up to
// last, and returns the copies to publish for the webhook (at most
// requeueBatch) with the position to go on from. As on one node, an event
// of another type or observed before since is skipped, and so is one
// whose delivery the view shows PENDING (waiting for a retry).
func replayBatch(ctx context.Context, txn *badger.Txn, typ, webhookID string, since time.Time, next, last uint64) ([]Requeued, uint64, error) {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixViewEvent, PrefetchValues: true, PrefetchSize: 64})
	defer it.Close()
	var batch []Requeued
	for it.Seek(viewEventKey(next)); it.ValidForPrefix(prefixViewEvent) && len(batch) < requeueBatch; it.Next() {
		if err := ctx.Err(); err != nil {
			return nil, next, err
		}
		pos := beUint64(it.Item().Key()[len(prefixViewEvent):])
		if pos > last {
			return batch, last + 1, nil
		}
		next = pos + 1
		var rec eventRecord
		var raw []byte
		if err := it.Item().Value(func(v []byte) error {
			raw = append([]byte(nil), v...)
			return rec.unmarshal(v)
		}); err != nil {
			return nil, next, err
		}
		if rec.Type != typ || rec.ObservedAt.Before(since) {
			continue
		}
		var d deliveryRecord
		err := getRecord(txn, viewDeliveryKey(rec.ID, webhookID), d.unmarshal)
		switch {
		case err == nil && d.State == Pending:
			continue
		case err != nil && !errors.Is(err, badger.ErrKeyNotFound):
			return nil, next, err
		}
		batch = append(batch, Requeued{ID: rec.ID, Subject: rec.Subject, Record: raw, Webhooks: []string{webhookID}})
	}
	if !it.ValidForPrefix(prefixViewEvent) {
		next = last + 1 // nothing more in the view (the rest removed by retention)
	}
	return batch, next, nil
}
