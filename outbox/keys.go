package outbox

import (
	"bytes"
	"encoding/base32"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Key layout. Every key starts with a short ASCII prefix so that each kind of
// record is one contiguous range for prefix scans. Fixed-width big-endian
// integers keep numeric order equal to byte order, so "newest first" is a
// reverse scan and a cursor is simply the key of the last item returned.
//
//	m/seq                                      last event sequence (uint64)
//	m/logseq                                   a log sequence once used (uint64), written
//	                                           by retention before it deletes logs
//	e/<seq:8>                                  event record
//	s/<uvarint len><subject><seq:8>            subject index of events (no value)
//	d/<seq:8><webhookID>                       delivery of event seq to a webhook
//	q/<webhookID><uvarint len><subject><seq:8> pending lane entry: per-(webhook, subject)
//	                                           order of deliveries not yet done
//	w/<webhookID>                              webhook record
//	l/<logseq:8>                               delivery attempt log
//	x/w/<webhookID><logseq:8>                  log index by webhook (no value)
//	x/e/<eventID><logseq:8>                    log index by event (no value)
//	r/<state key>                              last value seen by a `changed` rule
//	u/<len:2><state key><observed ns:8>        a `changed` value decided while the cluster's
//	                                           shared state was unreachable, kept until it is
//	                                           written back (cluster mode; the value)
//
// Webhook and event ids embed a big-endian counter (creation time for
// webhooks, the sequence for events) followed by random bytes, encoded in
// base32hex so that string order is numeric order; keys can therefore hold the
// id itself and ids stay unique even if a store is recreated.
var (
	keyMetaSeq     = []byte("m/seq")
	keyMetaLogSeq  = []byte("m/logseq")
	prefixEvent    = []byte("e/")
	prefixSubject  = []byte("s/")
	prefixDelivery = []byte("d/")
	prefixLane     = []byte("q/")
	prefixWebhook  = []byte("w/")
	prefixLog      = []byte("l/")
	prefixLogByWH  = []byte("x/w/")
	prefixLogByEvt = []byte("x/e/")
	prefixState    = []byte("r/")
	prefixUnshared = []byte("u/")
)

const (
	eventIDPrefix   = "evt_"
	webhookIDPrefix = "wh_"
	logIDPrefix     = "log_"
	idBodyLen       = 26 // base32 of 16 bytes without padding
	webhookIDLen    = len(webhookIDPrefix) + idBodyLen
	eventIDLen      = len(eventIDPrefix) + idBodyLen
)

// idEncoding is base32hex in lower case, so that ids need no case mapping.
var idEncoding = base32.NewEncoding("0123456789abcdefghijklmnopqrstuv").WithPadding(base32.NoPadding)

// newID returns prefix + base32hex(counter || 8 random bytes), lower case.
// Ids are not secrets, only unique, so the random part comes from the
// runtime's ChaCha8 generator rather than a getrandom syscall per event.
func newID(prefix string, counter uint64) string {
	var raw [16]byte
	binary.BigEndian.PutUint64(raw[:8], counter)
	binary.BigEndian.PutUint64(raw[8:], rand.Uint64())
	var out [40]byte
	b := append(out[:0], prefix...)
	return string(idEncoding.AppendEncode(b, raw[:]))
}

// parseID returns the counter embedded in an id made by newID.
func parseID(prefix, id string) (uint64, bool) {
	if len(id) != len(prefix)+idBodyLen || !strings.HasPrefix(id, prefix) {
		return 0, false
	}
	raw, err := idEncoding.DecodeString(strings.ToLower(id[len(prefix):]))
	if err != nil || len(raw) != 16 {
		return 0, false
	}
	return binary.BigEndian.Uint64(raw[:8]), true
}

func u64(b []byte, v uint64) []byte { return binary.BigEndian.AppendUint64(b, v) }

func cat(parts ...[]byte) []byte {
	n := 0
	for _, p := range parts {
		n += len(p)
	}
	out := make([]byte, 0, n)
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

func eventKey(seq uint64) []byte { return u64(cat(prefixEvent), seq) }

func subjectPrefix(subject string) []byte { return subjectIndexPrefix(prefixSubject, subject) }

// subjectIndexPrefix is prefix + the subject with its length, so that no
// subject's range holds another's.
func subjectIndexPrefix(prefix []byte, subject string) []byte {
	b := cat(prefix)
	b = binary.AppendUvarint(b, uint64(len(subject)))
	return append(b, subject...)
}

func subjectKey(subject string, seq uint64) []byte { return u64(subjectPrefix(subject), seq) }

func deliveryPrefix(seq uint64) []byte { return u64(cat(prefixDelivery), seq) }

func deliveryKey(seq uint64, webhookID string) []byte {
	return append(deliveryPrefix(seq), webhookID...)
}

func lanePrefix(webhookID string) []byte { return append(cat(prefixLane), webhookID...) }

func laneKey(webhookID, subject string, seq uint64) []byte {
	b := lanePrefix(webhookID)
	b = binary.AppendUvarint(b, uint64(len(subject)))
	b = append(b, subject...)
	return u64(b, seq)
}

// parseLaneKey splits a q/ key into its webhook id, subject and sequence.
func parseLaneKey(k []byte) (webhookID, subject string, seq uint64, ok bool) {
	rest, found := bytes.CutPrefix(k, prefixLane)
	if !found || len(rest) < webhookIDLen+1+8 {
		return "", "", 0, false
	}
	webhookID, rest = string(rest[:webhookIDLen]), rest[webhookIDLen:]
	n, w := binary.Uvarint(rest)
	if w <= 0 || uint64(len(rest)-w) != n+8 {
		return "", "", 0, false
	}
	subject = string(rest[w : w+int(n)])
	return webhookID, subject, binary.BigEndian.Uint64(rest[w+int(n):]), true
}

func webhookKey(id string) []byte { return append(cat(prefixWebhook), id...) }

// eventSpace is a key range of events with its subject index: this node's
// own commits (e/, s/, numbered by sequence), or in cluster mode the view
// of the cluster's events stream (v/e/, v/s/, numbered by stream
// position; cluster_view.go). read loads the event numbered n with its
// deliveries.
type eventSpace struct {
	all      []byte
	subjects func(subject string) []byte
	read     func(txn *badger.Txn, n uint64, id string) (Event, error)
}

var (
	ownEvents  = eventSpace{all: prefixEvent, subjects: subjectPrefix, read: readEvent}
	viewEvents = eventSpace{all: prefixViewEvent, subjects: viewSubjectPrefix, read: readViewEvent}
)

// logSpace is a key range of delivery logs with its two indexes: this
// node's own logs (l/, x/w/, x/e/, numbered by m/logseq), or in cluster
// mode the view of the cluster's log stream (v/l/, v/lw/, v/le/, numbered
// by stream position, so that a log's id and a cursor are the same on
// every node).
type logSpace struct{ all, byWebhook, byEvent []byte }

var (
	ownLogs  = logSpace{all: prefixLog, byWebhook: prefixLogByWH, byEvent: prefixLogByEvt}
	viewLogs = logSpace{all: []byte("v/l/"), byWebhook: []byte("v/lw/"), byEvent: []byte("v/le/")}
)

func (s logSpace) key(seq uint64) []byte { return u64(cat(s.all), seq) }

func (s logSpace) webhookKey(webhookID string, seq uint64) []byte {
	return u64(append(cat(s.byWebhook), webhookID...), seq)
}

func (s logSpace) eventKey(eventID string, seq uint64) []byte {
	return u64(append(cat(s.byEvent), eventID...), seq)
}

// keys returns the three keys of log l numbered seq.
func (s logSpace) keys(l *Log, seq uint64) [3][]byte {
	return [3][]byte{s.key(seq), s.webhookKey(l.WebhookID, seq), s.eventKey(l.EventID, seq)}
}

func stateKey(key string) []byte { return append(cat(prefixState), key...) }

// unsharedPrefix is the prefix of every copy kept of a state key's values
// decided during an outage (one per decision time); ok is false for a key
// too long to length-prefix, which is then not kept on disk.
func unsharedPrefix(key string) (p []byte, ok bool) {
	if len(key) > math.MaxUint16 {
		return nil, false
	}
	return append(binary.BigEndian.AppendUint16(cat(prefixUnshared), uint16(len(key))), key...), true
}

// parseUnsharedKey returns the state key and decision time of a u/ key.
func parseUnsharedKey(k []byte) (key string, at time.Time, ok bool) {
	rest := k[len(prefixUnshared):]
	if len(rest) < 2 {
		return "", time.Time{}, false
	}
	n := int(binary.BigEndian.Uint16(rest))
	if len(rest) != 2+n+8 {
		return "", time.Time{}, false
	}
	return string(rest[2 : 2+n]), time.Unix(0, int64(beUint64(rest[2+n:]))), true
}

// Cursors are the base64url of the key of the item they point at. They are
// only accepted for the range they were made for, so a cursor of one listing
// cannot walk another.
func encodeCursor(key []byte) string { return base64.RawURLEncoding.EncodeToString(key) }

// resumeAfter is the key a listing resumes after: nil for the first page
// (no cursor), else the decoded cursor.
func resumeAfter(cursor string, prefix []byte, keyLen int) ([]byte, error) {
	if cursor == "" {
		return nil, nil
	}
	return decodeCursor(cursor, prefix, keyLen)
}

func decodeCursor(cursor string, prefix []byte, keyLen int) ([]byte, error) {
	key, err := base64.RawURLEncoding.DecodeString(cursor)
	if err != nil || !bytes.HasPrefix(key, prefix) || (keyLen > 0 && len(key) != keyLen) {
		return nil, fmt.Errorf("%w: %q was not returned by this listing; pass an endCursor or cursor from a previous page", ErrBadCursor, cursor)
	}
	return key, nil
}

// prefixEnd returns the smallest key greater than every key starting with
// prefix, for reverse scans that must start at the end of a range.
func prefixEnd(prefix []byte) []byte {
	end := bytes.Clone(prefix)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

func beUint64(b []byte) uint64 { return binary.BigEndian.Uint64(b) }
