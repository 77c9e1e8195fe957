package admin

import (
	"context"
	"encoding/base64"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/eventtap/eventtap/outbox"
)

// fakeStore is an in-memory Store: the package-boundary fake for these
// tests. Items are kept oldest first and listed newest first; a cursor is
// the base64 of an item's sequence number, so it stays valid while items
// are added, as outbox.Page promises.
type fakeStore struct {
	mu       sync.Mutex
	seq      int
	now      time.Time
	webhooks []outbox.Webhook
	logs     []outbox.Log
	events   []outbox.Event
	fail     error // when set, every call returns it
	replays  []string
}

// Both the fake and the real outbox satisfy Store.
var (
	_ Store = (*fakeStore)(nil)
	_ Store = (*outbox.Outbox)(nil)
)

func newFakeStore() *fakeStore {
	return &fakeStore{now: time.Date(2026, 11, 29, 13, 34, 18, 123_000_000, time.UTC)}
}

func (f *fakeStore) next(prefix string) (string, time.Time) {
	f.seq++
	f.now = f.now.Add(time.Second)
	return fmt.Sprintf("%s_%d", prefix, f.seq), f.now
}

// seqOf reads the sequence number back out of an id made by next.
func seqOf(id string) int {
	_, n, _ := strings.Cut(id, "_")
	v, _ := strconv.Atoi(n)
	return v
}

func encodeCursor(id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte("c" + strconv.Itoa(seqOf(id))))
}

func decodeCursor(c string) (int, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil || len(b) < 2 || b[0] != 'c' {
		return 0, outbox.ErrBadCursor
	}
	n, err := strconv.Atoi(string(b[1:]))
	if err != nil {
		return 0, outbox.ErrBadCursor
	}
	return n, nil
}

// paginate lists items newest first, after the cursor, keeping those
// matching keep.
func paginate[T any](items []T, id func(T) string, keep func(T) bool, first int, after string) (outbox.Page[T], error) {
	limit := int(^uint(0) >> 1)
	if after != "" {
		n, err := decodeCursor(after)
		if err != nil {
			return outbox.Page[T]{}, err
		}
		limit = n
	}
	var p outbox.Page[T]
	for _, it := range slices.Backward(items) {
		if !keep(it) {
			continue
		}
		p.Total++
		if seqOf(id(it)) >= limit {
			continue
		}
		if len(p.Items) == first {
			p.HasNext = true
			continue
		}
		p.Items = append(p.Items, it)
		p.Cursors = append(p.Cursors, encodeCursor(id(it)))
	}
	return p, nil
}

func (f *fakeStore) Webhook(_ context.Context, id string) (outbox.Webhook, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	i, err := f.webhook(id)
	if err != nil {
		return outbox.Webhook{}, err
	}
	return f.webhooks[i], nil
}

func (f *fakeStore) webhookIndex(id string) int {
	return slices.IndexFunc(f.webhooks, func(w outbox.Webhook) bool { return w.ID == id })
}

// webhook returns the index of webhook id, or the error a store would
// give: the injected failure, or ErrNotFound. f.mu must be held.
func (f *fakeStore) webhook(id string) (int, error) {
	if f.fail != nil {
		return -1, f.fail
	}
	i := f.webhookIndex(id)
	if i < 0 {
		return -1, fmt.Errorf("webhook %q: %w", id, outbox.ErrNotFound)
	}
	return i, nil
}

func (f *fakeStore) Webhooks(_ context.Context, filter outbox.WebhookFilter, first int, after string) (outbox.Page[outbox.Webhook], error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return outbox.Page[outbox.Webhook]{}, f.fail
	}
	return paginate(f.webhooks, func(w outbox.Webhook) string { return w.ID }, func(w outbox.Webhook) bool {
		return (filter.Type == "" || w.Type == filter.Type) && (filter.Status == "" || w.Status == filter.Status)
	}, first, after)
}

func checkURL(raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("%w: url: %q is not an absolute http(s) URL", outbox.ErrInvalid, raw)
	}
	return nil
}

func (f *fakeStore) CreateWebhook(_ context.Context, in outbox.WebhookCreate) (outbox.Webhook, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return outbox.Webhook{}, f.fail
	}
	if err := checkURL(in.URL); err != nil {
		return outbox.Webhook{}, err
	}
	if in.Secret != "" && !strings.HasPrefix(in.Secret, "whsec_") {
		return outbox.Webhook{}, fmt.Errorf("%w: secret: must start with whsec_", outbox.ErrInvalid)
	}
	id, now := f.next("wh")
	w := outbox.Webhook{ID: id, URL: in.URL, Type: in.Type, Status: in.Status, Secret: in.Secret,
		Description: in.Description, CreatedAt: now, UpdatedAt: now}
	if w.Status == "" {
		w.Status = outbox.Enabled
	}
	if w.Secret == "" {
		w.Secret = "whsec_" + base64.StdEncoding.EncodeToString([]byte("generated-secret-"+id))
	}
	f.webhooks = append(f.webhooks, w)
	return w, nil
}

func (f *fakeStore) UpdateWebhook(_ context.Context, in outbox.WebhookUpdate) (outbox.Webhook, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	i, err := f.webhook(in.ID)
	if err != nil {
		return outbox.Webhook{}, err
	}
	w := f.webhooks[i]
	if in.URL != nil {
		if err := checkURL(*in.URL); err != nil {
			return outbox.Webhook{}, err
		}
		w.URL = *in.URL
	}
	if in.Type != nil {
		w.Type = *in.Type
	}
	if in.Status != nil {
		w.Status = *in.Status
	}
	if in.Description != nil {
		w.Description = in.Description
	}
	_, w.UpdatedAt = f.next("tick")
	f.webhooks[i] = w
	return w, nil
}

func (f *fakeStore) DeleteWebhook(_ context.Context, id string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	i, err := f.webhook(id)
	if err != nil {
		return err
	}
	f.webhooks = slices.Delete(f.webhooks, i, i+1)
	return nil
}

func (f *fakeStore) RotateSecret(_ context.Context, id string) (outbox.Webhook, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	i, err := f.webhook(id)
	if err != nil {
		return outbox.Webhook{}, err
	}
	w := &f.webhooks[i]
	_, now := f.next("tick")
	w.PreviousSecrets = append([]outbox.PreviousSecret{{Secret: w.Secret, Until: now.Add(24 * time.Hour)}}, w.PreviousSecrets...)
	w.Secret = "whsec_" + base64.StdEncoding.EncodeToString([]byte("rotated-at-"+now.String()))
	w.UpdatedAt = now
	return *w, nil
}

func (f *fakeStore) Logs(_ context.Context, filter outbox.LogFilter, first int, after string) (outbox.Page[outbox.Log], error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return outbox.Page[outbox.Log]{}, f.fail
	}
	return paginate(f.logs, func(l outbox.Log) string { return l.ID }, func(l outbox.Log) bool { return filter.Matches(&l) }, first, after)
}

func (f *fakeStore) Event(_ context.Context, id string) (outbox.Event, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return outbox.Event{}, f.fail
	}
	i := slices.IndexFunc(f.events, func(e outbox.Event) bool { return e.ID == id })
	if i < 0 {
		return outbox.Event{}, fmt.Errorf("event %q: %w", id, outbox.ErrNotFound)
	}
	return f.events[i], nil
}

func (f *fakeStore) Events(_ context.Context, filter outbox.EventFilter, first int, after string) (outbox.Page[outbox.Event], error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return outbox.Page[outbox.Event]{}, f.fail
	}
	return paginate(f.events, func(e outbox.Event) string { return e.ID }, func(e outbox.Event) bool {
		return (filter.Type == "" || e.Type == filter.Type) &&
			(filter.Subject == "" || e.Subject == filter.Subject) &&
			(filter.State == "" || slices.ContainsFunc(e.Deliveries, func(d outbox.Delivery) bool { return d.State == filter.State }))
	}, first, after)
}

func (f *fakeStore) TestWebhook(_ context.Context, id string) (outbox.Log, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	i, err := f.webhook(id)
	if err != nil {
		return outbox.Log{}, err
	}
	w := f.webhooks[i]
	return f.addLogLocked(outbox.Log{WebhookID: w.ID, EventID: "evt_test", Type: w.Type, URL: w.URL,
		ResponseStatus: 200, Request: `{"test":true}`, Attempt: 1, Duration: 42 * time.Millisecond,
		ResponseBody: "ok", Succeeded: true}), nil
}

func (f *fakeStore) Replay(_ context.Context, webhookID string, since time.Time) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	i, err := f.webhook(webhookID)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, e := range f.events {
		if e.Type == f.webhooks[i].Type && !e.CreatedAt.Before(since) {
			n++
		}
	}
	f.replays = append(f.replays, webhookID+"@"+since.UTC().Format(time.RFC3339Nano))
	return n, nil
}

func (f *fakeStore) Redeliver(_ context.Context, eventID, webhookID string) (outbox.Event, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.fail != nil {
		return outbox.Event{}, f.fail
	}
	i := slices.IndexFunc(f.events, func(e outbox.Event) bool { return e.ID == eventID })
	if i < 0 || (webhookID != "" && f.webhookIndex(webhookID) < 0) {
		return outbox.Event{}, outbox.ErrNotFound
	}
	e := &f.events[i]
	for j := range e.Deliveries {
		if webhookID == "" || e.Deliveries[j].WebhookID == webhookID {
			e.Deliveries[j].State = outbox.Pending
			e.Deliveries[j].NextAttemptAt = f.now
		}
	}
	return *e, nil
}

// addLog and addEvent seed the store the way the dispatcher and committer
// would.
func (f *fakeStore) addLog(l outbox.Log) outbox.Log {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.addLogLocked(l)
}

func (f *fakeStore) addLogLocked(l outbox.Log) outbox.Log {
	l.ID, l.CreatedAt = f.next("log")
	f.logs = append(f.logs, l)
	return l
}

func (f *fakeStore) addEvent(e outbox.Event) outbox.Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	e.ID, e.CreatedAt = f.next("evt")
	f.events = append(f.events, e)
	return e
}
