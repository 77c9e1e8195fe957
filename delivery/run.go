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
	// Record makes the outcome of an attempt durable and returns once it
	// is (or failed to be): the lane stays busy until then, so the next
	// event of a subject is attempted only once the store says the one
	// before it is delivered or given up. Releasing earlier would let a
	// crash in between send the earlier event again after the later one.
	// It returns an error wrapping ErrGone when the delivery no longer
	// exists (its webhook was deleted while the attempt was made); any
	// other error retries the head after StoreRetryDelay. ctx is not
	// cancelled by Abort: an attempt that was made is recorded.
	Record(ctx context.Context, a *Attempt) error
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

// job is one attempt handed to a worker.
type job struct {
	lane *lane
	item Item
}

// Run hands due lane heads to cfg.Workers workers, which attempt them and
// record the outcomes in s, until ctx is cancelled; it then waits for the
// attempts in flight (see Abort) and for a reload in progress, and returns.
func (d *Dispatcher) Run(ctx context.Context, s Store) {
	jobs := make(chan job)
	var workers, reloads sync.WaitGroup
	for range d.cfg.Workers {
		workers.Add(1)
		go func() {
			defer workers.Done()
			for j := range jobs {
				d.attempt(s, j)
			}
		}()
	}
	d.loop(ctx, jobs, &reloads)
	reloads.Wait()
	workers.Wait()
}

// loop hands due lane heads to the workers. It sleeps until the earliest
// next-attempt time or until the owner, a worker or an admin call signals
// new work, so new events are picked up immediately.
func (d *Dispatcher) loop(ctx context.Context, jobs chan<- job, reloads *sync.WaitGroup) {
	defer close(jobs)
	stop := ctx.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	var reloading chan struct{} // closed when the reload in progress ends
	for {
		if reloading != nil {
			select {
			case <-reloading:
				reloading = nil
			default:
			}
		}
		if reloading == nil && d.opts.Reload != nil && d.needsReload() {
			reloading = make(chan struct{})
			reloads.Add(1)
			go func(done chan struct{}) {
				defer reloads.Done()
				defer close(done)
				if err := d.opts.Reload(); err != nil {
					d.log.Error("reloading pending deliveries failed; retrying later", "err", err)
					select {
					case <-time.After(StoreRetryDelay):
					case <-stop:
					}
				}
				d.signal()
			}(reloading)
		}
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
			select {
			case jobs <- job{l, it}:
			case <-stop:
				d.finish(l, Release, time.Time{})
				return
			}
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

// attempt makes one delivery attempt of a lane's head and records it. The
// worker itself waits for the record to be durable: the lane is busy until
// then anyway, and the per-webhook limit counts it as in flight.
func (d *Dispatcher) attempt(s Store, j job) {
	l := j.lane
	a, skip, due := s.Prepare(d.abortCtx, l.id.webhookID, l.id.subject, j.item)
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
	err := s.Record(context.WithoutCancel(d.abortCtx), a)
	switch {
	case errors.Is(err, ErrGone):
		d.finish(l, Done, time.Time{}) // deleted while we were sending
	case err != nil:
		d.finish(l, Retry, now.Add(StoreRetryDelay))
	default:
		d.finish(l, a.Outcome, a.Next)
	}
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
