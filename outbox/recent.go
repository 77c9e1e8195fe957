package outbox

import (
	"slices"
	"sync"
)

// recentEvents hands the first attempt of a delivery what the committer
// just made durable, so that it reads nothing back from Badger: the event
// (its payload included) and the fact that its delivery record is still
// as committed (PENDING, no attempt made, due at commit time).
//
// An entry is added only once its batch is durable, and a webhook's claim
// on it is taken by the first Prepare of that delivery, whatever happens
// next; every later attempt, and every delivery whose entry was never
// added (a restart, a reload, a requeue by an admin call) or was refused
// for lack of room, reads the store as before. Nothing but an attempt can
// take a delivery out of PENDING (an admin requeue writes it PENDING with
// no attempt again, which is what the entry says), and retention removes
// only events whose deliveries are all done, so an entry cannot be stale.
//
// Memory is bounded by limit bytes of payload (plus a fixed overhead per
// entry); when full, new events are not kept, which costs only the reads.
// Entries of a webhook that is paused or deleted are dropped at once.
type recentEvents struct {
	mu    sync.Mutex
	m     map[uint64]*recentEvent
	bytes int
	limit int
}

// recentEvent is a committed event and the webhooks whose first attempt
// has not been prepared yet.
type recentEvent struct {
	seq     uint64
	ev      eventRecord // shared read-only by every attempt that takes it
	waiting []string
}

// recentOverhead is what an entry costs besides its payload: the record,
// its map slot and the waiting list.
const recentOverhead = 256

// defaultRecentBytes bounds the payloads kept for first attempts. At a few
// hundred bytes per event this covers several seconds of full-speed
// traffic, which is as far as delivery normally lags.
const defaultRecentBytes = 4 << 20

func newRecentEvents(limit int) *recentEvents {
	return &recentEvents{m: map[uint64]*recentEvent{}, limit: limit}
}

func (e *recentEvent) size() int { return recentOverhead + len(e.ev.Payload) }

// add keeps the events of a durable batch, as far as room allows.
func (r *recentEvents) add(evs []recentEvent) {
	if len(evs) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range evs {
		e := &evs[i]
		if r.bytes+e.size() > r.limit {
			return // later events are newer: delivered later, read later
		}
		r.m[e.seq] = &recentEvent{seq: e.seq, ev: e.ev, waiting: e.waiting}
		r.bytes += e.size()
	}
}

// take returns the event of seq if the delivery to webhookID has not been
// prepared since it was committed, and forgets that delivery.
func (r *recentEvents) take(seq uint64, webhookID string) (eventRecord, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e := r.m[seq]
	if e == nil {
		return eventRecord{}, false
	}
	i := slices.Index(e.waiting, webhookID)
	if i < 0 {
		return eventRecord{}, false
	}
	e.waiting = slices.Delete(e.waiting, i, i+1)
	if len(e.waiting) == 0 {
		r.dropLocked(seq, e)
	}
	return e.ev, true
}

// forget drops every claim of a webhook that was paused or deleted: its
// deliveries may wait for a long time, or never be attempted.
func (r *recentEvents) forget(webhookID string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for seq, e := range r.m {
		if i := slices.Index(e.waiting, webhookID); i >= 0 {
			e.waiting = slices.Delete(e.waiting, i, i+1)
			if len(e.waiting) == 0 {
				r.dropLocked(seq, e)
			}
		}
	}
}

func (r *recentEvents) dropLocked(seq uint64, e *recentEvent) {
	delete(r.m, seq)
	r.bytes -= e.size()
}
