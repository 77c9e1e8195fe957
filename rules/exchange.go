package rules

import (
	"encoding/json"
	"net/http"
	"time"
)

// MaxSubjectBytes bounds an event's subject. Subjects are ids, and the
// outbox keys deliveries and their order by subject: a rule whose subject
// evaluates to more is a run-time error of that rule.
const MaxSubjectBytes = 1024

// MaxEachElements bounds the list of a rule's `each` (SPEC §3): a longer
// list is a run-time error of that rule, which then emits nothing.
const MaxEachElements = 1000

// Exchange is one request/response pair captured by the proxy on a route
// that some rule could match. The proxy builds it once per exchange and hands
// it to Engine.Evaluate; nothing in it is modified afterwards, so it is safe
// to read from several goroutines.
type Exchange struct {
	Request  Request
	Response Response
	// Start is when the proxy received the request, End when the upstream's
	// response body was fully read.
	Start, End time.Time
}

// Request is the captured half of an exchange that the client sent.
type Request struct {
	Method string
	// Path is the request path as CleanPath gives it (the proxy passes it
	// so; matching cleans any other form first). It is request.path in CEL.
	Path string
	// RawQuery is the query string as sent, without the '?'.
	RawQuery string
	Header   http.Header
	Body     []byte
	// Truncated is true when the body was larger than proxy.max_capture_bytes;
	// Body then holds only its first bytes and is treated as not JSON.
	Truncated bool
}

// Response is the captured half of an exchange that the upstream answered.
type Response struct {
	Status    int
	Header    http.Header
	Body      []byte
	Truncated bool
}

// Event is a candidate event produced by Engine.Evaluate. Whether it is
// emitted is decided by the outbox: an Event with a non-nil State fires only
// when State.Value differs from the value stored for State.Key.
type Event struct {
	// Rule is the name of the rule that produced the event.
	Rule string
	// Type is the event type, a built-in one or one listed in event_types.
	Type string
	// Subject is what the event is about (an order or shipment id).
	Subject string
	// Data is the JSON encoding of the rule's data expression.
	Data json.RawMessage
	// State is set for rules with `changed`.
	State *State
	// ObservedAt is when the exchange finished (Exchange.End).
	ObservedAt time.Time
}

// State is the per-(rule, subject) value that a `changed` rule compares.
type State struct {
	// Key identifies the rule and subject; it is opaque to the outbox.
	Key string
	// Value is the JSON encoding of the `changed` expression's result.
	Value json.RawMessage
}
