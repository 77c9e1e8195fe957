package cluster

import (
	"context"
	"strings"

	"github.com/nats-io/nats.go"

	"github.com/eventtap/eventtap/outbox"
)

// Redelivery and replay (eventRedeliver, webhookReplay; docs/cluster.md
// "As built" 8). The node that answers the admin call publishes a copy of
// each event on the event's partition, with requeueHeader naming the
// webhooks it is for. The partition's owner delivers the copy to those
// webhooks alone, through the same lanes, after whatever its partition
// already holds; the events views skip the copy, so the event is listed
// once.

// requeueHeader lists, comma-separated, the webhooks a copy is for.
const requeueHeader = "Eventtap-Requeue"

// requeueTargets returns the webhooks a message is a copy for, or nil for
// an event as committed (delivered to every subscriber of its type).
func requeueTargets(h nats.Header) []string {
	v := h.Get(requeueHeader)
	if v == "" {
		return nil
	}
	out := []string{} // a copy, even if it names no webhook
	for id := range strings.SplitSeq(v, ",") {
		if id = strings.TrimSpace(id); id != "" {
			out = append(out, id)
		}
	}
	return out
}

// Requeue implements outbox.Requeuer: it publishes evs on their
// partitions, at most relayWindow awaiting their acknowledgement at a
// time, and returns once the stream stored every one, or an error
// wrapping outbox.ErrUnavailable.
//
// The copies carry no Nats-Msg-Id. The stream would drop a copy whose id
// it saw within its Duplicates window, so the event id cannot be used (the
// copy would be dropped as the original), and a fresh id per copy buys
// nothing: nothing publishes a copy twice (a failed call is reported, and
// another call is another request), while the server keeps every id for
// the whole window, so a large replay would grow its memory for nothing.
func (n *Node) Requeue(ctx context.Context, evs []outbox.Requeued) error {
	if !n.streamsReady.Load() || !n.nc.IsConnected() {
		return unavailable(ErrNATSUnreachable)
	}
	for len(evs) > 0 {
		chunk := evs[:min(len(evs), relayWindow)]
		evs = evs[len(chunk):]
		if err := n.requeueWindow(ctx, chunk); err != nil {
			return err
		}
	}
	return nil
}

func (n *Node) requeueWindow(ctx context.Context, evs []outbox.Requeued) error {
	msgs := make([]eventMsg, len(evs))
	for i, ev := range evs {
		msg := n.eventMsg(ev.Subject, ev.Record)
		msg.Header.Set(requeueHeader, strings.Join(ev.Webhooks, ","))
		msgs[i] = eventMsg{msg: msg}
	}
	_, err := n.publishEvents(ctx, msgs)
	return err
}
