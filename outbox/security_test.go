package outbox

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/eventtap/eventtap/rules"
)

// rewindMetaSeq reopens the closed store in dir with Badger alone and sets
// m/seq back to seq: the state a crash leaves between the parts of a batch
// that Badger's size limit split, where the first parts (events above seq,
// with their delivery records) are durable and m/seq, written with the last
// part, is not.
func rewindMetaSeq(t *testing.T, dir string, seq uint64) {
	t.Helper()
	s, _ := testConfigs(dir)
	db, err := badger.Open(badgerOptions(s, testLogger(t)))
	if err != nil {
		t.Fatalf("open badger: %v", err)
	}
	if err := db.Update(func(txn *badger.Txn) error { return txn.Set(keyMetaSeq, u64(nil, seq)) }); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

// Item 3 of the security review: sequences must not be reused after a crash
// between the parts of a split batch.
func TestSplitBatchCrashDoesNotReuseSequences(t *testing.T) {
	dir := t.TempDir()
	o := openTestDir(t, dir)
	rc := newReceiver(t, nil)
	hook := o.hook(t, rc.URL, "ORDER_CREATED")
	o.commit(t, event("ORDER_CREATED", "o1", `{"n":1}`))
	// Events 2 and 3 stand for the first part of a split batch; after the
	// restart they were delivered (at least once), so their records say SUCCEEDED.
	o.commit(t, event("ORDER_CREATED", "o2", `{"n":2}`), event("ORDER_CREATED", "o3", `{"n":3}`))
	waitFor(t, 5*time.Second, "three deliveries", func() bool { return rc.count() >= 3 })
	before := o.allEvents(t, EventFilter{})
	waitFor(t, 5*time.Second, "three SUCCEEDED records", func() bool {
		for _, e := range before {
			if o.deliveryState(t, e.ID, hook.ID).State != Succeeded {
				return false
			}
		}
		return true
	})
	o.close(t)
	rewindMetaSeq(t, dir, 1)

	o = openTestDir(t, dir)
	o.commit(t, event("ORDER_CREATED", "o4", `{"n":4}`))
	after := o.allEvents(t, EventFilter{})
	if len(after) != 4 {
		t.Fatalf("%d events stored after the restart, want 4 (an earlier one was overwritten)", len(after))
	}
	for _, e := range before {
		got, err := o.Event(context.Background(), e.ID)
		if err != nil {
			t.Fatalf("event %s (%s) lost after the restart: %v", e.ID, e.Subject, err)
		}
		if d := o.deliveryState(t, e.ID, hook.ID); d.State != Succeeded || string(got.Payload) != string(e.Payload) {
			t.Errorf("event %s: delivery %s, payload %s; want SUCCEEDED and %s", e.ID, d.State, got.Payload, e.Payload)
		}
	}
	if seq, _ := parseID(eventIDPrefix, after[0].ID); seq != 4 || after[0].Subject != "o4" {
		t.Errorf("new event got sequence %d (%s), want 4", seq, after[0].Subject)
	}
	// The repaired counter is durable: a second restart keeps it.
	o.close(t)
	o = openTestDir(t, dir)
	if o.seq != 4 {
		t.Errorf("sequence after a second restart: %d, want 4", o.seq)
	}
}

// Item 13: unpadded secrets are refused; previous secrets leave the store
// once their 24 h are over.
func TestSecretsPaddingAndExpiry(t *testing.T) {
	var mu sync.Mutex
	clock := time.Now()
	now := func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	dir := t.TempDir()
	o := openTestDir(t, dir, func(_ *StorageConfig, _ *DeliveryConfig, h *openHooks) {
		h.now = now
		h.retentionEvery = 20 * time.Millisecond
	})
	unpadded := "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwAA"
	_, err := o.CreateWebhook(context.Background(), WebhookCreate{URL: "http://127.0.0.1:1/", Type: "ORDER_CREATED", Secret: unpadded})
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "padding") {
		t.Fatalf("unpadded secret: %v, want ErrInvalid about padding", err)
	}
	hook, err := o.CreateWebhook(context.Background(), WebhookCreate{URL: "http://127.0.0.1:1/", Type: "ORDER_CREATED", Secret: unpadded + "=="})
	if err != nil {
		t.Fatal(err)
	}
	rotated, err := o.RotateSecret(context.Background(), hook.ID)
	if err != nil || len(rotated.PreviousSecrets) != 1 {
		t.Fatalf("rotate: %+v, %v", rotated.PreviousSecrets, err)
	}
	time.Sleep(100 * time.Millisecond) // retention passes before expiry keep it
	if w, _ := o.Webhook(context.Background(), hook.ID); len(w.PreviousSecrets) != 1 {
		t.Fatalf("previous secret dropped before its 24 h: %+v", w.PreviousSecrets)
	}
	mu.Lock()
	clock = clock.Add(24*time.Hour + time.Second)
	mu.Unlock()
	waitFor(t, 5*time.Second, "the expired secret dropped", func() bool {
		w, _ := o.Webhook(context.Background(), hook.ID)
		return len(w.PreviousSecrets) == 0
	})
	o.close(t)
	s, _ := testConfigs(dir)
	db, err := badger.Open(badgerOptions(s, testLogger(t)))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.View(func(txn *badger.Txn) error {
		var r webhookRecord
		if err := getRecord(txn, webhookKey(hook.ID), r.unmarshal); err != nil {
			return err
		}
		if len(r.PreviousSecrets) != 0 || r.Secret != rotated.Secret {
			t.Errorf("stored record: secret %q, previous %+v", r.Secret, r.PreviousSecrets)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// Item 10: a token in a webhook URL's query reaches neither the process log
// nor the stored attempt errors.
func TestURLTokensStayOutOfLogs(t *testing.T) {
	// A file takes concurrent writes; the log is read back from it.
	logFile, err := os.Create(filepath.Join(t.TempDir(), "log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logFile.Close()
	logged := func() string { b, _ := os.ReadFile(logFile.Name()); return string(b) }
	logger := slog.New(slog.NewTextHandler(logFile, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, d := testConfigs(t.TempDir())
	d.RetrySchedule = []time.Duration{10 * time.Millisecond}
	o, err := open(context.Background(), s, d, testTypes, logger, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer o.Close(context.Background())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens: every attempt is a connection error
	const token = "s3cr3t-t0ken"
	hook, err := o.CreateWebhook(context.Background(), WebhookCreate{URL: "http://" + addr + "/hook?token=" + token, Type: "ORDER_CREATED"})
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Commit(context.Background(), []rules.Event{event("ORDER_CREATED", "o1", `{}`)}); err != nil {
		t.Fatal(err)
	}
	to := &testOutbox{Outbox: o}
	var logs []Log
	waitFor(t, 5*time.Second, "two failed attempts", func() bool {
		logs = to.allLogs(t, LogFilter{WebhookID: hook.ID})
		return len(logs) == 2
	})
	tl, err := o.TestWebhook(context.Background(), hook.ID)
	if err != nil {
		t.Fatal(err)
	}
	logs = append(logs, tl)
	for _, l := range logs {
		if l.Error == "" || strings.Contains(l.Error, token) || !strings.Contains(l.Error, addr+"/hook?REDACTED") {
			t.Errorf("stored attempt error %q: want the redacted URL and no token", l.Error)
		}
	}
	_, err = o.UpdateWebhook(context.Background(), WebhookUpdate{ID: hook.ID, URL: ptr("ftp://" + addr + "/?token=" + token)})
	if err == nil || strings.Contains(err.Error(), token) {
		t.Errorf("update error %v: want refused, without the token", err)
	}
	waitFor(t, 5*time.Second, "the last-retry warning logged", func() bool {
		return strings.Contains(logged(), "delivery failed after its last retry")
	})
	if out := logged(); strings.Contains(out, token) {
		t.Errorf("the token appears in the log:\n%s", out)
	}
}

func ptr[T any](v T) *T { return &v }

// Item 5: eventRedeliver on a delivery waiting in backoff sends it now, with
// its retry schedule starting again.
func TestRedeliverPendingInBackoffSendsNow(t *testing.T) {
	o := openTest(t, func(_ *StorageConfig, d *DeliveryConfig, _ *openHooks) {
		d.RetrySchedule = []time.Duration{14 * time.Hour, 20 * time.Hour}
	})
	rc := newReceiver(t, func(n int, _ *received, w http.ResponseWriter) {
		if n == 0 {
			w.WriteHeader(http.StatusInternalServerError)
		}
	})
	hook := o.hook(t, rc.URL, "ORDER_CREATED")
	o.commit(t, event("ORDER_CREATED", "o1", `{}`))
	waitFor(t, 5*time.Second, "the first attempt", func() bool { return rc.count() == 1 })
	id := rc.requests()[0].ID
	waitFor(t, 5*time.Second, "the attempt recorded", func() bool { return o.deliveryState(t, id, hook.ID).Attempts == 1 })
	if d := o.deliveryState(t, id, hook.ID); d.State != Pending || time.Until(d.NextAttemptAt) < 13*time.Hour {
		t.Fatalf("after the failed attempt: %+v, want PENDING for ~14h", d)
	}
	ev, err := o.Redeliver(context.Background(), id, hook.ID)
	if err != nil {
		t.Fatal(err)
	}
	if d := ev.Deliveries[0]; d.State != Pending || d.Attempts != 0 || time.Until(d.NextAttemptAt) > time.Second {
		t.Errorf("Redeliver returned %+v, want PENDING, 0 attempts, due now", d)
	}
	waitFor(t, 5*time.Second, "the redelivery sent", func() bool { return rc.count() == 2 })
	waitFor(t, 5*time.Second, "SUCCEEDED", func() bool { return o.deliveryState(t, id, hook.ID).State == Succeeded })
	if d := o.deliveryState(t, id, hook.ID); d.Attempts != 1 {
		t.Errorf("attempts after the redelivery: %d, want 1 (the schedule started again)", d.Attempts)
	}
}

// countdownCtx reports itself cancelled from its n-th Err call on: a client
// that goes away in the middle of a long replay.
type countdownCtx struct {
	context.Context
	n atomic.Int64
}

func (c *countdownCtx) Err() error {
	if c.n.Add(-1) < 0 {
		return context.Canceled
	}
	return nil
}

// Item 6: a replay cancelled after some of its transactions committed
// dispatches what was committed, without waiting for a restart.
func TestCancelledReplayDispatchesWhatWasCommitted(t *testing.T) {
	o := openTest(t)
	const n = 1500
	long := strings.Repeat("s", 600) // large lane keys: the replay spans several transactions
	evs := make([]rules.Event, n)
	for i := range evs {
		evs[i] = event("ORDER_CREATED", fmt.Sprintf("%s-%04d", long, i), `{}`)
	}
	o.commit(t, evs...)
	rc := newReceiver(t, nil)
	hook := o.hook(t, rc.URL, "ORDER_CREATED")

	ctx := &countdownCtx{Context: context.Background()}
	ctx.n.Store(n - 100)
	if _, err := o.Replay(ctx, hook.ID, time.Time{}); !errors.Is(err, context.Canceled) {
		t.Fatalf("replay: %v, want cancelled", err)
	}
	// Count delivery records, not lane entries: the committed part is
	// already being sent, and a delivery that succeeds removes its lane
	// entry but keeps its record.
	stored := 0
	if err := o.db.View(func(txn *badger.Txn) error {
		scanKeys(txn, prefixDelivery, func(k []byte) bool {
			if bytes.HasSuffix(k, []byte(hook.ID)) {
				stored++
			}
			return true
		})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if stored == 0 || stored >= n-100 {
		t.Fatalf("%d deliveries durable after the cancelled replay; the test needs a partly committed one", stored)
	}
	waitFor(t, 60*time.Second, fmt.Sprintf("the %d committed deliveries sent", stored), func() bool { return rc.count() >= stored })
	waitFor(t, 30*time.Second, "nothing pending", func() bool { return o.disp.PendingCount() == 0 })
	if got := rc.count(); got != stored {
		t.Errorf("%d deliveries sent, want the %d committed", got, stored)
	}
}

// Item 9: while nothing can be recorded, no delivery is attempted; delivery
// resumes when space returns.
func TestDeliveryPausedWhileDiskFull(t *testing.T) {
	var free atomic.Uint64
	free.Store(1 << 30)
	o := openTest(t, func(_ *StorageConfig, d *DeliveryConfig, h *openHooks) {
		h.freeBytes = func(string) (uint64, error) { return free.Load(), nil }
		d.RetrySchedule = []time.Duration{1500 * time.Millisecond, time.Hour}
	})
	rc := newReceiver(t, func(n int, _ *received, w http.ResponseWriter) {
		if n == 0 {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
	})
	hook := o.hook(t, rc.URL, "ORDER_CREATED")
	o.commit(t, event("ORDER_CREATED", "o1", `{}`))
	waitFor(t, 5*time.Second, "the first attempt", func() bool { return rc.count() == 1 })
	id := rc.requests()[0].ID
	waitFor(t, 5*time.Second, "the first attempt recorded", func() bool { return o.deliveryState(t, id, hook.ID).Attempts == 1 })
	free.Store(minFreeBytes - 1)
	time.Sleep(3 * time.Second) // the retry was due after 1.5 s
	if n := rc.count(); n != 1 {
		t.Fatalf("%d requests while the disk was full, want only the first one", n)
	}
	free.Store(1 << 30)
	waitFor(t, 5*time.Second, "the retry once space returned", func() bool { return rc.count() == 2 })
	waitFor(t, 5*time.Second, "SUCCEEDED", func() bool { return o.deliveryState(t, id, hook.ID).State == Succeeded })
}
