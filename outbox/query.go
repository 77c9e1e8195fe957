package outbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// Event returns the event with the given id and its deliveries, or
// ErrNotFound.
func (o *Outbox) Event(ctx context.Context, id string) (Event, error) {
	var out Event
	if o.streamView() {
		return o.viewEvent(ctx, id)
	}
	seq, ok := parseID(eventIDPrefix, id)
	if !ok {
		return out, fmt.Errorf("event %q: %w", id, ErrNotFound)
	}
	err := o.view(ctx, func(txn *badger.Txn) error {
		var err error
		out, err = readEvent(txn, seq, id)
		return err
	})
	return out, err
}

// readEvent loads event seq with its deliveries; a non-empty id must match.
func readEvent(txn *badger.Txn, seq uint64, id string) (Event, error) {
	var rec eventRecord
	err := getRecord(txn, eventKey(seq), rec.unmarshal)
	if errors.Is(err, badger.ErrKeyNotFound) || (err == nil && id != "" && rec.ID != id) {
		return Event{}, fmt.Errorf("event %q: %w", id, ErrNotFound)
	}
	if err != nil {
		return Event{}, err
	}
	ds, err := readDeliveries(txn, seq)
	if err != nil {
		return Event{}, err
	}
	return rec.event(ds), nil
}

// event is the record as the API shows it, with its deliveries.
func (r *eventRecord) event(ds []Delivery) Event {
	return Event{
		ID:         r.ID,
		Type:       r.Type,
		Subject:    r.Subject,
		Rule:       r.Rule,
		CreatedAt:  r.ObservedAt,
		Payload:    r.Payload,
		Deliveries: ds,
	}
}

func readDeliveries(txn *badger.Txn, seq uint64) ([]Delivery, error) {
	return scanDeliveries(txn, deliveryPrefix(seq))
}

// scanDeliveries reads the delivery records under prefix, each keyed by
// prefix + webhook id.
func scanDeliveries(txn *badger.Txn, prefix []byte) ([]Delivery, error) {
	it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: false, Prefix: prefix})
	defer it.Close()
	ds := []Delivery{}
	for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
		var r deliveryRecord
		if err := it.Item().Value(r.unmarshal); err != nil {
			return nil, err
		}
		d := Delivery{
			WebhookID:          string(it.Item().Key()[len(prefix):]),
			State:              r.State,
			Attempts:           r.Attempts,
			LastResponseStatus: r.LastResponseStatus,
		}
		if r.State == Pending {
			d.NextAttemptAt = r.NextAttemptAt
		}
		ds = append(ds, d)
	}
	return ds, nil
}

// Events lists events newest first with their deliveries. A Subject filter
// uses the subject index; Type and State are checked per event. Total
// counts every match, so it costs a scan of the filtered range.
func (o *Outbox) Events(ctx context.Context, filter EventFilter, first int, after string) (Page[Event], error) {
	var page Page[Event]
	if err := checkFirst(first); err != nil {
		return page, err
	}
	if filter.State != "" && filter.State != Pending && filter.State != Succeeded && filter.State != Failed {
		return page, fmt.Errorf("%w: state %q must be PENDING, SUCCEEDED or FAILED", ErrInvalid, filter.State)
	}
	space := o.eventSpace()
	prefix := space.all
	if filter.Subject != "" {
		prefix = space.subjects(filter.Subject)
	}
	keyLen := len(prefix) + 8
	afterKey, err := resumeAfter(after, prefix, keyLen)
	if err != nil {
		return page, err
	}
	valueFilter := filter.Type != "" || filter.State != ""
	err = o.view(ctx, func(txn *badger.Txn) error {
		return scanReverse(txn, prefix, afterKey, func(key []byte) error {
			if len(key) != keyLen {
				return nil
			}
			inPage := len(page.Items) < first
			if !inPage && !valueFilter {
				page.Total++
				page.HasNext = true
				return nil
			}
			ev, err := space.read(txn, beUint64(key[len(key)-8:]), "")
			if errors.Is(err, ErrNotFound) {
				return nil // index entry of an event being removed
			}
			if err != nil {
				return err
			}
			if filter.Type != "" && ev.Type != filter.Type {
				return nil
			}
			if filter.State != "" && !hasState(ev.Deliveries, filter.State) {
				return nil
			}
			page.Total++
			if inPage {
				page.Items = append(page.Items, ev)
				page.Cursors = append(page.Cursors, encodeCursor(key))
			} else {
				page.HasNext = true
			}
			return nil
		})
	})
	if afterKey != nil {
		// Total counts the whole filtered listing, not just what follows
		// the cursor.
		if err == nil {
			page.Total, err = o.countEvents(ctx, filter, prefix, keyLen, space.read)
		}
	}
	return page, err
}

func (o *Outbox) countEvents(ctx context.Context, filter EventFilter, prefix []byte, keyLen int, read func(*badger.Txn, uint64, string) (Event, error)) (int, error) {
	n := 0
	err := o.view(ctx, func(txn *badger.Txn) error {
		return scanReverse(txn, prefix, nil, func(key []byte) error {
			if len(key) != keyLen {
				return nil
			}
			if filter.Type == "" && filter.State == "" {
				n++
				return nil
			}
			ev, err := read(txn, beUint64(key[len(key)-8:]), "")
			if errors.Is(err, ErrNotFound) {
				return nil
			}
			if err != nil {
				return err
			}
			if (filter.Type == "" || ev.Type == filter.Type) && (filter.State == "" || hasState(ev.Deliveries, filter.State)) {
				n++
			}
			return nil
		})
	})
	return n, err
}

func hasState(ds []Delivery, s DeliveryState) bool {
	for _, d := range ds {
		if d.State == s {
			return true
		}
	}
	return false
}

// scanReverse calls fn with every key of prefix from the newest down,
// starting strictly below after when it is set. fn must not keep key.
func scanReverse(txn *badger.Txn, prefix, after []byte, fn func(key []byte) error) error {
	it := txn.NewIterator(badger.IteratorOptions{Reverse: true, Prefix: prefix})
	defer it.Close()
	if after != nil {
		seekBefore(it, after)
	} else {
		seekLast(it, prefix)
	}
	for ; it.ValidForPrefix(prefix); it.Next() {
		if err := fn(it.Item().Key()); err != nil {
			return err
		}
	}
	return nil
}

// Logs lists delivery attempt logs newest first. An EventID or WebhookID
// filter uses an index; the other fields are checked per log. A cursor is
// valid for the listing (index) it came from.
func (o *Outbox) Logs(ctx context.Context, filter LogFilter, first int, after string) (Page[Log], error) {
	var page Page[Log]
	if err := checkFirst(first); err != nil {
		return page, err
	}
	space := o.logSpace()
	prefix := space.all
	switch {
	case filter.EventID != "":
		prefix = append(bytes.Clone(space.byEvent), filter.EventID...)
	case filter.WebhookID != "":
		prefix = append(bytes.Clone(space.byWebhook), filter.WebhookID...)
	}
	keyLen := len(prefix) + 8
	afterKey, err := resumeAfter(after, prefix, keyLen)
	if err != nil {
		return page, err
	}
	// Only the index filters can be answered from keys alone.
	keyOnly := filter.Type == "" && filter.Succeeded == nil && filter.CreatedAfter.IsZero() &&
		filter.CreatedBefore.IsZero() && (filter.EventID == "" || filter.WebhookID == "")
	err = o.view(ctx, func(txn *badger.Txn) error {
		pass := func(from []byte, collect bool) error {
			return scanReverse(txn, prefix, from, func(key []byte) error {
				if len(key) != keyLen {
					return nil
				}
				want := collect && len(page.Items) < first
				if !want && keyOnly {
					page.Total++
					if collect {
						page.HasNext = true
					}
					return nil
				}
				var l Log
				err := getRecord(txn, space.key(beUint64(key[len(key)-8:])), func(v []byte) (err error) {
					l, err = unmarshalLog(v)
					return err
				})
				if errors.Is(err, badger.ErrKeyNotFound) {
					return nil // index entry of a log being removed
				}
				if err != nil {
					return err
				}
				if !filter.Matches(&l) {
					return nil
				}
				page.Total++
				if want {
					page.Items = append(page.Items, l)
					page.Cursors = append(page.Cursors, encodeCursor(key))
				} else if collect {
					page.HasNext = true
				}
				return nil
			})
		}
		if err := pass(afterKey, true); err != nil {
			return err
		}
		if afterKey != nil {
			page.Total = 0
			return pass(nil, false)
		}
		return nil
	})
	return page, err
}
