// Helpers of the cluster package's tests: an in-process JetStream, and the
// streams and buckets as docs/cluster.md describes them, for the
// measurements and mechanism checks the design rests on.
package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// startServer runs an in-process JetStream server on a random loopback port
// with its store in a temporary directory. syncAlways selects
// `sync_interval: always` (an fsync per write), which docs/cluster.md
// requires in production for a single-replica stream.
func startServer(tb testing.TB, syncAlways bool) *server.Server {
	tb.Helper()
	opts := serverOptions(tb)
	opts.SyncAlways = syncAlways
	s := launch(tb, opts)
	if !s.ReadyForConnections(10 * time.Second) {
		tb.Fatal("nats-server did not start within 10 s")
	}
	return s
}

// serverOptions are what every test server shares: loopback, a random
// client port, JetStream in a temporary directory, quiet.
func serverOptions(tb testing.TB) *server.Options {
	return &server.Options{Host: "127.0.0.1", Port: -1, JetStream: true, StoreDir: tb.TempDir(), NoLog: true, NoSigs: true}
}

// launch starts a server without waiting for it; the test's cleanup stops it.
func launch(tb testing.TB, opts *server.Options) *server.Server {
	tb.Helper()
	s, err := server.NewServer(opts)
	if err != nil {
		tb.Fatalf("nats-server %s: %v", opts.ServerName, err)
	}
	go s.Start()
	tb.Cleanup(func() {
		s.Shutdown()
		s.WaitForShutdown()
	})
	return s
}

// connect opens a client connection and its JetStream context.
func connect(tb testing.TB, s *server.Server, opts ...jetstream.JetStreamOpt) (*nats.Conn, jetstream.JetStream) {
	tb.Helper()
	nc, err := nats.Connect(s.ClientURL(), nats.Name(tb.Name()))
	if err != nil {
		tb.Fatalf("connect: %v", err)
	}
	tb.Cleanup(nc.Close)
	js, err := jetstream.New(nc, opts...)
	if err != nil {
		tb.Fatalf("jetstream: %v", err)
	}
	return nc, js
}

// eventsStream creates the events stream as docs/cluster.md describes it:
// partition subjects, limits retention, a dedupe window.
func eventsStream(tb testing.TB, js jetstream.JetStream, replicas int) jetstream.Stream {
	tb.Helper()
	st, err := js.CreateStream(context.Background(), jetstream.StreamConfig{
		Name:       "eventtap_events",
		Subjects:   []string{"eventtap.events.*"},
		Storage:    jetstream.FileStorage,
		Retention:  jetstream.LimitsPolicy,
		MaxAge:     168 * time.Hour,
		Duplicates: 2 * time.Minute,
		Replicas:   replicas,
	})
	if err != nil {
		tb.Fatalf("create stream: %v", err)
	}
	return st
}

// stateBucket creates the `changed` state bucket: one value per key, values
// expire like the single node's r/ keys.
func stateBucket(tb testing.TB, js jetstream.JetStream, replicas int) jetstream.KeyValue {
	tb.Helper()
	kv, err := js.CreateKeyValue(context.Background(), jetstream.KeyValueConfig{
		Bucket:   "eventtap_state",
		History:  1,
		TTL:      28 * 24 * time.Hour,
		Storage:  jetstream.FileStorage,
		Replicas: replicas,
	})
	if err != nil {
		tb.Fatalf("create bucket: %v", err)
	}
	return kv
}

// payload is a typical event body (an order of a few items), 512 bytes.
var payload = func() []byte {
	b := []byte(`{"id":"evt_0000000000000000000000000","type":"ORDER_STATUS_CHANGED","timestamp":"2026-11-29T13:34:18.123Z","subject":"1","rule":"order-status-changed","data":{`)
	for len(b) < 500 {
		b = append(b, `"k":"vvvvvvvvvvvvvvvvvvvv",`...)
	}
	b = append(b[:len(b)-1], `},"change":{"previous":"OPEN","current":"PAID"}}`...)
	return b[:512]
}()

// latencies collects per-operation durations from many goroutines.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
}

// report adds p50/p99 (milliseconds) and throughput (ops/s, and units/s
// when one op carries several units, such as a batch of events).
func (l *latencies) report(b *testing.B, elapsed time.Duration, unitsPerOp int, unit string) {
	b.Helper()
	if len(l.d) == 0 {
		return
	}
	slices.Sort(l.d)
	pct := func(p float64) float64 {
		i := min(len(l.d)-1, int(p*float64(len(l.d))))
		return float64(l.d[i].Microseconds()) / 1000
	}
	b.ReportMetric(pct(0.50), "p50-ms")
	b.ReportMetric(pct(0.99), "p99-ms")
	b.ReportMetric(float64(len(l.d))/elapsed.Seconds(), "ops/s")
	if unitsPerOp > 1 {
		b.ReportMetric(float64(len(l.d)*unitsPerOp)/elapsed.Seconds(), unit+"/s")
	}
	b.ReportMetric(0, "ns/op") // meaningless for concurrent runs; the figures above are the result
}

// runConcurrent runs op b.N times spread over workers goroutines, timing
// each call, and returns the wall time. op gets a unique index.
func runConcurrent(b *testing.B, workers int, lat *latencies, op func(i int) error) time.Duration {
	b.Helper()
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	b.ResetTimer()
	start := time.Now()
	for range workers {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= b.N {
					return
				}
				t := time.Now()
				if err := op(i); err != nil {
					errs <- fmt.Errorf("op %d: %w", i, err)
					return
				}
				lat.add(time.Since(t))
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	close(errs)
	for err := range errs {
		b.Fatal(err)
	}
	return elapsed
}

type atomicCounter struct{ n atomic.Int64 }

// startNATSCluster runs three in-process JetStream servers joined by routes
// (the production shape for `cluster.replicas: 3`) and returns them once
// JetStream has a meta leader. Servers use the default sync interval:
// replication, not fsync, makes an acknowledged write durable.
func startNATSCluster(tb testing.TB) []*server.Server {
	tb.Helper()
	// Every server lists every route, so the route ports must be known
	// before any server starts: they are picked free and released, and
	// another test's connection may take one in between (a seed that
	// reports its own port does not work: alone, a clustered JetStream
	// server did not open its route port within 20 s). A server whose
	// listeners do not come up means that happened: the three start
	// again on new ports.
	var servers []*server.Server
	for attempt := 1; ; attempt++ {
		servers = launchNATSCluster(tb)
		ready := true
		for _, s := range servers {
			if !s.ReadyForConnections(10 * time.Second) {
				ready = false
				break
			}
		}
		if ready {
			break
		}
		for _, s := range servers {
			s.Shutdown()
		}
		if attempt == 3 {
			tb.Fatal("three nats-servers did not start on three sets of ports")
		}
	}
	// Ready means an R3 stream can be placed: every server has joined the
	// JetStream meta group. A probe stream is created until that works.
	_, js := connect(tb, servers[0])
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := js.CreateStream(ctx, jetstream.StreamConfig{Name: "probe", Subjects: []string{"probe"}, Replicas: 3})
		if err == nil {
			err = js.DeleteStream(ctx, "probe")
		}
		cancel()
		if err == nil {
			return servers
		}
		if time.Now().After(deadline) {
			tb.Fatalf("the three servers formed no JetStream cluster within 30 s: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// launchNATSCluster starts three servers routed to each other on route
// ports picked free.
func launchNATSCluster(tb testing.TB) []*server.Server {
	tb.Helper()
	ports := make([]int, 3)
	routes := make([]*url.URL, 3)
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			tb.Fatal(err)
		}
		ports[i] = l.Addr().(*net.TCPAddr).Port
		_ = l.Close()
		routes[i] = &url.URL{Scheme: "nats-route", Host: fmt.Sprintf("127.0.0.1:%d", ports[i])}
	}
	var servers []*server.Server
	for i := range 3 {
		opts := serverOptions(tb)
		opts.ServerName = fmt.Sprintf("n%d", i)
		opts.Cluster = server.ClusterOpts{Name: "eventtap-test", Host: "127.0.0.1", Port: ports[i]}
		opts.Routes = routes
		servers = append(servers, launch(tb, opts))
	}
	return servers
}

// atomicStream holds state messages and events together, for the atomic
// batch variant of the `changed` decision (docs/cluster.md §3).
func atomicStream(tb testing.TB, js jetstream.JetStream) jetstream.Stream {
	tb.Helper()
	st, err := js.CreateStream(context.Background(), jetstream.StreamConfig{
		Name:               "eventtap_atomic",
		Subjects:           []string{"eventtap.state.*", "eventtap.events.*"},
		AllowAtomicPublish: true,
		Duplicates:         2 * time.Minute,
	})
	if err != nil {
		tb.Fatalf("create stream: %v", err)
	}
	return st
}

// atomicTransition writes a `changed` transition and its event as one
// atomic batch: the state message on eventtap.state.<key>, valid only if
// that subject's last sequence is still expect, and the event with its id
// as Nats-Msg-Id. Both are stored, or neither.
func atomicTransition(nc *nats.Conn, batchID, key string, expect uint64, evt string) (*jetstream.PubAck, error) {
	state := nats.NewMsg("eventtap.state." + key)
	state.Header.Set("Nats-Batch-Id", batchID)
	state.Header.Set("Nats-Batch-Sequence", "1")
	state.Header.Set(jetstream.ExpectedLastSubjSeqHeader, strconv.FormatUint(expect, 10))
	state.Data = []byte(`{"v":"PAID","e":"` + evt + `"}`)
	if err := nc.PublishMsg(state); err != nil {
		return nil, err
	}
	ev := nats.NewMsg("eventtap.events.3")
	ev.Header.Set("Nats-Batch-Id", batchID)
	ev.Header.Set("Nats-Batch-Sequence", "2")
	ev.Header.Set("Nats-Batch-Commit", "1")
	ev.Header.Set(jetstream.MsgIDHeader, evt)
	ev.Data = payload
	reply, err := nc.RequestMsg(ev, 5*time.Second)
	if err != nil {
		return nil, err
	}
	var resp struct {
		jetstream.PubAck
		Error *jetstream.APIError `json:"error"`
	}
	if err := json.Unmarshal(reply.Data, &resp); err != nil {
		return nil, fmt.Errorf("%w: %s", err, reply.Data)
	}
	if resp.Error != nil {
		return nil, resp.Error
	}
	return &resp.PubAck, nil
}
