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
		// The `changed` values decided here during an outage go to the
		// shared state first, before the backlog: until they are there,
		// another node deciding a change of one of those subjects reports
		// a stale previous value.
		n.writeBackStates(ctx, rl)
		evs, last, err := rl.RelayBatch(ctx, after, relayWindow)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, outbox.ErrClosed) {
				return
			}
			n.log.Error("reading events to relay failed", "err", err)
		}
		if err == nil && len(evs) == 0 && n.nc.IsConnected() {
			// Drained: the logs kept during the outage follow their events.
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
		case <-n.relayWake:
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
	msgs := make([]eventMsg, len(evs))
	for i, ev := range evs {
		msgs[i] = eventMsg{msg: n.eventMsg(ev.Subject, ev.Record), id: ev.ID}
	}
	acked, err := n.publishEvents(ctx, msgs)
	if acked == 0 {
		return 0, err
	}
	return evs[acked-1].Seq, err
}

// eventMsg is a message for the events stream, with its Nats-Msg-Id
// ("" for none).
type eventMsg struct {
	msg *nats.Msg
	id  string
}

// eventMsg builds the message of an event record on its partition.
func (n *Node) eventMsg(subject string, record []byte) *nats.Msg {
	msg := &nats.Msg{Subject: n.eventSubject(partition(subject)), Data: record, Header: nats.Header{}}
	msg.Header.Set("Eventtap-Node", n.cfg.Node)
	return msg
}

// publishEvents publishes msgs to the events stream with one round of
// asynchronous publishes and waits up to relayAckTimeout for their
// acknowledgements. It returns how many, from the first, were
// acknowledged in a row, and an error wrapping ErrUnavailable for the
// rest (ctx's error when ctx ended).
func (n *Node) publishEvents(ctx context.Context, msgs []eventMsg) (int, error) {
	futures := make([]jetstream.PubAckFuture, 0, len(msgs))
	var err error
	for _, m := range msgs {
		opts := []jetstream.PublishOpt{jetstream.WithExpectStream(n.eventsStream())}
		if m.id != "" {
			opts = append(opts, jetstream.WithMsgID(m.id))
		}
		var f jetstream.PubAckFuture
		if f, err = n.js.PublishMsgAsync(m.msg, opts...); err != nil {
			break
		}
		futures = append(futures, f)
	}
	acked := 0
	timeout := time.NewTimer(relayAckTimeout)
	defer timeout.Stop()
	for _, f := range futures {
		select {
		case <-f.Ok():
			if err == nil {
				acked++
			}
		case e := <-f.Err():
			err = errors.Join(err, e)
		case <-timeout.C:
			return acked, unavailable(errors.Join(err, errors.New("no acknowledgement from JetStream within 5 s")))
		case <-ctx.Done():
			return acked, ctx.Err()
		}
	}
	if err != nil {
		return acked, unavailable(err)
	}
	return acked, nil
}
