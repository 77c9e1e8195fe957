package outbox

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/eventtap/eventtap/delivery"
)

// store is the Badger-backed delivery.Store: it reads the head of a lane
// from the q/, d/ and e/ keys and records each attempt through the group
// committer, so that attempt records share syncs with events.
type store struct{ o *Outbox }

// attemptState is what Prepare read, carried to Record.
type attemptState struct {
	ev  eventRecord
	rec deliveryRecord
}

// Prepare implements delivery.Store.
func (s store) Prepare(_ context.Context, whID, subject string, it delivery.Item) (*delivery.Attempt, delivery.Outcome, time.Time) {
	o := s.o
	seq := it.Seq
	st := &attemptState{}
	ev, rec := &st.ev, &st.rec
	var found bool
	var err error
	if cached, ok := o.recent.take(seq, whID); ok {
		// Committed moments ago and not attempted since: nothing to read.
		*ev, *rec, found = cached, deliveryRecord{State: Pending, NextAttemptAt: cached.CommittedAt}, true
	} else {
		found, err = o.readPending(seq, whID, subject, it.Due, ev, rec)
	}
	if err != nil {
		o.log.Error("reading a pending delivery failed; retrying later", "webhook", whID, "event_seq", seq, "err", err)
		return nil, delivery.Retry, o.now().Add(delivery.StoreRetryDelay)
	}
	if !found {
		// Deleted by retention or an admin call, or no longer pending: the
		// lane entry is stale.
		o.dropLaneKey(whID, subject, seq)
		return nil, delivery.Done, time.Time{}
	}
	hook := o.webhookCopy(whID)
	if hook == nil {
		o.dropLaneKey(whID, subject, seq)
		return nil, delivery.Done, time.Time{}
	}
	if hook.Status != Enabled {
		return nil, delivery.Release, time.Time{}
	}
	if due := time.Unix(0, it.Due); rec.NextAttemptAt.After(due) {
		// The stored schedule is later than the in-memory one (e.g. a
		// Retry-After written before a restart); honour the store.
		return nil, delivery.Retry, rec.NextAttemptAt
	}
	return &delivery.Attempt{WebhookID: whID, Subject: subject, Item: it,
		Target: hook.target(), EventID: ev.ID, Payload: ev.Payload, Number: rec.Attempts, State: st}, 0, time.Time{}
}

// Record implements delivery.Store: it queues the attempt's records for the
// group committer; once they are durable, runRecorder counts the attempt,
// tracks the webhook's health and calls done.
func (s store) Record(_ context.Context, a *delivery.Attempt, done func(error)) {
	o := s.o
	st := a.State.(*attemptState)
	ev, rec, res, now := &st.ev, st.rec, &a.Result, a.At
	whID, subject, seq := a.WebhookID, a.Subject, a.Item.Seq
	rec.Attempts = a.Number
	rec.LastResponseStatus = res.Status
	switch {
	case res.OK():
		rec.State, rec.NextAttemptAt = Succeeded, time.Time{}
	case a.Outcome == delivery.Done:
		rec.State, rec.NextAttemptAt = Failed, time.Time{}
	default:
		rec.NextAttemptAt = a.Next
	}
	entry := attemptLog(ev, a)
	req := o.queueAttempt(whID, func(w entrySink) error {
		if err := w.set(badger.NewEntry(deliveryKey(seq, whID), rec.marshal())); err != nil {
			return err
		}
		lk := laneKey(whID, subject, seq)
		if a.Outcome == delivery.Done {
			if err := w.delete(lk); err != nil {
				return err
			}
		} else if err := w.set(badger.NewEntry(lk, laneValue{NextAttemptAt: rec.NextAttemptAt, ObservedAt: ev.ObservedAt}.marshal())); err != nil {
			return err
		}
		return o.writeLog(w, entry)
	})
	o.recording <- recording{req: req, finish: func(werr error) {
		if errors.Is(werr, ErrNotFound) {
			done(fmt.Errorf("%w: %w", delivery.ErrGone, werr)) // deleted while we were sending
			return
		}
		if werr != nil {
			o.log.Error("recording a delivery attempt failed; it will be attempted again", "webhook", whID, "event", ev.ID, "err", werr)
			done(werr)
			return
		}
		o.observeAttempt(whID, ev, res, rec.State == Failed, now)
		if rec.State == Failed {
			o.log.Warn("delivery failed after its last retry", "webhook", whID, "event", ev.ID, "attempts", rec.Attempts, "err", entry.Error)
		} else {
			o.log.Debug("delivery attempt", "webhook", whID, "event", ev.ID, "attempt", rec.Attempts, "status", res.Status, "ok", res.OK())
		}
		o.recordHealth(whID, res.OK(), res.Status == 410, now)
		done(nil)
	}}
}

// recording is an attempt whose records are queued for the group
// committer; finish runs once they are durable or failed to be written.
type recording struct {
	req    *commitRequest
	finish func(werr error)
}

// maxRecording bounds the attempts waiting for their records to be
// durable; workers wait (in Record) when it is reached.
const maxRecording = 4096

// runRecorder finishes recorded attempts in the order they were queued,
// which is the order their batches become durable. It runs apart from the
// committer because finishing may write (recordHealth disabling a
// webhook), which must not hold up the batches. It exits when Close has
// closed o.recording, after the dispatcher has stopped.
func (o *Outbox) runRecorder() {
	defer o.recorderWG.Done()
	for r := range o.recording {
		r.finish(<-r.req.done)
	}
}

// attemptLog is the log of attempt a of event ev.
func attemptLog(ev *eventRecord, a *delivery.Attempt) *Log {
	res := &a.Result
	l := &Log{
		WebhookID:      a.WebhookID,
		EventID:        ev.ID,
		Type:           ev.Type,
		URL:            a.Target.URL,
		CreatedAt:      a.At.UTC(),
		ResponseStatus: res.Status,
		Request:        string(ev.Payload),
		Attempt:        a.Number,
		Duration:       res.Duration,
		ResponseBody:   res.Body,
		Succeeded:      res.OK(),
	}
	if res.Err != nil {
		l.Error = res.Err.Error()
	}
	return l
}

// readPending reads the event and delivery record of a lane's head; found
// is false when the delivery is gone or no longer pending. It reads from the
// shared snapshot, and from a fresh transaction only when the snapshot does
// not show the delivery pending (it may predate an admin re-queue or a
// reload).
//
// A snapshot that shows the delivery due later than the in-memory due time
// may predate an eventRedeliver that made it due now, so the fresh
// transaction decides then too.
func (o *Outbox) readPending(seq uint64, whID, subject string, due int64, ev *eventRecord, rec *deliveryRecord) (found bool, err error) {
	read := func(txn *badger.Txn) error {
		*ev, *rec = eventRecord{}, deliveryRecord{}
		if err := getRecord(txn, eventKey(seq), ev.unmarshal); err != nil {
			return err
		}
		return getRecord(txn, deliveryKey(seq, whID), rec.unmarshal)
	}
	check := func(err error) (bool, error) {
		switch {
		case errors.Is(err, badger.ErrKeyNotFound):
			return false, nil
		case err != nil:
			return false, err
		}
		return rec.State == Pending && ev.Subject == subject, nil
	}
	if sn := o.snaps.acquire(); sn != nil {
		found, err = check(read(sn.txn))
		o.snaps.release(sn)
		if err != nil || (found && !rec.NextAttemptAt.After(time.Unix(0, due))) {
			return found, err
		}
	}
	return check(o.db.View(read))
}

func (o *Outbox) dropLaneKey(whID, subject string, seq uint64) {
	// Not removed on a full disk: a stale key, which the next reload or
	// restart meets again.
	if err := o.dbUpdate(func(txn *badger.Txn) error { return txn.Delete(laneKey(whID, subject, seq)) }); err != nil && !errors.Is(err, ErrNoSpace) {
		o.log.Warn("removing a stale lane entry failed", "webhook", whID, "err", err)
	}
}

// writeLog assigns the log its sequence and id and writes it with its
// indexes.
func (o *Outbox) writeLog(w entrySink, l *Log) error {
	seq := o.logSeq.Add(1)
	l.ID = newID(logIDPrefix, seq)
	return writeLogAt(w, ownLogs, seq, l)
}

// writeLogAt writes log l numbered seq in space, with its indexes.
func writeLogAt(w entrySink, space logSpace, seq uint64, l *Log) error {
	keys := space.keys(l, seq)
	if err := w.set(badger.NewEntry(keys[0], marshalLog(l))); err != nil {
		return err
	}
	for _, k := range keys[1:] {
		if err := w.set(badger.NewEntry(k, nil)); err != nil {
			return err
		}
	}
	return nil
}

// recordHealth tracks disable_after and 410 answers. The common case (a
// success after a success) only takes the read lock.
func (o *Outbox) recordHealth(whID string, ok, gone bool, now time.Time) {
	o.whMu.RLock()
	h := o.hooks[whID]
	needed := h != nil && (gone || ok != h.FailingSince.IsZero() ||
		(!ok && now.Sub(h.FailingSince) >= o.delivery.DisableAfter))
	o.whMu.RUnlock()
	if !needed {
		return
	}
	o.whMu.Lock()
	defer o.whMu.Unlock()
	h = o.hooks[whID]
	if h == nil {
		return
	}
	next := *h
	switch {
	case ok:
		next.FailingSince = time.Time{}
	case next.FailingSince.IsZero():
		next.FailingSince = now
	}
	var reason string
	switch {
	case h.Status != Enabled:
	case gone:
		reason = fmt.Sprintf("the receiver answered 410 Gone at %s; update the webhook's status to ENABLED to resume deliveries", now.UTC().Format(time.RFC3339))
	case !ok && now.Sub(next.FailingSince) >= o.delivery.DisableAfter:
		reason = fmt.Sprintf("every delivery attempt failed for %s (since %s, delivery.disable_after); update the webhook's status to ENABLED to resume deliveries",
			now.Sub(next.FailingSince).Round(time.Second), next.FailingSince.UTC().Format(time.RFC3339))
	}
	if reason != "" {
		next.Status = Disabled
		next.DisabledReason = &reason
		next.UpdatedAt = now.UTC()
	}
	if err := o.putWebhookLocked(&next); err != nil {
		o.log.Error("saving webhook health failed", "webhook", whID, "err", err)
		return
	}
	if reason != "" {
		o.log.Warn("webhook disabled", "webhook", whID, "reason", reason)
	}
}

// getRecord reads key into a record's unmarshal method.
func getRecord(txn *badger.Txn, key []byte, unmarshal func([]byte) error) error {
	item, err := txn.Get(key)
	if err != nil {
		return err
	}
	v, err := item.ValueCopy(nil)
	if err != nil {
		return err
	}
	return unmarshal(v)
}

// target is where deliveries to the webhook go and what signs them.
func (h *webhookRecord) target() delivery.Target {
	return delivery.Target{URL: h.URL, Secret: h.Secret, Previous: h.PreviousSecrets}
}

// reloadPending loads pending lane entries (q/ keys) from the store into
// the dispatcher's memory, up to its limit (see delivery.Reload). Called at
// Open and whenever an overflowing dispatcher has drained to half its limit
// (then on its own goroutine, so that workers are kept busy meanwhile).
//
// The scan's snapshot may still show the key of a head whose final record
// became durable, and whose lane moved on, after the snapshot was taken.
// Such a stale entry is loaded again, but never sent: the worker reads the
// delivery from a snapshot at least as new as that record, finds it no
// longer pending and drops the entry.
func (o *Outbox) reloadPending() error {
	r := o.disp.StartReload()
	webhook := func(id string) (string, bool) {
		// Share the cached id string rather than one per lane.
		if h := o.hooks[id]; h != nil {
			return h.ID, true
		}
		return "", false
	}
	err := o.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixLane})
		defer it.Close()
		chunk := make([]laneEntry, 0, 256)
		flush := func() error {
			o.whMu.RLock()
			r.Load(chunk, webhook)
			o.whMu.RUnlock()
			chunk = chunk[:0]
			select {
			case <-o.stop:
				return ErrClosed
			default:
				return nil
			}
		}
		for it.Seek(prefixLane); it.ValidForPrefix(prefixLane); it.Next() {
			wh, subject, seq, ok := parseLaneKey(it.Item().Key())
			if !ok {
				continue
			}
			e := laneEntry{WebhookID: wh, Subject: subject, Item: delivery.Item{Seq: seq}}
			if !r.Full() {
				var v laneValue
				if err := it.Item().Value(v.unmarshal); err != nil {
					return err
				}
				e.Item.Due, e.Item.Observed = v.NextAttemptAt.UnixNano(), v.ObservedAt.UnixNano()
			}
			chunk = append(chunk, e)
			if len(chunk) == cap(chunk) {
				if err := flush(); err != nil {
					return err
				}
			}
		}
		return flush()
	})
	r.End(err)
	return err
}
