package delivery

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"
)

// Store is what the workers need from wherever the due work lives (Badger
// on one node): the request to send for a lane's head, and a durable record
// of each attempt's outcome. It is defined here, by its consumer, and
// implemented by the owner of the store.
type Store interface {
	// Prepare reads what to send for the head it of the lane (webhookID,
	// subject). When the head is not to be sent now it returns a nil
	// Attempt and what to do with the lane instead: Done when the head is
	// gone or no longer pending, Retry with a later due time, Release to
	// leave it as it is (its webhook is paused).
	Prepare(ctx context.Context, webhookID, subject string, it Item) (*Attempt, Outcome, time.Time)
	// Record makes the outcome of an attempt durable and calls done, once,
	// when it is (or failed to be), on any goroutine; it may block while
	// the store's queue is full, which is the workers' back-pressure. The
	// lane stays busy until done, so the next event of a subject is
	// attempted only once the store says the one before it is delivered or
	// given up. Releasing earlier would let a crash in between send the
	// earlier event again after the later one. The worker does not wait:
	// it sends the next lane's head while the store writes. done gets an
	// error wrapping ErrGone when the delivery no longer exists (its
	// webhook was deleted while the attempt was made); any other error
	// retries the head after StoreRetryDelay. ctx is not cancelled by
	// Abort: an attempt that was made is recorded.
	Record(ctx context.Context, a *Attempt, done func(error))
}

// ErrGone is what a Store's Record wraps when the delivery it was to
// record no longer exists.
var ErrGone = errors.New("delivery gone")

// StoreRetryDelay is how long a lane waits after the store itself failed,
// so that a broken disk does not turn into a busy loop.
const StoreRetryDelay = 5 * time.Second

// Attempt is one delivery attempt of a lane's head, from Store.Prepare
// through the send to Store.Record.
type Attempt struct {
	WebhookID, Subject string
	Item               Item

	// Set by Store.Prepare.
	Target  Target
	EventID string
	Payload []byte
	// Number is the number of attempts made before this one; the worker
	// counts this one in before Record.
	Number int
	// State is the Store's own, carried from Prepare to Record.
	State any

	// Set by the worker before Record.
	Result  Result
	At      time.Time // when the attempt ended
	Outcome Outcome   // Done (succeeded, or failed after the last retry) or Retry
	Next    time.Time // the next attempt, when Outcome is Retry
}

// Failed reports whether the attempt was the last one the retry schedule
// allows and did not succeed.
func (a *Attempt) Failed() bool { return a.Outcome == Done && !a.Result.OK() }

// Options are the dispatcher's dependencies.
type Options struct {
	// Logger receives the dispatcher's errors; nil discards them.
	Logger *slog.Logger

	// PendingLimit bounds the items held in memory; 0 means
	// DefaultPendingLimit. Beyond it the backlog stays in the owner's
	// store until Reload brings it in.
	PendingLimit int

	// Reload, if non-nil, is run on a goroutine of its own whenever an
	// overflowing dispatcher has drained to half its limit: it reads the
	// stored backlog through StartReload. An error is logged and the
	// reload retried after StoreRetryDelay.
	Reload func() error

	// Hold, if non-nil, is asked before each attempt is handed out; while
	// it reports true no attempt starts, and it is asked again every
	// HoldRecheck. The owner holds attempts while it could not record
	// them (a full disk): the receiver would otherwise get the head of
	// every lane again every StoreRetryDelay, whatever the schedule.
	Hold        func() bool
	HoldRecheck time.Duration

	// Now replaces time.Now, in tests.
	Now func() time.Time
}

// NewDispatcher returns a dispatcher that sends through sender with
// cfg.Workers workers once Run is called; cfg must be valid.
func NewDispatcher(cfg Config, sender *Sender, opts Options) *Dispatcher {
	limit := opts.PendingLimit
	if limit <= 0 {
		limit = DefaultPendingLimit
	}
	d := newDispatcher(limit, cfg.Workers)
	d.cfg, d.sender, d.opts, d.log = cfg, sender, opts, opts.Logger
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	if d.opts.Now == nil {
		d.opts.Now = time.Now
	}
	d.abortCtx, d.abort = context.WithCancel(context.Background())
	return d
}

func (d *Dispatcher) now() time.Time { return d.opts.Now() }

// Abort cancels the attempts in flight; they are released, not recorded,
// and stay due. Run still waits for them to return.
func (d *Dispatcher) Abort() { d.abort() }

// Run runs cfg.Workers workers, which take due lane heads, attempt them
// and record the outcomes in s, until ctx is cancelled; it then waits for
// the attempts in flight (see Abort) and for a reload in progress, and
// returns.
func (d *Dispatcher) Run(ctx context.Context, s Store) {
	// records counts the attempts handed to s.Record and not yet done.
	var workers, records sync.WaitGroup
	for range d.cfg.Workers {
		workers.Add(1)
		go func() {
			defer workers.Done()
			d.work(ctx, s, &records)
		}()
	}
	workers.Wait()
	d.reloads.Wait()
	records.Wait()
}

// work is one worker: it takes the lane head due first and attempts it
// itself (there is no dispatching goroutine in between), or sleeps until
// the earliest next-attempt time or until the owner, another worker or an
// admin call signals new work, so new events are picked up immediately.
// A worker that takes a head passes the signal on (see next) while more
// heads are due, so a batch wakes as many workers as it has lanes.
func (d *Dispatcher) work(ctx context.Context, s Store, records *sync.WaitGroup) {
	stop := ctx.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		select {
		case <-stop:
			return
		default:
		}
		d.reloadIfNeeded(stop)
		if d.opts.Hold != nil && d.opts.Hold() {
			timer.Reset(d.opts.HoldRecheck)
			select {
			case <-timer.C:
			case <-stop:
				return
			}
			continue
		}
		l, it, wait := d.next(d.now())
		if l != nil {
			d.attempt(s, l, it, records)
			continue
		}
		sleep := time.Hour
		if !wait.IsZero() {
			sleep = max(time.Until(wait), time.Millisecond)
		}
		timer.Reset(sleep)
		select {
		case <-d.wake:
		case <-timer.C:
		case <-stop:
			return
		}
	}
}

// reloadIfNeeded starts Options.Reload on a goroutine of its own when an
// overflowing dispatcher has drained to half its limit and no reload runs.
func (d *Dispatcher) reloadIfNeeded(stop <-chan struct{}) {
	if d.opts.Reload == nil {
		return
	}
	d.mu.Lock()
	start := !d.reloading && d.overflow && d.pending <= d.limit/2
	if start {
		d.reloading = true
		d.reloads.Add(1)
	}
	d.mu.Unlock()
	if !start {
		return
	}
	go func() {
		defer d.reloads.Done()
		if err := d.opts.Reload(); err != nil {
			d.log.Error("reloading pending deliveries failed; retrying later", "err", err)
			select {
			case <-time.After(StoreRetryDelay):
			case <-stop:
			}
		}
		d.mu.Lock()
		d.reloading = false
		d.mu.Unlock()
		d.signal()
	}()
}

// attempt makes one delivery attempt of a lane's head and hands it to the
// store to record. Once the receiver has answered, the webhook's in-flight
// slot is free (the per-webhook limit is about receivers holding workers)
// and the worker moves on; the lane stays busy until the record is
// durable. records counts the attempts being recorded.
func (d *Dispatcher) attempt(s Store, l *lane, it Item, records *sync.WaitGroup) {
	a, skip, due := s.Prepare(d.abortCtx, l.id.webhookID, l.id.subject, it)
	if a == nil {
		d.finish(l, skip, due)
		return
	}
	sentAt := d.now()
	res := d.sender.Send(d.abortCtx, a.Target, a.EventID, a.Payload, sentAt)
	if d.abortCtx.Err() != nil {
		// Cancelled by shutdown: not the receiver's fault, so not counted;
		// the delivery is still PENDING and is retried after restart.
		d.finish(l, Release, time.Time{})
		return
	}
	now := d.now()
	a.Number++
	a.Result, a.At, a.Outcome, a.Next = res, now, Done, time.Time{}
	if !res.OK() && a.Number <= len(d.cfg.RetrySchedule) {
		a.Outcome, a.Next = Retry, now.Add(d.retryDelay(a.Number, res.RetryAfter))
	}
	d.sent(l)
	records.Add(1)
	s.Record(context.WithoutCancel(d.abortCtx), a, func(err error) {
		defer records.Done()
		switch {
		case errors.Is(err, ErrGone):
			d.finish(l, Done, time.Time{}) // deleted while we were sending
		case err != nil:
			d.finish(l, Retry, now.Add(StoreRetryDelay))
		default:
			d.finish(l, a.Outcome, a.Next)
		}
		// done runs on the store's goroutine, not on a worker that will ask
		// next anyway: the lane's next head (or this one's retry) needs a
		// worker woken for it.
		d.signal()
	})
}

// retryDelay is the delay before the retry following attempt n (1-based):
// the schedule's entry with ± jitter, or a longer Retry-After (capped).
func (d *Dispatcher) retryDelay(n int, retryAfter time.Duration) time.Duration {
	delay := d.cfg.RetrySchedule[n-1]
	if j := d.cfg.Jitter; j > 0 && delay > 0 {
		delay = time.Duration(float64(delay) * (1 + j*(2*rand.Float64()-1)))
	}
	if retryAfter > delay {
		delay = min(retryAfter, maxRetryAfter)
	}
	return delay
}
