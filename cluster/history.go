package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/eventtap/eventtap/delivery"
	"github.com/eventtap/eventtap/outbox"
)

// One history (docs/cluster.md §7): the owner of a partition shares the
// log of every attempt it makes through the logs stream, and every node
// applies that stream and the events stream to its own store, so that
// webhookLogs, events and event(id) on any node answer for the whole
// cluster.

func (n *Node) logsStream() string { return n.cfg.Name + "_logs" }

// ensureLogStream creates the logs stream, or updates it when a setting
// changed.
func (n *Node) ensureLogStream(ctx context.Context) error {
	return n.ensureStream(ctx, jetstream.StreamConfig{
		Name:        n.logsStream(),
		Description: "eventtap delivery attempt logs (Nats-Msg-Id = event, webhook and attempt)",
		Subjects:    []string{n.cfg.Name + ".logs.*"},
	})
}

// sharedLog is a message of the logs stream: the log, and what it means
// for its delivery, from which every node derives the delivery states
// that events and event(id) show. A message without the outcome (written
// before it existed) leaves its delivery PENDING unless it succeeded.
type sharedLog struct {
	outbox.Log
	Final bool      `json:",omitempty"`
	Next  time.Time `json:",omitempty"`
	// Test marks the log of a webhookTest: no event, no delivery.
	Test bool `json:",omitempty"`
	// Late marks a log sent again after its first publish failed: later
	// attempts may be in the stream before it, so it only adds the log.
	Late bool `json:",omitempty"`
}

// ShareTestLog publishes the log of a webhookTest made on this node
// (outbox.Cluster.TestLogs), so that webhookLogs on every node list it,
// and returns its position in the logs stream.
func (n *Node) ShareTestLog(ctx context.Context, l outbox.Log) (uint64, error) {
	if !n.streamsReady.Load() || !n.nc.IsConnected() {
		return 0, unavailable(ErrNATSUnreachable)
	}
	body, err := json.Marshal(sharedLog{Log: l, Final: true, Test: true})
	if err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	msg := &nats.Msg{Subject: n.cfg.Name + ".logs." + strconv.Itoa(partition(l.WebhookID)), Data: body}
	ack, err := n.js.PublishMsg(ctx, msg, jetstream.WithMsgID(l.EventID+"/"+l.WebhookID+"/test"))
	if err != nil {
		return 0, unavailable(err)
	}
	return ack.Sequence, nil
}

// maxUnsentLogs bounds the delivery logs kept for sending again after a
// failed publish (NATS gone just as attempts were made).
const maxUnsentLogs = 4096

// unsentLog is a delivery log whose publish failed.
type unsentLog struct {
	subject, id string
	log         sharedLog
}

// shareLog publishes the log of attempt a on partition p and waits for
// the stream to store it. A log that cannot be stored (NATS gone at that
// moment) is kept, up to maxUnsentLogs, and sent again by the relay loop
// once NATS answers (resendLogs); the delivery itself was made. Its
// Nats-Msg-Id names the event, webhook and attempt, and, when restart is
// not 0, the position of the redelivery's or replay's copy whose attempts
// count from 1 again (the copy's own, or one merged into the event as
// committed), so that they are not dropped as the earlier ones.
func (n *Node) shareLog(ctx context.Context, p int, l outbox.Log, a *delivery.Attempt, restart uint64) {
	body, err := json.Marshal(sharedLog{Log: l, Final: a.Outcome == delivery.Done, Next: a.Next})
	if err == nil {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		msg := &nats.Msg{Subject: n.cfg.Name + ".logs." + strconv.Itoa(p), Data: body}
		id := l.EventID + "/" + l.WebhookID + "/" + strconv.Itoa(l.Attempt)
		if restart != 0 {
			id += "/" + strconv.FormatUint(restart, 10)
		}
		if _, err = n.js.PublishMsg(ctx, msg, jetstream.WithMsgID(id)); err != nil {
			n.logsMu.Lock()
			kept := len(n.unsentLogs) < maxUnsentLogs
			if kept {
				late := sharedLog{Log: l, Final: a.Outcome == delivery.Done, Next: a.Next, Late: true}
				n.unsentLogs = append(n.unsentLogs, unsentLog{subject: msg.Subject, id: id, log: late})
			}
			n.logsMu.Unlock()
			if kept {
				n.log.Warn("sharing a delivery log failed; it is sent again once NATS answers", "event", l.EventID, "webhook", l.WebhookID, "err", err)
				return
			}
		}
	}
	if err != nil {
		n.log.Warn("sharing a delivery log failed; it is missing from webhookLogs", "event", l.EventID, "webhook", l.WebhookID, "err", err)
	}
}

// resendLogs publishes the delivery logs whose first publish failed, in
// the order they were made; those that fail again stay for the next
// call. The stream drops a log it already has by its Nats-Msg-Id.
func (n *Node) resendLogs(ctx context.Context) {
	n.logsMu.Lock()
	logs := n.unsentLogs
	n.unsentLogs = nil
	n.logsMu.Unlock()
	for i, u := range logs {
		body, err := json.Marshal(u.log)
		if err != nil {
			continue
		}
		pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		_, err = n.js.PublishMsg(pctx, &nats.Msg{Subject: u.subject, Data: body}, jetstream.WithMsgID(u.id))
		cancel()
		if err != nil {
			n.logsMu.Lock()
			n.unsentLogs = append(logs[i:], n.unsentLogs...)
			n.logsMu.Unlock()
			return
		}
	}
	if len(logs) > 0 {
		n.log.Info("sent the delivery logs that had failed to go out", "logs", len(logs))
	}
}

// orderedFrom returns an ordered consumer of stream that starts after
// position pos (0: from the start).
func (n *Node) orderedFrom(ctx context.Context, stream string, pos uint64) (jetstream.Consumer, error) {
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy}
	if pos > 0 {
		cfg = jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: pos + 1}
	}
	return n.js.OrderedConsumer(ctx, stream, cfg)
}

// runLogView applies the logs stream to this node's store, from the
// position it reached before, until ctx ends.
func (n *Node) runLogView(ctx context.Context, local Deliverer) error {
	pos, err := local.LogViewPosition(ctx)
	if err != nil {
		return err
	}
	cons, err := n.orderedFrom(ctx, n.logsStream(), pos)
	if err != nil {
		return err
	}
	failed := make(chan error, 1)
	cc, err := cons.Consume(func(m jetstream.Msg) {
		md, err := m.Metadata()
		if err != nil || md.Sequence.Stream <= pos {
			return
		}
		var l sharedLog
		if err := json.Unmarshal(m.Data(), &l); err != nil {
			n.log.Error("a delivery log in the stream cannot be read; it is skipped", "stream_seq", md.Sequence.Stream, "err", err)
			return
		}
		if err := local.ApplyLog(ctx, l.Log, outbox.LogOutcome{Final: l.Final, Next: l.Next, Test: l.Test, Late: l.Late}, md.Sequence.Stream); err != nil {
			select {
			case failed <- err:
			default:
			}
			return
		}
		pos = md.Sequence.Stream
	})
	if err != nil {
		return err
	}
	defer cc.Stop()
	select {
	case <-ctx.Done():
		return nil
	case err := <-failed:
		if errors.Is(err, outbox.ErrClosed) {
			return nil
		}
		return err
	}
}

// Bounds of one batch of the events view: one Badger transaction each, so
// that following a busy stream costs a sync per batch, not per event.
const (
	viewBatch      = 256
	viewBatchBytes = 1 << 20
)

// runEventView applies the events stream to this node's store, from the
// position it reached before, until ctx ends, so that events and
// event(id) answer for the whole cluster (docs/cluster.md §7). Messages
// wait in a channel of viewBatch; a full one holds the consumer back.
func (n *Node) runEventView(ctx context.Context, local Deliverer) error {
	pos, err := local.EventViewPosition(ctx)
	if err != nil {
		return err
	}
	cons, err := n.orderedFrom(ctx, n.eventsStream(), pos)
	if err != nil {
		return err
	}
	msgs := make(chan jetstream.Msg, viewBatch)
	stop := make(chan struct{})
	cc, err := cons.Consume(func(m jetstream.Msg) {
		select {
		case msgs <- m:
		case <-stop:
		}
	})
	if err != nil {
		return err
	}
	defer cc.Stop()
	defer close(stop) // before Stop: a callback waiting on msgs returns
	batch := make([]outbox.ViewEvent, 0, viewBatch)
	size := 0
	add := func(m jetstream.Msg) {
		md, err := m.Metadata()
		if err != nil || md.Sequence.Stream <= pos {
			return
		}
		pos = md.Sequence.Stream
		batch = append(batch, outbox.ViewEvent{Pos: pos, Record: m.Data(), Copy: requeueTargets(m.Headers()) != nil})
		size += len(m.Data())
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case m := <-msgs:
			add(m)
		}
	more:
		for len(batch) < viewBatch && size < viewBatchBytes {
			select {
			case m := <-msgs:
				add(m)
			default:
				break more
			}
		}
		if err := local.ApplyEvents(ctx, batch); err != nil {
			if errors.Is(err, outbox.ErrClosed) || ctx.Err() != nil {
				return nil
			}
			return err
		}
		batch, size = batch[:0], 0
	}
}
