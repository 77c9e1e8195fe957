package outbox

import (
	"cmp"
	"container/heap"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// pendingItem is one PENDING delivery in a lane.
type pendingItem struct {
	seq      uint64
	due      int64 // unix nanoseconds of the next attempt
	observed int64 // unix nanoseconds the event was observed, for the oldest-pending gauge
}

type laneID struct{ webhookID, subject string }

// lane is the ordered queue of one (webhook, subject). Only its head is ever
// attempted, and only one attempt at a time, which is what gives per-subject
// ordering without making other subjects wait.
type lane struct {
	id    laneID
	items []pendingItem // ascending seq
	busy  bool          // the head is being attempted
	gone  bool          // the webhook was deleted while the head was busy
	// requeued: the busy head was queued again (Redeliver, Replay) after its
	// attempt had recorded a final state, so finishing must keep it.
	requeued bool
	// parked: due, but its webhook had perHook attempts in flight; it
	// waits in dispatcher.parked instead of the heap.
	parked bool
	index  int // position in the ready heap, -1 when not in it
}

// dispatcher is the in-memory index of pending work, loaded from the q/
// keys at Open and kept in step with them by the committer, the workers and
// the admin calls. Its methods are safe for concurrent use.
//
// A lane sits in the heap, keyed by its head's due time, exactly when it has
// items, is not busy and its webhook is not paused.
//
// Memory is bounded: at most limit items are held. When a receiver is down
// for hours the backlog lives only in Badger: once the limit is reached the
// dispatcher overflows and stops taking new items (they are counted in
// unloaded) until a reload from the q/ keys has caught up completely. Items
// dropped are always newer than every item held, so each in-memory lane is a
// prefix of the stored lane and per-subject order is kept.
type dispatcher struct {
	mu      sync.Mutex
	lanes   map[laneID]*lane
	ready   laneHeap
	paused  map[string]bool // webhook ids that are DISABLED
	pending int             // items held in memory
	wake    chan struct{}

	// Each webhook has at most perHook attempts in flight, so that a
	// receiver that hangs until the timeout on many subjects at once
	// cannot hold every worker while other webhooks wait.
	perHook  int
	inFlight map[string]int     // webhook id → attempts in flight
	parked   map[string][]*lane // webhook id → lanes due while it was at perHook, oldest first

	limit    int
	overflow bool   // new items are being dropped until a reload completes
	unloaded int    // pending items in the store but not in memory
	dropGen  uint64 // counts drops, to detect drops racing a reload
	// unloadedBy splits unloaded by webhook id, for eventtap_webhook_pending;
	// dropsDuring counts, by webhook, the drops since the running reload
	// began (nil when none runs), which that reload's scan may not see.
	unloadedBy  map[string]int
	dropsDuring map[string]int
}

// defaultPendingLimit bounds the in-memory index to roughly 10–20 MiB.
const defaultPendingLimit = 50_000

// newDispatcher holds at most limit items; workers is delivery.workers,
// of which one webhook may use half.
func newDispatcher(limit, workers int) *dispatcher {
	return &dispatcher{lanes: map[laneID]*lane{}, paused: map[string]bool{}, wake: make(chan struct{}, 1), limit: limit,
		perHook: max(1, workers/2), inFlight: map[string]int{}, parked: map[string][]*lane{}, unloadedBy: map[string]int{}}
}

func (d *dispatcher) signal() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

func (d *dispatcher) eligible(l *lane) bool {
	return len(l.items) > 0 && !l.busy && !l.gone && !l.parked && !d.paused[l.id.webhookID]
}

// fix restores the invariant for l after a change.
func (d *dispatcher) fix(l *lane) {
	switch in := l.index >= 0; {
	case d.eligible(l) && in:
		heap.Fix(&d.ready, l.index)
	case d.eligible(l):
		heap.Push(&d.ready, l)
	case in:
		heap.Remove(&d.ready, l.index)
	}
	if len(l.items) == 0 && !l.busy {
		delete(d.lanes, l.id)
	}
}

// addResult says what add did with an item.
type addResult int

const (
	added   addResult = iota
	present           // already held
	dropped           // not held: memory is full or overflowing
)

// add inserts an item (keeping seq order; a re-queued older event goes before
// newer ones) unless it is already there or memory is full. reload is set
// when the item comes from the store (loading or catching up after an
// overflow), which is the only way in while overflowing.
func (d *dispatcher) add(webhookID, subject string, it pendingItem, reload bool) addResult {
	id := laneID{webhookID, subject}
	l := d.lanes[id]
	i, found := 0, false
	if l != nil {
		i, found = slices.BinarySearchFunc(l.items, it.seq, func(p pendingItem, s uint64) int {
			switch {
			case p.seq < s:
				return -1
			case p.seq > s:
				return 1
			}
			return 0
		})
	}
	if found {
		switch {
		case reload:
		case i == 0 && l.busy:
			l.requeued = true
			l.items[0].due = it.due
		case it.due < l.items[i].due:
			// Redelivered while waiting in backoff: due earlier now.
			l.items[i].due = it.due
			d.fix(l)
		}
		return present
	}
	if d.pending >= d.limit || (d.overflow && !reload) {
		if !reload {
			d.overflow = true
			d.unloaded++
			d.dropGen++
			d.unloadedBy[webhookID]++
			if d.dropsDuring != nil {
				d.dropsDuring[webhookID]++
			}
		}
		return dropped
	}
	if l == nil {
		l = &lane{id: id, index: -1}
		d.lanes[id] = l
	}
	if i == 0 && l.busy {
		// The head is in flight; a re-queued older event waits behind it.
		i = 1
	}
	l.items = slices.Insert(l.items, i, it)
	d.pending++
	d.fix(l)
	return added
}

func (d *dispatcher) addMany(entries []laneEntry) {
	d.mu.Lock()
	for _, e := range entries {
		d.add(e.webhookID, e.subject, e.item, false)
	}
	d.mu.Unlock()
	d.signal()
}

// held reports whether a stored lane entry is held in memory, so that a
// reload does not count it as unloaded. d.mu must be held.
func (d *dispatcher) held(webhookID, subject string, seq uint64) bool {
	l := d.lanes[laneID{webhookID, subject}]
	if l == nil {
		return false
	}
	_, found := slices.BinarySearchFunc(l.items, seq, func(p pendingItem, s uint64) int { return cmp.Compare(p.seq, s) })
	return found
}

// needsReload reports whether an overflowing dispatcher has drained enough
// to catch up from the store.
func (d *dispatcher) needsReload() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.overflow && d.pending <= d.limit/2
}

// next pops a lane whose head is due, marking it busy, or reports when the
// earliest head becomes due (zero when nothing is waiting).
func (d *dispatcher) next(now time.Time) (*lane, pendingItem, time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for len(d.ready) > 0 {
		l := d.ready[0]
		if due := l.items[0].due; due > now.UnixNano() {
			return nil, pendingItem{}, time.Unix(0, due)
		}
		heap.Pop(&d.ready)
		wh := l.id.webhookID
		if d.inFlight[wh] >= d.perHook {
			l.parked = true
			d.parked[wh] = append(d.parked[wh], l)
			continue
		}
		d.inFlight[wh]++
		l.busy = true
		return l, l.items[0], time.Time{}
	}
	return nil, pendingItem{}, time.Time{}
}

// outcome of an attempt, as far as the lane is concerned.
type laneOutcome int

const (
	laneDone    laneOutcome = iota // SUCCEEDED, FAILED or no longer pending: drop the head
	laneRetry                      // still PENDING; the head's due time is updated
	laneRelease                    // not attempted (shutdown, paused): keep the head as is
)

func (d *dispatcher) finish(l *lane, o laneOutcome, due time.Time) {
	d.mu.Lock()
	l.busy = false
	wh := l.id.webhookID
	if d.inFlight[wh]--; d.inFlight[wh] <= 0 {
		delete(d.inFlight, wh)
	}
	// The slot just freed goes to the lane of this webhook parked longest.
	if ps := d.parked[wh]; len(ps) > 0 {
		p := ps[0]
		ps[0] = nil
		if d.parked[wh] = ps[1:]; len(ps) == 1 {
			delete(d.parked, wh)
		}
		p.parked = false
		d.fix(p)
	}
	if l.gone {
		// The webhook was deleted meanwhile; removeWebhook already counted
		// the items out.
		d.mu.Unlock()
		return
	}
	requeued := l.requeued
	if o == laneDone && requeued {
		o = laneRelease
	}
	l.requeued = false
	if o == laneRetry && requeued && l.items[0].due < due.UnixNano() {
		// Redelivered while this attempt was being recorded: due now.
		o = laneRelease
	}
	switch o {
	case laneDone:
		l.items = l.items[1:]
		if len(l.items) == 0 {
			l.items = nil
		}
		d.pending--
	case laneRetry:
		l.items[0].due = due.UnixNano()
	}
	d.fix(l)
	d.mu.Unlock()
	d.signal()
}

// setPaused pauses or resumes every lane of a webhook.
func (d *dispatcher) setPaused(webhookID string, paused bool) {
	d.mu.Lock()
	if d.paused[webhookID] == paused {
		d.mu.Unlock()
		return
	}
	if paused {
		d.paused[webhookID] = true
	} else {
		delete(d.paused, webhookID)
	}
	for id, l := range d.lanes {
		if id.webhookID == webhookID {
			d.fix(l)
		}
	}
	d.mu.Unlock()
	d.signal()
}

// removeWebhook forgets every lane of a deleted webhook.
func (d *dispatcher) removeWebhook(webhookID string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.paused, webhookID)
	delete(d.parked, webhookID)
	delete(d.unloadedBy, webhookID)
	for id, l := range d.lanes {
		if id.webhookID != webhookID {
			continue
		}
		d.pending -= len(l.items)
		l.items = nil
		// Unloaded items of the webhook stay counted until the next reload.
		if l.index >= 0 {
			heap.Remove(&d.ready, l.index)
		}
		if l.busy {
			l.gone = true
		}
		delete(d.lanes, id)
	}
}

// pendingCount is what eventtap_outbox_pending reports: held plus unloaded.
func (d *dispatcher) pendingCount() float64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return float64(d.pending + d.unloaded)
}

// oldestPending is the age of the oldest event with a pending delivery. A
// lane's head is its oldest event, so only heads are examined; unloaded
// items are newer than every held one.
func (d *dispatcher) oldestPending(now time.Time) float64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	var oldest int64
	for _, l := range d.lanes {
		if len(l.items) > 0 && (oldest == 0 || l.items[0].observed < oldest) {
			oldest = l.items[0].observed
		}
	}
	if oldest == 0 {
		return 0
	}
	return max(0, now.Sub(time.Unix(0, oldest)).Seconds())
}

// backlog is what eventtap_webhook_pending and
// eventtap_webhook_oldest_pending_seconds report for each of ids: held plus
// unloaded deliveries, and the age of the oldest held head (unloaded items
// are newer than every held one).
func (d *dispatcher) backlog(ids []string, now time.Time) []webhookBacklog {
	d.mu.Lock()
	defer d.mu.Unlock()
	held := make(map[string]int, len(ids))
	oldest := make(map[string]int64, len(ids))
	for id, l := range d.lanes {
		if len(l.items) == 0 {
			continue
		}
		held[id.webhookID] += len(l.items)
		if o := oldest[id.webhookID]; o == 0 || l.items[0].observed < o {
			oldest[id.webhookID] = l.items[0].observed
		}
	}
	out := make([]webhookBacklog, 0, len(ids))
	for _, id := range ids {
		b := webhookBacklog{id: id, pending: held[id] + d.unloadedBy[id]}
		if o := oldest[id]; o != 0 {
			b.oldest = max(0, now.Sub(time.Unix(0, o)).Seconds())
		}
		out = append(out, b)
	}
	return out
}

// laneHeap orders lanes by their head's due time, then by sequence so that
// older events go first when many are due at once.
type laneHeap []*lane

func (h laneHeap) Len() int { return len(h) }
func (h laneHeap) Less(i, j int) bool {
	a, b := h[i].items[0], h[j].items[0]
	if a.due != b.due {
		return a.due < b.due
	}
	return a.seq < b.seq
}
func (h laneHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *laneHeap) Push(x any) {
	l := x.(*lane)
	l.index = len(*h)
	*h = append(*h, l)
}
func (h *laneHeap) Pop() any {
	old := *h
	l := old[len(old)-1]
	old[len(old)-1] = nil
	l.index = -1
	*h = old[:len(old)-1]
	return l
}

// job is one attempt handed to a worker.
type job struct {
	lane *lane
	item pendingItem
}

// runDispatcher hands due lane heads to the workers. It sleeps until the
// earliest stored next-attempt time or until the committer, a worker or an
// admin call signals new work, so new events are picked up immediately.
func (o *Outbox) runDispatcher(jobs chan<- job) {
	defer o.loopsWG.Done()
	defer close(jobs)
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var reloading chan struct{} // closed when the reload in progress ends
	for {
		if reloading != nil {
			select {
			case <-reloading:
				reloading = nil
			default:
			}
		}
		if reloading == nil && o.disp.needsReload() {
			reloading = make(chan struct{})
			o.loopsWG.Add(1)
			go func(done chan struct{}) {
				defer o.loopsWG.Done()
				defer close(done)
				if err := o.reloadPending(); err != nil && !errors.Is(err, ErrClosed) {
					o.log.Error("reloading pending deliveries failed; retrying later", "err", err)
					select {
					case <-time.After(storeRetryDelay):
					case <-o.stop:
					}
				}
				o.disp.signal()
			}(reloading)
		}
		if o.space.full() {
			// An attempt's record could not be written: the receiver would
			// get the head of every lane again every storeRetryDelay,
			// whatever the schedule. Wait for space (spaceGuard logs when
			// the pause starts and ends).
			timer.Reset(spaceRecheck)
			select {
			case <-timer.C:
			case <-o.stop:
				return
			}
			continue
		}
		l, it, wait := o.disp.next(o.now())
		if l != nil {
			select {
			case jobs <- job{l, it}:
			case <-o.stop:
				o.disp.finish(l, laneRelease, time.Time{})
				return
			}
			continue
		}
		d := time.Hour
		if !wait.IsZero() {
			d = max(time.Until(wait), time.Millisecond)
		}
		timer.Reset(d)
		select {
		case <-o.disp.wake:
		case <-timer.C:
		case <-o.stop:
			return
		}
	}
}

// reloadPending loads pending lane entries from the store into memory, up
// to the limit. Called at Open and whenever an overflowing dispatcher has
// drained to half its limit (then on its own goroutine, so that workers are
// kept busy meanwhile). Overflow ends only when everything stored is held
// and nothing was dropped while the snapshot was read (anything dropped
// before the snapshot started is in it, because the committer writes before
// it adds).
//
// Once one entry could not be loaded, no later one is, even if room appears
// meanwhile: a lane's entries are consecutive in the scan, so this keeps
// every in-memory lane a prefix of the stored one. The rest of the scan only
// counts what is not held, reading keys only.
//
// The scan's snapshot may still show the key of a head whose final record
// became durable, and whose lane moved on, after the snapshot was taken.
// Such a stale entry is loaded again, but never sent: the worker reads the
// delivery from a snapshot at least as new as that record, finds it no
// longer pending and drops the entry.
func (o *Outbox) reloadPending() error {
	d := o.disp
	d.mu.Lock()
	gen := d.dropGen
	d.overflow = true
	d.dropsDuring = map[string]int{}
	d.mu.Unlock()
	notLoaded := 0
	notLoadedBy := map[string]int{}
	full := false
	err := o.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixLane})
		defer it.Close()
		chunk := make([]laneEntry, 0, 256)
		flush := func() error {
			o.whMu.RLock()
			d.mu.Lock()
			for _, e := range chunk {
				h := o.hooks[e.webhookID]
				if h == nil {
					continue // deleted; the worker or DeleteWebhook cleans such keys
				}
				if full {
					if !d.held(h.ID, e.subject, e.item.seq) {
						notLoaded++
						notLoadedBy[h.ID]++
					}
					continue
				}
				// Share the cached id string rather than one per lane.
				if d.add(h.ID, e.subject, e.item, true) == dropped {
					notLoaded++
					notLoadedBy[h.ID]++
					full = true
				}
			}
			d.mu.Unlock()
			o.whMu.RUnlock()
			chunk = chunk[:0]
			d.signal()
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
			e := laneEntry{wh, subject, pendingItem{seq: seq}}
			if !full {
				var v laneValue
				if err := it.Item().Value(v.unmarshal); err != nil {
					return err
				}
				e.item.due, e.item.observed = v.NextAttemptAt.UnixNano(), v.ObservedAt.UnixNano()
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
	d.mu.Lock()
	drops := int(d.dropGen - gen)
	d.unloaded = notLoaded + drops
	for id, n := range d.dropsDuring {
		notLoadedBy[id] += n
	}
	d.unloadedBy, d.dropsDuring = notLoadedBy, nil
	if err == nil && notLoaded == 0 && drops == 0 {
		d.overflow = false
	}
	d.mu.Unlock()
	d.signal()
	return err
}
