// Package outbox is eventtap's durable store and the owner of delivery state. It owns the
// Badger database and everything kept in it: committed events, their
// per-webhook deliveries, webhooks, delivery logs and the last values seen by
// `changed` rules.
//
// Events enter through Outbox.Commit, which hands them to a single batching
// writer (group commit): every event queued while the previous batch was
// syncing goes into the next Badger transaction and shares its fsync. The
// writer assigns sequence numbers, applies `changed` state, builds the
// delivered JSON payload and fans each event out to every ENABLED webhook
// subscribed to its type. It assembles the next batch while the previous
// one syncs, and it also writes the records of delivery attempts, so that
// events and attempt results share syncs instead of one sync per attempt.
//
// Sending is package delivery's: its dispatcher holds the pending
// deliveries in lanes, one per (webhook, subject), and its workers attempt
// them in commit order within a lane. The outbox feeds it what became due
// (the committer, admin re-queues, reloads of the q/ keys) and is its Store:
// it reads what to send and records each attempt's outcome through the
// committer before the lane moves on. Retries follow
// delivery.retry_schedule and are driven by next-attempt times stored in
// Badger, so they survive restarts.
//
// Deliveries of a webhook that becomes DISABLED (by the admin API, a 410
// answer or disable_after) stay PENDING but are paused: nothing is attempted
// until the webhook is ENABLED again, when they resume in order. Events that
// occur while a webhook is DISABLED are not queued for it; webhookReplay
// (Outbox.Replay) can queue them later.
//
// Retention removes, every storage.retention/20 (at most every 10 minutes),
// events older than storage.retention whose deliveries are all done
// (SUCCEEDED or FAILED) and logs older than storage.retention, then runs
// value-log GC; Badger's compactions drop the deleted keys. The value a
// `changed` rule last saw for a subject expires 4 × max(retention, 24h)
// after it was last written; the next sighting then counts as a first one.
//
// Memory: the dispatcher holds at most 50,000 pending deliveries in memory
// and leaves any backlog beyond that in Badger, reloading it as it drains.
// Badger is tuned for a small footprint (see badgerOptions); run the process
// with GOMEMLIMIT (the eventtap binary sets 80MiB unless told otherwise) to
// keep the Go heap from growing to twice what is live.
//
// An *Outbox is safe for concurrent use by any number of goroutines.
package outbox

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/eventtap/eventtap/delivery"
)

// Outbox is an open store with its committer, dispatcher and maintenance
// goroutines running. Create it with Open and stop it with Close; all its
// methods are safe for concurrent use.
type Outbox struct {
	db       *badger.DB
	storage  StorageConfig
	delivery DeliveryConfig
	types    map[string]bool
	log      *slog.Logger
	metrics  *metrics
	sender   *delivery.Sender

	// closeMu guards closed and the commit queue: Commit holds it shared while
	// enqueueing so that Close can close the queue without racing a send.
	closeMu sync.RWMutex
	closed  bool
	queue   chan *commitRequest
	// attempts carries delivery attempts' records to the committer; it is
	// closed only after the workers have stopped.
	attempts chan *commitRequest

	// dbMu keeps Badger open while an admin call uses it; Close takes it
	// exclusively before closing the database.
	dbMu sync.RWMutex

	// whMu guards hooks and subs. The committer holds it shared for a whole
	// batch so that a webhook deleted or disabled under the exclusive lock
	// never receives deliveries from a batch that started before.
	whMu  sync.RWMutex
	hooks map[string]*webhookRecord
	subs  map[string][]string // event type → ENABLED webhook ids

	// adminMu serializes admin mutations of delivery records (Redeliver,
	// Replay, webhook deletion) with retention, so that an event is never
	// removed while a delivery of it is being re-queued.
	adminMu sync.Mutex

	seq    uint64        // last event sequence; owned by the committer
	logSeq atomic.Uint64 // last log sequence

	disp *delivery.Dispatcher
	// stopDisp ends disp.Run, which closes dispDone once its workers have
	// returned.
	stopDisp context.CancelFunc
	dispDone chan struct{}
	cl       clusterState // cluster mode's seams; zero on one node
	// seal seals webhook records for the shared registry; nil without
	// storage.encryption_key_file.
	seal  *registrySeal
	relay relayState // cluster mode's relay (cluster_relay.go)
	// space refuses writes while storage.dir is nearly full.
	space *spaceGuard
	// snaps is the read snapshot delivery workers share (see snapshots).
	snaps snapshots
	// recent hands first attempts the events just committed.
	recent *recentEvents

	// stop ends the maintenance loop and a reload in progress.
	stop        chan struct{}
	committerWG sync.WaitGroup
	// recording carries recorded attempts to runRecorder.
	recording  chan recording
	recorderWG sync.WaitGroup
	loopsWG    sync.WaitGroup
	closeOnce  sync.Once
	closeErr   error

	now func() time.Time // replaced in tests only
	// retentionEvery is how often retention and value-log GC run.
	retentionEvery time.Duration
}

// Open opens (or creates) the Badger store in storage.Dir, loads webhooks and
// pending deliveries, and starts the committer, dispatcher, delivery workers
// and retention goroutines, which run until Close. eventTypes lists every
// valid event type (rules.EventTypes). ctx bounds only the opening itself.
// A nil reg registers the metrics nowhere visible.
func Open(ctx context.Context, storage StorageConfig, dcfg DeliveryConfig, eventTypes []string, logger *slog.Logger, reg prometheus.Registerer) (*Outbox, error) {
	return open(ctx, storage, dcfg, eventTypes, logger, reg, nil)
}

// openHooks lets tests reach what the public API deliberately does not expose.
type openHooks struct {
	now            func() time.Time
	retentionEvery time.Duration
	dial           func(ctx context.Context, network, addr string) (string, error) // rewrites the dial address
	pendingLimit   int
	freeBytes      func(dir string) (uint64, error)
}

func open(ctx context.Context, storage StorageConfig, dcfg DeliveryConfig, eventTypes []string, logger *slog.Logger, reg prometheus.Registerer, hooks *openHooks) (*Outbox, error) {
	if err := errors.Join(storage.Validate(), dcfg.Validate()); err != nil {
		return nil, fmt.Errorf("outbox: invalid configuration: %w", err)
	}
	if len(eventTypes) == 0 {
		return nil, errors.New("outbox: no event types given")
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	logger = logger.With("component", "outbox")
	o := &Outbox{
		storage:        storage,
		delivery:       dcfg,
		types:          make(map[string]bool, len(eventTypes)),
		log:            logger,
		queue:          make(chan *commitRequest, 4096),
		attempts:       make(chan *commitRequest, 256),
		recording:      make(chan recording, maxRecording),
		hooks:          map[string]*webhookRecord{},
		stop:           make(chan struct{}),
		now:            time.Now,
		retentionEvery: retentionInterval(storage.Retention),
	}
	for _, t := range eventTypes {
		o.types[t] = true
	}
	if hooks != nil {
		if hooks.now != nil {
			o.now = hooks.now
		}
		if hooks.retentionEvery > 0 {
			o.retentionEvery = hooks.retentionEvery
		}
	}
	var dial func(ctx context.Context, network, addr string) (string, error)
	dopts := delivery.Options{
		Logger: logger,
		// ErrClosed: Close stopped the reload, which is no failure.
		Reload: func() error {
			if err := o.reloadPending(); !errors.Is(err, ErrClosed) {
				return err
			}
			return nil
		},
		// An attempt's record could not be written: wait for space
		// (spaceGuard logs when the pause starts and ends).
		Hold:        func() bool { return o.space.full() },
		HoldRecheck: spaceRecheck,
		Now:         func() time.Time { return o.now() },
	}
	if hooks != nil {
		dial, dopts.PendingLimit = hooks.dial, hooks.pendingLimit
	}
	sender, err := delivery.NewSender(dcfg, dial)
	if err != nil {
		return nil, fmt.Errorf("outbox: %w", err)
	}
	o.sender = sender
	o.disp = delivery.NewDispatcher(dcfg, sender, dopts)
	o.recent = newRecentEvents(defaultRecentBytes)
	o.space = newSpaceGuard(storage.Dir, o.log)
	if hooks != nil && hooks.freeBytes != nil {
		o.space.free = hooks.freeBytes
	}
	if o.metrics, err = newMetrics(reg, o.pendingCount, o.oldestPending, o.allBacklogs); err != nil {
		return nil, err
	}

	opts := badgerOptions(storage, logger)
	if storage.EncryptionKeyFile != "" {
		key, warning, err := readEncryptionKey(storage.EncryptionKeyFile)
		if err != nil {
			return nil, fmt.Errorf("outbox: storage.encryption_key_file: %w", err)
		}
		if warning != "" {
			logger.Warn("storage.encryption_key_file: " + warning)
		}
		// Encryption needs the index cache, which badgerOptions sets.
		opts = opts.WithEncryptionKey(key).WithEncryptionKeyRotationDuration(keyRotation)
		if o.seal, err = newRegistrySeal(key); err != nil {
			return nil, fmt.Errorf("outbox: storage.encryption_key_file: %w", err)
		}
	}
	db, err := badger.Open(opts)
	if errors.Is(err, badger.ErrEncryptionKeyMismatch) {
		if storage.EncryptionKeyFile == "" {
			return nil, fmt.Errorf("outbox: opening %s: the store is encrypted; set storage.encryption_key_file to the key it was written with: %w", storage.Dir, err)
		}
		return nil, fmt.Errorf("outbox: opening %s: the key in storage.encryption_key_file (%s) is not the one the store was written with (or the store was written without encryption; see README, Encryption at rest): %w",
			storage.Dir, storage.EncryptionKeyFile, err)
	}
	if err != nil {
		return nil, fmt.Errorf("outbox: opening %s: %w", storage.Dir, err)
	}
	o.db = db
	if err := o.load(); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("outbox: loading %s: %w", storage.Dir, err)
	}

	o.committerWG.Add(1)
	go o.runCommitter()
	o.recorderWG.Add(1)
	go o.runRecorder()
	var runCtx context.Context
	runCtx, o.stopDisp = context.WithCancel(context.Background())
	o.dispDone = make(chan struct{})
	go func() {
		defer close(o.dispDone)
		o.disp.Run(runCtx, store{o})
	}()
	o.loopsWG.Add(1)
	go o.runMaintenance()
	return o, nil
}

// badgerOptions tunes Badger for a sidecar: the whole process should stay
// near 128 MiB RSS, so memtables, tables and caches are far smaller than
// Badger's server-oriented defaults. Measured with BenchmarkSustained, the
// largest heap users are memtable arenas (~1.3× MemTableSize each) and the
// table builders of flushes and compactions (up to 5 per compaction, each
// buffering a whole table of a few times its target size), which is what
// the sizes below bound. Go's GC lets the heap grow to twice what is live,
// so the process should also run with GOMEMLIMIT (eventtap sets 80MiB).
func badgerOptions(storage StorageConfig, logger *slog.Logger) badger.Options {
	opts := badger.DefaultOptions(storage.Dir)
	// Tables of every level keep the base size, so that compactions of
	// deep levels do not buffer ever larger tables in memory.
	opts.TableSizeMultiplier = 1
	return opts.
		WithSyncWrites(storage.SyncWrites).
		// Not WithLoggingLevel: it replaces the logger with Badger's own.
		WithLogger(badgerLogger{logger.With("component", "badger")}).
		// Each memtable's arena (~1.3x this) and the builder that flushes
		// it (~2x) are live heap. At the 80 MiB soft limit (serve.go)
		// 4 MiB memtables left the GC a few MiB of room under sustained
		// full load: up to 2,000 GC runs in 8 s and the tapped rate
		// falling from ~5k to ~1.5-2.9k req/s within 30 s. 2 MiB: 127-335
		// runs and 3.7-4.4k req/s in the same 4th round, for the same
		// peak RSS (A/B runs in README "Performance"). Transactions split
		// where a batch outgrows 15% of it (commit.go).
		WithMemTableSize(2 << 20).
		WithNumMemtables(3).
		WithNumLevelZeroTables(4).
		WithNumLevelZeroTablesStall(12).
		// A compaction builds up to five tables at once per compactor.
		// With compression a builder fills until its *compressed* size
		// reaches the table size, so it buffers ~6x that in uncompressed
		// blocks plus their compressed copies, on the Go heap (z.Calloc
		// without jemalloc); Badger also pools up to 8 used builders'
		// buffers. With 1 MiB tables those buffers were 56-104 MiB, the
		// live heap sat at the soft memory limit and the GC ran 100-200
		// times a second, so tapped throughput fell as the store grew
		// (.ci/bench rounds 0.30x, 0.21x, 0.18x of pass-through). 256 KiB
		// tables: a builder holds ~1.5 MiB, the GC runs ~10 times a
		// second, rounds stay level (0.27x, 0.26x, 0.25x) and the heap
		// fits a lower soft limit (serve.go). Issue 15's note has the runs.
		WithBaseTableSize(256 << 10).
		WithBaseLevelSize(10 << 20).
		// Payloads and logs are JSON and compress ~6x. Badger mmaps its
		// tables and those pages count in RSS, so smaller tables mean a
		// smaller resident set (measured: 190 -> 125 MiB peak in a 20 s
		// full-speed run with two webhooks) and a data directory a quarter
		// of the size, for ~15% of throughput. Decompressed blocks need a
		// small cache.
		WithCompression(options.Snappy).
		WithBlockCacheSize(8 << 20).
		// Bounded index cache instead of every table's index on the heap.
		WithIndexCacheSize(4 << 20).
		WithNumCompactors(2).
		// Event payloads and delivery records are small: keep them in the
		// LSM so that deleting them needs compaction only, not value-log GC.
		WithValueThreshold(4 << 10).
		// Value-log files are mmapped; small files keep resident pages
		// bounded and let GC reclaim space in small steps.
		WithValueLogFileSize(32 << 20).
		// Every key has a single writer at a time by construction (see the
		// committer and dispatcher), so conflict tracking is pure overhead.
		WithDetectConflicts(false).
		// Badger's own metrics go to the global expvar; ours are Prometheus.
		WithMetricsEnabled(false).
		WithNumGoroutines(2)
}

// badgerLogger routes Badger's printf-style logs to slog at warn level and
// above; Badger's info logs (table flushes, compactions) would swamp ours.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) msg(format string, args []any) string {
	return strings.TrimSpace(fmt.Sprintf(format, args...))
}
func (b badgerLogger) Errorf(f string, a ...any)   { b.l.Error(b.msg(f, a)) }
func (b badgerLogger) Warningf(f string, a ...any) { b.l.Warn(b.msg(f, a)) }
func (b badgerLogger) Infof(string, ...any)        {}
func (b badgerLogger) Debugf(string, ...any)       {}

func retentionInterval(retention time.Duration) time.Duration {
	return min(max(retention/20, time.Second), 10*time.Minute)
}

// Close stops taking commits (queued ones are still written; later ones fail
// with ErrClosed), stops starting delivery attempts, lets attempts in flight
// finish until ctx's deadline (then cancels them; they are retried after the
// next Open), stops retention and closes Badger. It waits for every goroutine
// the Outbox started. Calling Close again returns the first call's result.
func (o *Outbox) Close(ctx context.Context) error {
	o.closeOnce.Do(func() { o.closeErr = o.close(ctx) })
	return o.closeErr
}

func (o *Outbox) close(ctx context.Context) error {
	o.closeMu.Lock()
	o.closed = true
	close(o.queue)
	o.closeMu.Unlock()

	close(o.stop)
	o.stopDisp()
	o.loopsWG.Wait()
	var err error
	select {
	case <-o.dispDone:
	case <-ctx.Done():
		o.disp.Abort()
		<-o.dispDone
		err = fmt.Errorf("outbox: delivery attempts still in flight at shutdown were cancelled and will be retried: %w", ctx.Err())
	}
	o.disp.Abort()
	o.sender.Close()
	// The dispatcher has waited for every attempt handed to Record to be
	// finished by the recorder; attempts are written by the committer, so
	// it stops last.
	close(o.recording)
	o.recorderWG.Wait()
	close(o.attempts)
	o.committerWG.Wait()

	o.dbMu.Lock()
	defer o.dbMu.Unlock()
	if cerr := o.db.Close(); cerr != nil {
		err = errors.Join(err, fmt.Errorf("outbox: closing store: %w", cerr))
	}
	return err
}

// Ping reports whether the store is open and readable, for /readyz.
func (o *Outbox) Ping(ctx context.Context) error {
	return o.view(ctx, func(txn *badger.Txn) error {
		_, err := txn.Get(keyMetaSeq)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		return err
	})
}

// use runs fn while Badger is guaranteed to stay open, or returns ErrClosed.
func (o *Outbox) use(ctx context.Context, fn func() error) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	o.dbMu.RLock()
	defer o.dbMu.RUnlock()
	if o.db.IsClosed() || o.isClosed() {
		return ErrClosed
	}
	return fn()
}

func (o *Outbox) isClosed() bool {
	o.closeMu.RLock()
	defer o.closeMu.RUnlock()
	return o.closed
}

func (o *Outbox) view(ctx context.Context, fn func(txn *badger.Txn) error) error {
	return o.use(ctx, func() error { return o.db.View(fn) })
}

// dbUpdate is db.Update for every write outside the committer and
// newTxnWriter, refused while storage.dir is nearly full (see spaceGuard).
func (o *Outbox) dbUpdate(fn func(txn *badger.Txn) error) error {
	if err := o.space.check(); err != nil {
		return err
	}
	return o.db.Update(fn)
}

// load reads what the running goroutines need: the sequence counters,
// every webhook and every pending lane entry.
//
// A counter is never taken from its meta key alone. m/seq is written with
// the last part of a batch that Badger's size limit split (see
// committer.write), so after a crash between the parts the events of the
// first parts are stored under sequences above m/seq; reusing them would
// overwrite those events and their delivery records. The event sequence is
// therefore the greater of m/seq and the highest e/ key, and is written back
// at once so that retention deleting those events cannot lower it again.
// The log sequence likewise is the greater of the highest l/ key and m/logseq,
// which retention writes before deleting the newest logs.
func (o *Outbox) load() error {
	var repair bool
	if err := o.db.View(func(txn *badger.Txn) error {
		seq, err := readCounter(txn, keyMetaSeq)
		if err != nil {
			return err
		}
		if k, ok := lastKey(txn, prefixEvent); ok && len(k) == len(prefixEvent)+8 {
			if top := beUint64(k[len(prefixEvent):]); top > seq {
				seq, repair = top, true
			}
		}
		o.seq = seq
		logSeq, err := readCounter(txn, keyMetaLogSeq)
		if err != nil {
			return err
		}
		if k, ok := lastKey(txn, prefixLog); ok && len(k) == len(prefixLog)+8 {
			logSeq = max(logSeq, beUint64(k[len(prefixLog):]))
		}
		o.logSeq.Store(logSeq)
		if err := o.loadUnshared(txn); err != nil {
			return err
		}
		return o.loadWebhooks(txn)
	}); err != nil {
		return err
	}
	if repair {
		o.log.Warn("the store holds events above its recorded sequence (a crash between the parts of a large batch); continuing after them", "seq", o.seq)
		if err := o.db.Update(func(txn *badger.Txn) error { return txn.Set(keyMetaSeq, u64(nil, o.seq)) }); err != nil {
			return err
		}
	}
	return o.reloadPending()
}

// readCounter reads a uint64 meta key; 0 when it does not exist.
func readCounter(txn *badger.Txn, key []byte) (uint64, error) {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return 0, nil
	} else if err != nil {
		return 0, err
	}
	var n uint64
	err = item.Value(func(v []byte) error {
		if len(v) != 8 {
			return fmt.Errorf("%s: %w", key, errCorrupt)
		}
		n = beUint64(v)
		return nil
	})
	return n, err
}

// lastKey returns the greatest key with the prefix.
func lastKey(txn *badger.Txn, prefix []byte) ([]byte, bool) {
	it := txn.NewIterator(badger.IteratorOptions{Reverse: true, Prefix: prefix})
	defer it.Close()
	seekLast(it, prefix)
	if !it.ValidForPrefix(prefix) {
		return nil, false
	}
	return it.Item().KeyCopy(nil), true
}

// seekLast positions a reverse iterator on the last key of prefix.
func seekLast(it *badger.Iterator, prefix []byte) {
	end := prefixEnd(prefix)
	if end == nil {
		end = []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	}
	it.Seek(end)
	for it.Valid() && string(it.Item().Key()) >= string(end) {
		it.Next()
	}
}

// seekBefore positions a reverse iterator on the greatest key below key.
func seekBefore(it *badger.Iterator, key []byte) {
	it.Seek(key)
	for it.Valid() && string(it.Item().Key()) >= string(key) {
		it.Next()
	}
}
