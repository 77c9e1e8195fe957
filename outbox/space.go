package outbox

import (
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// minFreeBytes is the free space storage.dir must have before anything is
// written. Badger writes its write-ahead log, value log and tables through
// memory maps of files it extends without allocating them: on a full disk a
// write into such a map is not an error but a SIGBUS, which kills the
// process and every exchange in flight. Refusing writes while less than
// this is free turns a full disk into commit errors (on_outbox_error), and
// leaves room for what earlier writes still make Badger do: a memtable's
// log (2 × 4 MiB), its flush and one compaction of level 0 (2 × 2 MiB
// tables).
const minFreeBytes = 12 << 20

// spaceGuard refuses writes while storage.dir's file system is nearly full.
// Its methods are safe for concurrent use.
type spaceGuard struct {
	dir     string
	minFree uint64
	free    func(dir string) (uint64, error)
	log     *slog.Logger

	mu      sync.Mutex
	low     bool      // the last check found too little space
	checked time.Time // when the last check ran
}

func newSpaceGuard(dir string, log *slog.Logger) *spaceGuard {
	return &spaceGuard{dir: dir, minFree: minFreeBytes, free: freeBytes, log: log}
}

// check returns an error wrapping ErrNoSpace while the file system has less
// than minFree available. A file system that cannot tell (or a platform
// without statfs) is not guarded.
func (g *spaceGuard) check() error {
	if g == nil || g.free == nil {
		return nil
	}
	free, err := g.free(g.dir)
	if err != nil {
		return nil
	}
	low := free < g.minFree
	g.mu.Lock()
	changed := low != g.low
	g.low, g.checked = low, time.Now()
	g.mu.Unlock()
	if changed && low {
		g.log.Error("storage.dir is nearly full; events are not committed and deliveries are paused until space is freed (on_outbox_error applies)",
			"dir", g.dir, "free", mib(free), "needed", mib(g.minFree))
	} else if changed {
		g.log.Info("storage.dir has space again; committing and deliveries resumed", "dir", g.dir, "free", mib(free))
	}
	if low {
		return fmt.Errorf("outbox: %s has %s free, less than the %s needed to write safely; free space on its file system: %w",
			g.dir, mib(free), mib(g.minFree), ErrNoSpace)
	}
	return nil
}

// spaceRecheck is how long full trusts the last check.
const spaceRecheck = time.Second

// full reports whether storage.dir is nearly full, from a check at most
// spaceRecheck old (the committer checks before every batch), so that the
// dispatcher can ask before every attempt without a statfs each time.
func (g *spaceGuard) full() bool {
	if g == nil || g.free == nil {
		return false
	}
	g.mu.Lock()
	low, fresh := g.low, time.Since(g.checked) < spaceRecheck
	g.mu.Unlock()
	if fresh {
		return low
	}
	return g.check() != nil
}

func mib(b uint64) string { return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20)) }
