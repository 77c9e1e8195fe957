package proxy

import (
	"sync"
	"sync/atomic"
)

// captureBudget bounds the memory that captured bodies hold across all
// exchanges in flight (proxy.capture_budget_bytes). Buffers reserve their
// capacity before they allocate it, so the bytes held never exceed limit;
// a buffer that cannot reserve stops capturing and its body passes through
// uncaptured. One compare-and-swap per reservation keeps the hot path cheap.
type captureBudget struct {
	limit int64
	used  atomic.Int64
	// peak is the highest used ever seen, for tests and the figures.
	peak atomic.Int64
}

// take reserves n bytes, or reports that the budget cannot hold them.
func (b *captureBudget) take(n int64) bool {
	for {
		cur := b.used.Load()
		next := cur + n
		if next > b.limit {
			return false
		}
		if b.used.CompareAndSwap(cur, next) {
			for {
				pk := b.peak.Load()
				if next <= pk || b.peak.CompareAndSwap(pk, next) {
					return true
				}
			}
		}
	}
}

// give returns n reserved bytes.
func (b *captureBudget) give(n int64) {
	if n != 0 {
		b.used.Add(-n)
	}
}

// reservation is what one tapped exchange holds of the budget. Its buffers
// are filled from the handler goroutine, from the transport's goroutine
// that reads the request body, and from the background settle, hence the
// lock; the exchange is settled and released once, after which nothing can
// reserve any more (a transport still reading a request body then passes it
// through uncaptured).
type reservation struct {
	budget *captureBudget
	mu     sync.Mutex
	held   int64
	closed bool
	// refs counts the owners: the request handler, and the background
	// settle when there is one. The last one releases.
	refs atomic.Int32
	// spent is set when a body found the budget spent.
	spent atomic.Bool
}

// reserve takes n more bytes for this exchange; false means the budget is
// spent (or the exchange is over) and the caller must stop capturing.
func (r *reservation) reserve(n int64) bool {
	if n <= 0 {
		return true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed || !r.budget.take(n) {
		r.spent.Store(true)
		return false
	}
	r.held += n
	return true
}

// ref adds an owner.
func (r *reservation) ref() { r.refs.Add(1) }

// unref drops an owner; the last one gives everything back.
func (r *reservation) unref() {
	if r.refs.Add(-1) != 0 {
		return
	}
	r.mu.Lock()
	r.closed = true
	r.budget.give(r.held)
	r.held = 0
	r.mu.Unlock()
}

// growCapture makes room for n more bytes in buf, never beyond limit bytes
// in all, reserving the new capacity first: the capacity doubles from 4 KiB (or
// starts at hint, when the body declared its length and it is small), so a
// body that declares a large length and sends little holds little. ok is
// false when the budget refused; buf is then unchanged. A nil r grows
// without a budget.
func (r *reservation) growCapture(buf []byte, n int, limit int64, hint int64) (_ []byte, ok bool) {
	need := min(int64(len(buf))+int64(n), limit)
	if need <= int64(cap(buf)) {
		return buf, true
	}
	newCap := int64(cap(buf)) * 2
	if cap(buf) == 0 {
		newCap = 4 << 10
		if hint > 0 && hint <= smallBody {
			newCap = hint
		}
	}
	newCap = min(max(newCap, need), limit)
	if r != nil && !r.reserve(newCap-int64(cap(buf))) {
		return buf, false
	}
	grown := make([]byte, len(buf), newCap)
	copy(grown, buf)
	// The old array is garbage now, but its reservation is kept until the
	// exchange ends: cheaper than a give per growth, and never an under-count.
	return grown, true
}

// smallBody is the largest declared length a capture buffer is sized to at
// once; beyond it the buffer grows as bytes arrive, so a declared length
// costs nothing until the bytes are there.
const smallBody = 64 << 10
