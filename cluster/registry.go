package cluster

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/eventtap/eventtap/outbox"
)

// Local is this node's outbox (see outbox/cluster_seam.go): the node keeps
// its registry in step, relays what it commits and delivers from it.
type Local interface {
	ApplyWebhook(ctx context.Context, id string, value []byte, rev uint64) error
	ForgetWebhook(ctx context.Context, id string, rev uint64) error
	SyncRegistry(ctx context.Context, inRegistry map[string]bool, upload func(id string, value []byte) error) error
	Relayer
	Deliverer
	writeBack
}

// Registry returns the shared webhook registry, for outbox.Cluster.
func (n *Node) Registry() outbox.Registry { return registry{n} }

// registry implements outbox.Registry on the `<name>_webhooks` bucket:
// one key per webhook id, each change a compare-and-set on its revision.
type registry struct{ n *Node }

func (r registry) Put(ctx context.Context, id string, value []byte, rev uint64) (uint64, error) {
	b, err := r.n.ready()
	if err != nil {
		return 0, err
	}
	var next uint64
	if rev == 0 {
		next, err = b.webhooks.Create(ctx, id, value)
	} else {
		next, err = b.webhooks.Update(ctx, id, value, rev)
	}
	return next, kvError(err)
}

func (r registry) Get(ctx context.Context, id string) ([]byte, uint64, error) {
	b, err := r.n.ready()
	if err != nil {
		return nil, 0, err
	}
	e, err := b.webhooks.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		return nil, 0, fmt.Errorf("webhook %q: %w", id, outbox.ErrNotFound)
	}
	if err != nil {
		return nil, 0, kvError(err)
	}
	return e.Value(), e.Revision(), nil
}

func (r registry) Delete(ctx context.Context, id string, rev uint64) (uint64, error) {
	b, err := r.n.ready()
	if err != nil {
		return 0, err
	}
	var opts []jetstream.KVDeleteOpt
	if rev > 0 {
		opts = append(opts, jetstream.LastRevision(rev))
	}
	// Delete does not say the revision of its marker; the watcher's echo
	// of it is then applied, which finds the webhook already gone.
	return 0, kvError(b.webhooks.Delete(ctx, id, opts...))
}

// kvError maps a key-value error to the outbox's: a revision conflict to
// ErrConflict, anything that is not the caller's fault to ErrUnavailable.
func kvError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, jetstream.ErrKeyExists), errors.Is(err, jetstream.ErrKeyRevisionMismatch):
		return fmt.Errorf("%w: %w", outbox.ErrConflict, err)
	}
	var apiErr *jetstream.APIError
	if errors.As(err, &apiErr) && (apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequence ||
		apiErr.ErrorCode == jetstream.JSErrCodeStreamWrongLastSequenceConstant) {
		return fmt.Errorf("%w: %w", outbox.ErrConflict, err)
	}
	return unavailable(err)
}

func unavailable(err error) error {
	return fmt.Errorf("%w: %w", outbox.ErrUnavailable, err)
}

// watchRegistry applies every change of the bucket to the local store
// until ctx ends or the watcher fails. Its first pass (the current value
// of every key) ends with a nil entry; then the local store forgets, or
// uploads on its first sync, the webhooks the registry does not hold.
func (n *Node) watchRegistry(ctx context.Context, kv jetstream.KeyValue) error {
	w, err := kv.WatchAll(ctx)
	if err != nil {
		return err
	}
	defer func() {
		// Stopping deletes the watcher's consumer on the server, which
		// waits the client's whole request timeout (5 s) when NATS is
		// unreachable; the server drops an idle ephemeral consumer itself.
		if n.nc.IsConnected() {
			_ = w.Stop()
		}
	}()
	seen := map[string]bool{}
	initial := true
	for {
		var e jetstream.KeyValueEntry
		select {
		case <-ctx.Done():
			return nil
		case e2, ok := <-w.Updates():
			if !ok {
				return errors.New("watcher closed")
			}
			e = e2
		}
		if e == nil {
			if initial {
				initial = false
				err := n.opts.Local.SyncRegistry(ctx, seen, func(id string, value []byte) error {
					_, err := kv.Create(ctx, id, value)
					return err
				})
				if err != nil {
					n.log.Error("reconciling this node's webhooks with the registry failed", "err", err)
				}
				seen = nil
				if !n.registrySynced.Swap(true) {
					// Join the delivery members now rather than at
					// the next heartbeat.
					n.heartbeatMember(ctx, n.buckets.Load().nodes)
				}
			}
			continue
		}
		var err error
		switch e.Operation() {
		case jetstream.KeyValuePut:
			if seen != nil {
				seen[e.Key()] = true
			}
			err = n.opts.Local.ApplyWebhook(ctx, e.Key(), e.Value(), e.Revision())
			if err == nil || errors.Is(err, outbox.ErrSealed) {
				n.markUnreadable(e.Key(), err != nil)
			}
		default: // delete or purge
			err = n.opts.Local.ForgetWebhook(ctx, e.Key(), e.Revision())
			n.markUnreadable(e.Key(), false)
		}
		if err != nil && ctx.Err() == nil {
			n.log.Error("applying a webhook from the registry failed", "webhook", e.Key(), "revision", e.Revision(), "err", err)
		}
	}
}
