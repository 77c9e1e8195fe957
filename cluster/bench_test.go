package cluster

// What publishing before release costs (docs/cluster.md). Each benchmark
// reports p50/p99 latency of one operation and throughput; ns/op is zeroed
// because it means nothing for concurrent runs. Run one at a time on a
// quiet machine:
//
//	go test -run '^$' -bench . -benchtime 2000x ./cluster/
//
// sync=interval is nats-server's default (fsync every 2 min: fast, loses
// acknowledged writes when the host crashes); sync=always is what
// docs/cluster.md requires for replicas: 1.

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
)

var syncModes = []struct {
	name   string
	always bool
}{{"sync=interval", false}, {"sync=always", true}}

// BenchmarkPublish is one event published with its id as Nats-Msg-Id and
// its ack awaited: what a response waits for, per batch, when events go to
// JetStream before it is released.
func BenchmarkPublish(b *testing.B) {
	eachModeAndWorkers(b, func(b *testing.B, js jetstream.JetStream, workers int) {
		eventsStream(b, js, 1)
		var lat latencies
		lat.report(b, runConcurrent(b, workers, &lat, publishOp(js)), 1, "")
	})
}

// publishOp publishes event i to its partition and waits for the ack.
func publishOp(js jetstream.JetStream) func(i int) error {
	return func(i int) error {
		subj := "eventtap.events." + strconv.Itoa(i%32)
		_, err := js.Publish(context.Background(), subj, payload, jetstream.WithMsgID(nextEventID()))
		return err
	}
}

// eachModeAndWorkers runs fn against a fresh server for each sync mode,
// sequentially (1 worker) and with 32 concurrent workers.
func eachModeAndWorkers(b *testing.B, fn func(b *testing.B, js jetstream.JetStream, workers int)) {
	for _, mode := range syncModes {
		for _, workers := range []int{1, 32} {
			b.Run(fmt.Sprintf("%s/workers=%d", mode.name, workers), func(b *testing.B) {
				_, js := connect(b, startServer(b, mode.always))
				fn(b, js, workers)
			})
		}
	}
}

// BenchmarkStateCAS is the `changed` decision: read a state key, then
// Update it at the revision read (compare-and-set), retrying on a
// conflict. keys=1 has every worker on one subject (the worst case:
// concurrent exchanges of one order on several nodes); keys=many gives each
// operation its own subject, as with distinct orders.
func BenchmarkStateCAS(b *testing.B) {
	for _, mode := range syncModes {
		for _, tc := range []struct {
			name    string
			workers int
			oneKey  bool
		}{{"workers=1/keys=many", 1, false}, {"workers=32/keys=1", 32, true}, {"workers=32/keys=many", 32, false}} {
			b.Run(mode.name+"/"+tc.name, func(b *testing.B) {
				s := startServer(b, mode.always)
				_, js := connect(b, s)
				kv := stateBucket(b, js, 1)
				ctx := context.Background()
				var lat latencies
				var conflicts atomicCounter
				elapsed := runConcurrent(b, tc.workers, &lat, func(i int) error {
					key := "k" + strconv.Itoa(i)
					if tc.oneKey {
						key = "k0"
					}
					value := []byte(`{"v":"` + strconv.Itoa(i) + `","e":"evt_` + strconv.Itoa(i) + `"}`)
					return casLoop(ctx, kv, key, value, &conflicts)
				})
				lat.report(b, elapsed, 1, "")
				b.ReportMetric(float64(conflicts.n.Load())/float64(b.N), "conflicts/op")
			})
		}
	}
}

// BenchmarkChangedRelease is the whole path of an exchange whose rule has
// `changed`, as docs/cluster.md orders it: read the state, compare-and-set
// it, publish the event, then the response may go (the local Badger sync,
// measured in ./outbox/, comes on top).
func BenchmarkChangedRelease(b *testing.B) {
	eachModeAndWorkers(b, func(b *testing.B, js jetstream.JetStream, workers int) {
		eventsStream(b, js, 1)
		kv := stateBucket(b, js, 1)
		var lat latencies
		lat.report(b, runConcurrent(b, workers, &lat, changedOp(js, kv)), 1, "")
	})
}

// changedOp is the release path of event i of a `changed` rule: state
// compare-and-set on its own key, then the publish.
func changedOp(js jetstream.JetStream, kv jetstream.KeyValue) func(i int) error {
	var conflicts atomicCounter
	publish := publishOp(js)
	return func(i int) error {
		value := []byte(`{"v":"PAID","e":"evt_` + strconv.Itoa(i) + `"}`)
		if err := casLoop(context.Background(), kv, "k"+strconv.Itoa(i), value, &conflicts); err != nil {
			return err
		}
		return publish(i)
	}
}

// BenchmarkAtomicRelease is the alternative to BenchmarkChangedRelease
// that docs/cluster.md keeps as an option: read the state subject's last
// message (direct get), then write the transition and the event in one
// atomic batch, with no window between the two.
func BenchmarkAtomicRelease(b *testing.B) {
	for _, workers := range []int{1, 32} {
		b.Run(fmt.Sprintf("sync=interval/workers=%d", workers), func(b *testing.B) {
			nc, js := connect(b, startServer(b, false))
			st := atomicStream(b, js)
			ctx := context.Background()
			var lat latencies
			lat.report(b, runConcurrent(b, workers, &lat, func(i int) error {
				key := "k" + strconv.Itoa(i)
				var expect uint64
				switch m, err := st.GetLastMsgForSubject(ctx, "eventtap.state."+key); {
				case err == nil:
					expect = m.Sequence
				case !errors.Is(err, jetstream.ErrMsgNotFound):
					return err
				}
				_, err := atomicTransition(nc, "b"+strconv.Itoa(i), key, expect, nextEventID())
				return err
			}), 1, "")
		})
	}
}

// BenchmarkPublishAsyncBatch is one group-commit batch of 64 events
// published asynchronously (each with its Nats-Msg-Id) and every ack
// awaited: the relay's unit of work, and how a batch of the committer
// would go out.
func BenchmarkPublishAsyncBatch(b *testing.B) {
	const batch = 64
	for _, mode := range syncModes {
		b.Run(mode.name+"/batch=64", func(b *testing.B) {
			s := startServer(b, mode.always)
			_, js := connect(b, s, jetstream.WithPublishAsyncMaxPending(4*batch))
			eventsStream(b, js, 1)
			var lat latencies
			lat.report(b, runConcurrent(b, 1, &lat, batchOp(js, batch)), batch, "events")
		})
	}
}

// batchOp publishes batch i of n events asynchronously and waits for every ack.
func batchOp(js jetstream.JetStream, n int) func(i int) error {
	return func(i int) error {
		futures := make([]jetstream.PubAckFuture, n)
		for j := range futures {
			seq := i*n + j
			f, err := js.PublishAsync("eventtap.events."+strconv.Itoa(seq%32), payload,
				jetstream.WithMsgID(nextEventID()))
			if err != nil {
				return err
			}
			futures[j] = f
		}
		for _, f := range futures {
			select {
			case <-f.Ok():
			case err := <-f.Err():
				return err
			}
		}
		return nil
	}
}

// BenchmarkReplicated repeats the release-path figures on a three-server
// NATS cluster with replicas: 3 and the default sync interval, the other
// production setting docs/cluster.md allows. The three servers share the
// test's process and cores, so these figures are pessimistic.
func BenchmarkReplicated(b *testing.B) {
	servers := startNATSCluster(b)
	_, js := connect(b, servers[0], jetstream.WithPublishAsyncMaxPending(256))
	st := eventsStream(b, js, 3)
	kv := stateBucket(b, js, 3)
	for _, tc := range []struct {
		name    string
		workers int
		units   int
		op      func(i int) error
	}{
		{"publish/workers=1", 1, 1, publishOp(js)},
		{"publish/workers=32", 32, 1, publishOp(js)},
		{"changed/workers=32", 32, 1, changedOp(js, kv)},
		{"async-batch=64", 1, 64, batchOp(js, 64)},
	} {
		b.Run(tc.name, func(b *testing.B) {
			if err := st.Purge(context.Background()); err != nil {
				b.Fatal(err)
			}
			var lat latencies
			lat.report(b, runConcurrent(b, tc.workers, &lat, tc.op), tc.units, "events")
		})
	}
}

var eventIDs atomic.Int64

// nextEventID returns an id never used before in this process, so that no
// publish is answered from the dedupe window instead of being stored.
func nextEventID() string { return "evt_" + strconv.FormatInt(eventIDs.Add(1), 10) }

// casLoop is the read-compare-set cycle of one state key: Create when it
// is absent, Update at the revision read otherwise; a conflict means
// another writer got there first, so it reads again.
func casLoop(ctx context.Context, kv jetstream.KeyValue, key string, value []byte, conflicts *atomicCounter) error {
	for range 1000 {
		e, err := kv.Get(ctx, key)
		switch {
		case errors.Is(err, jetstream.ErrKeyNotFound):
			_, err = kv.Create(ctx, key, value)
		case err == nil:
			_, err = kv.Update(ctx, key, value, e.Revision())
		}
		if errors.Is(err, jetstream.ErrKeyExists) || errors.Is(err, jetstream.ErrKeyRevisionMismatch) {
			conflicts.n.Add(1)
			continue
		}
		return err
	}
	return fmt.Errorf("key %s: 1000 conflicts in a row", key)
}

// BenchmarkStateKeyMemory estimates what each live `changed` key costs the
// server: every KV key is a subject of the bucket's stream, and nats-server
// keeps a per-subject index in memory (nats-server#8485). It writes 50,000
// distinct keys and reports the growth of the process heap after GC (server
// and client share the process; the client's garbage is collected, the
// server's block cache is not, so this is an upper bound).
//
//	go test -run '^$' -bench StateKeyMemory -benchtime 1x ./cluster/
func BenchmarkStateKeyMemory(b *testing.B) {
	const keys = 50_000
	s := startServer(b, false)
	_, js := connect(b, s, jetstream.WithPublishAsyncMaxPending(512))
	stateBucket(b, js, 1)
	heap := func() uint64 {
		runtime.GC()
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return m.HeapInuse
	}
	for range b.N {
		before := heap()
		for i := range keys {
			if _, err := js.PublishAsync("$KV.eventtap_state.k"+strconv.Itoa(i), []byte(`{"v":"PAID","e":"evt_01234567890123456789012345"}`)); err != nil {
				b.Fatal(err)
			}
		}
		select {
		case <-js.PublishAsyncComplete():
		case <-time.After(2 * time.Minute):
			b.Fatal("acks did not arrive within 2 minutes")
		}
		after := heap()
		b.ReportMetric(float64(int64(after)-int64(before))/keys, "heap-B/key")
	}
	b.ReportMetric(0, "ns/op")
}
