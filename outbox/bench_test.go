package outbox

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/eventtap/eventtap/internal/testkit"
	"github.com/eventtap/eventtap/rules"
)

// BenchmarkCommit measures group-commit throughput with sync writes on:
// b.N events committed by the given number of concurrent callers, one event
// per Commit call (as the proxy does per exchange), fanned out to one
// webhook whose deliveries are paused so that only committing is measured.
func BenchmarkCommit(b *testing.B) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(processMemoryLimit))
	for _, committers := range []int{1, 8, 32, 128} {
		b.Run(fmt.Sprintf("committers=%d", committers), func(b *testing.B) {
			o := openTest(b, func(s *StorageConfig, _ *DeliveryConfig, _ *openHooks) { s.SyncWrites = true })
			hook := o.hook(b, "http://127.0.0.1:1/", "ORDER_CREATED")
			disabled := Disabled
			enabled := Enabled
			_, _ = o.UpdateWebhook(context.Background(), WebhookUpdate{ID: hook.ID, Status: &disabled})
			_, _ = o.UpdateWebhook(context.Background(), WebhookUpdate{ID: hook.ID, Status: &enabled})
			o.disp.SetPaused(hook.ID, true) // keep delivery out of the measurement
			data := []byte(`{"id":"ord_123","status":"OPEN","total":{"amount":1999,"currency":"EUR"},"lines":[{"sku":"A-1","qty":2}]}`)
			b.ResetTimer()
			start, cpu0 := time.Now(), testkit.CPUTime()
			commitConcurrently(b, o, committers, data, func(i int64) string { return fmt.Sprintf("ord_%d", i) })
			b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
			reportCPU(b, cpu0)
			reportMemory(b)
		})
	}
}

// BenchmarkDelivery measures delivery attempts per second to a local
// receiver: b.N events over 64 subjects, committed up front, then
// delivered by the default-sized worker pool.
func BenchmarkDelivery(b *testing.B) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(processMemoryLimit))
	o := openTest(b, func(_ *StorageConfig, d *DeliveryConfig, _ *openHooks) { d.Workers = 32 })
	rc := newCountingReceiver(b)
	hook := o.hook(b, rc.URL, "ORDER_CREATED")
	o.disp.SetPaused(hook.ID, true)
	evs := make([]rules.Event, 0, 256)
	for i := range b.N {
		evs = append(evs, rules.Event{Rule: "r", Type: "ORDER_CREATED", Subject: fmt.Sprintf("s%d", i%64), Data: []byte(`{"n":1}`), ObservedAt: time.Now()})
		if len(evs) == cap(evs) || i == b.N-1 {
			o.commit(b, evs...)
			evs = evs[:0]
		}
	}
	b.ResetTimer()
	start, cpu0 := time.Now(), testkit.CPUTime()
	o.disp.SetPaused(hook.ID, false)
	for rc.n.Load() < int64(b.N) || o.disp.PendingCount() > 0 {
		time.Sleep(time.Millisecond)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "attempts/s")
	reportCPU(b, cpu0)
	reportMemory(b)
}

// processMemoryLimit is the GOMEMLIMIT the eventtap binary sets when the
// environment leaves it unset, so that benchmarks measure what users get.
const processMemoryLimit = 80 << 20

// reportCPU reports the process's CPU time per operation since cpu0 (the
// receiver's included): steadier than the rates on a shared machine.
func reportCPU(b *testing.B, cpu0 time.Duration) {
	b.ReportMetric(float64((testkit.CPUTime()-cpu0).Microseconds())/float64(b.N), "cpu-µs/op")
}

// reportMemory reports the process's current RSS and Go heap, so that a
// benchmark run shows what the store costs (the receiver and the benchmark
// itself are included, so this is an upper bound).
func reportMemory(b *testing.B) {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "heap-MiB")
	runtime.GC()
	runtime.ReadMemStats(&ms)
	b.ReportMetric(float64(ms.HeapInuse)/(1<<20), "liveheap-MiB")
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return
	}
	for _, line := range strings.Split(string(status), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && (f[0] == "VmRSS:" || f[0] == "RssFile:") {
			kb, _ := strconv.Atoi(f[1])
			b.ReportMetric(float64(kb)/1024, strings.ToLower(strings.TrimSuffix(f[0], ":"))+"-MiB")
		}
	}
}

// BenchmarkSustained runs the whole pipeline at once: 32 committers and
// delivery to a local receiver, as under steady production traffic. It
// reports committed events/s and the process's peak RSS (VmHWM).
func BenchmarkSustained(b *testing.B) {
	defer debug.SetMemoryLimit(debug.SetMemoryLimit(processMemoryLimit))
	o := openTest(b, func(s *StorageConfig, d *DeliveryConfig, _ *openHooks) { s.SyncWrites = true; d.Workers = 32 })
	rc := newCountingReceiver(b)
	o.hook(b, rc.URL, "ORDER_CREATED")
	data := []byte(`{"id":"ord_123","status":"OPEN","total":{"amount":1999,"currency":"EUR"},"lines":[{"sku":"A-1","qty":2},{"sku":"B-7","qty":1}],"customer":{"email":"someone@example.com"}}`)
	stopSampling := sampleHeap(b)
	defer stopSampling()
	b.ResetTimer()
	start := time.Now()
	commitConcurrently(b, o, 32, data, func(i int64) string { return fmt.Sprintf("ord_%d", i%5000) })
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "events/s")
	for rc.n.Load() < int64(b.N) {
		time.Sleep(time.Millisecond)
	}
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "delivered/s")
	reportMemory(b)
	if status, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, line := range strings.Split(string(status), "\n") {
			if f := strings.Fields(line); len(f) >= 2 && (f[0] == "VmHWM:" || f[0] == "RssAnon:" || f[0] == "RssFile:") {
				kb, _ := strconv.Atoi(f[1])
				b.ReportMetric(float64(kb)/1024, f[0]+"MiB")
			}
		}
	}
}

// countingReceiver only counts requests, so that benchmarks measure the
// outbox rather than a receiver that remembers everything.
type countingReceiver struct {
	*httptest.Server
	n atomic.Int64
}

func newCountingReceiver(b *testing.B) *countingReceiver {
	rc := &countingReceiver{}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		rc.n.Add(1)
	}))
	b.Cleanup(rc.Close)
	return rc
}

// sampleHeap reports the peak heap in use, sampled every 50ms.
func sampleHeap(b *testing.B) func() {
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		var peak uint64
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MiB")
				return
			case <-t.C:
			}
			var ms runtime.MemStats
			runtime.ReadMemStats(&ms)
			peak = max(peak, ms.HeapInuse)
		}
	}()
	return func() { close(stop); <-done }
}

// commitConcurrently commits b.N ORDER_CREATED events from n goroutines at
// once, each on its own (group commit shares the syncs), and returns when
// all are durable.
func commitConcurrently(b *testing.B, o *testOutbox, n int, data []byte, subject func(i int64) string) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				ev := rules.Event{Rule: "order-created", Type: "ORDER_CREATED", Subject: subject(i), Data: data, ObservedAt: time.Now()}
				if err := o.Commit(context.Background(), []rules.Event{ev}); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
}
