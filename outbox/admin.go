package outbox

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/eventtap/eventtap/delivery"
)

// TestWebhook sends a signed test event to the webhook now, whatever its
// status, and returns the logged attempt. The test event is not stored as an
// event and never retried. A refused or failed send is reported in the Log,
// not as an error.
func (o *Outbox) TestWebhook(ctx context.Context, id string) (Log, error) {
	if err := o.use(ctx, func() error { return nil }); err != nil {
		return Log{}, err
	}
	hook := o.webhookCopy(id)
	if hook == nil {
		return Log{}, fmt.Errorf("webhook %q: %w", id, ErrNotFound)
	}
	now := o.now()
	evID := newID(eventIDPrefix, 0)
	payload := appendPayload(nil, evID, hook.Type, now, "test", "webhook-test", []byte(`{"test":true}`), nil)
	// The send is not under dbMu: it may take up to delivery.timeout and
	// must not hold up Close.
	res := o.sender.Send(ctx, hook.target(), evID, payload, now)
	entry := &Log{
		WebhookID:      id,
		EventID:        evID,
		Type:           hook.Type,
		URL:            hook.URL,
		CreatedAt:      o.now().UTC(),
		ResponseStatus: res.Status,
		Request:        string(payload),
		Attempt:        1,
		Duration:       res.Duration,
		ResponseBody:   res.Body,
		Succeeded:      res.OK(),
	}
	if res.Err != nil {
		entry.Error = res.Err.Error()
	}
	if c := o.cl.hooks.Load(); c != nil && c.TestLogs != nil {
		// Cluster mode lists the cluster's logs: share it rather than
		// keep it here (the send was made; the client's leaving does not
		// undo it).
		pos, err := c.TestLogs.ShareTestLog(context.WithoutCancel(ctx), *entry)
		if err == nil {
			entry.ID = viewLogID(pos, entry)
			return *entry, nil
		}
		o.log.Warn("sharing a webhookTest log with the cluster failed; it is kept on this node, which does not list it in cluster mode", "webhook", id, "err", err)
	}
	err := o.use(context.WithoutCancel(ctx), func() error {
		w, err := o.newTxnWriter()
		if err != nil {
			return err
		}
		if err := o.writeLog(w, entry); err != nil {
			w.discard()
			return err
		}
		return w.commit()
	})
	if err != nil {
		return Log{}, fmt.Errorf("outbox: saving the test log: %w", err)
	}
	return *entry, nil
}

// Replay queues, for the webhook, every stored event of its type observed
// at or after since, and returns how many were queued. Deliveries already
// pending are left alone (and not counted); delivered or failed ones start
// over with a fresh retry schedule. They flow through the normal path:
// ordered per subject, retried, paused while the webhook is DISABLED.
//
// In cluster mode the event is published again for the webhook on the
// cluster's stream instead (clusterReplay).
func (o *Outbox) Replay(ctx context.Context, webhookID string, since time.Time) (int, error) {
	if rq, ok := o.streamRequeue(); ok {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		return o.clusterReplay(ctx, rq, webhookID, since)
	}
	n := 0
	err := o.use(ctx, func() error {
		hook := o.webhookCopy(webhookID)
		if hook == nil {
			return fmt.Errorf("webhook %q: %w", webhookID, ErrNotFound)
		}
		o.adminMu.Lock()
		defer o.adminMu.Unlock()
		var err error
		n, err = o.requeueScan("replay", func(txn *badger.Txn, w *txnWriter, now time.Time, lanes *[]laneEntry) error {
			it := txn.NewIterator(badger.IteratorOptions{Reverse: true, Prefix: prefixEvent, PrefetchValues: true, PrefetchSize: 64})
			defer it.Close()
			for seekLast(it, prefixEvent); it.ValidForPrefix(prefixEvent); it.Next() {
				if err := ctx.Err(); err != nil {
					return err
				}
				var rec eventRecord
				if err := it.Item().Value(rec.unmarshal); err != nil {
					return err
				}
				// Commit time never precedes observation and grows with the
				// sequence, so nothing older can match.
				if rec.CommittedAt.Before(since) {
					break
				}
				if rec.Type != hook.Type || rec.ObservedAt.Before(since) {
					continue
				}
				seq := beUint64(it.Item().Key()[len(prefixEvent):])
				if err := o.requeue(txn, w, seq, &rec, webhookID, now, false, lanes); err != nil {
					return err
				}
			}
			return nil
		})
		return err
	})
	return n, err
}

// requeueScan runs scan in a read transaction with a txnWriter for the
// requeued deliveries, then commits them (commitRequeued) and returns how
// many lanes it queued. what names the operation in logs. adminMu must be
// held.
func (o *Outbox) requeueScan(what string, scan func(txn *badger.Txn, w *txnWriter, now time.Time, lanes *[]laneEntry) error) (int, error) {
	w, err := o.newTxnWriter()
	if err != nil {
		return 0, err
	}
	now := o.now().UTC()
	var lanes []laneEntry
	err = o.db.View(func(txn *badger.Txn) error { return scan(txn, w, now, &lanes) })
	if err := o.commitRequeued(w, err, lanes, what); err != nil {
		return 0, err
	}
	return len(lanes), nil
}

// requeue writes a fresh PENDING delivery of event seq to the webhook, due
// now with its retry schedule starting again, and adds its lane entry to
// lanes (handed to the dispatcher once the writes commit). A delivery
// already pending is left alone unless resetPending is set (eventRedeliver:
// one waiting in backoff is sent now, SPEC §5; Replay leaves it as it is).
// It still waits for earlier events of its subject. adminMu must be held.
func (o *Outbox) requeue(txn *badger.Txn, w *txnWriter, seq uint64, ev *eventRecord, webhookID string, now time.Time, resetPending bool, lanes *[]laneEntry) error {
	var cur deliveryRecord
	err := getRecord(txn, deliveryKey(seq, webhookID), cur.unmarshal)
	switch {
	case err == nil && cur.State == Pending && !resetPending:
		return nil
	case err != nil && !errors.Is(err, badger.ErrKeyNotFound):
		return err
	}
	rec := deliveryRecord{State: Pending, NextAttemptAt: now}
	lv := laneValue{NextAttemptAt: now, ObservedAt: ev.ObservedAt}
	// Together: a PENDING record without its lane entry would never be sent.
	if err := w.group(
		write{e: badger.NewEntry(deliveryKey(seq, webhookID), rec.marshal())},
		write{e: badger.NewEntry(laneKey(webhookID, ev.Subject, seq), lv.marshal())},
	); err != nil {
		return err
	}
	*lanes = append(*lanes, laneEntry{WebhookID: webhookID, Subject: ev.Subject, Item: delivery.Item{Seq: seq, Due: now.UnixNano(), Observed: ev.ObservedAt.UnixNano()}})
	return nil
}

// Redeliver queues the event again for one webhook, or with webhookID ""
// for every webhook subscribed to its type (and every webhook it already
// has a delivery for). Each such delivery, PENDING ones waiting in backoff
// included, is reset to PENDING, due now, with a fresh retry schedule and
// goes through the normal path (ordering, retries).
// It returns the event with its updated deliveries.
//
// In cluster mode the event is published again on the cluster's stream
// for those webhooks instead (clusterRedeliver).
func (o *Outbox) Redeliver(ctx context.Context, eventID, webhookID string) (Event, error) {
	var out Event
	if rq, ok := o.streamRequeue(); ok {
		return o.clusterRedeliver(ctx, rq, eventID, webhookID)
	}
	seq, ok := parseID(eventIDPrefix, eventID)
	if !ok {
		return out, fmt.Errorf("event %q: %w", eventID, ErrNotFound)
	}
	err := o.use(ctx, func() error {
		o.adminMu.Lock()
		defer o.adminMu.Unlock()
		_, err := o.requeueScan("redelivery", func(txn *badger.Txn, w *txnWriter, now time.Time, lanes *[]laneEntry) error {
			var rec eventRecord
			if err := getRecord(txn, eventKey(seq), rec.unmarshal); errors.Is(err, badger.ErrKeyNotFound) || (err == nil && rec.ID != eventID) {
				return fmt.Errorf("event %q: %w", eventID, ErrNotFound)
			} else if err != nil {
				return err
			}
			existing, err := readDeliveries(txn, seq)
			if err != nil {
				return err
			}
			targets, err := o.redeliveryTargets(rec.Type, webhookID, existing)
			if err != nil {
				return err
			}
			for _, id := range targets {
				if err := o.requeue(txn, w, seq, &rec, id, now, true, lanes); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		return o.db.View(func(txn *badger.Txn) error {
			out, err = readEvent(txn, seq, eventID)
			return err
		})
	})
	return out, err
}

// redeliveryTargets returns the webhooks an event of type typ with
// deliveries existing is redelivered to: webhookID, which must exist and
// subscribe to typ or have a delivery of it already; or with webhookID ""
// every webhook subscribed to typ and every one with a delivery.
func (o *Outbox) redeliveryTargets(typ, webhookID string, existing []Delivery) ([]string, error) {
	has := map[string]bool{}
	for _, d := range existing {
		has[d.WebhookID] = true
	}
	o.whMu.RLock()
	defer o.whMu.RUnlock()
	if webhookID != "" {
		h := o.hooks[webhookID]
		switch {
		case h == nil:
			return nil, fmt.Errorf("webhook %q: %w", webhookID, ErrNotFound)
		case h.Type != typ && !has[webhookID]:
			return nil, fmt.Errorf("%w: webhook %q subscribes to %s, not to this event's type %s", ErrInvalid, webhookID, h.Type, typ)
		}
		return []string{webhookID}, nil
	}
	var targets []string
	for id, h := range o.hooks {
		if h.Type == typ || has[id] {
			targets = append(targets, id)
		}
	}
	return targets, nil
}

// commitRequeued finishes the writes of a replay or redelivery: on scanErr
// it discards the writes not yet committed; otherwise it commits them and
// only then hands the lanes to the dispatcher, so that nothing is
// attempted that is not stored.
//
// A large requeue is written in several transactions (txnWriter), and
// those committed before a cancellation (client gone, execution timeout)
// or a failure are durable: their deliveries are PENDING in the store, so
// they are handed to the dispatcher too (dispatchStored) rather than left
// for the next restart.
func (o *Outbox) commitRequeued(w *txnWriter, scanErr error, lanes []laneEntry, what string) error {
	if scanErr != nil {
		w.discard()
		if w.pending > 0 {
			_ = w.commit() // waits for the parts already committed
			o.dispatchStored(lanes)
		}
		return scanErr
	}
	if err := w.commit(); err != nil {
		if w.pending > 0 {
			o.dispatchStored(lanes)
		}
		return fmt.Errorf("outbox: queueing %s: %w", what, err)
	}
	o.disp.AddMany(lanes)
	return nil
}

// dispatchStored hands the dispatcher those of lanes whose entries are in
// the store.
func (o *Outbox) dispatchStored(lanes []laneEntry) {
	stored := make([]laneEntry, 0, len(lanes))
	err := o.db.View(func(txn *badger.Txn) error {
		for _, l := range lanes {
			_, err := txn.Get(laneKey(l.WebhookID, l.Subject, l.Item.Seq))
			switch {
			case err == nil:
				stored = append(stored, l)
			case !errors.Is(err, badger.ErrKeyNotFound):
				return err
			}
		}
		return nil
	})
	if err != nil {
		o.log.Error("reading back a partly written requeue failed; its deliveries go out after the next restart", "err", err)
	}
	o.disp.AddMany(stored)
}
