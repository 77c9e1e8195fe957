package outbox

// This file holds the seams through which cluster mode (package cluster,
// docs/cluster.md) shares the outbox's registry and `changed` state with
// other nodes. The interfaces are the outbox's own: the cluster package
// implements them over NATS JetStream, and on one node they are nil, so
// nothing here changes what a single node does.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/eventtap/eventtap/delivery"
	"github.com/eventtap/eventtap/rules"
)

// Errors of cluster mode.
var (
	// ErrUnavailable means the shared registry cannot be reached, so a
	// change to it is refused rather than made on this node alone. The
	// admin API maps it to UNAVAILABLE.
	ErrUnavailable = errors.New("cluster unavailable")
	// ErrConflict means the shared registry holds a newer revision than
	// the one the change was based on.
	ErrConflict = errors.New("changed concurrently")
)

// Registry is the webhook registry shared by the nodes of a cluster.
// Values are opaque to it; revisions increase with every change.
type Registry interface {
	// Put stores value under id if the registry still holds revision rev
	// of it (0: id must not exist) and returns the new revision. It
	// returns an error wrapping ErrConflict when rev is stale, and one
	// wrapping ErrUnavailable when the registry cannot be reached.
	Put(ctx context.Context, id string, value []byte, rev uint64) (uint64, error)
	// Get returns the current value and revision of id, or ErrNotFound.
	Get(ctx context.Context, id string) ([]byte, uint64, error)
	// Delete removes id if its revision is still rev, and returns the
	// revision of the deletion.
	Delete(ctx context.Context, id string, rev uint64) (uint64, error)
}

// SharedState holds the values of `changed` rules for every node.
type SharedState interface {
	// Change reads key's value (found is false when it has none), passes
	// it to decide and, when decide says write, stores next with a
	// compare-and-set; on a conflict it reads again and calls decide again.
	Change(ctx context.Context, key string, decide func(prev []byte, found bool) (next []byte, write bool)) error
}

// TestLogSharer publishes the log of a webhookTest to the cluster's log
// stream and returns its position there.
type TestLogSharer interface {
	ShareTestLog(ctx context.Context, l Log) (pos uint64, err error)
}

// Cluster is what a node of a cluster plugs into its outbox.
type Cluster struct {
	Registry Registry
	State    SharedState
	// StreamDelivery says that the cluster delivers events from its
	// stream: the committer then fans no event out to local deliveries
	// (the partition's owner does, see DeliveryTarget and Subscribers).
	StreamDelivery bool
	// Requeue publishes events again for given webhooks on the cluster's
	// stream: eventRedeliver and webhookReplay in cluster mode
	// (cluster_requeue.go). Nil: those calls fail with ErrUnavailable.
	Requeue Requeuer
	// TestLogs shares the log of a webhookTest with every node; nil, or
	// when it fails, the log is kept on this node only.
	TestLogs TestLogSharer
	// Owned is the delivery work this node holds for the cluster, which
	// eventtap_outbox_pending and the per-webhook backlog gauges count
	// with the node's own; nil when none.
	Owned Backlogs
	// StateTimeout bounds deciding one exchange's `changed` events against
	// State; past it (or when State fails) the node decides against its
	// own last values, as a single node does.
	StateTimeout time.Duration
}

// sharedTimeout bounds one registry call made while whMu is held.
const sharedTimeout = 2 * time.Second

// clusterState is the outbox's part of cluster mode; its zero value is a
// single node.
type clusterState struct {
	hooks atomic.Pointer[Cluster]
	// revs holds the registry revision of each webhook this node last
	// wrote or applied; guarded by Outbox.whMu.
	revs map[string]uint64
	// local is set while `changed` is decided locally because State failed.
	local atomic.Bool
	// unshared holds the `changed` values decided locally (NATS
	// unreachable), to be written back to the shared state once it
	// answers (TakeUnsharedStates), at most maxUnshared keys.
	unsharedMu   sync.Mutex
	unshared     map[string]UnsharedState
	unsharedLost bool
}

// maxUnshared bounds the `changed` values kept for writing back after an
// outage; past it the oldest outage's later keys are not written back
// (logged once), and only their subjects' next change may report a stale
// previous value.
const maxUnshared = 65536

// UnsharedState is a `changed` value this node decided on its own while
// the shared state was unreachable: the value and when it was observed.
type UnsharedState struct {
	Key   string
	Value []byte
	At    time.Time
}

// keepUnshared remembers a value decided locally in cluster mode.
func (o *Outbox) keepUnshared(key string, value []byte, at time.Time) {
	cs := &o.cl
	cs.unsharedMu.Lock()
	defer cs.unsharedMu.Unlock()
	if cs.unshared == nil {
		cs.unshared = map[string]UnsharedState{}
	}
	if _, ok := cs.unshared[key]; !ok && len(cs.unshared) >= maxUnshared {
		if !cs.unsharedLost {
			cs.unsharedLost = true
			o.log.Warn("too many `changed` values decided on this node during the outage to write back; later ones stay local", "limit", maxUnshared)
		}
		return
	}
	cs.unshared[key] = UnsharedState{Key: key, Value: value, At: at}
}

// TakeUnsharedStates returns the `changed` values decided on this node
// while the shared state was unreachable, and forgets them; the cluster
// writes them back where the shared value is older (ReturnUnsharedStates
// gives back those it could not write).
func (o *Outbox) TakeUnsharedStates() []UnsharedState {
	cs := &o.cl
	cs.unsharedMu.Lock()
	defer cs.unsharedMu.Unlock()
	out := make([]UnsharedState, 0, len(cs.unshared))
	for _, u := range cs.unshared {
		out = append(out, u)
	}
	cs.unshared, cs.unsharedLost = nil, false
	return out
}

// ForgetUnsharedStates deletes the stored copies of values the cluster has
// written back, or found older than the shared value, so that a restart
// does not write them back again. Copies of a key decided after u.At stay.
func (o *Outbox) ForgetUnsharedStates(ctx context.Context, us []UnsharedState) error {
	if len(us) == 0 {
		return nil
	}
	return o.use(ctx, func() error {
		w, err := o.newTxnWriter()
		if err != nil {
			return err
		}
		err = o.db.View(func(txn *badger.Txn) error {
			for _, u := range us {
				p, ok := unsharedPrefix(u.Key)
				if !ok {
					continue
				}
				it := txn.NewIterator(badger.IteratorOptions{Prefix: p})
				for it.Rewind(); it.Valid(); it.Next() {
					k := it.Item().KeyCopy(nil)
					if _, at, ok := parseUnsharedKey(k); ok && !at.After(u.At) {
						if err := w.delete(k); err != nil {
							it.Close()
							return err
						}
					}
				}
				it.Close()
			}
			return nil
		})
		if err != nil {
			w.discard()
			return err
		}
		return w.commit()
	})
}

// loadUnshared takes the `changed` values decided during an outage that
// were not written back before the process stopped: the latest of each
// key (the keys sort by state key, then decision time).
func (o *Outbox) loadUnshared(txn *badger.Txn) error {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefixUnshared, PrefetchValues: true, PrefetchSize: 64})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		key, at, ok := parseUnsharedKey(it.Item().Key())
		if !ok {
			continue
		}
		o.cl.unsharedMu.Lock()
		cur, seen := o.cl.unshared[key]
		o.cl.unsharedMu.Unlock()
		if seen && !cur.At.Before(at) {
			continue
		}
		value, err := it.Item().ValueCopy(nil)
		if err != nil {
			return err
		}
		o.keepUnshared(key, value, at)
	}
	if n := o.UnsharedStates(); n > 0 {
		o.log.Info("`changed` values decided during a NATS outage before the restart will be written back to the cluster's shared state", "values", n)
	}
	return nil
}

// UnsharedStates counts the `changed` values waiting to be written back.
func (o *Outbox) UnsharedStates() int {
	o.cl.unsharedMu.Lock()
	defer o.cl.unsharedMu.Unlock()
	return len(o.cl.unshared)
}

// ReturnUnsharedStates keeps values TakeUnsharedStates gave out that could
// not be written back, unless a newer one was decided meanwhile.
func (o *Outbox) ReturnUnsharedStates(us []UnsharedState) {
	for _, u := range us {
		o.cl.unsharedMu.Lock()
		cur, ok := o.cl.unshared[u.Key]
		o.cl.unsharedMu.Unlock()
		if !ok || cur.At.Before(u.At) {
			o.keepUnshared(u.Key, u.Value, u.At)
		}
	}
}

// SetCluster turns cluster mode on: webhook changes go through c.Registry
// and `changed` is decided against c.State. Call it once, before traffic.
func (o *Outbox) SetCluster(c Cluster) {
	if c.StateTimeout <= 0 {
		c.StateTimeout = time.Second
	}
	o.whMu.Lock()
	o.cl.revs = map[string]uint64{}
	o.whMu.Unlock()
	o.cl.hooks.Store(&c)
}

// shareWebhookLocked writes r to the shared registry first, so that a
// change refused by it (a conflict, NATS unreachable) changes nothing
// here. On a conflict the cache takes the registry's current value, so
// that the caller's retry starts from it. whMu must be held exclusively.
func (o *Outbox) shareWebhookLocked(r *webhookRecord) error {
	c := o.cl.hooks.Load()
	if c == nil || c.Registry == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), sharedTimeout)
	defer cancel()
	rev, err := c.Registry.Put(ctx, r.ID, o.seal.seal(r.ID, r.marshal()), o.cl.revs[r.ID])
	if errors.Is(err, ErrConflict) {
		if v, rev, gerr := c.Registry.Get(ctx, r.ID); gerr == nil {
			_ = o.applyWebhookLocked(r.ID, v, rev)
		}
	}
	if err != nil {
		return fmt.Errorf("webhook %s: %w", r.ID, err)
	}
	o.cl.revs[r.ID] = rev
	return nil
}

// shareDeleteLocked removes id from the shared registry; whMu must be held.
func (o *Outbox) shareDeleteLocked(id string) error {
	c := o.cl.hooks.Load()
	if c == nil || c.Registry == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), sharedTimeout)
	defer cancel()
	rev, err := c.Registry.Delete(ctx, id, o.cl.revs[id])
	if err != nil {
		return fmt.Errorf("webhook %s: %w", id, err)
	}
	o.cl.revs[id] = rev
	return nil
}

// useShared is use for mutations of webhook id: a mutation that lost a
// race with another node's is tried again from the value that won (the
// cache holds it by then), so concurrent updates never overwrite each
// other; and a webhook created on another node a moment ago, which the
// watcher has not brought here yet, is fetched from the registry.
func (o *Outbox) useShared(ctx context.Context, id string, fn func() error) error {
	var err error
	for range 5 {
		err = o.use(ctx, fn)
		c := o.cl.hooks.Load()
		switch {
		case c == nil || c.Registry == nil:
			return err
		case errors.Is(err, ErrNotFound):
			v, rev, gerr := c.Registry.Get(ctx, id)
			if gerr != nil {
				return err
			}
			if aerr := o.ApplyWebhook(ctx, id, v, rev); aerr != nil {
				return err
			}
		case !errors.Is(err, ErrConflict):
			return err
		}
	}
	return err
}

// ApplyWebhook makes a webhook stored in the shared registry (value as
// written through Registry.Put, at revision rev) this node's, unless the
// node already holds that revision or a later one.
func (o *Outbox) ApplyWebhook(ctx context.Context, id string, value []byte, rev uint64) error {
	return o.use(ctx, func() error {
		o.whMu.Lock()
		defer o.whMu.Unlock()
		return o.applyWebhookLocked(id, value, rev)
	})
}

func (o *Outbox) applyWebhookLocked(id string, value []byte, rev uint64) error {
	if o.cl.revs != nil && o.cl.revs[id] >= rev {
		return nil
	}
	record, err := o.seal.open(id, value)
	if err != nil {
		return fmt.Errorf("outbox: webhook %s from the registry (revision %d) is %w", id, rev, err)
	}
	r := &webhookRecord{}
	if err := r.unmarshal(record); err != nil || r.ID != id {
		return fmt.Errorf("outbox: webhook %s from the registry (revision %d) cannot be read: %v", id, rev, err)
	}
	if err := o.storeWebhookLocked(r); err != nil {
		return err
	}
	if o.cl.revs != nil {
		o.cl.revs[id] = rev
	}
	return nil
}

// ForgetWebhook removes a webhook deleted from the shared registry (at
// revision rev) from this node, with its deliveries, as DeleteWebhook
// does on one node.
func (o *Outbox) ForgetWebhook(ctx context.Context, id string, rev uint64) error {
	o.whMu.RLock()
	stale := rev > 0 && o.cl.revs != nil && o.cl.revs[id] >= rev
	o.whMu.RUnlock()
	if stale {
		return nil
	}
	err := o.deleteWebhook(ctx, id, false)
	o.whMu.Lock()
	if o.cl.revs != nil && o.cl.revs[id] < rev {
		o.cl.revs[id] = rev
	}
	o.whMu.Unlock()
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	return err
}

// WebhookIDs lists the ids of the webhooks this node holds, so that a
// node that was away can forget those deleted meanwhile.
func (o *Outbox) WebhookIDs() []string {
	o.whMu.RLock()
	defer o.whMu.RUnlock()
	ids := make([]string, 0, len(o.hooks))
	for id := range o.hooks {
		ids = append(ids, id)
	}
	return ids
}

// sharedDecision is the `changed` decision for one event, made against
// the shared state before the exchange is queued for the committer.
type sharedDecision struct {
	fire   bool
	change *change
}

// decideShared decides the `changed` events of req against the shared
// state, one after another so that events of one exchange chain. It
// leaves req.shared nil (the committer then decides locally) when the
// node is not clustered, when no event has state, or when the shared
// state fails within the budget: the exchange is then acknowledged on
// this node's say-so, as SPEC §8 allows while NATS is unreachable.
func (o *Outbox) decideShared(ctx context.Context, req *commitRequest) {
	c := o.cl.hooks.Load()
	if c == nil || c.State == nil {
		return
	}
	var out sharedDecisions
	for i := range req.events {
		if req.events[i].State != nil {
			out = make([]sharedDecision, len(req.events))
			break
		}
	}
	if out == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, c.StateTimeout)
	defer cancel()
	for i := range req.events {
		ev := &req.events[i]
		if ev.State == nil {
			out[i].fire = true
			continue
		}
		cur := rules.CanonicalValue(ev.State.Value)
		err := c.State.Change(ctx, ev.State.Key, func(prev []byte, found bool) ([]byte, bool) {
			d := rules.DecideChange(prev, found, cur)
			out[i] = sharedDecision{fire: d.Fire()}
			if d.Fire() {
				out[i].change = &change{previous: append([]byte(nil), prev...), current: cur}
			}
			return cur, d.Record()
		})
		if err != nil {
			if !o.cl.local.Swap(true) {
				o.log.Warn("deciding `changed` against this node's own values: the cluster's shared state failed (best effort until it answers again)", "err", err)
			}
			return
		}
	}
	if o.cl.local.Swap(false) {
		o.log.Info("deciding `changed` against the cluster's shared state again")
	}
	req.shared = out
}

// override returns the shared decision for event i, given the local one.
func (s sharedDecisions) override(i int, ch *change, emit bool) (*change, bool) {
	if s == nil {
		return ch, emit
	}
	return s[i].change, s[i].fire
}

type sharedDecisions []sharedDecision

// keyMetaCluster marks a store that has synced with a shared registry.
var keyMetaCluster = []byte("m/cluster")

// SyncRegistry reconciles this node's webhooks with the shared registry
// after the node was away from it: inRegistry lists the ids the registry
// holds. A webhook only this node holds is uploaded the first time the
// store joins a cluster (a single node turning cluster mode on keeps its
// webhooks) and forgotten afterwards (it was deleted meanwhile).
func (o *Outbox) SyncRegistry(ctx context.Context, inRegistry map[string]bool, upload func(id string, value []byte) error) error {
	joined := false
	err := o.use(ctx, func() error {
		return o.db.View(func(txn *badger.Txn) error {
			_, err := txn.Get(keyMetaCluster)
			joined = err == nil
			if errors.Is(err, badger.ErrKeyNotFound) {
				return nil
			}
			return err
		})
	})
	if err != nil {
		return err
	}
	var errs []error
	for _, id := range o.WebhookIDs() {
		o.whMu.RLock()
		// A revision known in this process came from the registry (the
		// watcher, or a change this node made after the first pass began).
		known := o.cl.revs[id] > 0
		o.whMu.RUnlock()
		if inRegistry[id] || known {
			continue
		}
		if joined {
			errs = append(errs, o.ForgetWebhook(ctx, id, 0))
			continue
		}
		o.whMu.RLock()
		h := o.hooks[id]
		var v []byte
		if h != nil {
			v = o.seal.seal(id, h.marshal())
		}
		o.whMu.RUnlock()
		if v != nil {
			errs = append(errs, upload(id, v))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if joined {
		return nil
	}
	return o.use(ctx, func() error {
		return o.dbUpdate(func(txn *badger.Txn) error { return txn.Set(keyMetaCluster, []byte{1}) })
	})
}

// StateTTL is how long a `changed` value is kept after it was last
// written, so that the shared state expires as the local one does.
func (o *Outbox) StateTTL() time.Duration { return o.stateTTL() }

// localSubs returns the webhooks the committer fans an event of type typ
// out to on this node: none when the cluster delivers from its stream.
// whMu is held (shared) by the caller.
func (o *Outbox) localSubs(typ string) []string {
	if c := o.cl.hooks.Load(); c != nil && c.StreamDelivery {
		return nil
	}
	return o.subs[typ]
}

// Subscribers returns the ids of the ENABLED webhooks of type typ, for a
// partition owner fanning out an event it took from the cluster's stream.
func (o *Outbox) Subscribers(typ string) []string {
	o.whMu.RLock()
	defer o.whMu.RUnlock()
	return slices.Clone(o.subs[typ])
}

// DeliveryTarget returns where and how to send to webhook id, its status,
// and false when no such webhook exists (any more).
func (o *Outbox) DeliveryTarget(id string) (delivery.Target, WebhookStatus, bool) {
	h := o.webhookCopy(id)
	if h == nil {
		return delivery.Target{}, "", false
	}
	return h.target(), h.Status, true
}

// Backlogs is what a dispatcher says about the work it holds
// (delivery.Dispatcher implements it).
type Backlogs interface {
	PendingCount() float64
	OldestPending(now time.Time) float64
	Backlog(ids []string, now time.Time) []delivery.Backlog
}

func (o *Outbox) owned() Backlogs {
	if c := o.cl.hooks.Load(); c != nil && c.Owned != nil {
		return c.Owned
	}
	return nil
}

// pendingCount is eventtap_outbox_pending: this node's deliveries, and in
// cluster mode those of the partitions it owns.
func (o *Outbox) pendingCount() float64 {
	n := o.disp.PendingCount()
	if b := o.owned(); b != nil {
		n += b.PendingCount()
	}
	return n
}

func (o *Outbox) oldestPending() float64 {
	now := o.now()
	age := o.disp.OldestPending(now)
	if b := o.owned(); b != nil {
		age = max(age, b.OldestPending(now))
	}
	return age
}

// allBacklogs is webhookBacklogs with the partitions this node owns.
func (o *Outbox) allBacklogs() []delivery.Backlog {
	out := o.webhookBacklogs()
	b := o.owned()
	if b == nil {
		return out
	}
	ids := make([]string, len(out))
	for i := range out {
		ids[i] = out[i].ID
	}
	for i, c := range b.Backlog(ids, o.now()) {
		out[i].Pending += c.Pending
		out[i].Oldest = max(out[i].Oldest, c.Oldest)
	}
	return out
}
