package outbox

import (
	"encoding/binary"
	"errors"
	"time"
)

// Records are stored in a small hand-written binary format: the committer
// writes several records per event at tens of thousands of events per
// second, and this keeps encoding allocation-light and values small so that
// they stay in the LSM tree. The first byte is a format version.

const recordVersion = 1

var errCorrupt = errors.New("outbox: corrupt record")

type enc struct{ b []byte }

func (e *enc) uvarint(v uint64) { e.b = binary.AppendUvarint(e.b, v) }
func (e *enc) varint(v int64)   { e.b = binary.AppendVarint(e.b, v) }
func (e *enc) bytes(v []byte)   { e.uvarint(uint64(len(v))); e.b = append(e.b, v...) }
func (e *enc) str(v string)     { e.uvarint(uint64(len(v))); e.b = append(e.b, v...) }
func (e *enc) strs(vs ...string) {
	for _, v := range vs {
		e.str(v)
	}
}
func (e *enc) time(t time.Time) { e.varint(unixNano(t)) }
func (e *enc) bool(v bool) {
	if v {
		e.b = append(e.b, 1)
	} else {
		e.b = append(e.b, 0)
	}
}

type dec struct {
	b   []byte
	err error
}

func (d *dec) uvarint() uint64 { return readVarint(d, binary.Uvarint) }

func (d *dec) varint() int64 { return readVarint(d, binary.Varint) }

// readVarint decodes one varint with read (binary.Uvarint or
// binary.Varint); a truncated or overlong one sets errCorrupt.
func readVarint[T uint64 | int64](d *dec, read func([]byte) (T, int)) T {
	if d.err != nil {
		return 0
	}
	v, n := read(d.b)
	if n <= 0 {
		d.err = errCorrupt
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *dec) bytes() []byte {
	n := d.uvarint()
	if d.err != nil {
		return nil
	}
	if uint64(len(d.b)) < n {
		d.err = errCorrupt
		return nil
	}
	v := d.b[:n:n]
	d.b = d.b[n:]
	return v
}

func (d *dec) str() string     { return string(d.bytes()) }
func (d *dec) time() time.Time { return fromUnixNano(d.varint()) }
func (d *dec) bool() bool      { return d.uvarint() == 1 }
func (d *dec) byte() byte {
	if d.err != nil {
		return 0
	}
	if len(d.b) == 0 {
		d.err = errCorrupt
		return 0
	}
	v := d.b[0]
	d.b = d.b[1:]
	return v
}

// newRecord starts a record's encoding: the version byte, appended to buf
// (nil for a fresh buffer of capacity size).
func newRecord(buf []byte, size int) enc {
	if buf == nil {
		buf = make([]byte, 0, size)
	}
	return enc{b: append(buf, recordVersion)}
}

// decodeRecord checks b's version byte and reads the rest with read; a
// truncated or unknown record gives errCorrupt.
func decodeRecord(b []byte, read func(d *dec)) error {
	d := dec{b: b}
	if v := d.byte(); d.err == nil && v != recordVersion {
		d.err = errCorrupt
	}
	if d.err == nil {
		read(&d)
	}
	return d.err
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromUnixNano(n int64) time.Time {
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n).UTC()
}

// eventRecord is the stored form of a committed event (key e/<seq>).
type eventRecord struct {
	ID          string
	Type        string
	Subject     string
	Rule        string
	ObservedAt  time.Time
	CommittedAt time.Time
	Payload     []byte
}

func (r *eventRecord) marshal(buf []byte) []byte {
	e := newRecord(buf, 0)
	e.strs(r.ID, r.Type, r.Subject, r.Rule)
	e.time(r.ObservedAt)
	e.time(r.CommittedAt)
	e.bytes(r.Payload)
	return e.b
}

func (r *eventRecord) unmarshal(b []byte) error {
	return decodeRecord(b, func(d *dec) {
		r.ID, r.Type, r.Subject, r.Rule = d.str(), d.str(), d.str(), d.str()
		r.ObservedAt, r.CommittedAt = d.time(), d.time()
		r.Payload = d.bytes()
	})
}

// deliveryRecord is the stored state of one event's delivery to one webhook
// (key d/<seq><webhookID>).
type deliveryRecord struct {
	State              DeliveryState
	Attempts           int
	NextAttemptAt      time.Time
	LastResponseStatus int
}

var stateCodes = map[DeliveryState]byte{Pending: 'P', Succeeded: 'S', Failed: 'F'}

func (r *deliveryRecord) marshal() []byte {
	e := newRecord(nil, 24)
	e.b = append(e.b, stateCodes[r.State])
	e.uvarint(uint64(r.Attempts))
	e.time(r.NextAttemptAt)
	e.uvarint(uint64(r.LastResponseStatus))
	return e.b
}

func (r *deliveryRecord) unmarshal(b []byte) error {
	return decodeRecord(b, func(d *dec) {
		switch d.byte() {
		case 'P':
			r.State = Pending
		case 'S':
			r.State = Succeeded
		case 'F':
			r.State = Failed
		default:
			if d.err == nil {
				d.err = errCorrupt
			}
		}
		r.Attempts = int(d.uvarint())
		r.NextAttemptAt = d.time()
		r.LastResponseStatus = int(d.uvarint())
	})
}

// laneValue is the value of a q/ key: what the dispatcher needs to schedule
// the entry without reading the event.
type laneValue struct {
	NextAttemptAt time.Time
	ObservedAt    time.Time
}

func (v laneValue) marshal() []byte {
	e := newRecord(nil, 20)
	e.time(v.NextAttemptAt)
	e.time(v.ObservedAt)
	return e.b
}

func (v *laneValue) unmarshal(b []byte) error {
	return decodeRecord(b, func(d *dec) { v.NextAttemptAt, v.ObservedAt = d.time(), d.time() })
}

// webhookRecord is the stored form of a webhook (key w/<id>).
type webhookRecord struct {
	Webhook
	// FailingSince is when the first failed attempt after the last success
	// happened; zero while the last attempt succeeded. It drives disable_after.
	FailingSince time.Time
}

func optStr(e *enc, s *string) {
	e.bool(s != nil)
	if s != nil {
		e.str(*s)
	}
}

func readOptStr(d *dec) *string {
	if !d.bool() {
		return nil
	}
	s := d.str()
	return &s
}

func (r *webhookRecord) marshal() []byte {
	e := newRecord(nil, 128)
	e.strs(r.ID, r.URL, r.Type, string(r.Status), r.Secret)
	// The newest previous secret where records before multi-rotation kept
	// their only one; any older ones at the end, which those records lack.
	var first PreviousSecret
	if len(r.PreviousSecrets) > 0 {
		first = r.PreviousSecrets[0]
	}
	e.str(first.Secret)
	e.time(first.Until)
	optStr(&e, r.Description)
	optStr(&e, r.DisabledReason)
	e.time(r.CreatedAt)
	e.time(r.UpdatedAt)
	e.time(r.FailingSince)
	if len(r.PreviousSecrets) > 1 {
		e.uvarint(uint64(len(r.PreviousSecrets) - 1))
		for _, p := range r.PreviousSecrets[1:] {
			e.str(p.Secret)
			e.time(p.Until)
		}
	}
	return e.b
}

func (r *webhookRecord) unmarshal(b []byte) error {
	return decodeRecord(b, func(d *dec) {
		r.ID, r.URL, r.Type = d.str(), d.str(), d.str()
		r.Status = WebhookStatus(d.str())
		r.Secret = d.str()
		r.PreviousSecrets = nil
		if first := (PreviousSecret{Secret: d.str(), Until: d.time()}); first.Secret != "" {
			r.PreviousSecrets = append(r.PreviousSecrets, first)
		}
		r.Description = readOptStr(d)
		r.DisabledReason = readOptStr(d)
		r.CreatedAt, r.UpdatedAt, r.FailingSince = d.time(), d.time(), d.time()
		if d.err == nil && len(d.b) > 0 {
			n := d.uvarint()
			if n > maxPreviousSecrets {
				d.err = errCorrupt
				return
			}
			for range n {
				r.PreviousSecrets = append(r.PreviousSecrets, PreviousSecret{Secret: d.str(), Until: d.time()})
			}
		}
	})
}

func marshalLog(l *Log) []byte {
	e := newRecord(nil, 128+len(l.Request)+len(l.ResponseBody))
	e.strs(l.ID, l.WebhookID, l.EventID, l.Type, l.URL)
	e.time(l.CreatedAt)
	e.uvarint(uint64(l.ResponseStatus))
	e.str(l.Request)
	e.uvarint(uint64(l.Attempt))
	e.varint(int64(l.Duration))
	e.str(l.Error)
	e.str(l.ResponseBody)
	e.bool(l.Succeeded)
	return e.b
}

func unmarshalLog(b []byte) (Log, error) {
	var l Log
	err := decodeRecord(b, func(d *dec) {
		l.ID, l.WebhookID, l.EventID, l.Type, l.URL = d.str(), d.str(), d.str(), d.str(), d.str()
		l.CreatedAt = d.time()
		l.ResponseStatus = int(d.uvarint())
		l.Request = d.str()
		l.Attempt = int(d.uvarint())
		l.Duration = time.Duration(d.varint())
		l.Error, l.ResponseBody = d.str(), d.str()
		l.Succeeded = d.bool()
	})
	return l, err
}
