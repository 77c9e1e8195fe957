// Package cluster is eventtap's cluster mode on NATS JetStream (SPEC §8,
// docs/cluster.md): with `cluster.nats` configured, the nodes share one
// webhook registry and one `changed` state through JetStream key-value
// buckets, relay their events to one events stream, deliver it by
// partition, and keep views of the cluster's events and delivery logs;
// redeliveries and replays are copies on that stream (requeue.go). It is
// the only package that imports nats.go. It must not touch
// Badger (the outbox does, through the hooks of outbox/cluster_seam.go) and
// the proxy and rules never learn whether the node is clustered.
package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/eventtap/eventtap/delivery"
	"github.com/eventtap/eventtap/outbox"
)

// ErrNATSUnreachable is what Check returns while this node cannot reach
// JetStream. The proxy still works then, so readiness must not fail on it.
var ErrNATSUnreachable = errors.New("NATS JetStream unreachable")

// healthEvery is how often the node asks JetStream whether it answers.
const healthEvery = 2 * time.Second

// Node is this process's membership in a cluster: its NATS connection and
// the buckets it shares with the other nodes. Create it with New, run it
// with Run, and stop it with Close.
type Node struct {
	cfg  Config
	log  *slog.Logger
	nc   *nats.Conn
	js   jetstream.JetStream
	opts Options

	// buckets is nil until JetStream answered and the buckets exist.
	buckets      atomic.Pointer[buckets]
	streamsReady atomic.Bool
	// owned is the dispatcher of the partitions this node owns, nil
	// while delivery is not running.
	owned   atomic.Pointer[delivery.Dispatcher]
	healthy atomic.Bool
	// outages counts the times NATS went away, so that Run notices even
	// an outage shorter than its probe interval.
	outages atomic.Uint64
	// wake makes Run probe at once, on a reconnection.
	wake chan struct{}
	// connectErr is why the last attempt to reach NATS failed ("" once
	// connected), for /readyz and the log: a TLS or credentials mistake
	// must not look like a server that is down.
	connectErr atomic.Pointer[string]
	// connectErrLogged is when a failed attempt was last logged (unix ns).
	connectErrLogged atomic.Int64
	// relayWake makes the relay loop try at once: on a reconnection, and
	// when the buckets become usable (a node started while NATS was down).
	relayWake chan struct{}

	// unsentLogs are delivery logs to publish again (history.go).
	logsMu     sync.Mutex
	unsentLogs []unsentLog

	// instance tells this process from another with the same node name
	// (membership values); nameClash counts the heartbeats in a row that
	// found another's, up to the one that logged it.
	instance  string
	nameClash atomic.Int32

	// registrySynced is set once the registry watcher's first pass has
	// been applied, and unreadable holds the webhooks of the registry this
	// node cannot open (outbox.ErrSealed: another storage key). A node
	// takes delivery work only when it is synced and can read them all:
	// it delivers to the webhooks it knows, so an event it took before
	// knowing every webhook would miss some.
	registrySynced atomic.Bool
	unreadableMu   sync.Mutex
	unreadable     map[string]bool
	// inMembership is set while this node's membership key is put.
	inMembership atomic.Bool

	connected    prometheus.Gauge
	relayPending prometheus.Gauge
	partitions   prometheus.Gauge
}

type buckets struct {
	webhooks jetstream.KeyValue
	state    jetstream.KeyValue
	nodes    jetstream.KeyValue // membership: one key per live node
}

// Options are what the node needs from the rest of the process.
type Options struct {
	// Local is this node's store: the registry watcher keeps it in step,
	// and the relay sends what it commits.
	Local Local
	// StateTTL is how long a `changed` value is kept after it was last
	// changed (the outbox's own TTL for the same values).
	StateTTL time.Duration
	// Retention is how long the events stream keeps an event
	// (storage.retention).
	Retention time.Duration
	// Delivery is the `delivery:` section, for the partitions this node
	// owns.
	Delivery delivery.Config
}

// New connects to NATS in the background (a node starts, and proxies,
// without it) and registers the node's metrics on reg.
func New(cfg Config, opts Options, logger *slog.Logger, reg prometheus.Registerer) (*Node, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("cluster: invalid configuration: %w", err)
	}
	if !cfg.Enabled() {
		return nil, errors.New("cluster: not configured (cluster.nats.urls is empty)")
	}
	if opts.Local == nil {
		return nil, errors.New("cluster: New needs the local store")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Node == "" {
		h, err := os.Hostname()
		if err != nil || h == "" {
			h = "eventtap"
		}
		cfg.Node = h
	}
	n := &Node{cfg: cfg, opts: opts, log: logger.With("component", "cluster", "node", cfg.Node), wake: make(chan struct{}, 1), relayWake: make(chan struct{}, 1),
		instance: strconv.FormatUint(rand.Uint64(), 36)}
	n.connected = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "eventtap_cluster_connected",
		Help: "1 while this node reaches NATS JetStream, else 0 (cluster mode only).",
	})
	n.relayPending = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "eventtap_cluster_relay_pending",
		Help: "Events committed on this node and not yet in JetStream (cluster mode only).",
	})
	n.partitions = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "eventtap_cluster_partitions",
		Help: "Partitions of the events stream this node delivers, of 32 (cluster mode only).",
	})
	writeBackPending := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "eventtap_cluster_state_writeback_pending",
		Help: "`changed` values this node decided alone while NATS was unreachable, not yet written back to the shared state (cluster mode only).",
	}, func() float64 { return float64(opts.Local.UnsharedStates()) })
	if reg != nil {
		for _, c := range []prometheus.Collector{n.connected, n.relayPending, n.partitions, writeBackPending} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("cluster: metrics: %w", err)
			}
		}
	}
	nopts := []nats.Option{
		nats.Name("eventtap " + cfg.Node),
		// Never give up: NATS may be down for longer than any fixed count,
		// and the node serves the proxy meanwhile.
		nats.MaxReconnects(-1),
		// Short: until every node is back, a node still cut off decides
		// `changed` alone, so the nodes should return close together
		// (a refused TCP connection a few times a second costs little).
		nats.ReconnectWait(250 * time.Millisecond),
		nats.RetryOnFailedConnect(true),
		nats.Timeout(2 * time.Second),
		nats.DisconnectErrHandler(func(c *nats.Conn, err error) {
			if !c.IsClosed() {
				n.setHealthy(false, err)
			}
		}),
		// Asynchronous errors (a watcher's consumer gone after a server
		// restart, a slow consumer) go to the node's log; nats.go's default
		// writes them to stderr as bare lines, breaking log.format json.
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			attrs := []any{"err", err}
			if sub != nil {
				attrs = append(attrs, "subject", sub.Subject)
			}
			n.log.Warn("NATS reported an asynchronous error", attrs...)
		}),
		nats.ReconnectHandler(func(*nats.Conn) {
			n.log.Info("reconnected to NATS")
			n.connectErr.Store(nil)
			n.wakeAll()
		}),
		nats.ReconnectErrHandler(func(_ *nats.Conn, err error) {
			// Every failed attempt (a few a second, to each server of the
			// pool in turn): logged when the reason changes, at most once
			// every 30 s.
			msg := err.Error()
			prev := n.connectErr.Swap(&msg)
			now := time.Now().UnixNano()
			if (prev == nil || *prev != msg) && now-n.connectErrLogged.Load() >= int64(30*time.Second) {
				n.connectErrLogged.Store(now)
				n.log.Warn("connecting to NATS failed; retrying (README, \"Running several replicas\")", "err", err)
			}
		}),
		// A node started while NATS was unreachable connects later
		// (RetryOnFailedConnect): nats.go calls this, not the handler above.
		nats.ConnectHandler(func(*nats.Conn) {
			n.log.Info("connected to NATS")
			n.connectErr.Store(nil)
			n.wakeAll()
		}),
	}
	if f := cfg.NATS.CredentialsFile; f != "" {
		nopts = append(nopts, nats.UserCredentials(f))
	}
	if t := cfg.NATS.TLS; t.CAFile != "" {
		nopts = append(nopts, nats.RootCAs(t.CAFile))
	}
	if t := cfg.NATS.TLS; t.CertFile != "" {
		nopts = append(nopts, nats.ClientCert(t.CertFile, t.KeyFile))
	}
	nc, err := nats.Connect(strings.Join(cfg.NATS.URLs, ","), nopts...)
	if err != nil {
		return nil, fmt.Errorf("cluster: connecting to NATS: %w", err)
	}
	js, err := jetstream.New(nc)
	if err != nil {
		nc.Close()
		return nil, fmt.Errorf("cluster: %w", err)
	}
	n.nc, n.js = nc, js
	if cfg.Replicas == 1 {
		n.log.Warn("cluster.replicas is 1: an event JetStream acknowledged survives a NATS server crash only with `sync_interval: always` on that server; eventtap cannot see that setting. Use replicas: 3 on a 3-server NATS cluster, or set sync_interval: always (see README, \"Running several replicas\")")
	}
	return n, nil
}

// Name returns this node's name.
func (n *Node) Name() string { return n.cfg.Node }

// Run creates the shared buckets once JetStream answers, keeps the
// registry watcher running and the health gauge current, until ctx ends.
func (n *Node) Run(ctx context.Context) error {
	if !n.nc.IsConnected() {
		// setHealthy logs changes only; this is the first state.
		n.log.Warn("NATS JetStream unreachable at start: the proxy serves and commits; events wait in this node's outbox and webhook changes are refused until it is reachable", "urls", n.cfg.NATS.URLs)
	}
	t := time.NewTicker(healthEvery)
	defer t.Stop()
	relayDone := make(chan struct{})
	go func() {
		defer close(relayDone)
		n.runRelay(ctx)
	}()
	defer func() { <-relayDone }()
	deliveryDone := make(chan struct{})
	defer func() {
		if n.streamsReady.Load() {
			<-deliveryDone
		}
	}()
	var watching context.CancelFunc
	watchDone := make(chan struct{})
	close(watchDone)
	defer func() {
		if watching != nil {
			watching()
			<-watchDone
		}
	}()
	defer func() {
		// Leaving: the others take this node's partitions at once.
		if b := n.buckets.Load(); b != nil && n.nc.IsConnected() {
			dctx, cancel := context.WithTimeout(context.Background(), time.Second)
			_ = b.nodes.Delete(dctx, n.cfg.Node)
			cancel()
		}
	}()
	var seen uint64 // outages the watcher has been restarted for
	for {
		ok := n.probe(ctx)
		if b := n.buckets.Load(); ok && b != nil {
			n.heartbeatMember(ctx, b.nodes)
		}
		if o := n.outages.Load(); ok && o != seen && watching != nil {
			seen = o
			// Back from an outage: a fresh watcher (whose first pass
			// reconciles everything) rather than trusting the old one to
			// have resumed where it stopped.
			watching()
			<-watchDone
			watching = nil
		}
		if ok && n.buckets.Load() == nil {
			if err := n.ensureBuckets(ctx); err != nil {
				n.log.Warn("creating the cluster's JetStream buckets failed; retrying", "err", err)
			}
		}
		if ok && !n.streamsReady.Load() {
			if err := errors.Join(n.ensureStreams(ctx), n.ensureConsumers(ctx)); err != nil {
				n.log.Warn("creating the cluster's JetStream streams failed; retrying", "err", err)
			} else {
				n.streamsReady.Store(true)
				n.wakeRelay() // it can publish now
				go func() {
					defer close(deliveryDone)
					var views sync.WaitGroup
					views.Add(2)
					go func() {
						defer views.Done()
						n.keep(ctx, "following the cluster's delivery logs", func() error { return n.runLogView(ctx, n.opts.Local) })
					}()
					go func() {
						defer views.Done()
						n.keep(ctx, "following the cluster's events", func() error { return n.runEventView(ctx, n.opts.Local) })
					}()
					defer views.Wait()
					n.keep(ctx, "delivery from the cluster's stream", func() error { return n.runDelivery(ctx, n.opts.Local) })
				}()
			}
		}
		select {
		case <-watchDone:
			// The watcher stopped (or never started): start it again.
			if b := n.buckets.Load(); b != nil && ctx.Err() == nil {
				wctx, cancel := context.WithCancel(ctx)
				watching = cancel
				watchDone = make(chan struct{})
				go func(done chan struct{}) {
					defer close(done)
					if err := n.watchRegistry(wctx, b.webhooks); err != nil && wctx.Err() == nil {
						n.log.Warn("the registry watcher stopped; restarting it", "err", err)
					}
				}(watchDone)
			}
		default:
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-n.wake:
		}
	}
}

// wakeAll makes Run probe and the relay loop try at once: NATS answers.
func (n *Node) wakeAll() {
	select {
	case n.wake <- struct{}{}:
	default:
	}
	n.wakeRelay()
}

// wakeRelay makes the relay loop try at once rather than after its wait.
func (n *Node) wakeRelay() {
	select {
	case n.relayWake <- struct{}{}:
	default:
	}
}

// keep runs fn again whenever it stops with an error, until ctx ends.
func (n *Node) keep(ctx context.Context, what string, fn func() error) {
	for ctx.Err() == nil {
		if err := fn(); err != nil && ctx.Err() == nil {
			n.log.Warn(what+" stopped; restarting it", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
		}
	}
}

// probe asks JetStream for the account's info and records the answer.
func (n *Node) probe(ctx context.Context) bool {
	pctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	_, err := n.js.AccountInfo(pctx)
	if ctx.Err() != nil {
		return n.healthy.Load()
	}
	n.setHealthy(err == nil, err)
	return err == nil
}

func (n *Node) setHealthy(ok bool, err error) {
	if !ok {
		n.outages.Add(1)
	}
	if n.healthy.Swap(ok) != ok {
		if ok {
			n.log.Info("NATS JetStream reachable")
		} else {
			n.log.Warn("NATS JetStream unreachable: the proxy keeps serving; webhook changes are refused until it is back", "err", err)
		}
	}
	if ok {
		n.connected.Set(1)
	} else {
		n.connected.Set(0)
	}
}

// ensureBuckets creates the key-value buckets of docs/cluster.md §2, or
// updates them when a setting such as replicas changed.
func (n *Node) ensureBuckets(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	wh, err := n.bucket(ctx, jetstream.KeyValueConfig{
		Bucket:      n.cfg.Name + "_webhooks",
		Description: "eventtap webhook registry",
		History:     5,
		Storage:     jetstream.FileStorage,
		Replicas:    n.cfg.Replicas,
	})
	if err != nil {
		return err
	}
	st, err := n.bucket(ctx, jetstream.KeyValueConfig{
		Bucket:      n.cfg.Name + "_state",
		Description: "eventtap `changed` values",
		History:     1,
		TTL:         n.opts.StateTTL,
		Storage:     jetstream.FileStorage,
		Replicas:    n.cfg.Replicas,
	})
	if err != nil {
		return err
	}
	nodes, err := n.bucket(ctx, jetstream.KeyValueConfig{
		Bucket:      n.cfg.Name + "_nodes",
		Description: "eventtap nodes alive (each puts its key every few seconds)",
		History:     1,
		TTL:         memberTTL,
		Storage:     jetstream.FileStorage,
		Replicas:    n.cfg.Replicas,
	})
	if err != nil {
		return err
	}
	n.buckets.Store(&buckets{webhooks: wh, state: st, nodes: nodes})
	n.wakeRelay()
	n.heartbeatMember(ctx, nodes) // seen by the others at once, not a probe later
	n.log.Info("cluster buckets ready", "name", n.cfg.Name, "replicas", n.cfg.Replicas)
	return nil
}

// bucket opens a bucket, creating it or updating its settings only when
// needed: nodes starting together would otherwise update the same stream
// at once, which nats-server does not expect of its clients.
func (n *Node) bucket(ctx context.Context, cfg jetstream.KeyValueConfig) (jetstream.KeyValue, error) {
	if s, err := n.js.Stream(ctx, "KV_"+cfg.Bucket); err == nil {
		c := s.CachedInfo().Config
		if c.Replicas == cfg.Replicas && c.MaxAge == cfg.TTL && c.MaxMsgsPerSubject == int64(cfg.History) {
			return n.js.KeyValue(ctx, cfg.Bucket)
		}
	}
	kv, err := n.js.CreateOrUpdateKeyValue(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("bucket %s: %w", cfg.Bucket, err)
	}
	return kv, nil
}

// memberTTL is how long a node counts as alive after its last heartbeat;
// its partitions move about this long after it died.
const memberTTL = 10 * time.Second

// heartbeatMember puts this node's membership key (every healthEvery):
// "<instance> <time>", the instance telling this process from another
// that has the same node name, which it logs as an error (two processes
// on one host both default to the host name, and then count as one
// member: one of them gets no partitions).
func (n *Node) heartbeatMember(ctx context.Context, kv jetstream.KeyValue) {
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if !n.mayDeliver() {
		// Not a member: the others keep (or take) the partitions.
		if n.inMembership.Swap(false) {
			_ = kv.Delete(ctx, n.cfg.Node)
		}
		return
	}
	now := time.Now().UTC()
	if e, err := kv.Get(ctx, n.cfg.Node); err == nil {
		instance, at, ok := strings.Cut(string(e.Value()), " ")
		t, perr := time.Parse(time.RFC3339, at)
		if ok && perr == nil && instance != n.instance && now.Sub(t) < memberTTL {
			// Twice in a row: once is the previous process of a restart.
			if n.nameClash.Add(1) == 2 {
				n.log.Error("another running node has this node's name; give each node its own cluster.node (the default is the host name)", "node", n.cfg.Node)
			}
		} else if n.nameClash.Load() < 2 {
			n.nameClash.Store(0)
		}
	}
	if _, err := kv.Put(ctx, n.cfg.Node, []byte(n.instance+" "+now.Format(time.RFC3339))); err != nil {
		n.log.Debug("membership heartbeat failed", "err", err)
		return
	}
	n.inMembership.Store(true)
}

// mayDeliver reports whether this node may take delivery work: it has
// applied the registry's first pass and can read every webhook in it.
func (n *Node) mayDeliver() bool {
	if !n.registrySynced.Load() {
		return false
	}
	n.unreadableMu.Lock()
	defer n.unreadableMu.Unlock()
	return len(n.unreadable) == 0
}

// markUnreadable records whether webhook id of the registry can be read
// here, and logs when the node stops or starts taking delivery work
// because of it.
func (n *Node) markUnreadable(id string, unreadable bool) {
	n.unreadableMu.Lock()
	before := len(n.unreadable)
	if unreadable {
		if n.unreadable == nil {
			n.unreadable = map[string]bool{}
		}
		n.unreadable[id] = true
	} else {
		delete(n.unreadable, id)
	}
	after := len(n.unreadable)
	n.unreadableMu.Unlock()
	switch {
	case before == 0 && after > 0:
		n.log.Error("this node cannot read a webhook of the shared registry, so it delivers nothing (it still proxies and commits; the other nodes deliver): give every node of the cluster the same storage.encryption_key_file", "webhook", id)
	case before > 0 && after == 0:
		n.log.Info("every webhook of the shared registry is readable again: this node takes delivery work")
	}
}

// members returns the live nodes, this one included.
func (n *Node) members(ctx context.Context) ([]string, error) {
	b := n.buckets.Load()
	if b == nil {
		return nil, ErrNATSUnreachable
	}
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	keys, err := b.nodes.Keys(ctx)
	if err != nil && !errors.Is(err, jetstream.ErrNoKeysFound) {
		return nil, err
	}
	keys = slices.DeleteFunc(keys, func(k string) bool { return k == n.cfg.Node })
	if n.mayDeliver() {
		keys = append(keys, n.cfg.Node)
	}
	return keys, nil
}

// Check is a readiness check that never fails the probe (the proxy works
// without NATS) but says when NATS is unreachable: its error wraps
// ErrNATSUnreachable.
func (n *Node) Check(context.Context) error {
	if !n.healthy.Load() || n.buckets.Load() == nil {
		// The connection's last error tells a TLS or credentials mistake
		// apart from a server that is down.
		why := ""
		if msg := n.connectErr.Load(); msg != nil {
			why = ": " + *msg
		}
		return fmt.Errorf("%w%s (the proxy serves; events wait in this node's outbox, `changed` is decided on this node alone and webhook changes are refused until it is back)", ErrNATSUnreachable, why)
	}
	n.unreadableMu.Lock()
	unreadable := len(n.unreadable)
	n.unreadableMu.Unlock()
	if unreadable > 0 {
		return fmt.Errorf("%w: %d webhooks of the shared registry are sealed with a storage key this node does not have; it proxies and commits but delivers nothing until it has the cluster's storage.encryption_key_file", outbox.ErrSealed, unreadable)
	}
	return nil
}

// Close closes the NATS connection.
func (n *Node) Close() {
	n.nc.Close()
	n.connected.Set(0)
}

// ready returns the buckets, or an error wrapping outbox.ErrUnavailable
// while NATS cannot be used: then nothing waits for a timeout.
func (n *Node) ready() (*buckets, error) {
	b := n.buckets.Load()
	if b == nil || !n.nc.IsConnected() {
		return nil, unavailable(ErrNATSUnreachable)
	}
	return b, nil
}
