package outbox

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/eventtap/eventtap/delivery"
	"github.com/eventtap/eventtap/rules"
)

// commitRequest is one Commit call, or one delivery attempt's records,
// waiting for its batch to be durable.
type commitRequest struct {
	events []rules.Event
	// attempt, when set, writes a delivery attempt's records instead of
	// events; webhookID names the webhook they belong to.
	attempt   func(w entrySink) error
	webhookID string
	err       error // this request's own outcome (set by the committer)
	done      chan error
	shared    sharedDecisions // `changed` decided by the cluster (cluster_seam.go)
	seq       uint64          // the last event sequence of the request, for the relay (cluster_relay.go)
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
	o.decideShared(ctx, req)
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
		if err == nil {
			o.waitRelayed(ctx, req.seq)
		}
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// queueAttempt queues an attempt's records for the group committer, to share
// a sync with the events and other attempts of the same batch; the request's
// done channel receives the outcome once they are durable. The outcome is
// ErrNotFound, with nothing written, when the webhook was deleted meanwhile:
// the committer checks under whMu, which orders the write before any
// DeleteWebhook, whose scans then remove what was written. Workers call it
// until Close has stopped them, so the attempt queue outlives the commit
// queue.
func (o *Outbox) queueAttempt(whID string, fn func(w entrySink) error) *commitRequest {
	req := &commitRequest{attempt: fn, webhookID: whID, done: make(chan error, 1)}
	o.attempts <- req
	return req
}

// entrySink takes the writes of one record set: a txnWriter, or a batch
// collecting entries for the group committer.
type entrySink interface {
	set(e *badger.Entry) error
	delete(key []byte) error
}

// committer is the state owned by runCommitter. Batches are pipelined: the
// next batch is assembled (sequences, `changed` state, payloads, fan-out,
// encoding) while the previous one is being written and synced, and it is
// handed to Badger only once the previous one is durable, so that batches
// become durable, are acknowledged and reach the dispatcher in sequence
// order, and a failed batch can still be reassembled behind.
type committer struct {
	o *Outbox
	// inflight is the batch handed to Badger and not yet durable; done
	// receives its outcome from the commit callback.
	inflight *batch
	done     chan error
	free     []*batch
	seq      uint64 // last sequence assigned (o.seq is the last one handed to Badger)
	failures int    // batches that failed, to notice one failing under b

	queue, attempts chan *commitRequest // nil once closed

	// `changed` values are read from snap, a read-only snapshot taken when
	// nothing of ours was in flight, overlaid by states, which holds every
	// value written since snap was taken (in flight or being assembled).
	// The committer is the only writer of r/ keys, so this is the latest
	// value without waiting for the batch in flight (a new Badger
	// transaction would wait for it).
	snap      *badger.Txn
	snapTaken time.Time
	states    map[string]stateValue
	stale     bool // states may hold values that were never written
}

type stateValue struct {
	value   []byte
	written time.Time
}

// maxStateOverlay bounds the `changed` values kept in memory before the
// snapshot is renewed (which waits for the batch in flight).
const maxStateOverlay = 16384

// maxSnapshotAge bounds how long a snapshot is kept: an old read timestamp
// keeps compactions from discarding overwritten versions.
const maxSnapshotAge = time.Second

// runCommitter is the single writer of events and delivery attempts: it
// takes everything queued, commits it as one batch and acknowledges every
// waiter once durable. It exits when Close has closed both queues, after
// writing what was already queued.
//
// While a batch is being written and synced, requests that arrive are
// assembled into the next batch right away, so that the CPU work overlaps
// the sync; the next batch is handed to Badger as soon as the previous one
// is durable, with everything queued by then.
func (o *Outbox) runCommitter() {
	defer o.committerWG.Done()
	c := &committer{o: o, done: make(chan error, 1), seq: o.seq, states: map[string]stateValue{},
		queue: o.queue, attempts: o.attempts}
	for c.queue != nil || c.attempts != nil {
		var done chan error
		if c.inflight != nil {
			done = c.done
		}
		var first *commitRequest
		select {
		case first = <-c.queue:
			if first == nil {
				c.queue = nil
			}
		case first = <-c.attempts:
			if first == nil {
				c.attempts = nil
			}
		case err := <-done:
			c.completed(err)
		}
		if first != nil {
			c.run(first)
		}
	}
	_ = c.wait()
	c.dropSnapshot()
	o.snaps.close() // the workers have stopped
}

// receive returns a queued request, or nil when none is queued (or the
// previous batch became durable, when block is set).
func (c *committer) receive(block bool) *commitRequest {
	var done chan error
	if block {
		done = c.done
	}
	for c.queue != nil || c.attempts != nil {
		var (
			r       *commitRequest
			src     *chan *commitRequest
			err     error
			durable bool
		)
		// Poll first: the default case is taken only when nothing is ready.
		select {
		case r = <-c.queue:
			src = &c.queue
		case r = <-c.attempts:
			src = &c.attempts
		case err = <-done:
			durable = true
		default:
			if !block {
				return nil
			}
			// Blocking: wait for a request or the batch in flight.
			select {
			case r = <-c.queue:
				src = &c.queue
			case r = <-c.attempts:
				src = &c.attempts
			case err = <-done:
				durable = true
			}
		}
		switch {
		case durable:
			c.completed(err)
			return nil
		case r == nil:
			*src = nil // closed
		default:
			return r
		}
	}
	return nil
}

// run builds a batch starting with first and hands it to Badger.
func (c *committer) run(first *commitRequest) {
	o := c.o
	b := c.newBatch()
	// Held until b is durable (released by finish), so that a webhook
	// deleted or disabled under the exclusive lock never receives
	// deliveries from a batch that started before.
	o.whMu.RLock()
	if c.snap != nil && time.Since(c.snapTaken) > maxSnapshotAge {
		c.dropSnapshot()
	}
	b.start = time.Now()
	b.now = o.now().UTC()
	c.add(b, first)
	// Keep assembling while the previous batch syncs.
	for c.inflight != nil && b.events < maxBatchEvents {
		r := c.receive(true)
		if r == nil {
			if c.queue == nil && c.attempts == nil {
				break // closing: wait below
			}
			continue // the previous batch is durable
		}
		c.add(b, r)
	}
	_ = c.wait() // the queues were closed, or b is full
	for b.events < maxBatchEvents {
		r := c.receive(false)
		if r == nil {
			break
		}
		c.add(b, r)
	}
	if b.prevFailed && b.hasState && b.err == nil {
		// The previous batch failed and b may have read `changed` values
		// that it was to write: assemble b again from what is stored.
		// Sequences already handed out are skipped, never reused.
		reqs := slices.Clone(b.reqs)
		b.recycle()
		for _, r := range reqs {
			c.add(b, r)
		}
	}
	if b.err == nil && c.seq != o.seq {
		b.units = append(b.units, len(b.writes))
		_ = b.set(badger.NewEntry(keyMetaSeq, u64(nil, c.seq)))
	}
	o.seq = c.seq
	if b.err == nil {
		b.err = o.space.check()
	}
	if b.err != nil {
		c.stale = true
		c.finish(b, fmt.Errorf("outbox: writing batch: %w", b.err), false)
		return
	}
	c.inflight = b
	c.write(b)
}

// completed records the outcome of the batch in flight.
func (c *committer) completed(err error) {
	c.free = append(c.free, c.inflight)
	c.inflight = nil
	if err != nil {
		// Its `changed` values were perhaps never written.
		c.stale = true
		c.failures++
	}
}

// wait waits for the batch in flight, if any.
func (c *committer) wait() error {
	if c.inflight == nil {
		return nil
	}
	err := <-c.done
	c.completed(err)
	return err
}

// add assembles one request into b: sequences, `changed` state, payloads
// and fan-out for events, or a delivery attempt's records. After an error
// b only collects requests, to fail them with it.
func (c *committer) add(b *batch, r *commitRequest) {
	o := c.o
	b.reqs = append(b.reqs, r)
	b.units = append(b.units, len(b.writes))
	if r.attempt != nil {
		b.events++
	} else {
		b.events += len(r.events)
	}
	if b.err != nil {
		return
	}
	if r.attempt != nil {
		if o.hooks[r.webhookID] == nil {
			r.err = ErrNotFound
			return
		}
		b.err = r.attempt(b)
		return
	}
	// Refused here rather than by Badger, which would fail the whole batch
	// (every exchange in it) over one key that is too long.
	for i := range r.events {
		if n := len(r.events[i].Subject); n == 0 || n > rules.MaxSubjectBytes {
			r.err = fmt.Errorf("outbox: event %d of rule %q: its subject has %d bytes; it must have 1 to %d: %w",
				i, r.events[i].Rule, n, rules.MaxSubjectBytes, ErrInvalid)
			return
		}
	}
	for i := range r.events {
		ev := &r.events[i]
		if ev.State != nil && !b.hasState {
			b.hasState = true
			failures := c.failures
			c.prepareStates()
			b.prevFailed = failures != c.failures
		}
		change, emit, err := c.applyState(b, ev, b.now)
		change, emit = r.shared.override(i, change, emit)
		if err != nil {
			b.err = err
			return
		}
		if ev.State != nil && r.shared == nil && o.cl.local.Load() {
			// Decided against this node's own value while the shared
			// state was unreachable: written back once it answers. The
			// copy in this batch outlives a restart before then (load).
			value := rules.CanonicalValue(ev.State.Value)
			if p, ok := unsharedPrefix(ev.State.Key); ok {
				if err := b.set(badger.NewEntry(u64(p, uint64(b.now.UnixNano())), value).WithTTL(o.stateTTL())); err != nil {
					b.err = err
					return
				}
			}
			o.keepUnshared(ev.State.Key, value, b.now)
		}
		if !emit {
			continue
		}
		c.seq++
		if err := o.writeEvent(b, ev, c.seq, change, b.now); err != nil {
			b.err = err
			return
		}
	}
	r.seq = c.seq
}

// write hands b's entries to Badger; finish runs when they are durable.
// A batch larger than one Badger transaction is split between its units
// (one exchange's events and states, one attempt's record, lane and log),
// never inside one, so that a crash between the parts cannot leave, say, a
// `changed` state without its event or a delivery record without its
// lane entry.
func (c *committer) write(b *batch) {
	db := c.o.db
	txn := db.NewTransaction(true)
	budget := newTxnBudget(db)
	for u := range b.units {
		start, end := b.units[u], len(b.writes)
		if u == 0 {
			start = 0 // nothing is written before the first unit; if it were, it goes with it
		}
		if u+1 < len(b.units) {
			end = b.units[u+1]
		}
		unit := b.writes[start:end]
		if budget.admit(unit) {
			// Rare (bursts of large events): earlier parts are committed
			// first; nothing of the batch is acknowledged before the last
			// part is durable.
			if err := txn.Commit(); err != nil {
				c.finish(b, fmt.Errorf("outbox: writing batch: %w", err), true)
				return
			}
			txn = db.NewTransaction(true)
		}
		for _, w := range unit {
			err := w.apply(txn)
			if errors.Is(err, badger.ErrTxnTooBig) {
				// One unit larger than a whole transaction (the budget
				// counts as Badger does, so only then): split it.
				if err = txn.Commit(); err == nil {
					txn = db.NewTransaction(true)
					budget.reset()
					err = w.apply(txn)
				}
			}
			if err != nil {
				txn.Discard()
				c.finish(b, fmt.Errorf("outbox: writing batch: %w", err), true)
				return
			}
		}
	}
	txn.CommitWith(func(err error) {
		if err != nil {
			err = fmt.Errorf("outbox: committing batch: %w", err)
		}
		c.finish(b, err, true)
	})
}

// txnBudget counts a transaction's writes as Badger's Txn.checkSize does,
// so that a writer can start a new transaction before a group of writes
// that must land together instead of learning from ErrTxnTooBig halfway
// through it.
type txnBudget struct {
	maxCount, maxSize, valueThreshold int64
	count, size                       int64
}

func newTxnBudget(db *badger.DB) txnBudget {
	return txnBudget{maxCount: db.MaxBatchCount(), maxSize: db.MaxBatchSize(), valueThreshold: db.Opts().ValueThreshold}
}

// cost is what Badger charges for ws: per entry its key, its value or a
// value pointer, two meta bytes and ten for the version.
func (t *txnBudget) cost(ws []write) (count, size int64) {
	for _, w := range ws {
		count++
		if w.del != nil {
			size += int64(len(w.del)) + 2 + 10
			continue
		}
		v := int64(len(w.e.Value))
		if v >= t.valueThreshold {
			v = 12
		}
		size += int64(len(w.e.Key)) + v + 2 + 10
	}
	return count, size
}

// admit counts ws into the transaction and reports whether they need a
// new one: they do not fit besides what the current one holds. ws always
// fit an empty one; a unit larger than a whole transaction is split by
// the caller on ErrTxnTooBig.
func (t *txnBudget) admit(ws []write) (startNew bool) {
	n, sz := t.cost(ws)
	if t.count > 0 && (t.count+n >= t.maxCount || t.size+sz >= t.maxSize) {
		t.count, t.size = n, sz
		return true
	}
	t.count, t.size = t.count+n, t.size+sz
	return false
}

func (t *txnBudget) reset() { t.count, t.size = 0, 0 }

// finish acknowledges b's requests, feeds the dispatcher and releases whMu.
// It runs on Badger's callback goroutine (or the committer's on failure);
// inflight says whether b was handed to Badger, whose outcome the
// committer then waits for.
func (c *committer) finish(b *batch, err error, inflight bool) {
	o := c.o
	if err == nil {
		// Before anything learns of b, so that readers of the snapshot see
		// b. Nothing of the committer's is in flight now: the next batch is
		// handed to Badger only after this one's outcome is received.
		o.snaps.renew(o.db)
		o.metrics.commitDuration.Observe(time.Since(b.start).Seconds())
		for _, e := range b.emits {
			o.metrics.events.WithLabelValues(e.typ, e.rule).Inc()
		}
		if len(b.lanes) > 0 {
			// Before the dispatcher can hand out their first attempts.
			o.recent.add(b.recent)
			o.disp.AddMany(b.lanes)
		}
	}
	o.whMu.RUnlock()
	for _, r := range b.reqs {
		if r.err != nil {
			r.done <- r.err
		} else {
			r.done <- err
		}
	}
	if inflight {
		c.done <- err
	} else {
		c.free = append(c.free, b)
	}
}

// batch holds the state of one group commit; it is reused between batches
// to keep the hot path allocation-light.
type batch struct {
	reqs       []*commitRequest
	events     int
	hasState   bool
	prevFailed bool // the batch before failed while b was being assembled
	err        error
	start      time.Time
	now        time.Time
	writes     []write
	// units are where each request's writes start in writes (and the
	// sequence's): the parts a batch too large for one transaction may
	// be split between.
	units  []int
	lanes  []laneEntry
	recent []recentEvent // for the first attempts (see recentEvents)
	emits  []emitted
	buf    []byte
}

type emitted struct{ typ, rule string }

// write is one set (e) or delete (del) of a batch: Badger keeps a delete's
// marker private, so deletes cannot be prepared as entries.
type write struct {
	e   *badger.Entry
	del []byte
}

func (w write) apply(txn *badger.Txn) error {
	if w.del != nil {
		return txn.Delete(w.del)
	}
	return txn.SetEntry(w.e)
}

type laneEntry = delivery.Entry

// recycle empties b for new requests.
func (b *batch) recycle() {
	clear(b.writes)
	b.writes = b.writes[:0]
	b.units = b.units[:0]
	b.lanes, b.emits = b.lanes[:0], b.emits[:0]
	clear(b.recent)
	b.recent = b.recent[:0]
	for _, r := range b.reqs {
		r.err = nil
	}
	clear(b.reqs)
	b.reqs, b.events, b.hasState, b.prevFailed, b.err = b.reqs[:0], 0, false, false, nil
}

func (b *batch) set(e *badger.Entry) error {
	b.writes = append(b.writes, write{e: e})
	return nil
}

func (b *batch) delete(key []byte) error {
	b.writes = append(b.writes, write{del: key})
	return nil
}

// txnWriter writes entries into as many transactions as Badger's size limit
// requires. Transactions beyond the first are committed asynchronously so
// that Badger's write loop can merge them into the same sync; wait returns
// when all are durable.
type txnWriter struct {
	db      *badger.DB
	txn     *badger.Txn
	budget  txnBudget
	pending int
	errs    chan error
	first   error
}

// newTxnWriter starts the writes of an admin call, or refuses them while
// storage.dir is nearly full (see spaceGuard).
func (o *Outbox) newTxnWriter() (*txnWriter, error) {
	if err := o.space.check(); err != nil {
		return nil, err
	}
	return &txnWriter{db: o.db, txn: o.db.NewTransaction(true), budget: newTxnBudget(o.db), errs: make(chan error, 64)}, nil
}

func (w *txnWriter) set(e *badger.Entry) error { return w.group(write{e: e}) }

func (w *txnWriter) delete(key []byte) error { return w.group(write{del: key}) }

// group writes ws in one transaction, starting a new one first when they
// would not fit in the current one: writes that belong together (a
// delivery record and its lane entry) are never split by a crash.
func (w *txnWriter) group(ws ...write) error {
	if w.budget.admit(ws) {
		w.flush()
	}
	for _, x := range ws {
		err := x.apply(w.txn)
		if errors.Is(err, badger.ErrTxnTooBig) { // a group larger than a transaction
			w.flush()
			w.budget.reset()
			err = x.apply(w.txn)
		}
		if err != nil {
			return err
		}
	}
	return nil
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

// change is the `change` member of a payload.
type change struct{ previous, current []byte }

// applyState looks up the previous value of ev's `changed` state and
// applies rules.DecideChange, which alone decides (see SPEC §3); the
// outbox only stores values. Events without State are always emitted. The
// stored value carries the time it was written so that retention can let
// state of long-quiet subjects expire (see stateTTL). Values written by
// earlier events of the same batch are in c.states, so several events of
// one batch for a subject chain: each compares with the one before.
func (c *committer) applyState(b *batch, ev *rules.Event, now time.Time) (*change, bool, error) {
	if ev.State == nil {
		return nil, true, nil
	}
	cur := rules.CanonicalValue(ev.State.Value)
	prev, prevWritten, found, err := c.lookupState(ev.State.Key)
	if err != nil {
		return nil, false, err
	}
	decision := rules.DecideChange(prev, found, cur)
	switch {
	case decision.Record():
		if err := c.writeState(b, ev.State.Key, cur, now); err != nil {
			return nil, false, err
		}
	case decision == rules.ChangeSame && now.Sub(prevWritten) > c.o.stateRefresh():
		// Refresh now and then so that a subject seen often keeps its state.
		return nil, false, c.writeState(b, ev.State.Key, prev, now)
	}
	if !decision.Fire() {
		return nil, false, nil
	}
	return &change{previous: prev, current: cur}, true, nil
}

// lookupState returns the last value stored for key: from the overlay of
// values written since the snapshot, else from the snapshot.
func (c *committer) lookupState(key string) (value []byte, written time.Time, found bool, err error) {
	if v, ok := c.states[key]; ok {
		return v.value, v.written, true, nil
	}
	item, err := c.snap.Get(stateKey(key))
	switch {
	case errors.Is(err, badger.ErrKeyNotFound):
		return nil, time.Time{}, false, nil
	case err != nil:
		return nil, time.Time{}, false, err
	}
	v, err := item.ValueCopy(nil)
	if err != nil || len(v) < 8 {
		return nil, time.Time{}, false, err
	}
	return v[8:], time.Unix(int64(beUint64(v[:8])), 0), true, nil
}

// stateTTL is how long the value of a `changed` rule is kept after it was
// last written: long enough that order lifecycles spanning weeks still fire,
// short enough that the store of a busy shop does not grow forever.
func (o *Outbox) stateTTL() time.Duration     { return 4 * max(o.storage.Retention, 24*time.Hour) }
func (o *Outbox) stateRefresh() time.Duration { return o.stateTTL() / 4 }

func (c *committer) writeState(b *batch, key string, value []byte, now time.Time) error {
	c.states[key] = stateValue{value: value, written: now}
	v := u64(make([]byte, 0, 8+len(value)), uint64(now.Unix()))
	v = append(v, value...)
	return b.set(badger.NewEntry(stateKey(key), v).WithTTL(c.o.stateTTL()))
}

func (o *Outbox) writeEvent(b *batch, ev *rules.Event, seq uint64, ch *change, now time.Time) error {
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
	value := rec.marshal(nil)
	if err := b.set(badger.NewEntry(eventKey(seq), value)); err != nil {
		return err
	}
	// The payload ends the stored value: share it rather than copy it.
	rec.Payload = value[len(value)-len(b.buf):]
	if err := b.set(badger.NewEntry(subjectKey(rec.Subject, seq), nil)); err != nil {
		return err
	}
	b.emits = append(b.emits, emitted{rec.Type, rec.Rule})
	if subs := o.localSubs(rec.Type); len(subs) > 0 {
		d := (&deliveryRecord{State: Pending, NextAttemptAt: now}).marshal()
		lv := laneValue{NextAttemptAt: now, ObservedAt: rec.ObservedAt}.marshal()
		for _, wh := range subs {
			if err := b.set(badger.NewEntry(deliveryKey(seq, wh), d)); err != nil {
				return err
			}
			if err := b.set(badger.NewEntry(laneKey(wh, rec.Subject, seq), lv)); err != nil {
				return err
			}
			b.lanes = append(b.lanes, laneEntry{WebhookID: wh, Subject: rec.Subject, Item: delivery.Item{Seq: seq, Due: now.UnixNano(), Observed: rec.ObservedAt.UnixNano()}})
		}
		b.recent = append(b.recent, recentEvent{seq: seq, ev: rec, waiting: slices.Clone(subs)})
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
	return rules.AppendJSONString(buf, s) // the data's escaping too, so a payload has one style
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

func (c *committer) newBatch() *batch {
	if n := len(c.free); n > 0 {
		b := c.free[n-1]
		c.free = c.free[:n-1]
		b.recycle()
		return b
	}
	return &batch{}
}

// prepareStates makes snap and states usable: a fresh snapshot is taken
// (after the batch in flight is durable) when there is none, when states
// may hold values never written, or when the overlay grew large.
func (c *committer) prepareStates() {
	if c.snap != nil && !c.stale && len(c.states) <= maxStateOverlay {
		return
	}
	_ = c.wait() // a failure is noted in c.failures; the snapshot below is fresh anyway
	c.dropSnapshot()
	c.snap = c.o.db.NewTransaction(false)
	c.snapTaken = time.Now()
	clear(c.states)
	c.stale = false
}

// dropSnapshot releases the snapshot; the overlay stays until the next
// snapshot is taken, since it may hold values of the batch in flight.
func (c *committer) dropSnapshot() {
	if c.snap != nil {
		c.snap.Discard()
		c.snap = nil
	}
}
