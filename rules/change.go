package rules

import (
	"bytes"
	"encoding/json"
)

// The `changed` decision (SPEC §3) lives here, in one place, as pure
// functions: the engine builds each candidate's State (StateKey and the
// canonical value), and whoever stores the last values (the outbox's
// committer, inside its transaction; a cluster layer against its own store)
// looks the previous value up and calls DecideChange. The store keeps only
// the storage: it never compares values itself.

// StateKey returns the key under which a `changed` rule's last value for a
// subject is kept: per rule and subject, so that two rules watching the
// same order do not see each other's values. It is opaque to stores.
func StateKey(rule, subject string) string { return rule + "\x00" + subject }

// Change is what a `changed` rule's state makes of a newly observed value.
type Change int

const (
	// ChangeUnknown: the value is null, which says only that this
	// exchange did not show it (a partial response, an optional field).
	// Nothing is recorded and nothing fires; the stored value stays.
	ChangeUnknown Change = iota
	// ChangeFirst: no value was stored for the subject (a first
	// sighting). The value is recorded; nothing fires.
	ChangeFirst
	// ChangeSame: the value equals the stored one. Nothing fires and
	// nothing needs to be written.
	ChangeSame
	// ChangeNew: the value differs from the stored one. It is recorded,
	// and the event fires with {"previous": stored, "current": value}.
	ChangeNew
)

// String returns the name of c as tests and `rules test` print it.
func (c Change) String() string {
	switch c {
	case ChangeUnknown:
		return "unknown (null: nothing recorded)"
	case ChangeFirst:
		return "first sighting (recorded, no event)"
	case ChangeSame:
		return "same value (no event)"
	case ChangeNew:
		return "new value (fires)"
	}
	return "Change(?)"
}

// Record reports whether the current value must be stored.
func (c Change) Record() bool { return c == ChangeFirst || c == ChangeNew }

// Fire reports whether the event is emitted.
func (c Change) Fire() bool { return c == ChangeNew }

// DecideChange compares current, the canonical JSON of a `changed`
// expression's result on one exchange (State.Value), with previous, the
// value last recorded for the same StateKey (found is false when there is
// none). Several events of one commit for the same key must be decided in
// order, each against the value recorded by the one before: the caller
// records the value whenever the result's Record is true.
//
// Values are compared as canonical JSON (the engine encodes them with
// sorted keys and shortest numbers), so that formatting is never mistaken
// for a change; a value that is not valid JSON is compared byte for byte.
func DecideChange(previous []byte, found bool, current []byte) Change {
	current = bytes.TrimSpace(current)
	if len(current) == 0 || string(current) == "null" {
		return ChangeUnknown
	}
	if !found {
		return ChangeFirst
	}
	if equalJSON(previous, current) {
		return ChangeSame
	}
	return ChangeNew
}

// CanonicalValue returns v compacted, the form in which a `changed` value is
// stored and compared; "null" for an empty value. Values built by the
// engine are compact already; this is for values that come from elsewhere
// (stores written by older versions, tests).
func CanonicalValue(v []byte) []byte {
	if len(bytes.TrimSpace(v)) == 0 {
		return []byte("null")
	}
	var out bytes.Buffer
	if err := json.Compact(&out, v); err != nil {
		return bytes.Clone(v)
	}
	return out.Bytes()
}

func equalJSON(a, b []byte) bool {
	if bytes.Equal(a, b) {
		return true
	}
	return bytes.Equal(CanonicalValue(a), CanonicalValue(b))
}
