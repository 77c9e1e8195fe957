package cluster

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/eventtap/eventtap/delivery"
	"github.com/eventtap/eventtap/outbox"
)

// Delivery from the events stream (docs/cluster.md §4). Each partition has
// one durable consumer in a pinned priority group: the server hands its
// messages to one node at a time, and to another once that node stops
// pulling for pinnedTTL. The owner runs the single node's dispatcher
// (package delivery) over them: lanes per (webhook, subject), ordered by
// stream sequence, so a failing receiver holds up only its own lanes. A
// message is acknowledged once every delivery of it succeeded or failed
// for good; until then the owner keeps it in progress, and if the owner
// dies the server gives it to the next one.
const (
	pinnedTTL = 10 * time.Second
	ackWait   = 10 * time.Second
	// maxAckPending bounds the messages of one partition an owner holds;
	// past it the partition waits (a receiver down for long, behind many
	// orders: eventtap_outbox_pending shows it).
	maxAckPending = 10000
	// heartbeatEvery keeps held messages from being redelivered.
	heartbeatEvery = ackWait / 3
	// releaseTimeout bounds giving partitions back: one partition on a
	// rebalance, all of them together when the node stops.
	releaseTimeout = 2 * time.Second
	priorityGroup  = "owner"
)

// Deliverer is the outbox's side of stream delivery.
type Deliverer interface {
	Subscribers(typ string) []string
	DeliveryTarget(id string) (delivery.Target, outbox.WebhookStatus, bool)
	WebhookIDs() []string
	ObserveStreamAttempt(a *delivery.Attempt, ev outbox.Event) outbox.Log
	LogViewPosition(ctx context.Context) (uint64, error)
	ApplyLog(ctx context.Context, l outbox.Log, out outbox.LogOutcome, pos uint64) error
	EventViewPosition(ctx context.Context) (uint64, error)
	ApplyEvents(ctx context.Context, evs []outbox.ViewEvent) error
}

// held is an event message this node owns and has not acknowledged.
type held struct {
	msg     jetstream.Msg
	seq     uint64
	part    int
	ev      outbox.Event
	pending map[string]int // webhook id → attempts made, for deliveries not done
	copy    bool           // published again by eventRedeliver or webhookReplay
	dropped bool           // the partition moved away; its items are skipped
	// restarted names, per webhook, the copy merged into this event whose
	// attempts count from 1 again (mergeCopyLocked); guarded by mu.
	restarted map[string]uint64
}

// partState is one partition as this node sees it.
type partState struct {
	owned bool
	// While warming, a new owner holds what it receives until the previous
	// owner's unacknowledged messages have come back (they come after
	// newer ones), so that it feeds the lanes in stream order.
	warmUntil time.Time
	waitOld   int // redeliveries still expected
	buffer    []*held
	cons      jetstream.Consumer
	// lastCons is the consumer sequence of the last delivery received: a
	// jump means deliveries were lost on the way (a server that died, a
	// reconnection), which come back only after ackWait, behind newer ones.
	lastCons uint64
}

// streamDelivery runs this node's share of delivery.
type streamDelivery struct {
	n     *Node
	local Deliverer
	disp  *delivery.Dispatcher

	mu   sync.Mutex
	msgs map[uint64]*held
	// byEvent finds a held event as committed (not a copy) by its id, so
	// that a copy for a webhook it still waits for is merged into it.
	byEvent map[string]*held
	parts   [Partitions]partState
}

// forgetLocked drops h from the held messages; mu is held.
func (sd *streamDelivery) forgetLocked(h *held) {
	delete(sd.msgs, h.seq)
	if sd.byEvent[h.ev.ID] == h {
		delete(sd.byEvent, h.ev.ID)
	}
}

func (n *Node) consumerName(p int) string { return n.cfg.Name + "_p" + strconv.Itoa(p) }

// ensureConsumers creates or updates the partition consumers.
func (n *Node) ensureConsumers(ctx context.Context) error {
	for p := range Partitions {
		if _, err := n.js.Consumer(ctx, n.eventsStream(), n.consumerName(p)); err == nil {
			continue // created by this node or another before
		}
		_, err := n.js.CreateOrUpdateConsumer(ctx, n.eventsStream(), jetstream.ConsumerConfig{
			Durable:        n.consumerName(p),
			Description:    "eventtap delivery of partition " + strconv.Itoa(p),
			FilterSubject:  n.eventSubject(p),
			AckPolicy:      jetstream.AckExplicitPolicy,
			AckWait:        ackWait,
			MaxAckPending:  maxAckPending,
			DeliverPolicy:  jetstream.DeliverAllPolicy,
			PriorityPolicy: jetstream.PriorityPolicyPinned,
			PriorityGroups: []string{priorityGroup},
			PinnedTTL:      pinnedTTL,
			Replicas:       n.cfg.Replicas,
		})
		if err != nil {
			return fmt.Errorf("consumer %s: %w", n.consumerName(p), err)
		}
	}
	return nil
}

// runDelivery consumes every partition (the server decides which this
// node owns) and delivers what it owns until ctx ends.
func (n *Node) runDelivery(ctx context.Context, local Deliverer) error {
	sender, err := delivery.NewSender(n.opts.Delivery, nil)
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	defer sender.Close()
	sd := &streamDelivery{n: n, local: local, msgs: map[uint64]*held{}, byEvent: map[string]*held{}}
	sd.disp = delivery.NewDispatcher(n.opts.Delivery, sender, delivery.Options{Logger: n.log})
	n.owned.Store(sd.disp)
	defer n.owned.Store(nil)
	var consumers [Partitions]jetstream.Consumer
	for p := range Partitions {
		if consumers[p], err = n.js.Consumer(ctx, n.eventsStream(), n.consumerName(p)); err != nil {
			return fmt.Errorf("consumer %s: %w", n.consumerName(p), err)
		}
	}
	active := map[int]jetstream.ConsumeContext{}
	owned := 0
	defer func() {
		// Stopping (a rolling restart): give every partition back at once,
		// within releaseTimeout in all (with NATS unreachable nothing can
		// be given back; the pins then lapse after pinnedTTL).
		rctx, cancel := context.WithTimeout(context.Background(), releaseTimeout)
		defer cancel()
		for p, cc := range active {
			cc.Stop()
			sd.release(rctx, p)
		}
		if len(active) > 0 {
			n.log.Info("gave every partition up: stopping", "partitions", len(active), "nats_reachable", n.nc.IsConnected())
		}
		n.partitions.Set(0)
	}()
	// balance pulls the partitions this node is preferred for among the
	// live members, and gives back the others (docs/cluster.md §4).
	balance := func() error {
		live, err := n.members(ctx)
		if err != nil {
			return nil // keep what we have until membership answers again
		}
		for p := range Partitions {
			want := preferred(p, live) == n.cfg.Node
			cc, on := active[p]
			switch {
			case want && !on:
				cons := consumers[p]
				cc, err := cons.Consume(func(m jetstream.Msg) { sd.receive(ctx, cons, p, m) },
					jetstream.PullPriorityGroup(priorityGroup),
					jetstream.PullExpiry(time.Second),
					jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
						if errors.Is(err, jetstream.ErrPinIDMismatch) {
							sd.lost(p)
						}
					}))
				if err != nil {
					return fmt.Errorf("consuming %s: %w", n.consumerName(p), err)
				}
				active[p] = cc
			case !want && on:
				cc.Stop()
				delete(active, p)
				sd.release(ctx, p)
			}
		}
		if len(active) != owned {
			owned = len(active)
			n.partitions.Set(float64(owned))
			n.log.Info("delivering a share of the partitions", "partitions", owned, "of", Partitions, "members", len(live))
		}
		return nil
	}
	if err := balance(); err != nil {
		return err
	}
	rebalance := time.NewTicker(time.Second)
	defer rebalance.Stop()
	dctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); sd.disp.Run(dctx, sd) }()
	defer func() { stop(); <-done }()
	t := time.NewTicker(heartbeatEvery)
	defer t.Stop()
	sd.syncPaused()
	fast := time.NewTicker(250 * time.Millisecond)
	defer fast.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-fast.C:
			sd.syncPaused()
			sd.flushWarm(time.Now())
		case <-t.C:
			sd.heartbeat()
		case <-rebalance.C:
			if err := balance(); err != nil {
				return err
			}
		}
	}
}

// preferred returns the member that partition p prefers (rendezvous
// hashing), so that each of N members owns about 32/N partitions and a
// member leaving or joining moves only its share.
func preferred(p int, members []string) string {
	var best string
	var top uint64
	for _, m := range members {
		if v := rendezvousScore(m, p); best == "" || v > top || (v == top && m < best) {
			best, top = m, v
		}
	}
	return best
}

// rendezvousScore is member m's score for partition p: FNV-1a of
// "m/p" through a 64-bit finalizer (MurmurHash3's fmix64). FNV alone
// leaves names that differ in one character (nodeA, nodeB; node-1,
// node-2) with nearly the same score for every partition, so one of them
// won them all; the finalizer spreads every input bit over the output.
func rendezvousScore(m string, p int) uint64 {
	h := fnv.New64a()
	_, _ = h.Write([]byte(m + "/" + strconv.Itoa(p)))
	v := h.Sum64()
	v ^= v >> 33
	v *= 0xff51afd7ed558ccd
	v ^= v >> 33
	v *= 0xc4ceb9fe1a85ec53
	v ^= v >> 33
	return v
}

// release gives partition p back: its held messages are negatively
// acknowledged, so that the node now preferred gets them at once (through
// its takeover barrier), and the pin is lifted so that it is pinned
// without waiting for pinnedTTL. Attempts in flight finish unrecorded:
// at most duplicates.
func (sd *streamDelivery) release(ctx context.Context, p int) {
	sd.mu.Lock()
	var ms []jetstream.Msg
	ps := &sd.parts[p]
	for _, h := range ps.buffer {
		ms = append(ms, h.msg)
	}
	*ps = partState{}
	for _, h := range sd.msgs {
		if h.part == p {
			h.dropped = true
			sd.forgetLocked(h)
			ms = append(ms, h.msg)
		}
	}
	sd.mu.Unlock()
	for _, m := range ms {
		_ = m.Nak()
	}
	if !sd.n.nc.IsConnected() {
		// Nothing can reach the server: the pin lapses after pinnedTTL.
		sd.n.log.Debug("gave a partition up; NATS is unreachable, so the next owner waits for its pin to lapse", "partition", p)
		return
	}
	ctx, cancel := context.WithTimeout(ctx, releaseTimeout)
	defer cancel()
	if st, err := sd.n.js.Stream(ctx, sd.n.eventsStream()); err == nil {
		_ = st.UnpinConsumer(ctx, sd.n.consumerName(p), priorityGroup)
	}
	sd.n.log.Debug("gave a partition to the node now preferred for it", "partition", p)
}

// receive takes one message of partition p.
func (sd *streamDelivery) receive(ctx context.Context, cons jetstream.Consumer, p int, m jetstream.Msg) {
	md, err := m.Metadata()
	if err != nil {
		return
	}
	ev, err := outbox.DecodeRelayed(m.Data())
	if err != nil {
		sd.n.log.Error("an event in the stream cannot be read; it is skipped", "stream_seq", md.Sequence.Stream, "err", err)
		_ = m.Term()
		return
	}
	// An event as committed goes to the ENABLED webhooks of its type; a
	// copy published by eventRedeliver or webhookReplay (requeue.go) to
	// the webhooks it names (Prepare drops those deleted since).
	subs := requeueTargets(m.Headers())
	isCopy := subs != nil
	if !isCopy {
		subs = sd.local.Subscribers(ev.Type)
	}
	h := &held{msg: m, seq: md.Sequence.Stream, part: p, ev: ev, copy: isCopy, pending: make(map[string]int, len(subs))}
	for _, id := range subs {
		h.pending[id] = 0
	}
	sd.mu.Lock()
	if _, dup := sd.msgs[h.seq]; dup {
		sd.mu.Unlock()
		_ = m.InProgress()
		return
	}
	ps := &sd.parts[p]
	if !ps.owned {
		// Pinned on p: if the previous owner left messages unacknowledged,
		// they come back only after ackWait, and after newer ones.
		ps.owned = true
		sd.mu.Unlock()
		old := 0
		ictx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if info, err := cons.Info(ictx); err == nil && sd.olderUnacked(ictx, p, info.AckFloor.Stream, h.seq) {
			// Every message delivered and not acknowledged: the previous
			// owner's, which come back with NumDelivered > 1 (this one
			// too, perhaps, counted below), this one if it is new, and
			// perhaps more pulled with it (then the wait times out).
			old = info.NumAckPending
			if md.NumDelivered == 1 {
				old--
			}
		}
		cancel()
		sd.mu.Lock()
		if old > 0 {
			// A cap: normally flushWarm ends the wait as soon as every
			// unacknowledged message of p is here.
			ps.warmUntil, ps.waitOld, ps.cons = time.Now().Add(2*ackWait+time.Second), old, cons
			sd.n.log.Info("took over a partition; waiting for its unacknowledged events before delivering", "partition", p, "pending", old)
		}
	}
	if last := ps.lastCons; last > 0 && md.Sequence.Consumer > last+1 && md.NumDelivered == 1 && ps.waitOld == 0 {
		ps.warmUntil, ps.waitOld, ps.cons = time.Now().Add(2*ackWait+time.Second), int(md.Sequence.Consumer-last-1), cons
		sd.n.log.Info("deliveries of a partition were lost on the way; waiting for them before delivering newer ones", "partition", p, "missing", ps.waitOld)
	}
	ps.lastCons = max(ps.lastCons, md.Sequence.Consumer)
	if md.NumDelivered > 1 && ps.waitOld > 0 {
		ps.waitOld--
	}
	if time.Now().Before(ps.warmUntil) && ps.waitOld > 0 {
		ps.buffer = append(ps.buffer, h)
		sd.mu.Unlock()
		return
	}
	ps.warmUntil = time.Time{}
	batch := append(ps.buffer, h)
	ps.buffer = nil
	sd.feedLocked(batch)
	sd.mu.Unlock()
}

// olderUnacked reports whether partition p has a message between the
// consumer's ack floor and seq, the first one this node received: one the
// previous owner left unacknowledged (else a fresh start needs no wait).
func (sd *streamDelivery) olderUnacked(ctx context.Context, p int, floor, seq uint64) bool {
	if floor+1 >= seq {
		return false
	}
	st, err := sd.n.js.Stream(ctx, sd.n.eventsStream())
	if err != nil {
		return true
	}
	m, err := st.GetMsg(ctx, floor+1, jetstream.WithGetMsgSubject(sd.n.eventSubject(p)))
	if err != nil {
		return !errors.Is(err, jetstream.ErrMsgNotFound)
	}
	return m.Sequence < seq
}

// flushWarm ends the warm-up of partitions whose time is up, or whose
// unacknowledged messages are all here: the consumer's NumAckPending
// counts no more than this node holds (a consumer leader change may reset
// the previous owner's redelivery timers, so a fixed wait is not enough).
func (sd *streamDelivery) flushWarm(now time.Time) {
	type check struct {
		p    int
		cons jetstream.Consumer
		ours int
	}
	var checks []check
	sd.mu.Lock()
	for p := range sd.parts {
		ps := &sd.parts[p]
		if len(ps.buffer) == 0 {
			continue
		}
		if !now.Before(ps.warmUntil) {
			sd.flushLocked(ps)
			continue
		}
		if ps.cons != nil {
			ours := len(ps.buffer)
			for _, h := range sd.msgs {
				if h.part == p {
					ours++
				}
			}
			checks = append(checks, check{p, ps.cons, ours})
		}
	}
	sd.mu.Unlock()
	for _, c := range checks {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		info, err := c.cons.Info(ctx)
		cancel()
		if err != nil || info.NumAckPending > c.ours {
			continue
		}
		sd.mu.Lock()
		if ps := &sd.parts[c.p]; len(ps.buffer) > 0 {
			sd.flushLocked(ps)
		}
		sd.mu.Unlock()
	}
}

// flushLocked ends a partition's warm-up; mu is held.
func (sd *streamDelivery) flushLocked(ps *partState) {
	batch := ps.buffer
	ps.buffer, ps.warmUntil, ps.waitOld, ps.cons = nil, time.Time{}, 0, nil
	sd.feedLocked(batch)
}

// feedLocked gives messages to the lanes in stream order; mu is held.
func (sd *streamDelivery) feedLocked(batch []*held) {
	slices.SortFunc(batch, func(a, b *held) int { return cmp.Compare(a.seq, b.seq) })
	now := time.Now().UnixNano()
	var entries []delivery.Entry
	for _, h := range batch {
		if _, dup := sd.msgs[h.seq]; dup {
			continue
		}
		if h.copy {
			entries = sd.mergeCopyLocked(h, now, entries)
		}
		if len(h.pending) == 0 {
			_ = h.msg.Ack() // nobody subscribed, or merged
			continue
		}
		sd.msgs[h.seq] = h
		if !h.copy {
			sd.byEvent[h.ev.ID] = h
		}
		for id := range h.pending {
			entries = append(entries, delivery.Entry{WebhookID: id, Subject: h.ev.Subject,
				Item: delivery.Item{Seq: h.seq, Due: now, Observed: h.ev.CreatedAt.UnixNano()}})
		}
	}
	if len(entries) > 0 {
		sd.disp.AddMany(entries)
	}
}

// mergeCopyLocked hands a copy published by eventRedeliver or
// webhookReplay over to the event as committed, for each webhook that the
// event still waits for here (in backoff, say): that delivery is due now,
// its attempts counted from 1 again, as on one node (SPEC §5), instead of
// a copy sent after it. A delivery whose attempt is in flight keeps that
// attempt's outcome. The copy keeps the other webhooks. mu is held.
func (sd *streamDelivery) mergeCopyLocked(h *held, now int64, entries []delivery.Entry) []delivery.Entry {
	orig := sd.byEvent[h.ev.ID]
	if orig == nil || orig.dropped {
		return entries
	}
	for id := range h.pending {
		if _, waiting := orig.pending[id]; !waiting {
			continue
		}
		orig.pending[id] = 0
		if orig.restarted == nil {
			orig.restarted = map[string]uint64{}
		}
		orig.restarted[id] = h.seq
		delete(h.pending, id)
		entries = append(entries, delivery.Entry{WebhookID: id, Subject: orig.ev.Subject,
			Item: delivery.Item{Seq: orig.seq, Due: now, Observed: orig.ev.CreatedAt.UnixNano()}})
	}
	return entries
}

// lost forgets partition p's messages: another node is pinned now and
// gets them again.
func (sd *streamDelivery) lost(p int) {
	sd.mu.Lock()
	defer sd.mu.Unlock()
	ps := &sd.parts[p]
	if !ps.owned {
		return
	}
	ps.owned, ps.buffer, ps.warmUntil, ps.waitOld = false, nil, time.Time{}, 0
	for _, h := range sd.msgs {
		if h.part == p {
			h.dropped = true
			sd.forgetLocked(h)
		}
	}
	sd.n.log.Info("another node owns a partition now", "partition", p)
}

// heartbeat keeps every held message from being redelivered.
func (sd *streamDelivery) heartbeat() {
	sd.mu.Lock()
	var ms []jetstream.Msg
	for _, h := range sd.msgs {
		ms = append(ms, h.msg)
	}
	for p := range sd.parts {
		for _, h := range sd.parts[p].buffer {
			ms = append(ms, h.msg)
		}
	}
	sd.mu.Unlock()
	for _, m := range ms {
		_ = m.InProgress()
	}
}

// syncPaused pauses the lanes of webhooks that are not ENABLED and drops
// those of deleted ones, following the shared registry.
func (sd *streamDelivery) syncPaused() {
	for _, id := range sd.local.WebhookIDs() {
		_, status, ok := sd.local.DeliveryTarget(id)
		if ok {
			sd.disp.SetPaused(id, status != outbox.Enabled)
		}
	}
}

// Prepare implements delivery.Store.
func (sd *streamDelivery) Prepare(_ context.Context, whID, subject string, it delivery.Item) (*delivery.Attempt, delivery.Outcome, time.Time) {
	sd.mu.Lock()
	h := sd.msgs[it.Seq]
	var n int
	var pending bool
	if h != nil {
		n, pending = h.pending[whID]
	}
	sd.mu.Unlock()
	if h == nil || !pending {
		return nil, delivery.Done, time.Time{}
	}
	target, status, ok := sd.local.DeliveryTarget(whID)
	if !ok {
		sd.done(h, whID)
		return nil, delivery.Done, time.Time{}
	}
	if status != outbox.Enabled {
		sd.disp.SetPaused(whID, true)
		return nil, delivery.Release, time.Time{}
	}
	return &delivery.Attempt{WebhookID: whID, Subject: subject, Item: it,
		Target: target, EventID: h.ev.ID, Payload: h.ev.Payload, Number: n, State: h}, 0, time.Time{}
}

// Record implements delivery.Store: a delivery that succeeded or failed
// for good is done, and a message whose deliveries are all done is
// acknowledged (and the server has confirmed it) before the lane moves on.
func (sd *streamDelivery) Record(ctx context.Context, a *delivery.Attempt, done func(error)) {
	// Synchronous: the log is shared and the message acknowledged before
	// the worker moves on (delivery lets a store finish later; this one
	// has nothing to batch).
	done(sd.record(ctx, a))
}

func (sd *streamDelivery) record(ctx context.Context, a *delivery.Attempt) error {
	h := a.State.(*held)
	sd.mu.Lock()
	restart := h.restarted[a.WebhookID]
	sd.mu.Unlock()
	if h.copy {
		restart = h.seq
	}
	sd.n.shareLog(ctx, h.part, sd.local.ObserveStreamAttempt(a, h.ev), a, restart)
	sd.mu.Lock()
	if _, ok := h.pending[a.WebhookID]; ok {
		h.pending[a.WebhookID] = a.Number
	}
	sd.mu.Unlock()
	if a.Outcome != delivery.Done {
		return nil
	}
	return sd.done(h, a.WebhookID)
}

// done marks h's delivery to whID done, acknowledging h after its last.
func (sd *streamDelivery) done(h *held, whID string) error {
	sd.mu.Lock()
	delete(h.pending, whID)
	last := len(h.pending) == 0 && !h.dropped
	if last {
		sd.forgetLocked(h)
	}
	sd.mu.Unlock()
	if !last {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.msg.DoubleAck(ctx); err != nil {
		// The server may give it again (to us or another node): a
		// duplicate, which receivers drop by webhook-id.
		sd.n.log.Warn("acknowledging a delivered event failed", "event", h.ev.ID, "err", err)
	}
	return nil
}

// Owned returns the delivery work this node holds for the cluster, for
// outbox.Cluster (the metrics count it with the node's own).
func (n *Node) Owned() outbox.Backlogs { return owned{n} }

type owned struct{ n *Node }

func (o owned) PendingCount() float64 {
	if d := o.n.owned.Load(); d != nil {
		return d.PendingCount()
	}
	return 0
}

func (o owned) OldestPending(now time.Time) float64 {
	if d := o.n.owned.Load(); d != nil {
		return d.OldestPending(now)
	}
	return 0
}

func (o owned) Backlog(ids []string, now time.Time) []delivery.Backlog {
	if d := o.n.owned.Load(); d != nil {
		return d.Backlog(ids, now)
	}
	out := make([]delivery.Backlog, len(ids))
	for i, id := range ids {
		out[i].ID = id
	}
	return out
}
