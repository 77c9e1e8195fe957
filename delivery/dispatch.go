package delivery

import (
	"cmp"
	"container/heap"
	"context"
	"log/slog"
	"slices"
	"sync"
	"time"
)

// Item is one PENDING delivery in a lane: what is due, not what to send
// (the Store reads that when the item's turn comes).
type Item struct {
	Seq      uint64 // the event's commit sequence; a lane is ordered by it
	Due      int64  // unix nanoseconds of the next attempt
	Observed int64  // unix nanoseconds the event was observed, for the oldest-pending gauge
}

// Entry is an Item of the lane (WebhookID, Subject).
type Entry struct {
	WebhookID, Subject string
	Item               Item
}

type laneID struct{ webhookID, subject string }

// lane is the ordered queue of one (webhook, subject). Only its head is ever
// attempted, and only one attempt at a time, which is what gives per-subject
// ordering without making other subjects wait.
type lane struct {
	id    laneID
	items []Item // ascending seq
	busy  bool   // the head is being attempted
	gone  bool   // the webhook was deleted while the head was busy
	// requeued: the busy head was queued again (Redeliver, Replay) after its
	// attempt had recorded a final state, so finishing must keep it.
	requeued bool
	// parked: due, but its webhook had perHook attempts in flight; it
	// waits in dispatcher.parked instead of the heap.
	parked bool
	index  int // position in the ready heap, -1 when not in it
}

// Dispatcher is the in-memory index of pending work, fed by its owner
// (Add, AddMany, the Reload of a reload) and handing due lane heads to its
// pool of workers (Run). Its methods are safe for concurrent use.
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
type Dispatcher struct {
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

	cfg    Config
	sender *Sender
	opts   Options
	log    *slog.Logger
	// abortCtx cancels attempts in flight (Abort).
	abortCtx context.Context
	abort    context.CancelFunc
}

// DefaultPendingLimit bounds the in-memory index to roughly 10–20 MiB.
const DefaultPendingLimit = 50_000

// newDispatcher holds at most limit items; workers is delivery.workers,
// of which one webhook may use half.
func newDispatcher(limit, workers int) *Dispatcher {
	return &Dispatcher{lanes: map[laneID]*lane{}, paused: map[string]bool{}, wake: make(chan struct{}, 1), limit: limit,
		perHook: max(1, workers/2), inFlight: map[string]int{}, parked: map[string][]*lane{}, unloadedBy: map[string]int{}}
}

func (d *Dispatcher) signal() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

func (d *Dispatcher) eligible(l *lane) bool {
	return len(l.items) > 0 && !l.busy && !l.gone && !l.parked && !d.paused[l.id.webhookID]
}

// fix restores the invariant for l after a change.
func (d *Dispatcher) fix(l *lane) {
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
func (d *Dispatcher) add(webhookID, subject string, it Item, reload bool) addResult {
	id := laneID{webhookID, subject}
	l := d.lanes[id]
	i, found := 0, false
	if l != nil {
		i, found = slices.BinarySearchFunc(l.items, it.Seq, func(p Item, s uint64) int {
			switch {
			case p.Seq < s:
				return -1
			case p.Seq > s:
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
			l.items[0].Due = it.Due
		case it.Due < l.items[i].Due:
			// Redelivered while waiting in backoff: due earlier now.
			l.items[i].Due = it.Due
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

// Add queues an item that became due (committed, or re-queued by an admin
// call) on the lane (webhookID, subject), unless it is already held or
// memory is full (then a later reload brings it in).
func (d *Dispatcher) Add(webhookID, subject string, it Item) {
	d.mu.Lock()
	d.add(webhookID, subject, it, false)
	d.mu.Unlock()
	d.signal()
}

// AddMany is Add for many items under one lock.
func (d *Dispatcher) AddMany(entries []Entry) {
	d.mu.Lock()
	for _, e := range entries {
		d.add(e.WebhookID, e.Subject, e.Item, false)
	}
	d.mu.Unlock()
	d.signal()
}

// held reports whether a stored lane entry is held in memory, so that a
// reload does not count it as unloaded. d.mu must be held.
func (d *Dispatcher) held(webhookID, subject string, seq uint64) bool {
	l := d.lanes[laneID{webhookID, subject}]
	if l == nil {
		return false
	}
	_, found := slices.BinarySearchFunc(l.items, seq, func(p Item, s uint64) int { return cmp.Compare(p.Seq, s) })
	return found
}

// needsReload reports whether an overflowing dispatcher has drained enough
// to catch up from the store.
func (d *Dispatcher) needsReload() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.overflow && d.pending <= d.limit/2
}

// next pops a lane whose head is due, marking it busy, or reports when the
// earliest head becomes due (zero when nothing is waiting).
func (d *Dispatcher) next(now time.Time) (*lane, Item, time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for len(d.ready) > 0 {
		l := d.ready[0]
		if due := l.items[0].Due; due > now.UnixNano() {
			return nil, Item{}, time.Unix(0, due)
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
	return nil, Item{}, time.Time{}
}

// Outcome of an attempt, as far as the lane is concerned.
type Outcome int

const (
	Done    Outcome = iota // SUCCEEDED, FAILED or no longer pending: drop the head
	Retry                  // still PENDING; the head's due time is updated
	Release                // not attempted (shutdown, paused): keep the head as is
)

func (d *Dispatcher) finish(l *lane, o Outcome, due time.Time) {
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
	if o == Done && requeued {
		o = Release
	}
	l.requeued = false
	if o == Retry && requeued && l.items[0].Due < due.UnixNano() {
		// Redelivered while this attempt was being recorded: due now.
		o = Release
	}
	switch o {
	case Done:
		l.items = l.items[1:]
		if len(l.items) == 0 {
			l.items = nil
		}
		d.pending--
	case Retry:
		l.items[0].Due = due.UnixNano()
	}
	d.fix(l)
	d.mu.Unlock()
	d.signal()
}

// SetPaused pauses or resumes every lane of a webhook.
func (d *Dispatcher) SetPaused(webhookID string, paused bool) {
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

// RemoveWebhook forgets every lane of a deleted webhook.
func (d *Dispatcher) RemoveWebhook(webhookID string) {
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

// Held reports how many items are held in memory and whether the
// dispatcher is overflowing (new items stay in the owner's store).
func (d *Dispatcher) Held() (held int, overflow bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.pending, d.overflow
}

// PendingCount is what eventtap_outbox_pending reports: held plus unloaded.
func (d *Dispatcher) PendingCount() float64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return float64(d.pending + d.unloaded)
}

// OldestPending is the age of the oldest event with a pending delivery. A
// lane's head is its oldest event, so only heads are examined; unloaded
// items are newer than every held one.
func (d *Dispatcher) OldestPending(now time.Time) float64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	var oldest int64
	for _, l := range d.lanes {
		if len(l.items) > 0 && (oldest == 0 || l.items[0].Observed < oldest) {
			oldest = l.items[0].Observed
		}
	}
	if oldest == 0 {
		return 0
	}
	return max(0, now.Sub(time.Unix(0, oldest)).Seconds())
}

// Backlog is what eventtap_webhook_pending and
// eventtap_webhook_oldest_pending_seconds report for each of ids: held plus
// unloaded deliveries, and the age of the oldest held head (unloaded items
// are newer than every held one).
func (d *Dispatcher) Backlog(ids []string, now time.Time) []Backlog {
	d.mu.Lock()
	defer d.mu.Unlock()
	held := make(map[string]int, len(ids))
	oldest := make(map[string]int64, len(ids))
	for id, l := range d.lanes {
		if len(l.items) == 0 {
			continue
		}
		held[id.webhookID] += len(l.items)
		if o := oldest[id.webhookID]; o == 0 || l.items[0].Observed < o {
			oldest[id.webhookID] = l.items[0].Observed
		}
	}
	out := make([]Backlog, 0, len(ids))
	for _, id := range ids {
		b := Backlog{ID: id, Pending: held[id] + d.unloadedBy[id]}
		if o := oldest[id]; o != 0 {
			b.Oldest = max(0, now.Sub(time.Unix(0, o)).Seconds())
		}
		out = append(out, b)
	}
	return out
}

// Backlog is one webhook's pending deliveries at scrape time.
type Backlog struct {
	ID      string
	Pending int     // deliveries not yet succeeded or failed
	Oldest  float64 // age in seconds of the oldest one's event, 0 when none
}

// laneHeap orders lanes by their head's due time, then by sequence so that
// older events go first when many are due at once.
type laneHeap []*lane

func (h laneHeap) Len() int { return len(h) }
func (h laneHeap) Less(i, j int) bool {
	a, b := h[i].items[0], h[j].items[0]
	if a.Due != b.Due {
		return a.Due < b.Due
	}
	return a.Seq < b.Seq
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
