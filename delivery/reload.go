package delivery

// Reload is one reload of held items from the owner's store, in progress.
// The owner calls StartReload at start-up (to load what is pending) and
// whenever Options.Reload runs, offers every stored entry in lane order
// through Load, then calls End.
//
// Overflow ends only when everything stored is held and nothing was dropped
// while the store was read (anything dropped before the read started is in
// it, because the owner stores an item before it calls Add).
//
// Once one entry could not be loaded, no later one is, even if room appears
// meanwhile: a lane's entries are consecutive in the scan, so this keeps
// every in-memory lane a prefix of the stored one. The rest of the scan only
// counts what is not held (Full tells the owner it may read keys only).
type Reload struct {
	d           *Dispatcher
	gen         uint64
	notLoaded   int
	notLoadedBy map[string]int
	full        bool
}

// StartReload begins a reload. Only one runs at a time: at start-up before
// Run, and afterwards only as Options.Reload.
func (d *Dispatcher) StartReload() *Reload {
	d.mu.Lock()
	gen := d.dropGen
	d.overflow = true
	d.dropsDuring = map[string]int{}
	d.mu.Unlock()
	return &Reload{d: d, gen: gen, notLoadedBy: map[string]int{}}
}

// Full reports whether memory filled up during this reload: the entries
// offered from now on are only counted, so their Due and Observed may be
// left zero.
func (r *Reload) Full() bool { return r.full }

// Load offers the next stored entries, in lane order. webhook maps an
// entry's webhook id to the id string to keep (so that lanes share one
// string), or reports false for a deleted webhook, whose entries are
// skipped; the caller holds whatever lock keeps it consistent.
func (r *Reload) Load(chunk []Entry, webhook func(id string) (string, bool)) {
	d := r.d
	d.mu.Lock()
	for _, e := range chunk {
		id, ok := webhook(e.WebhookID)
		if !ok {
			continue // deleted; the worker or DeleteWebhook cleans such keys
		}
		if r.full {
			if !d.held(id, e.Subject, e.Item.Seq) {
				r.notLoaded++
				r.notLoadedBy[id]++
			}
			continue
		}
		if d.add(id, e.Subject, e.Item, true) == dropped {
			r.notLoaded++
			r.notLoadedBy[id]++
			r.full = true
		}
	}
	d.mu.Unlock()
	d.signal()
}

// End finishes the reload; err is the store's, which keeps the dispatcher
// overflowing so that a later reload tries again.
func (r *Reload) End(err error) {
	d := r.d
	d.mu.Lock()
	drops := int(d.dropGen - r.gen)
	d.unloaded = r.notLoaded + drops
	for id, n := range d.dropsDuring {
		r.notLoadedBy[id] += n
	}
	d.unloadedBy, d.dropsDuring = r.notLoadedBy, nil
	if err == nil && r.notLoaded == 0 && drops == 0 {
		d.overflow = false
	}
	d.mu.Unlock()
	d.signal()
}
