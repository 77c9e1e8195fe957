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
		eventsStream(b, js)
		ctx := context.Background()
		var lat latencies
		elapsed := runConcurrent(b, workers, &lat, func(i int) error {
			subj := "eventtap.events." + strconv.Itoa(i%32)
			_, err := js.Publish(ctx, subj, payload, jetstream.WithMsgID("evt_"+strconv.Itoa(i)))
			return err
		})
		lat.report(b, elapsed, 1, "")
	})
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
				kv := stateBucket(b, js)
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
		eventsStream(b, js)
		kv := stateBucket(b, js)
		ctx := context.Background()
		var lat latencies
		var conflicts atomicCounter
		elapsed := runConcurrent(b, workers, &lat, func(i int) error {
			id := "evt_" + strconv.Itoa(i)
			if err := casLoop(ctx, kv, "k"+strconv.Itoa(i), []byte(`{"v":"PAID","e":"`+id+`"}`), &conflicts); err != nil {
				return err
			}
			_, err := js.Publish(ctx, "eventtap.events."+strconv.Itoa(i%32), payload, jetstream.WithMsgID(id))
			return err
		})
		lat.report(b, elapsed, 1, "")
	})
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
			eventsStream(b, js)
			ctx := context.Background()
			var lat latencies
			elapsed := runConcurrent(b, 1, &lat, func(i int) error {
				futures := make([]jetstream.PubAckFuture, batch)
				for j := range futures {
					n := i*batch + j
					f, err := js.PublishAsync("eventtap.events."+strconv.Itoa(n%32), payload,
						jetstream.WithMsgID("evt_"+strconv.Itoa(n)))
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
					case <-ctx.Done():
						return ctx.Err()
					}
				}
				return nil
			})
			lat.report(b, elapsed, batch, "events")
		})
	}
}

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
	stateBucket(b, js)
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
