package outbox

// The events view of cluster mode (docs/cluster.md §7, "As built" 6):
// every node applies the cluster's events stream to its own store, so
// that events and event(id) answer for the whole cluster on any node. The
// view has its own key range, keyed by stream position, which is the same
// on every node, so a cursor made on one node is valid on all:
//
//	v/e/<pos:8>                                 event record, as relayed
//	v/s/<uvarint len><subject><pos:8>           subject index (no value)
//	v/i/<eventID>                               position of the event (dedupe, event(id))
//	v/d/<eventID><webhookID>                    delivery, derived from the logs view
//	m/eventview                                 last position applied
//
// Deliveries are keyed by event id, not position, because the two streams
// are applied independently: a log may be applied before its event.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/eventtap/eventtap/rules"
)

var (
	keyMetaEventView   = []byte("m/eventview")
	prefixViewEvent    = []byte("v/e/")
	prefixViewSubject  = []byte("v/s/")
	prefixViewID       = []byte("v/i/")
	prefixViewDelivery = []byte("v/d/")
)

func viewEventKey(pos uint64) []byte { return u64(cat(prefixViewEvent), pos) }

func viewSubjectPrefix(subject string) []byte { return subjectIndexPrefix(prefixViewSubject, subject) }

func viewIDKey(id string) []byte { return append(cat(prefixViewID), id...) }

func viewDeliveryPrefix(eventID string) []byte { return append(cat(prefixViewDelivery), eventID...) }

func viewDeliveryKey(eventID, webhookID string) []byte {
	return append(viewDeliveryPrefix(eventID), webhookID...)
}

// streamView reports whether events are listed from the cluster's view
// rather than from this node's own commits.
func (o *Outbox) streamView() bool {
	c := o.cl.hooks.Load()
	return c != nil && c.StreamDelivery
}

// eventSpace and logSpace are where events and webhookLogs are listed
// from: in cluster mode the views of the cluster's streams, else this
// node's own.
func (o *Outbox) eventSpace() eventSpace {
	if o.streamView() {
		return viewEvents
	}
	return ownEvents
}

func (o *Outbox) logSpace() logSpace {
	if o.streamView() {
		return viewLogs
	}
	return ownLogs
}

// ViewEvent is one message of the cluster's events stream: its position
// and the record a RelayEvent carried.
type ViewEvent struct {
	Pos    uint64
	Record []byte
	// Copy marks a copy published for a redelivery or a replay
	// (cluster_requeue.go): only the position moves, so that the event is
	// listed once, at its first position.
	Copy bool
}

// EventViewPosition returns the last position of the cluster's events
// stream applied here (0: none).
func (o *Outbox) EventViewPosition(ctx context.Context) (uint64, error) {
	return o.metaU64(ctx, keyMetaEventView)
}

// ApplyEvents adds events of the cluster's stream, in position order, to
// this node's view, in one transaction with the position reached. An
// event whose id is already in the view (a relay's copy sent again after
// the stream's dedupe window) is skipped, as is one that cannot be read,
// which is logged: it must not stop the view. A redelivery's copy (Copy)
// is skipped too. The caller bounds the batch.
func (o *Outbox) ApplyEvents(ctx context.Context, evs []ViewEvent) error {
	if len(evs) == 0 {
		return nil
	}
	return o.use(ctx, func() error {
		return o.dbUpdate(func(txn *badger.Txn) error {
			for _, ev := range evs {
				if ev.Copy {
					continue
				}
				var rec eventRecord
				if err := rec.unmarshal(ev.Record); err != nil {
					o.log.Error("an event in the cluster's stream cannot be read; it is missing from events", "stream_seq", ev.Pos, "err", err)
					continue
				}
				if _, ok := parseID(eventIDPrefix, rec.ID); !ok || len(rec.Subject) == 0 || len(rec.Subject) > rules.MaxSubjectBytes {
					o.log.Error("an event in the cluster's stream has a malformed id or subject; it is missing from events", "stream_seq", ev.Pos, "event", rec.ID)
					continue
				}
				_, err := txn.Get(viewIDKey(rec.ID))
				if err == nil {
					continue // a copy
				}
				if !errors.Is(err, badger.ErrKeyNotFound) {
					return err
				}
				if err := txn.Set(viewEventKey(ev.Pos), ev.Record); err != nil {
					return err
				}
				if err := txn.Set(u64(viewSubjectPrefix(rec.Subject), ev.Pos), nil); err != nil {
					return err
				}
				if err := txn.Set(viewIDKey(rec.ID), u64(nil, ev.Pos)); err != nil {
					return err
				}
			}
			return txn.Set(keyMetaEventView, u64(nil, evs[len(evs)-1].Pos))
		})
	})
}

// LogOutcome is what a shared log says about its delivery, beyond the log
// itself: whether the attempt was the last one (succeeded, or failed
// after the last retry) and, when not, when the next one is due.
type LogOutcome struct {
	Final bool
	Next  time.Time
	// Test marks the log of a webhookTest, which has no delivery.
	Test bool
	// Late marks a log published again after its first publish failed:
	// it may follow later attempts in the stream, so it sets the delivery
	// only where none is shown yet.
	Late bool
}

// viewDelivery is the delivery state a log with outcome out leaves.
func viewDelivery(l *Log, out LogOutcome) deliveryRecord {
	d := deliveryRecord{State: Pending, Attempts: l.Attempt, LastResponseStatus: l.ResponseStatus, NextAttemptAt: out.Next}
	switch {
	case l.Succeeded:
		d.State, d.NextAttemptAt = Succeeded, time.Time{}
	case out.Final:
		d.State, d.NextAttemptAt = Failed, time.Time{}
	}
	return d
}

// readViewEvent loads the view's event at pos with its deliveries; a
// non-empty id must match.
func readViewEvent(txn *badger.Txn, pos uint64, id string) (Event, error) {
	var rec eventRecord
	err := getRecord(txn, viewEventKey(pos), rec.unmarshal)
	if errors.Is(err, badger.ErrKeyNotFound) || (err == nil && id != "" && rec.ID != id) {
		return Event{}, fmt.Errorf("event %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return Event{}, err
	}
	ds, err := scanDeliveries(txn, viewDeliveryPrefix(rec.ID))
	if err != nil {
		return Event{}, err
	}
	return rec.event(ds), nil
}

// viewPosition returns the stream position of event id in the view, or
// badger.ErrKeyNotFound.
func viewPosition(txn *badger.Txn, id string) (uint64, error) {
	var pos uint64
	item, err := txn.Get(viewIDKey(id))
	if err != nil {
		return 0, err
	}
	err = item.Value(func(v []byte) error {
		if len(v) != 8 {
			return fmt.Errorf("outbox: view index of event %s is corrupt", id)
		}
		pos = beUint64(v)
		return nil
	})
	return pos, err
}

// viewEvent is Event(id) in cluster mode: the view, and else this node's
// own commits, which holds the events not relayed yet (NATS unreachable),
// with the deliveries the view shows.
func (o *Outbox) viewEvent(ctx context.Context, id string) (Event, error) {
	var out Event
	err := o.view(ctx, func(txn *badger.Txn) error {
		rec, _, ds, err := readClusterEvent(txn, id)
		out = rec.event(ds)
		return err
	})
	return out, err
}

// forgetViewDeliveries yields the view's delivery keys of webhook id.
func forgetViewDeliveries(txn *badger.Txn, id string, yield func([]byte) bool) bool {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixViewDelivery})
	defer it.Close()
	for it.Seek(prefixViewDelivery); it.ValidForPrefix(prefixViewDelivery); it.Next() {
		k := it.Item().Key()
		if bytes.HasSuffix(k, []byte(id)) && len(k) == len(prefixViewDelivery)+eventIDLen+len(id) {
			if !yield(it.Item().KeyCopy(nil)) {
				return false
			}
		}
	}
	return true
}

// retainViewEvents handles up to retentionChunk events of the view from
// key from. The view follows the stream, which keeps events for
// storage.retention whatever their deliveries: a view event goes by age
// alone, with its deliveries.
func (o *Outbox) retainViewEvents(from []byte, cutoff time.Time) (next []byte, more bool, err error) {
	var dels [][]byte
	err = o.db.View(func(txn *badger.Txn) error {
		next, more, err = retentionScan(txn, prefixViewEvent, from, func(item *badger.Item) (bool, error) {
			var rec eventRecord
			if err := item.Value(rec.unmarshal); err != nil {
				return false, err
			}
			if !rec.CommittedAt.Before(cutoff) {
				return false, nil // positions grow with relay time: the rest is newer
			}
			pos := beUint64(item.Key()[len(prefixViewEvent):])
			dels = append(dels, viewEventKey(pos), u64(viewSubjectPrefix(rec.Subject), pos), viewIDKey(rec.ID))
			if !scanKeys(txn, viewDeliveryPrefix(rec.ID), func(k []byte) bool { dels = append(dels, k); return true }) {
				return false, nil
			}
			return true, nil
		})
		return err
	})
	if err == nil && len(dels) > 0 {
		err = o.deleteList(dels)
	}
	return next, more, err
}
