package outbox

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// runWorker performs attempts handed out by the dispatcher until Close.
func (o *Outbox) runWorker(jobs <-chan job) {
	defer o.workersWG.Done()
	for j := range jobs {
		o.attempt(j)
	}
}

// recording is an attempt whose records are queued for the group committer.
// The worker that made the attempt moves on at once; runRecorder finishes
// the attempt (metrics, webhook health, releasing the lane) once the records
// are durable. The lane stays busy until then, whatever the outcome: the
// next event of a subject is attempted only once the store says the one
// before it is delivered or given up. Releasing earlier would let a crash
// in between send the earlier event again after the later one, and a
// receiver that does not deduplicate would see a subject's state go back.
type recording struct {
	req     *commitRequest
	lane    *lane
	whID    string
	seq     uint64
	ev      *eventRecord
	rec     deliveryRecord
	res     sendResult
	errText string
	outcome laneOutcome
	now     time.Time
}

// maxRecording bounds the attempts waiting for their records to be durable;
// workers wait when it is reached.
const maxRecording = 4096

// runRecorder finishes recorded attempts in the order they were queued,
// which is the order their batches become durable. It exits when Close has
// stopped the workers and every queued attempt is finished.
func (o *Outbox) runRecorder() {
	defer o.recorderWG.Done()
	for r := range o.recording {
		o.recorded(r, <-r.req.done)
	}
}

// storeRetryDelay is how long a lane waits after the store itself failed,
// so that a broken disk does not turn into a busy loop.
const storeRetryDelay = 5 * time.Second

// attempt makes one delivery attempt of a lane's head and records it.
func (o *Outbox) attempt(j job) {
	l, seq := j.lane, j.item.seq
	whID, subject := l.id.webhookID, l.id.subject
	var ev eventRecord
	var rec deliveryRecord
	found, err := o.readPending(seq, whID, subject, j.item.due, &ev, &rec)
	if err != nil {
		o.log.Error("reading a pending delivery failed; retrying later", "webhook", whID, "event_seq", seq, "err", err)
		o.disp.finish(l, laneRetry, o.now().Add(storeRetryDelay))
		return
	}
	if !found {
		// Deleted by retention or an admin call, or no longer pending: the
		// lane entry is stale.
		o.dropLaneKey(whID, subject, seq)
		o.disp.finish(l, laneDone, time.Time{})
		return
	}
	hook := o.webhookCopy(whID)
	if hook == nil {
		o.dropLaneKey(whID, subject, seq)
		o.disp.finish(l, laneDone, time.Time{})
		return
	}
	if hook.Status != Enabled {
		o.disp.finish(l, laneRelease, time.Time{})
		return
	}
	if due := time.Unix(0, j.item.due); rec.NextAttemptAt.After(due) {
		// The stored schedule is later than the in-memory one (e.g. a
		// Retry-After written before a restart); honour the store.
		o.disp.finish(l, laneRetry, rec.NextAttemptAt)
		return
	}

	sentAt := o.now()
	res := o.sender.send(o.abortCtx, &hook.Webhook, ev.ID, ev.Payload, sentAt)
	if o.abortCtx.Err() != nil {
		// Cancelled by shutdown: not the receiver's fault, so not counted;
		// the delivery is still PENDING and is retried after restart.
		o.disp.finish(l, laneRelease, time.Time{})
		return
	}
	now := o.now()
	rec.Attempts++
	rec.LastResponseStatus = res.status
	outcome := laneDone
	switch {
	case res.ok():
		rec.State, rec.NextAttemptAt = Succeeded, time.Time{}
	case rec.Attempts > len(o.delivery.RetrySchedule):
		rec.State, rec.NextAttemptAt = Failed, time.Time{}
	default:
		rec.NextAttemptAt = now.Add(o.retryDelay(rec.Attempts, res.retryAfter))
		outcome = laneRetry
	}
	entry := &Log{
		WebhookID:      whID,
		EventID:        ev.ID,
		Type:           ev.Type,
		URL:            hook.URL,
		CreatedAt:      now.UTC(),
		ResponseStatus: res.status,
		Request:        string(ev.Payload),
		Attempt:        rec.Attempts,
		Duration:       res.duration,
		ResponseBody:   res.body,
		Succeeded:      res.ok(),
	}
	if res.err != nil {
		entry.Error = res.err.Error()
	}
	r := &recording{lane: l, whID: whID, seq: seq, ev: &ev, rec: rec, res: res, errText: entry.Error, outcome: outcome, now: now}
	r.req = o.queueAttempt(whID, func(w entrySink) error {
		if err := w.set(badger.NewEntry(deliveryKey(seq, whID), rec.marshal())); err != nil {
			return err
		}
		lk := laneKey(whID, subject, seq)
		if outcome == laneDone {
			if err := w.delete(lk); err != nil {
				return err
			}
		} else if err := w.set(badger.NewEntry(lk, laneValue{NextAttemptAt: rec.NextAttemptAt, ObservedAt: ev.ObservedAt}.marshal())); err != nil {
			return err
		}
		return o.writeLog(w, entry)
	})
	o.recording <- r
}

// recorded finishes an attempt once its records are durable (werr nil) or
// failed to be written.
func (o *Outbox) recorded(r *recording, werr error) {
	l, ev, rec, res, now := r.lane, r.ev, &r.rec, &r.res, r.now
	finish := func(o2 laneOutcome, due time.Time) { o.disp.finish(l, o2, due) }
	whID := r.whID
	if errors.Is(werr, ErrNotFound) {
		finish(laneDone, time.Time{}) // deleted while we were sending
		return
	}
	if werr != nil {
		o.log.Error("recording a delivery attempt failed; it will be attempted again", "webhook", whID, "event", ev.ID, "err", werr)
		finish(laneRetry, now.Add(storeRetryDelay))
		return
	}

	o.observeAttempt(whID, ev, res, rec.State == Failed, now)
	if rec.State == Failed {
		o.log.Warn("delivery failed after its last retry", "webhook", whID, "event", ev.ID, "attempts", rec.Attempts, "err", r.errText)
	} else {
		o.log.Debug("delivery attempt", "webhook", whID, "event", ev.ID, "attempt", rec.Attempts, "status", res.status, "ok", res.ok())
	}
	o.recordHealth(whID, res.ok(), res.status == 410, now)
	finish(r.outcome, rec.NextAttemptAt)
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

// retryDelay is the delay before the retry following attempt n (1-based):
// the schedule's entry with ± jitter, or a longer Retry-After (capped).
func (o *Outbox) retryDelay(n int, retryAfter time.Duration) time.Duration {
	d := o.delivery.RetrySchedule[n-1]
	if j := o.delivery.Jitter; j > 0 && d > 0 {
		d = time.Duration(float64(d) * (1 + j*(2*rand.Float64()-1)))
	}
	if retryAfter > d {
		d = min(retryAfter, maxRetryAfter)
	}
	return d
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
	if err := w.set(badger.NewEntry(logKey(seq), marshalLog(l))); err != nil {
		return err
	}
	if err := w.set(badger.NewEntry(logByWebhookKey(l.WebhookID, seq), nil)); err != nil {
		return err
	}
	return w.set(badger.NewEntry(logByEventKey(l.EventID, seq), nil))
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
