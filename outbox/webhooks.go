package outbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/eventtap/eventtap/delivery/signature"
)

// secretOverlap is how long the previous secret keeps signing after a
// rotation, so receivers can switch keys without dropping deliveries.
const secretOverlap = 24 * time.Hour

// maxPreviousSecrets bounds the signatures of one request when a webhook is
// rotated many times within secretOverlap; the oldest stops signing early.
const maxPreviousSecrets = 8

// loadWebhooks fills the webhook cache. Webhooks are few and read on every
// commit, so all of them live in memory; Badger is the durable copy.
func (o *Outbox) loadWebhooks(txn *badger.Txn) error {
	it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 64, Prefix: prefixWebhook})
	defer it.Close()
	for it.Seek(prefixWebhook); it.ValidForPrefix(prefixWebhook); it.Next() {
		r := &webhookRecord{}
		if err := it.Item().Value(r.unmarshal); err != nil {
			return fmt.Errorf("webhook %s: %w", it.Item().Key(), err)
		}
		o.hooks[r.ID] = r
		if r.Status != Enabled {
			o.disp.SetPaused(r.ID, true)
		}
	}
	o.rebuildLocked()
	return nil
}

// rebuildLocked recomputes the subscription index and the webhooks gauge;
// whMu must be held exclusively (or not yet shared).
func (o *Outbox) rebuildLocked() {
	subs := map[string][]string{}
	counts := map[WebhookStatus]int{Enabled: 0, Disabled: 0}
	for id, h := range o.hooks {
		if o.metrics != nil {
			o.metrics.initWebhook(id, h.Type)
		}
		counts[h.Status]++
		if h.Status == Enabled {
			subs[h.Type] = append(subs[h.Type], id)
		}
	}
	for _, ids := range subs {
		slices.Sort(ids)
	}
	o.subs = subs
	if o.metrics != nil {
		for s, n := range counts {
			o.metrics.webhooks.WithLabelValues(string(s)).Set(float64(n))
		}
	}
}

// putWebhookLocked persists r and updates the cache, the subscription index
// and the paused set. whMu must be held exclusively.
func (o *Outbox) putWebhookLocked(r *webhookRecord) error {
	if err := o.shareWebhookLocked(r); err != nil {
		return err
	}
	return o.storeWebhookLocked(r)
}

// storeWebhookLocked is putWebhookLocked on this node alone.
func (o *Outbox) storeWebhookLocked(r *webhookRecord) error {
	if err := o.dbUpdate(func(txn *badger.Txn) error {
		return txn.Set(webhookKey(r.ID), r.marshal())
	}); err != nil {
		return err
	}
	old := o.hooks[r.ID]
	o.hooks[r.ID] = r
	o.rebuildLocked()
	if old == nil || old.Status != r.Status {
		o.disp.SetPaused(r.ID, r.Status != Enabled)
		if r.Status != Enabled {
			o.recent.forget(r.ID)
		}
	}
	return nil
}

// webhookCopy returns a copy of the cached webhook, or nil.
func (o *Outbox) webhookCopy(id string) *webhookRecord {
	o.whMu.RLock()
	defer o.whMu.RUnlock()
	h := o.hooks[id]
	if h == nil {
		return nil
	}
	c := *h
	return &c
}

// Webhook returns the webhook with the given id, or ErrNotFound.
func (o *Outbox) Webhook(ctx context.Context, id string) (Webhook, error) {
	var out Webhook
	err := o.use(ctx, func() error {
		h := o.webhookCopy(id)
		if h == nil {
			return fmt.Errorf("webhook %q: %w", id, ErrNotFound)
		}
		out = h.Webhook
		return nil
	})
	return out, err
}

// Webhooks lists webhooks newest first. after is a cursor from a previous
// page ("" for the first page); first is the page size (0..500).
func (o *Outbox) Webhooks(ctx context.Context, filter WebhookFilter, first int, after string) (Page[Webhook], error) {
	var page Page[Webhook]
	if err := checkFirst(first); err != nil {
		return page, err
	}
	afterKey, err := resumeAfter(after, prefixWebhook, len(prefixWebhook)+webhookIDLen)
	if err != nil {
		return page, err
	}
	err = o.use(ctx, func() error {
		o.whMu.RLock()
		list := make([]Webhook, 0, len(o.hooks))
		for _, h := range o.hooks {
			if (filter.Type == "" || h.Type == filter.Type) && (filter.Status == "" || h.Status == filter.Status) {
				list = append(list, h.Webhook)
			}
		}
		o.whMu.RUnlock()
		// Ids start with the creation time, so id order is creation order.
		slices.SortFunc(list, func(a, b Webhook) int { return strings.Compare(b.ID, a.ID) })
		page.Total = len(list)
		for _, h := range list {
			k := webhookKey(h.ID)
			if afterKey != nil && bytes.Compare(k, afterKey) >= 0 {
				continue
			}
			if len(page.Items) == first {
				page.HasNext = true
				break
			}
			page.Items = append(page.Items, h)
			page.Cursors = append(page.Cursors, encodeCursor(k))
		}
		return nil
	})
	return page, err
}

func checkFirst(first int) error {
	if first < 0 || first > 500 {
		return fmt.Errorf("%w: first must be between 0 and 500, got %d", ErrInvalid, first)
	}
	return nil
}

func (o *Outbox) checkType(t string) error {
	if !o.types[t] {
		known := make([]string, 0, len(o.types))
		for k := range o.types {
			known = append(known, k)
		}
		slices.Sort(known)
		return fmt.Errorf("%w: type %q is not an event type; use one of %s (or add it to event_types)", ErrInvalid, t, strings.Join(known, ", "))
	}
	return nil
}

func checkStatus(s WebhookStatus) error {
	if s != Enabled && s != Disabled {
		return fmt.Errorf("%w: status %q must be ENABLED or DISABLED", ErrInvalid, s)
	}
	return nil
}

// CreateWebhook validates and stores a new webhook. The URL must be absolute
// http(s) (and not a private address unless allowed), the type one of the
// configured event types; an empty Secret is generated, a given one must be
// "whsec_" + padded base64 of at least 24 bytes (signature.Check). Errors wrap ErrInvalid. Events
// committed after CreateWebhook returns are delivered to it.
func (o *Outbox) CreateWebhook(ctx context.Context, in WebhookCreate) (Webhook, error) {
	var out Webhook
	if in.Status == "" {
		in.Status = Enabled
	}
	var errs []error
	if err := o.sender.CheckURL(in.URL); err != nil {
		errs = append(errs, err)
	}
	if err := o.checkType(in.Type); err != nil {
		errs = append(errs, err)
	}
	if err := checkStatus(in.Status); err != nil {
		errs = append(errs, err)
	}
	if in.Secret == "" {
		in.Secret = signature.NewSecret()
	} else if err := signature.Check(in.Secret); err != nil {
		errs = append(errs, fmt.Errorf("%w: %v", ErrInvalid, err))
	}
	if err := errors.Join(errs...); err != nil {
		return out, err
	}
	err := o.use(ctx, func() error {
		now := o.now().UTC()
		r := &webhookRecord{Webhook: Webhook{
			ID:          newID(webhookIDPrefix, uint64(now.UnixNano())),
			URL:         in.URL,
			Type:        in.Type,
			Status:      in.Status,
			Secret:      in.Secret,
			Description: cloneStr(in.Description),
			CreatedAt:   now,
			UpdatedAt:   now,
		}}
		o.whMu.Lock()
		defer o.whMu.Unlock()
		if err := o.putWebhookLocked(r); err != nil {
			return fmt.Errorf("outbox: saving webhook: %w", err)
		}
		out = r.Webhook
		o.log.Info("webhook created", "webhook", r.ID, "type", r.Type, "status", r.Status)
		return nil
	})
	return out, err
}

// UpdateWebhook changes the given fields. Setting status ENABLED clears the
// disabled reason and resumes the webhook's paused deliveries; DISABLED
// pauses them (they stay PENDING).
func (o *Outbox) UpdateWebhook(ctx context.Context, in WebhookUpdate) (Webhook, error) {
	var out Webhook
	var errs []error
	if in.URL != nil {
		if err := o.sender.CheckURL(*in.URL); err != nil {
			errs = append(errs, err)
		}
	}
	if in.Type != nil {
		if err := o.checkType(*in.Type); err != nil {
			errs = append(errs, err)
		}
	}
	if in.Status != nil {
		if err := checkStatus(*in.Status); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return out, err
	}
	err := o.useShared(ctx, in.ID, func() error {
		o.whMu.Lock()
		defer o.whMu.Unlock()
		h := o.hooks[in.ID]
		if h == nil {
			return fmt.Errorf("webhook %q: %w", in.ID, ErrNotFound)
		}
		r := *h
		if in.URL != nil {
			r.URL = *in.URL
		}
		if in.Type != nil {
			r.Type = *in.Type
		}
		if in.Description != nil {
			r.Description = cloneStr(in.Description)
		}
		if in.Status != nil && *in.Status != r.Status {
			r.Status = *in.Status
			if r.Status == Enabled {
				r.DisabledReason = nil
				r.FailingSince = time.Time{}
			} else {
				reason := "disabled through the admin API"
				r.DisabledReason = &reason
			}
		}
		r.UpdatedAt = o.now().UTC()
		if err := o.putWebhookLocked(&r); err != nil {
			return fmt.Errorf("outbox: saving webhook: %w", err)
		}
		out = r.Webhook
		return nil
	})
	return out, err
}

// RotateSecret gives the webhook a new secret; the one it replaces keeps
// signing alongside it for 24 hours, as do the secrets replaced by earlier
// rotations until their own 24 hours are over.
func (o *Outbox) RotateSecret(ctx context.Context, id string) (Webhook, error) {
	var out Webhook
	err := o.useShared(ctx, id, func() error {
		o.whMu.Lock()
		defer o.whMu.Unlock()
		h := o.hooks[id]
		if h == nil {
			return fmt.Errorf("webhook %q: %w", id, ErrNotFound)
		}
		now := o.now().UTC()
		r := *h
		prev := []PreviousSecret{{Secret: r.Secret, Until: now.Add(secretOverlap)}}
		for _, p := range h.PreviousSecrets {
			if now.Before(p.Until) && len(prev) < maxPreviousSecrets {
				prev = append(prev, p)
			}
		}
		r.PreviousSecrets = prev
		r.Secret = signature.NewSecret()
		r.UpdatedAt = now
		if err := o.putWebhookLocked(&r); err != nil {
			return fmt.Errorf("outbox: saving webhook: %w", err)
		}
		out = r.Webhook
		return nil
	})
	return out, err
}

// DeleteWebhook removes the webhook and its delivery records (pending ones
// are dropped). Its logs stay until retention removes them.
func (o *Outbox) DeleteWebhook(ctx context.Context, id string) error {
	return o.deleteWebhook(ctx, id, true)
}

// deleteWebhook is DeleteWebhook; share is false when the shared registry
// already deleted it (cluster_seam.go).
func (o *Outbox) deleteWebhook(ctx context.Context, id string, share bool) error {
	return o.use(ctx, func() error {
		o.whMu.Lock()
		if o.hooks[id] == nil {
			o.whMu.Unlock()
			return fmt.Errorf("webhook %q: %w", id, ErrNotFound)
		}
		if share {
			if err := o.shareDeleteLocked(id); err != nil {
				o.whMu.Unlock()
				return err
			}
		}
		if err := o.dbUpdate(func(txn *badger.Txn) error { return txn.Delete(webhookKey(id)) }); err != nil {
			o.whMu.Unlock()
			return fmt.Errorf("outbox: deleting webhook: %w", err)
		}
		// From here on neither the committer nor a worker writes records
		// of this webhook (both check the cache under whMu).
		delete(o.hooks, id)
		o.rebuildLocked()
		o.disp.RemoveWebhook(id)
		o.recent.forget(id)
		o.metrics.forgetWebhook(id)
		o.whMu.Unlock()

		o.adminMu.Lock()
		defer o.adminMu.Unlock()
		err := o.deleteKeys(func(yield func([]byte) bool) error {
			return o.db.View(func(txn *badger.Txn) error {
				if !scanKeys(txn, lanePrefix(id), yield) || !forgetViewDeliveries(txn, id, yield) {
					return nil
				}
				it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixDelivery})
				defer it.Close()
				for it.Seek(prefixDelivery); it.ValidForPrefix(prefixDelivery); it.Next() {
					k := it.Item().Key()
					if bytes.HasSuffix(k, []byte(id)) && len(k) == len(prefixDelivery)+8+len(id) {
						if !yield(it.Item().KeyCopy(nil)) {
							return nil
						}
					}
				}
				return nil
			})
		})
		if err != nil {
			return fmt.Errorf("outbox: deleting the webhook's deliveries: %w", err)
		}
		o.log.Info("webhook deleted", "webhook", id)
		return nil
	})
}

// scanKeys yields copies of every key with the prefix; false means stop.
func scanKeys(txn *badger.Txn, prefix []byte, yield func([]byte) bool) bool {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	defer it.Close()
	for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
		if !yield(it.Item().KeyCopy(nil)) {
			return false
		}
	}
	return true
}

// deleteKeys deletes every key produced by scan, in write batches so that
// the number of keys is not limited by the transaction size.
func (o *Outbox) deleteKeys(scan func(yield func([]byte) bool) error) error {
	if err := o.space.check(); err != nil {
		return err
	}
	wb := o.db.NewWriteBatch()
	defer wb.Cancel()
	var werr error
	if err := scan(func(k []byte) bool {
		werr = wb.Delete(k)
		return werr == nil
	}); err != nil {
		return err
	}
	if werr != nil {
		return werr
	}
	return wb.Flush()
}

func cloneStr(s *string) *string {
	if s == nil {
		return nil
	}
	c := *s
	return &c
}
