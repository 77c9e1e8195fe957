package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/eventtap/eventtap/outbox"
)

// One history (docs/cluster.md §7): the owner of a partition shares the
// log of every attempt it makes through the logs stream, and every node
// applies that stream to its own store, so that webhookLogs on any node
// answers for the whole cluster.

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

// shareLog publishes the log of an attempt on partition p and waits for
// the stream to store it. A log that cannot be stored (NATS gone at that
// moment) is only logged here: the delivery itself was made.
func (n *Node) shareLog(ctx context.Context, p int, l outbox.Log) {
	body, err := json.Marshal(l)
	if err == nil {
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		msg := &nats.Msg{Subject: n.cfg.Name + ".logs." + strconv.Itoa(p), Data: body}
		_, err = n.js.PublishMsg(ctx, msg, jetstream.WithMsgID(l.EventID+"/"+l.WebhookID+"/"+strconv.Itoa(l.Attempt)))
	}
	if err != nil {
		n.log.Warn("sharing a delivery log failed; it is missing from webhookLogs", "event", l.EventID, "webhook", l.WebhookID, "err", err)
	}
}

// runLogView applies the logs stream to this node's store, from the
// position it reached before, until ctx ends.
func (n *Node) runLogView(ctx context.Context, local Deliverer) error {
	pos, err := local.LogViewPosition(ctx)
	if err != nil {
		return err
	}
	cfg := jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverAllPolicy}
	if pos > 0 {
		cfg = jetstream.OrderedConsumerConfig{DeliverPolicy: jetstream.DeliverByStartSequencePolicy, OptStartSeq: pos + 1}
	}
	cons, err := n.js.OrderedConsumer(ctx, n.logsStream(), cfg)
	if err != nil {
		return err
	}
	failed := make(chan error, 1)
	cc, err := cons.Consume(func(m jetstream.Msg) {
		md, err := m.Metadata()
		if err != nil || md.Sequence.Stream <= pos {
			return
		}
		var l outbox.Log
		if err := json.Unmarshal(m.Data(), &l); err != nil {
			n.log.Error("a delivery log in the stream cannot be read; it is skipped", "stream_seq", md.Sequence.Stream, "err", err)
			return
		}
		if err := local.ApplyLog(ctx, l, md.Sequence.Stream); err != nil {
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
