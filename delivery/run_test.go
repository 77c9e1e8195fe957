package delivery

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"
)

// barrierStore holds every Prepare until n of them run at once, then
// releases the heads unattempted.
type barrierStore struct {
	mu      sync.Mutex
	n, in   int
	reached chan struct{}
}

func (s *barrierStore) Prepare(ctx context.Context, _, _ string, _ Item) (*Attempt, Outcome, time.Time) {
	s.mu.Lock()
	s.in++
	if s.in == s.n {
		close(s.reached)
	}
	s.mu.Unlock()
	select {
	case <-s.reached:
	case <-ctx.Done():
	}
	return nil, Done, time.Time{}
}

func (s *barrierStore) Record(_ context.Context, _ *Attempt, done func(error)) { done(nil) }

// TestBatchWakesAWorkerPerLane checks that the workers, which take due
// heads themselves, all get to work when one signal announces a batch: a
// worker that takes a head wakes the next while more are due.
func TestBatchWakesAWorkerPerLane(t *testing.T) {
	const workers = 8
	cfg := DefaultConfig()
	cfg.Workers = workers
	sender, err := NewSender(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	d := NewDispatcher(cfg, sender, Options{})
	s := &barrierStore{n: workers / 2, reached: make(chan struct{})} // one webhook may use half
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { d.Run(ctx, s); close(done) }()
	defer func() { cancel(); d.Abort(); <-done }()

	time.Sleep(50 * time.Millisecond) // the workers are asleep
	var batch []Entry
	now := time.Now().UnixNano()
	for i := range workers {
		batch = append(batch, Entry{WebhookID: "wh", Subject: fmt.Sprintf("s%d", i), Item: Item{Seq: uint64(i + 1), Due: now}})
	}
	d.AddMany(batch)
	select {
	case <-s.reached:
	case <-time.After(10 * time.Second):
		s.mu.Lock()
		defer s.mu.Unlock()
		t.Fatalf("%d of %d workers took a head of the batch", s.in, s.n)
	}
	deadline := time.Now().Add(10 * time.Second)
	for d.PendingCount() > 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n := d.PendingCount(); n != 0 {
		t.Errorf("%v items left after the batch", n)
	}
}
