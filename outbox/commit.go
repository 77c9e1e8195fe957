package outbox

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/eventtap/eventtap/rules"
)

// commitRequest is one Commit call waiting for its batch to be durable.
type commitRequest struct {
	events []rules.Event
	done   chan error
}

// maxBatchEvents bounds one group-commit batch so that a burst cannot build
// an arbitrarily large transaction in memory.
const maxBatchEvents = 8192

// Commit makes events durable: it returns nil once they (with their
// delivery records) are written and, with storage.sync_writes, synced to
// disk. Events with a State are emitted only
// when the value changed (see SPEC §3). Many concurrent callers share one
// batch and one sync. It returns ErrClosed once Close has begun; if ctx ends
// first it returns ctx's error, but the events may still be committed.
// Commit is safe for concurrent use.
func (o *Outbox) Commit(ctx context.Context, events []rules.Event) error {
	if len(events) == 0 {
		return nil
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	req := &commitRequest{events: events, done: make(chan error, 1)}
	o.closeMu.RLock()
	if o.closed {
		o.closeMu.RUnlock()
		return ErrClosed
	}
	select {
	case o.queue <- req:
	case <-ctx.Done():
		o.closeMu.RUnlock()
		return ctx.Err()
	}
	o.closeMu.RUnlock()
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// runCommitter is the single writer of events: it takes everything queued,
// commits it as one batch and acknowledges every waiter. It exits when Close
// closes the queue, after writing what was already queued.
func (o *Outbox) runCommitter() {
	defer o.committerWG.Done()
	b := &batch{}
	for req := range o.queue {
		b.reset()
		b.add(req)
	drain:
		for b.events < maxBatchEvents {
			select {
			case r, ok := <-o.queue:
				if !ok {
					break drain
				}
				b.add(r)
			default:
				break drain
			}
		}
		err := o.commitBatch(b)
		for _, r := range b.reqs {
			r.done <- err
		}
	}
}

// batch holds the state of one group commit; it is reused between batches
// to keep the hot path allocation-light.
type batch struct {
	reqs   []*commitRequest
	events int
	// states holds `changed` values written earlier in this batch, so that a
	// key seen twice in one batch compares against the first occurrence.
	states map[string][]byte
	lanes  []laneEntry
	emits  []emitted
	buf    []byte
}

type emitted struct{ typ, rule string }

type laneEntry struct {
	webhookID, subject string
	item               pendingItem
}

func (b *batch) reset() {
	clear(b.reqs)
	b.reqs, b.events = b.reqs[:0], 0
	if b.states == nil {
		b.states = map[string][]byte{}
	}
	clear(b.states)
	b.lanes, b.emits = b.lanes[:0], b.emits[:0]
}

func (b *batch) add(r *commitRequest) {
	b.reqs = append(b.reqs, r)
	b.events += len(r.events)
}

// txnWriter writes entries into as many transactions as Badger's size limit
// requires. Transactions beyond the first are committed asynchronously so
// that Badger's write loop can merge them into the same sync; wait returns
// when all are durable.
type txnWriter struct {
	db      *badger.DB
	txn     *badger.Txn
	pending int
	errs    chan error
	first   error
}

func newTxnWriter(db *badger.DB) *txnWriter {
	return &txnWriter{db: db, txn: db.NewTransaction(true), errs: make(chan error, 64)}
}

func (w *txnWriter) set(e *badger.Entry) error {
	err := w.txn.SetEntry(e)
	if errors.Is(err, badger.ErrTxnTooBig) {
		w.flush()
		err = w.txn.SetEntry(e)
	}
	return err
}

func (w *txnWriter) delete(key []byte) error {
	err := w.txn.Delete(key)
	if errors.Is(err, badger.ErrTxnTooBig) {
		w.flush()
		err = w.txn.Delete(key)
	}
	return err
}

func (w *txnWriter) flush() {
	w.pending++
	if w.pending > cap(w.errs) {
		// Bound the number of outstanding callbacks.
		if err := <-w.errs; err != nil && w.first == nil {
			w.first = err
		}
		w.pending--
	}
	w.txn.CommitWith(func(err error) { w.errs <- err })
	w.txn = w.db.NewTransaction(true)
}

func (w *txnWriter) commit() error {
	err := w.txn.Commit()
	for range w.pending {
		if e := <-w.errs; e != nil && w.first == nil {
			w.first = e
		}
	}
	return errors.Join(w.first, err)
}

func (w *txnWriter) discard() { w.txn.Discard() }

// commitBatch assigns sequences, applies `changed` state, fans out and
// writes the batch durably. On error nothing of the batch is acknowledged,
// but its sequence numbers are never reused: a split batch may have been
// written in part, and at-least-once delivery tolerates such an
// unacknowledged event being delivered, not one event overwriting another.
func (o *Outbox) commitBatch(b *batch) error {
	start := time.Now()
	now := o.now().UTC()
	o.whMu.RLock()
	defer o.whMu.RUnlock()

	w := newTxnWriter(o.db)
	seq := o.seq
	err := func() error {
		for _, req := range b.reqs {
			for i := range req.events {
				ev := &req.events[i]
				change, emit, err := o.applyState(w, b, ev, now)
				if err != nil {
					return err
				}
				if !emit {
					continue
				}
				seq++
				if err := o.writeEvent(w, b, ev, seq, change, now); err != nil {
					return err
				}
			}
		}
		if seq != o.seq {
			return w.set(badger.NewEntry(keyMetaSeq, u64(nil, seq)))
		}
		return nil
	}()
	if err != nil {
		w.discard()
		_ = w.commit() // wait for parts already handed to Badger
		o.seq = seq
		return fmt.Errorf("outbox: writing batch: %w", err)
	}
	err = w.commit()
	o.seq = seq
	if err != nil {
		return fmt.Errorf("outbox: committing batch: %w", err)
	}
	o.metrics.commitDuration.Observe(time.Since(start).Seconds())
	for _, e := range b.emits {
		o.metrics.events.WithLabelValues(e.typ, e.rule).Inc()
	}
	if len(b.lanes) > 0 {
		o.disp.addMany(b.lanes)
	}
	return nil
}

// change is the `change` member of a payload.
type change struct{ previous, current []byte }

// applyState decides whether ev is emitted. Events without State always
// are. For `changed` rules, the first sighting only records the value; an
// equal value emits nothing; a different one emits with the change. The
// stored value carries the time it was written so that retention can let
// state of long-quiet subjects expire (see stateTTL).
func (o *Outbox) applyState(w *txnWriter, b *batch, ev *rules.Event, now time.Time) (*change, bool, error) {
	if ev.State == nil {
		return nil, true, nil
	}
	cur := compactJSON(ev.State.Value)
	var prev []byte
	var prevWritten time.Time
	found := false
	if v, ok := b.states[ev.State.Key]; ok {
		prev, found, prevWritten = v, true, now
	} else {
		item, err := w.txn.Get(stateKey(ev.State.Key))
		switch {
		case err == nil:
			v, verr := item.ValueCopy(nil)
			if verr != nil {
				return nil, false, verr
			}
			if len(v) >= 8 {
				prevWritten = time.Unix(int64(beUint64(v[:8])), 0)
				prev, found = v[8:], true
			}
		case !errors.Is(err, badger.ErrKeyNotFound):
			return nil, false, err
		}
	}
	if found && bytes.Equal(prev, cur) {
		// Refresh now and then so that a subject seen often keeps its state.
		if now.Sub(prevWritten) > o.stateRefresh() {
			return nil, false, o.writeState(w, b, ev.State.Key, cur, now)
		}
		return nil, false, nil
	}
	if err := o.writeState(w, b, ev.State.Key, cur, now); err != nil {
		return nil, false, err
	}
	if !found {
		return nil, false, nil
	}
	return &change{previous: prev, current: cur}, true, nil
}

// stateTTL is how long the value of a `changed` rule is kept after it was
// last written: long enough that order lifecycles spanning weeks still fire,
// short enough that the store of a busy shop does not grow forever.
func (o *Outbox) stateTTL() time.Duration     { return 4 * max(o.storage.Retention, 24*time.Hour) }
func (o *Outbox) stateRefresh() time.Duration { return o.stateTTL() / 4 }

func (o *Outbox) writeState(w *txnWriter, b *batch, key string, value []byte, now time.Time) error {
	b.states[key] = value
	v := u64(make([]byte, 0, 8+len(value)), uint64(now.Unix()))
	v = append(v, value...)
	return w.set(badger.NewEntry(stateKey(key), v).WithTTL(o.stateTTL()))
}

func (o *Outbox) writeEvent(w *txnWriter, b *batch, ev *rules.Event, seq uint64, ch *change, now time.Time) error {
	observed := ev.ObservedAt
	if observed.IsZero() {
		observed = now
	}
	rec := eventRecord{
		ID:          newID(eventIDPrefix, seq),
		Type:        ev.Type,
		Subject:     ev.Subject,
		Rule:        ev.Rule,
		ObservedAt:  observed.UTC(),
		CommittedAt: now,
	}
	b.buf = appendPayload(b.buf[:0], rec.ID, rec.Type, rec.ObservedAt, rec.Subject, rec.Rule, ev.Data, ch)
	rec.Payload = b.buf
	if err := w.set(badger.NewEntry(eventKey(seq), rec.marshal(nil))); err != nil {
		return err
	}
	if err := w.set(badger.NewEntry(subjectKey(rec.Subject, seq), nil)); err != nil {
		return err
	}
	b.emits = append(b.emits, emitted{rec.Type, rec.Rule})
	if subs := o.subs[rec.Type]; len(subs) > 0 {
		d := (&deliveryRecord{State: Pending, NextAttemptAt: now}).marshal()
		lv := laneValue{NextAttemptAt: now, ObservedAt: rec.ObservedAt}.marshal()
		for _, wh := range subs {
			if err := w.set(badger.NewEntry(deliveryKey(seq, wh), d)); err != nil {
				return err
			}
			if err := w.set(badger.NewEntry(laneKey(wh, rec.Subject, seq), lv)); err != nil {
				return err
			}
			b.lanes = append(b.lanes, laneEntry{wh, rec.Subject, pendingItem{seq: seq, due: now.UnixNano(), observed: rec.ObservedAt.UnixNano()}})
		}
	}
	return nil
}

// timestampLayout is RFC 3339 with milliseconds, always in UTC ("Z").
const timestampLayout = "2006-01-02T15:04:05.000Z"

// appendPayload builds the delivered JSON exactly as SPEC §4 shows it, with
// members in that order; `change` only for `changed` rules.
func appendPayload(buf []byte, id, typ string, ts time.Time, subject, rule string, data json.RawMessage, ch *change) []byte {
	buf = append(buf, `{"id":`...)
	buf = appendJSONString(buf, id)
	buf = append(buf, `,"type":`...)
	buf = appendJSONString(buf, typ)
	buf = append(buf, `,"timestamp":"`...)
	buf = ts.UTC().AppendFormat(buf, timestampLayout)
	buf = append(buf, `","subject":`...)
	buf = appendJSONString(buf, subject)
	buf = append(buf, `,"rule":`...)
	buf = appendJSONString(buf, rule)
	buf = append(buf, `,"data":`...)
	buf = appendJSONValue(buf, data)
	if ch != nil {
		buf = append(buf, `,"change":{"previous":`...)
		buf = appendJSONValue(buf, ch.previous)
		buf = append(buf, `,"current":`...)
		buf = appendJSONValue(buf, ch.current)
		buf = append(buf, '}')
	}
	return append(buf, '}')
}

func appendJSONString(buf []byte, s string) []byte {
	b, _ := json.Marshal(s) // a string always marshals
	return append(buf, b...)
}

// appendJSONValue appends raw JSON, compacted; data that is not valid JSON
// (which the rules engine should never produce) is sent as a JSON string
// rather than corrupting the whole payload.
func appendJSONValue(buf []byte, v []byte) []byte {
	if len(bytes.TrimSpace(v)) == 0 {
		return append(buf, "null"...)
	}
	out := bytes.NewBuffer(buf)
	if err := json.Compact(out, v); err != nil {
		out.Truncate(len(buf))
		return appendJSONString(out.Bytes(), string(v))
	}
	return out.Bytes()
}

// compactJSON normalizes a `changed` value so that formatting differences
// are not mistaken for changes.
func compactJSON(v []byte) []byte {
	var out bytes.Buffer
	if len(bytes.TrimSpace(v)) == 0 {
		return []byte("null")
	}
	if err := json.Compact(&out, v); err != nil {
		return bytes.Clone(v)
	}
	return out.Bytes()
}
