package outbox

import (
	"bytes"
	"errors"
	"slices"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// runMaintenance removes expired events and logs and reclaims disk space,
// every retentionEvery until Close.
func (o *Outbox) runMaintenance() {
	defer o.loopsWG.Done()
	t := time.NewTicker(o.retentionEvery)
	defer t.Stop()
	for {
		select {
		case <-o.stop:
			return
		case <-t.C:
		}
		// Deleting writes tombstones first; space comes back only with
		// compaction, so nothing is gained by writing on a full disk.
		if o.space.check() != nil {
			continue
		}
		if err := o.retain(o.now()); err != nil {
			o.log.Error("retention pass failed", "err", err)
		}
		o.dropExpiredSecrets(o.now())
		o.collectGarbage()
	}
}

// collectGarbage rewrites value-log files that are mostly garbage. Deleted
// keys themselves disappear through Badger's background compaction; value
// logs only shrink through GC, so it runs until nothing more is reclaimable
// (bounded, to yield to the stop signal).
func (o *Outbox) collectGarbage() {
	for range 16 {
		select {
		case <-o.stop:
			return
		default:
		}
		if err := o.db.RunValueLogGC(0.5); err != nil {
			if !errors.Is(err, badger.ErrNoRewrite) && !errors.Is(err, badger.ErrRejected) {
				o.log.Warn("value log GC failed", "err", err)
			}
			return
		}
	}
}

// retentionChunk is how many records one retention transaction examines,
// so that admin calls waiting on adminMu are not held up for long.
const retentionChunk = 1000

// retain deletes events older than storage.retention whose deliveries are
// all done (SUCCEEDED or FAILED, or that had none), and logs older than
// storage.retention. Events with a PENDING delivery (e.g. paused on a
// DISABLED webhook) are kept until it is done.
func (o *Outbox) retain(now time.Time) error {
	cutoff := now.Add(-o.storage.Retention)
	for _, pass := range []func(from []byte, cutoff time.Time) ([]byte, bool, error){
		o.retainEvents, o.retainViewEvents, o.retainLogs, o.retainViewLogs,
	} {
		var from []byte
		for {
			select {
			case <-o.stop:
				return nil
			default:
			}
			next, more, err := pass(from, cutoff)
			if err != nil {
				return err
			}
			if !more {
				break
			}
			from = next
		}
	}
	return nil
}

// retainEvents handles up to retentionChunk events starting at key from.
func (o *Outbox) retainEvents(from []byte, cutoff time.Time) (next []byte, more bool, err error) {
	o.adminMu.Lock()
	defer o.adminMu.Unlock()
	var dels [][]byte
	err = o.db.View(func(txn *badger.Txn) error {
		next, more, err = retentionScan(txn, prefixEvent, from, func(item *badger.Item) (bool, error) {
			var rec eventRecord
			if err := item.Value(rec.unmarshal); err != nil {
				return false, err
			}
			if !rec.CommittedAt.Before(cutoff) {
				return false, nil // sequences grow with commit time: the rest is newer
			}
			seq := beUint64(item.Key()[len(prefixEvent):])
			ds, err := readDeliveries(txn, seq)
			if err != nil {
				return false, err
			}
			if hasState(ds, Pending) {
				return true, nil
			}
			dels = append(dels, eventKey(seq), subjectKey(rec.Subject, seq))
			for _, d := range ds {
				dels = append(dels, deliveryKey(seq, d.WebhookID))
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

// retainLogs handles up to retentionChunk of this node's own logs starting
// at key from.
func (o *Outbox) retainLogs(from []byte, cutoff time.Time) (next []byte, more bool, err error) {
	return o.retainLogSpace(ownLogs, from, cutoff)
}

// retainViewLogs does the same for the cluster's logs viewed here.
func (o *Outbox) retainViewLogs(from []byte, cutoff time.Time) (next []byte, more bool, err error) {
	return o.retainLogSpace(viewLogs, from, cutoff)
}

func (o *Outbox) retainLogSpace(space logSpace, from []byte, cutoff time.Time) (next []byte, more bool, err error) {
	var dels [][]byte
	var top uint64
	err = o.db.View(func(txn *badger.Txn) error {
		next, more, err = retentionScan(txn, space.all, from, func(item *badger.Item) (bool, error) {
			var l Log
			if err := item.Value(func(v []byte) (err error) {
				l, err = unmarshalLog(v)
				return err
			}); err != nil {
				return false, err
			}
			if !l.CreatedAt.Before(cutoff) {
				return false, nil
			}
			top = beUint64(item.Key()[len(space.all):])
			keys := space.keys(&l, top)
			dels = append(dels, keys[:]...)
			return true, nil
		})
		return err
	})
	if err == nil && len(dels) > 0 {
		if bytes.Equal(space.all, ownLogs.all) {
			// The log sequence is read back from the highest l/ key at
			// Open; once every log is gone it would start again and a
			// stale x/ index entry (or a client's cursor) could then name
			// a new log. The highest sequence deleted is kept first, so it
			// never goes back. (View logs are numbered by the stream.)
			err = o.dbUpdate(func(txn *badger.Txn) error { return txn.Set(keyMetaLogSeq, u64(nil, top)) })
		}
		if err == nil {
			err = o.deleteList(dels)
		}
	}
	return next, more, err
}

// retentionScan visits the items under prefix from key from (the start
// when nil) until visit returns false, an error, or retentionChunk items
// were visited; next is then the key to resume from.
func retentionScan(txn *badger.Txn, prefix, from []byte, visit func(*badger.Item) (bool, error)) (next []byte, more bool, err error) {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true, PrefetchSize: 64})
	defer it.Close()
	if from == nil {
		from = prefix
	}
	n := 0
	for it.Seek(from); it.ValidForPrefix(prefix); it.Next() {
		if n == retentionChunk {
			return it.Item().KeyCopy(nil), true, nil
		}
		n++
		if ok, err := visit(it.Item()); !ok || err != nil {
			return nil, false, err
		}
	}
	return nil, false, nil
}

func (o *Outbox) deleteList(keys [][]byte) error {
	return o.deleteKeys(func(yield func([]byte) bool) error {
		for _, k := range keys {
			if !yield(k) {
				return nil
			}
		}
		return nil
	})
}

// dropExpiredSecrets removes from the store the previous secrets whose 24 h
// of signing are over: they no longer sign anything and should not sit on
// disk. It runs with retention, so a secret is gone at most
// retentionEvery (10 minutes) after its time.
func (o *Outbox) dropExpiredSecrets(now time.Time) {
	o.whMu.Lock()
	defer o.whMu.Unlock()
	for _, h := range o.hooks {
		kept := slices.DeleteFunc(slices.Clone(h.PreviousSecrets), func(p PreviousSecret) bool { return !now.Before(p.Until) })
		if len(kept) == len(h.PreviousSecrets) {
			continue
		}
		next := *h
		next.PreviousSecrets = kept
		if len(kept) == 0 {
			next.PreviousSecrets = nil
		}
		if err := o.putWebhookLocked(&next); err != nil {
			o.log.Error("dropping expired previous secrets failed; retrying at the next retention pass", "webhook", h.ID, "err", err)
			return
		}
	}
}
