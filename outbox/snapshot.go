package outbox

import (
	"sync"

	"github.com/dgraph-io/badger/v4"
)

// snapshots hands delivery workers a shared read-only transaction, renewed
// by the committer each time a batch becomes durable. A new Badger
// transaction waits until every write already handed to Badger is applied,
// which under load is the group commit in flight (a sync): taking one per
// attempt made every attempt wait for a sync. A snapshot taken right after
// a batch became durable, before the next one is handed over, waits for
// nothing of ours.
//
// A snapshot sees every batch up to the one that renewed it, so it holds the
// events and delivery records of everything the committer added to the
// dispatcher and every attempt result whose lane was released since. Writes
// made outside the committer (admin re-queues, reloads) may be newer than
// the snapshot; readers fall back to a fresh transaction when the snapshot
// shows no pending delivery (see Outbox.readPending).
type snapshots struct {
	mu  sync.Mutex
	cur *snapshot
}

type snapshot struct {
	txn  *badger.Txn
	refs int // users, plus one while it is current
}

// renew makes a transaction taken now the current snapshot.
func (s *snapshots) renew(db *badger.DB) {
	txn := db.NewTransaction(false)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur != nil && s.cur.txn.ReadTs() > txn.ReadTs() {
		txn.Discard()
		return
	}
	old := s.cur
	s.cur = &snapshot{txn: txn, refs: 1}
	s.releaseLocked(old)
}

// acquire returns the current snapshot, or nil when there is none; the
// caller releases it.
func (s *snapshots) acquire() *snapshot {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.cur != nil {
		s.cur.refs++
	}
	return s.cur
}

func (s *snapshots) release(sn *snapshot) {
	s.mu.Lock()
	s.releaseLocked(sn)
	s.mu.Unlock()
}

func (s *snapshots) releaseLocked(sn *snapshot) {
	if sn == nil {
		return
	}
	if sn.refs--; sn.refs == 0 {
		sn.txn.Discard()
	}
}

// close discards the current snapshot; nothing may acquire one afterwards.
func (s *snapshots) close() {
	s.mu.Lock()
	old := s.cur
	s.cur = nil
	s.releaseLocked(old)
	s.mu.Unlock()
}
