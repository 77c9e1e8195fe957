package rules

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"unicode/utf8"

	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/interpreter"
)

// Engine is a compiled, immutable set of rules. It is safe for concurrent
// use; reloading builds a new Engine (see package watch).
type Engine struct {
	rules  []*rule
	routes []methodRoutes
}

// rule is one compiled rule.
type rule struct {
	name, event string
	methods     []string
	paths       []*template
	status      statusSet
	match       *expr // nil: always
	subject     *expr
	data        *expr
	changed     *expr // nil: not a `changed` rule
	needs       needs
	ok          bool // compiled without problems
}

// Len returns the number of rules.
func (e *Engine) Len() int {
	if e == nil {
		return 0
	}
	return len(e.rules)
}

// Names returns the rule names in file order, for example to initialise
// per-rule metrics. The caller may modify the result.
func (e *Engine) Names() []string {
	if e == nil {
		return nil
	}
	out := make([]string, len(e.rules))
	for i, r := range e.rules {
		out[i] = r.name
	}
	return out
}

func (e *Engine) buildRoutes() {
	for rank, r := range e.rules {
		for _, m := range r.methods {
			i := 0
			for i < len(e.routes) && e.routes[i].method != m {
				i++
			}
			if i == len(e.routes) {
				e.routes = append(e.routes, methodRoutes{method: m, root: newRouteNode()})
			}
			for _, t := range r.paths {
				e.routes[i].root.insert(t, rank)
			}
		}
	}
}

// Route reports whether some rule could match a request with this method
// and path, before the response is known: the proxy captures bodies only
// when it does. route is the path template of the first rule, in file order,
// that could match (the one that matched, when that rule has several), for
// use as a metrics label. Methods are compared exactly (HTTP methods are
// case-sensitive; rules store them upper-case).
//
// Route does not allocate: it walks a per-method trie of template segments
// over the path with indexes.
func (e *Engine) Route(method, path string) (route string, ok bool) {
	if e == nil || len(path) == 0 || path[0] != '/' {
		return "", false
	}
	for i := range e.routes {
		if e.routes[i].method == method {
			rank, rt := e.routes[i].root.find(path, 1, len(path) == 1)
			return rt, rank != noRank
		}
	}
	return "", false
}

// EvalError is a rule whose expression failed on an exchange; the rule
// emitted nothing for it.
type EvalError struct {
	// Rule is the rule's name.
	Rule string
	// Err says which expression failed and why.
	Err error
}

// Error returns `rule "NAME": EXPRESSION: reason`.
func (e *EvalError) Error() string { return fmt.Sprintf("rule %q: %v", e.Rule, e.Err) }

// Unwrap returns e.Err.
func (e *EvalError) Unwrap() error { return e.Err }

// Evaluate runs the rules against one exchange and returns the candidate
// events, in rule order (several rules may fire on one exchange), and one
// *EvalError per rule whose expression failed. A rule is tried in order:
// method and path, status, when.match, then subject, data and changed.
//
// A body is looked at only when a rule that passed method, path and status
// reads it; it is then validated as JSON once, and decoded only as far as
// expressions read it. Evaluate is safe for concurrent use.
func (e *Engine) Evaluate(ex *Exchange) ([]Event, []error) {
	var events []Event
	var errs []error
	e.eval(ex, false, func(_ int, o Outcome) {
		switch o.Result {
		case Fired:
			events = append(events, *o.Event)
		case Failed:
			errs = append(errs, o.Err)
		}
	})
	return events, errs
}

// Result is how far a rule got with an exchange.
type Result int

// Results, in the order a rule is tried.
const (
	// NoRoute: the method or the path did not match.
	NoRoute Result = iota
	// NoStatus: the response status did not match.
	NoStatus
	// NoMatch: when.match was false.
	NoMatch
	// Failed: an expression failed; Outcome.Err says which.
	Failed
	// Fired: the rule produced Outcome.Event.
	Fired
)

// String returns a short description of r.
func (r Result) String() string {
	switch r {
	case NoRoute:
		return "method or path did not match"
	case NoStatus:
		return "status did not match"
	case NoMatch:
		return "when.match was false"
	case Failed:
		return "failed"
	case Fired:
		return "fired"
	}
	return fmt.Sprintf("Result(%d)", int(r))
}

// Outcome is what one rule made of an exchange.
type Outcome struct {
	// Rule is the rule's name.
	Rule string
	// Result is how far the rule got.
	Result Result
	// Event is set when Result is Fired.
	Event *Event
	// Err is an *EvalError, set when Result is Failed.
	Err error
}

// Explain runs every rule against ex, exactly as Evaluate does, and says
// for each rule, in rule order, how far it got. It is for
// `eventtap rules test`.
func (e *Engine) Explain(ex *Exchange) []Outcome {
	out := make([]Outcome, e.Len())
	e.eval(ex, true, func(i int, o Outcome) { out[i] = o })
	return out
}

// maxStackCandidates is how many matching rules Evaluate tracks without
// allocating.
const maxStackCandidates = 8

type candidate struct {
	index int
	caps  map[string]string
}

var noCaptures = map[string]string{}

// eval passes the outcome of each rule that matched method, path and status
// (of every rule when all is set) to emit, with the rule's index.
func (e *Engine) eval(ex *Exchange, all bool, emit func(int, Outcome)) {
	if e == nil || ex == nil {
		return
	}
	var stack [maxStackCandidates]candidate
	cands := stack[:0]
	var union needs
	for i, r := range e.rules {
		res, caps := r.matchRequest(ex)
		if res != Fired {
			if all {
				emit(i, Outcome{Rule: r.name, Result: res})
			}
			continue
		}
		cands = append(cands, candidate{i, caps})
		union |= r.needs
	}
	if len(cands) == 0 {
		return
	}
	st := &evalState{ex: ex, needs: union}
	for _, c := range cands {
		r := e.rules[c.index]
		ev, res, err := st.evalRule(r, c.caps)
		o := Outcome{Rule: r.name, Result: res}
		switch res {
		case Fired:
			o.Event = ev
		case Failed:
			o.Err = &EvalError{Rule: r.name, Err: err}
		}
		emit(c.index, o)
	}
}

// matchRequest checks method, path and status; Fired means all matched.
func (r *rule) matchRequest(ex *Exchange) (Result, map[string]string) {
	methodOK := false
	for _, m := range r.methods {
		if m == ex.Request.Method {
			methodOK = true
			break
		}
	}
	if !methodOK {
		return NoRoute, nil
	}
	for _, t := range r.paths {
		if !t.match(ex.Request.Path, nil) {
			continue
		}
		if !r.status.has(ex.Response.Status) {
			return NoStatus, nil
		}
		if len(t.names) == 0 {
			return Fired, noCaptures
		}
		caps := make(map[string]string, len(t.names))
		t.match(ex.Request.Path, caps)
		return Fired, caps
	}
	return NoRoute, nil
}

// evalState holds what the rules of one Evaluate share: the CEL values of
// request and response, built on first use, with each body validated once
// and decoded as far as expressions read it (see jsonDoc).
type evalState struct {
	ex    *Exchange
	needs needs

	request, response ref.Val
	reqBody, respBody ref.Val
}

func (s *evalState) body(resp bool) ref.Val {
	if resp {
		if s.respBody == nil {
			s.respBody = bodyValue(s.ex.Response.Body, s.ex.Response.Truncated)
		}
		return s.respBody
	}
	if s.reqBody == nil {
		s.reqBody = bodyValue(s.ex.Request.Body, s.ex.Request.Truncated)
	}
	return s.reqBody
}

func (s *evalState) requestVal() ref.Val {
	if s.request == nil {
		req := &s.ex.Request
		m := map[string]any{"method": req.Method, "path": req.Path}
		if s.needs&needQuery != 0 {
			m["query"] = firstValues(req.RawQuery)
		}
		if s.needs&needReqHeaders != 0 {
			m["headers"] = lowerHeaders(req.Header)
		}
		if s.needs&needReqBody != 0 {
			m["body"] = s.body(false)
		}
		s.request = types.NewStringInterfaceMap(types.DefaultTypeAdapter, m)
	}
	return s.request
}

func (s *evalState) responseVal() ref.Val {
	if s.response == nil {
		resp := &s.ex.Response
		m := map[string]any{"status": int64(resp.Status)}
		if s.needs&needRespHeaders != 0 {
			m["headers"] = lowerHeaders(resp.Header)
		}
		if s.needs&needRespBody != 0 {
			m["body"] = s.body(true)
		}
		s.response = types.NewStringInterfaceMap(types.DefaultTypeAdapter, m)
	}
	return s.response
}

func firstValues(rawQuery string) map[string]string {
	out := map[string]string{}
	if rawQuery == "" {
		return out
	}
	// ParseQuery keeps the pairs it could parse; a malformed pair is
	// skipped rather than failing every rule.
	q, _ := url.ParseQuery(rawQuery)
	for k, v := range q {
		if len(v) > 0 {
			out[k] = v[0]
		}
	}
	return out
}

func lowerHeaders(h map[string][]string) map[string]string {
	out := make(map[string]string, len(h))
	for k, v := range h {
		if len(v) == 0 {
			continue
		}
		lk := strings.ToLower(k)
		if _, dup := out[lk]; !dup || k == lk {
			out[lk] = v[0]
		}
	}
	return out
}

// activation resolves the CEL variables of one rule.
type activation struct {
	st   *evalState
	path map[string]string
}

// ResolveName implements interpreter.Activation.
func (a *activation) ResolveName(name string) (any, bool) {
	switch name {
	case "request":
		return a.st.requestVal(), true
	case "response":
		return a.st.responseVal(), true
	case "path":
		return a.path, true
	}
	return nil, false
}

// Parent implements interpreter.Activation.
func (a *activation) Parent() interpreter.Activation { return nil }

func (s *evalState) evalRule(r *rule, caps map[string]string) (*Event, Result, error) {
	act := &activation{st: s, path: caps}
	if r.match != nil {
		v, err := r.match.eval(act)
		if err != nil {
			return nil, Failed, fmt.Errorf("when.match: %w", err)
		}
		b, ok := v.(types.Bool)
		if !ok {
			return nil, Failed, fmt.Errorf("when.match: evaluated to a %s, not true or false", v.Type().TypeName())
		}
		if !b {
			return nil, NoMatch, nil
		}
	}
	v, err := r.subject.eval(act)
	if err != nil {
		return nil, Failed, fmt.Errorf("subject: %w", err)
	}
	subject, err := renderSubject(v)
	if err != nil {
		return nil, Failed, fmt.Errorf("subject: %w", err)
	}
	data, err := s.encode(r.data, act, false)
	if err != nil {
		return nil, Failed, fmt.Errorf("data: %w", err)
	}
	ev := &Event{Rule: r.name, Type: r.event, Subject: subject, Data: data, ObservedAt: s.ex.End}
	if r.changed != nil {
		val, err := s.encode(r.changed, act, true)
		if err != nil {
			return nil, Failed, fmt.Errorf("changed: %w", err)
		}
		ev.State = &State{Key: r.name + "\x00" + subject, Value: val}
	}
	return ev, Fired, nil
}

// encode evaluates x and returns its result as JSON (see appendJSON for
// canonical).
func (s *evalState) encode(x *expr, act *activation, canonical bool) (json.RawMessage, error) {
	v, err := x.eval(act)
	if err != nil {
		return nil, err
	}
	if o, ok := v.(*jsonObject); ok && !canonical {
		// The usual `data: response.body`: its text, sized exactly.
		if raw := o.doc.raw(o.start); utf8.Valid(raw) {
			return appendCompact(make([]byte, 0, len(raw)), raw), nil
		}
	}
	return appendJSON(make([]byte, 0, 64), v, canonical)
}

// eval runs the program and turns CEL error values into Go errors.
func (x *expr) eval(act interpreter.Activation) (ref.Val, error) {
	v, _, err := x.prg.Eval(act)
	if err != nil {
		return nil, err
	}
	if types.IsError(v) {
		if e, ok := v.(*types.Err); ok {
			return nil, e
		}
		return nil, errors.New("evaluation failed")
	}
	if types.IsUnknown(v) {
		return nil, errors.New("evaluation reached an unknown value")
	}
	return v, nil
}
