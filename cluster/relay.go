package cluster

import (
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/eventtap/eventtap/outbox"
)

// Partitions is the number of partitions of the events stream: an event's
// subject is N.events.<fnv32a(subject) mod Partitions>, so the server's
// memory does not grow with every order ever seen (one subject per order
// would). It is recorded in the stream's metadata and must not change.
const Partitions = 32

// relayWindow bounds the events published and not yet acknowledged, and
// so the duplicates a crash can cause (docs/cluster.md §5).
const relayWindow = 256

// relayAckTimeout bounds the wait for one window's acknowledgements.
const relayAckTimeout = 5 * time.Second

// dedupeWindow is how long the stream remembers an event id, so that a
// relay sending an event again within it adds no copy.
const dedupeWindow = 2 * time.Minute

// Relayer is the outbox's side of the relay (outbox/cluster_relay.go).
type Relayer interface {
	StartRelay(ctx context.Context) (uint64, error)
	RelayWake() <-chan struct{}
	RelayBatch(ctx context.Context, after uint64, limit int) ([]outbox.RelayEvent, uint64, error)
	Relayed(ctx context.Context, upTo uint64, err error) error
	SaveRelayed(ctx context.Context) error
}

// partition returns the partition of an event's subject.
func partition(subject string) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(subject))
	return int(h.Sum32() % Partitions)
}

func (n *Node) eventsStream() string { return n.cfg.Name + "_events" }

func (n *Node) eventSubject(p int) string { return n.cfg.Name + ".events." + strconv.Itoa(p) }

// ensureStreams creates or updates the events and logs streams and
// checks that the events' partition count is this binary's.
func (n *Node) ensureStreams(ctx context.Context) error {
	if err := n.ensureLogStream(ctx); err != nil {
		return err
	}
	name := n.eventsStream()
	meta := map[string]string{"eventtap.partitions": strconv.Itoa(Partitions)}
	if s, err := n.js.Stream(ctx, name); err == nil {
		if p := s.CachedInfo().Config.Metadata["eventtap.partitions"]; p != "" && p != meta["eventtap.partitions"] {
			return fmt.Errorf("stream %s has %s partitions, this eventtap uses %d; use another cluster.name", name, p, Partitions)
		}
	}
	return n.ensureStream(ctx, jetstream.StreamConfig{
		Name:        name,
		Description: "eventtap events, one message per event (Nats-Msg-Id = event id)",
		Subjects:    []string{n.cfg.Name + ".events.*"},
		Metadata:    meta,
	})
}

// ensureStream creates a stream with the settings every eventtap stream
// shares, or updates it when replicas or retention changed; left alone
// otherwise, since nodes starting together would update it at once.
func (n *Node) ensureStream(ctx context.Context, cfg jetstream.StreamConfig) error {
	cfg.Retention, cfg.MaxAge, cfg.Duplicates = jetstream.LimitsPolicy, n.opts.Retention, dedupeWindow
	cfg.Storage, cfg.Replicas, cfg.AllowDirect = jetstream.FileStorage, n.cfg.Replicas, true
	if s, err := n.js.Stream(ctx, cfg.Name); err == nil {
		if c := s.CachedInfo().Config; c.Replicas == cfg.Replicas && c.MaxAge == cfg.MaxAge {
			return nil
		}
	}
	if _, err := n.js.CreateOrUpdateStream(ctx, cfg); err != nil {
		return fmt.Errorf("stream %s: %w", cfg.Name, err)
	}
	return nil
}

// runRelay sends every event committed on this node to the events stream,
// in sequence order, until ctx ends. An event leaves the relay queue only
// once the stream acknowledged it; while NATS is unreachable events wait
// in the outbox and eventtap_cluster_relay_pending grows.
func (n *Node) runRelay(ctx context.Context) {
	rl := n.opts.Local
	after, err := rl.StartRelay(ctx)
	if err != nil {
		n.log.Error("the relay cannot start; events committed here stay on this node", "err", err)
		return
	}
	wake := rl.RelayWake()
	idle := time.NewTimer(0)
	defer idle.Stop()
	defer func() {
		// Stopping: keep the position, so that a restart resends nothing.
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		if err := rl.SaveRelayed(sctx); err != nil && !errors.Is(err, outbox.ErrClosed) {
			n.log.Warn("saving the relay position at shutdown failed (events may be sent again; the stream drops copies by id)", "err", err)
		}
	}()
	for {
		evs, last, err := rl.RelayBatch(ctx, after, relayWindow)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, outbox.ErrClosed) {
				return
			}
			n.log.Error("reading events to relay failed", "err", err)
		}
		if err == nil && len(evs) == 0 && n.nc.IsConnected() {
			// Drained: the `changed` values decided here during an
			// outage can go to the shared state now, before the gauge
			// says the relay is done.
			n.writeBackStates(ctx, rl)
			n.resendLogs(ctx)
		}
		pending := uint64(len(evs))
		if len(evs) == relayWindow && last > after {
			pending = max(pending, last-after)
		}
		n.relayPending.Set(float64(pending))
		var wait time.Duration
		switch {
		case len(evs) == 0:
			wait = 200 * time.Millisecond
		default:
			upTo, perr := n.publish(ctx, evs)
			if upTo > after {
				after = upTo
			}
			if err := rl.Relayed(ctx, after, perr); err != nil && ctx.Err() == nil {
				n.log.Warn("saving the relay position failed (events may be sent again; the stream drops copies by id)", "err", err)
			}
			if perr != nil {
				wait = time.Second
			}
		}
		if wait == 0 {
			continue
		}
		idle.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-wake:
		case <-idle.C:
		}
	}
}

// publish sends evs with one round of asynchronous publishes and returns
// the sequence up to which all were acknowledged.
func (n *Node) publish(ctx context.Context, evs []outbox.RelayEvent) (uint64, error) {
	if !n.streamsReady.Load() || !n.nc.IsConnected() {
		return 0, unavailable(ErrNATSUnreachable)
	}
	futures := make([]jetstream.PubAckFuture, 0, len(evs))
	var err error
	for _, ev := range evs {
		msg := &nats.Msg{Subject: n.eventSubject(partition(ev.Subject)), Data: ev.Record, Header: nats.Header{}}
		msg.Header.Set("Eventtap-Node", n.cfg.Node)
		var f jetstream.PubAckFuture
		f, err = n.js.PublishMsgAsync(msg, jetstream.WithMsgID(ev.ID), jetstream.WithExpectStream(n.eventsStream()))
		if err != nil {
			break
		}
		futures = append(futures, f)
	}
	var upTo uint64
	timeout := time.NewTimer(relayAckTimeout)
	defer timeout.Stop()
	for i, f := range futures {
		select {
		case <-f.Ok():
			if err == nil {
				upTo = evs[i].Seq
			}
		case e := <-f.Err():
			err = errors.Join(err, e)
		case <-timeout.C:
			return upTo, errors.Join(err, errors.New("no acknowledgement from JetStream within 5 s"))
		case <-ctx.Done():
			return upTo, ctx.Err()
		}
	}
	if err != nil {
		return upTo, unavailable(err)
	}
	return upTo, nil
}
