package rules

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"strings"
	"sync"

	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/common/types/traits"
	"cel.dev/cel-go/interpreter"
)

// Engine is a compiled, immutable set of rules. It is safe for concurrent
// use; reloading builds a new Engine (see package watch).
type Engine struct {
	rules  []*rule
	routes []methodRoutes
	// scratch holds *scratch values: the buffers bodies are scanned into,
	// reused from one evaluation to the next.
	scratch sync.Pool
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
	each        *expr // nil: one event at most per exchange
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

// RuleInfo names a rule and the event type it emits.
type RuleInfo struct {
	Name, Event string
}

// Rules returns every rule's name and event type, in file order, so that
// per-rule metrics can exist at 0 before the first event or error. The
// caller may modify the result.
func (e *Engine) Rules() []RuleInfo {
	if e == nil {
		return nil
	}
	out := make([]RuleInfo, len(e.rules))
	for i, r := range e.rules {
		out[i] = RuleInfo{Name: r.name, Event: r.event}
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
	var out outcomes
	e.eval(ex, &out)
	if len(out.events) == 0 {
		out.events = nil
	}
	return out.events, out.errs
}

// outcomes receives what eval makes of the rules: events and errors for
// Evaluate, or, when explain is set, every rule's outcome by index.
type outcomes struct {
	explain []Outcome
	events  []Event
	errs    []error
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
	// Items is set for a rule with `each` that got as far as evaluating
	// its list: one outcome per element, in list order (Rule is the
	// rule's name in each). The rule's Result is then Fired when some
	// element fired, NoMatch when none did, Failed when each or an
	// element failed (the rule then emits nothing).
	Items []Outcome
}

// Explain runs every rule against ex, exactly as Evaluate does, and says
// for each rule, in rule order, how far it got. It is for
// `eventtap rules test`.
func (e *Engine) Explain(ex *Exchange) []Outcome {
	out := outcomes{explain: make([]Outcome, e.Len())}
	e.eval(ex, &out)
	return out.explain
}

// maxStackCandidates is how many matching rules Evaluate tracks without
// allocating.
const maxStackCandidates = 8

type candidate struct {
	index int
	tpl   *template // the template that matched
}

// eval records in out the outcome of each rule that matched method, path
// and status (of every rule when out.explain is set).
func (e *Engine) eval(ex *Exchange, out *outcomes) {
	if e == nil || ex == nil {
		return
	}
	all := out.explain != nil
	var stack [maxStackCandidates]candidate
	cands := stack[:0]
	var union needs
	for i, r := range e.rules {
		res, tpl := r.matchRequest(ex)
		if res != Fired {
			if all {
				out.explain[i] = Outcome{Rule: r.name, Result: res}
			}
			continue
		}
		cands = append(cands, candidate{i, tpl})
		union |= r.needs
	}
	if len(cands) == 0 {
		return
	}
	st := &evalState{ex: ex, needs: union}
	st.scratch, _ = e.scratch.Get().(*scratch)
	if st.scratch == nil {
		st.scratch = &scratch{}
	}
	defer func() {
		if st.scratch.release() {
			e.scratch.Put(st.scratch)
		}
	}()
	if !all {
		// Sized for every candidate firing, so that events are not
		// allocated one by one.
		out.events = make([]Event, 0, len(cands))
	}
	var pv *pathVar
	for _, c := range cands {
		r := e.rules[c.index]
		if pv == nil || pv.tpl.raw != c.tpl.raw {
			// Rules with the same template share their captures.
			pv = &pathVar{tpl: c.tpl, path: ex.Request.Path}
		}
		if r.each != nil {
			n := len(out.events)
			var items *[]Outcome
			var o Outcome
			if all {
				items = &o.Items
			}
			res, err := st.evalEach(r, pv, &out.events, items)
			if res == Failed {
				err = &EvalError{Rule: r.name, Err: err}
				if !all {
					out.events = out.events[:n]
					out.errs = append(out.errs, err)
				}
			}
			if all {
				o.Rule, o.Result = r.name, res
				if res == Failed {
					o.Err = err
				}
				out.explain[c.index] = o
			}
			continue
		}
		var ev *Event
		if all {
			ev = new(Event)
		} else {
			out.events = append(out.events, Event{})
			ev = &out.events[len(out.events)-1]
		}
		res, err := st.evalRuleInto(r, pv, ev)
		if !all {
			if res != Fired {
				out.events = out.events[:len(out.events)-1]
			}
			if res == Failed {
				out.errs = append(out.errs, &EvalError{Rule: r.name, Err: err})
			}
			continue
		}
		o := Outcome{Rule: r.name, Result: res}
		switch res {
		case Fired:
			o.Event = ev
		case Failed:
			o.Err = &EvalError{Rule: r.name, Err: err}
		}
		out.explain[c.index] = o
	}
}

// matchRequest checks method, path and status; Fired means all matched,
// with the template that matched.
func (r *rule) matchRequest(ex *Exchange) (Result, *template) {
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
		return Fired, t
	}
	return NoRoute, nil
}

// evalState holds what the rules of one Evaluate share: the CEL values of
// request and response, with each body scanned once on first use and
// decoded as far as expressions read it (see jsonDoc).
type evalState struct {
	ex    *Exchange
	needs needs
	// scratch is borrowed from Engine.scratch for the evaluation.
	scratch *scratch

	request, response exchangeVar
	reqBody, respBody ref.Val
	reqDoc, respDoc   jsonDoc
	arena             jsonArena
	act               activation
	// spent is the CEL cost of the tracked evaluations so far (see
	// evalEach).
	spent uint64
}

// scratch is what an evaluation borrows from Engine.scratch: the scanners
// whose tapes the bodies use, the caches of their decoded values, and a
// buffer to encode event data in.
type scratch struct {
	req, resp         jsonScanner
	reqVals, respVals []ref.Val
	reqSet, respSet   []uint32 // the nodes of the vals that are set
	enc               []byte   // what encode appends to
}

// maxScratchNodes is the largest tape kept for the next evaluation, and
// maxScratchEncode the largest encoding buffer; larger buffers go to the
// garbage collector.
const (
	maxScratchNodes  = 1 << 16
	maxScratchEncode = 64 << 10
)

// scratchBuf returns s.scratch, made when evaluating a rule directly (in
// tests).
func (s *evalState) scratchBuf() *scratch {
	if s.scratch == nil {
		s.scratch = &scratch{}
	}
	return s.scratch
}

// release clears what the evaluation left in s and reports whether s is
// worth keeping.
func (s *scratch) release() bool {
	for _, i := range s.reqSet {
		s.reqVals[i] = nil
	}
	for _, i := range s.respSet {
		s.respVals[i] = nil
	}
	s.reqSet, s.respSet = s.reqSet[:0], s.respSet[:0]
	return cap(s.req.tape) <= maxScratchNodes && cap(s.resp.tape) <= maxScratchNodes
}

func (s *evalState) body(resp bool) ref.Val {
	if resp {
		if s.respBody == nil {
			s.respBody = s.scanBody(&s.respDoc, s.ex.Response.Body, s.ex.Response.Truncated, resp)
		}
		return s.respBody
	}
	if s.reqBody == nil {
		s.reqBody = s.scanBody(&s.reqDoc, s.ex.Request.Body, s.ex.Request.Truncated, resp)
	}
	return s.reqBody
}

func (s *evalState) scanBody(d *jsonDoc, b []byte, truncated, resp bool) ref.Val {
	s.scratchBuf()
	sc, vals, set := &s.scratch.req, &s.scratch.reqVals, &s.scratch.reqSet
	if resp {
		sc, vals, set = &s.scratch.resp, &s.scratch.respVals, &s.scratch.respSet
	}
	if !d.init(b, truncated, sc, &s.arena) {
		return types.NullValue
	}
	if cap(*vals) < len(d.tape) {
		*vals = make([]ref.Val, len(d.tape), max(len(d.tape), 64))
	}
	*vals = (*vals)[:len(d.tape)]
	d.vals, d.set = *vals, set
	return d.value(0)
}

// exchangeVar is the value of the request or response variable: a map
// whose fields are built on first use. Selecting a field (request.body)
// goes through FindStringKey; anything else uses the whole map.
type exchangeVar struct {
	st   *evalState
	resp bool
	full ref.Val // nil until built
	// method, path and status, as CEL values; nil until used.
	method, path ref.Val
	query        ref.Val
	headers      ref.Val
}

// FindStringKey is CEL's fast path for selecting a field.
func (x *exchangeVar) FindStringKey(name string) (any, bool) {
	st := x.st
	if x.resp {
		resp := &st.ex.Response
		switch name {
		case "status":
			return types.Int(resp.Status), true
		case "headers":
			if st.needs&needRespHeaders != 0 {
				if x.headers == nil {
					x.headers = types.NewStringStringMap(types.DefaultTypeAdapter, lowerHeaders(resp.Header))
				}
				return x.headers, true
			}
		case "body":
			if st.needs&needRespBody != 0 {
				return st.body(true), true
			}
		}
		return nil, false
	}
	req := &st.ex.Request
	switch name {
	case "method":
		if x.method == nil {
			x.method = types.String(req.Method)
		}
		return x.method, true
	case "path":
		if x.path == nil {
			x.path = types.String(req.Path)
		}
		return x.path, true
	case "query":
		if st.needs&needQuery != 0 {
			if x.query == nil {
				x.query = types.NewStringStringMap(types.DefaultTypeAdapter, firstValues(req.RawQuery))
			}
			return x.query, true
		}
	case "headers":
		if st.needs&needReqHeaders != 0 {
			if x.headers == nil {
				x.headers = types.NewStringStringMap(types.DefaultTypeAdapter, lowerHeaders(req.Header))
			}
			return x.headers, true
		}
	case "body":
		if st.needs&needReqBody != 0 {
			return st.body(false), true
		}
	}
	return nil, false
}

// value returns the variable as a CEL map, for uses other than selecting
// a field.
func (x *exchangeVar) value() ref.Val {
	if x.full == nil {
		fields := requestFields
		if x.resp {
			fields = responseFields
		}
		m := make(map[string]any, len(fields))
		for _, f := range fields {
			if v, ok := x.FindStringKey(f); ok {
				m[f] = v
			}
		}
		x.full = types.NewStringInterfaceMap(types.DefaultTypeAdapter, m)
	}
	return x.full
}

// pathVar is the value of the path variable: the captures of a template.
type pathVar struct {
	tpl   *template
	path  string
	vals  []ref.Val // by capture; nil until the first is selected
	small [4]ref.Val
	full  ref.Val
}

// FindStringKey is CEL's fast path for selecting a field.
func (p *pathVar) FindStringKey(name string) (any, bool) {
	for i, n := range p.tpl.names {
		if n != name {
			continue
		}
		if p.vals == nil {
			p.vals = p.small[:0]
			if len(p.tpl.names) > len(p.small) {
				p.vals = make([]ref.Val, 0, len(p.tpl.names))
			}
			p.vals = p.vals[:len(p.tpl.names)]
		}
		if p.vals[i] == nil {
			p.vals[i] = types.String(p.tpl.capture(p.path, i))
		}
		return p.vals[i], true
	}
	return nil, false
}

// value returns the captures as a CEL map, for uses other than selecting
// one.
func (p *pathVar) value() ref.Val {
	if p.full == nil {
		m := make(map[string]string, len(p.tpl.names))
		p.tpl.match(p.path, m)
		p.full = types.NewStringStringMap(types.DefaultTypeAdapter, m)
	}
	return p.full
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

// Both variables are maps to CEL; they delegate what is not selecting a
// field to the whole map.

// ConvertToNative implements ref.Val.
func (x *exchangeVar) ConvertToNative(t reflect.Type) (any, error) {
	return x.value().ConvertToNative(t)
}

// ConvertToType implements ref.Val.
func (x *exchangeVar) ConvertToType(t ref.Type) ref.Val { return x.value().ConvertToType(t) }

// Equal implements ref.Val.
func (x *exchangeVar) Equal(other ref.Val) ref.Val { return x.value().Equal(other) }

// Type implements ref.Val.
func (x *exchangeVar) Type() ref.Type { return types.MapType }

// Value implements ref.Val.
func (x *exchangeVar) Value() any { return x.value().Value() }

// Contains implements traits.Container.
func (x *exchangeVar) Contains(k ref.Val) ref.Val { return x.value().(traits.Mapper).Contains(k) }

// Get implements traits.Indexer.
func (x *exchangeVar) Get(k ref.Val) ref.Val { return x.value().(traits.Mapper).Get(k) }

// Find implements traits.Mapper.
func (x *exchangeVar) Find(k ref.Val) (ref.Val, bool) { return x.value().(traits.Mapper).Find(k) }

// Iterator implements traits.Iterable.
func (x *exchangeVar) Iterator() traits.Iterator { return x.value().(traits.Mapper).Iterator() }

// Size implements traits.Sizer.
func (x *exchangeVar) Size() ref.Val { return x.value().(traits.Mapper).Size() }

// ConvertToNative implements ref.Val.
func (p *pathVar) ConvertToNative(t reflect.Type) (any, error) {
	return p.value().ConvertToNative(t)
}

// ConvertToType implements ref.Val.
func (p *pathVar) ConvertToType(t ref.Type) ref.Val { return p.value().ConvertToType(t) }

// Equal implements ref.Val.
func (p *pathVar) Equal(other ref.Val) ref.Val { return p.value().Equal(other) }

// Type implements ref.Val.
func (p *pathVar) Type() ref.Type { return types.MapType }

// Value implements ref.Val.
func (p *pathVar) Value() any { return p.value().Value() }

// Contains implements traits.Container.
func (p *pathVar) Contains(k ref.Val) ref.Val { return p.value().(traits.Mapper).Contains(k) }

// Get implements traits.Indexer.
func (p *pathVar) Get(k ref.Val) ref.Val { return p.value().(traits.Mapper).Get(k) }

// Find implements traits.Mapper.
func (p *pathVar) Find(k ref.Val) (ref.Val, bool) { return p.value().(traits.Mapper).Find(k) }

// Iterator implements traits.Iterable.
func (p *pathVar) Iterator() traits.Iterator { return p.value().(traits.Mapper).Iterator() }

// Size implements traits.Sizer.
func (p *pathVar) Size() ref.Val { return p.value().(traits.Mapper).Size() }

var (
	_ traits.Mapper = (*exchangeVar)(nil)
	_ traits.Mapper = (*pathVar)(nil)
)

// activation resolves the CEL variables of one rule.
type activation struct {
	st   *evalState
	path any     // *pathVar, or a map[string]string in tests
	item ref.Val // the element of each; nil for rules without each
}

// ResolveName implements interpreter.Activation.
func (a *activation) ResolveName(name string) (any, bool) {
	switch name {
	case "request":
		return &a.st.request, true
	case "response":
		return &a.st.response, true
	case "path":
		return a.path, true
	case "item":
		if a.item != nil {
			return a.item, true
		}
	}
	return nil, false
}

// Parent implements interpreter.Activation.
func (a *activation) Parent() interpreter.Activation { return nil }

// evalRule runs rule r; path is the value of the path variable.
func (s *evalState) evalRule(r *rule, path any) (*Event, Result, error) {
	ev := new(Event)
	res, err := s.evalRuleInto(r, path, ev)
	if res != Fired {
		ev = nil
	}
	return ev, res, err
}

// evalRuleInto is evalRule, filling in ev when the rule fires.
func (s *evalState) evalRuleInto(r *rule, path any, ev *Event) (Result, error) {
	s.initVars()
	act := &s.act
	*act = activation{st: s, path: path}
	return s.evalOne(r, act, ev)
}

func (s *evalState) initVars() {
	if s.request.st == nil {
		s.request = exchangeVar{st: s}
		s.response = exchangeVar{st: s, resp: true}
	}
}

// evalOne runs r's match, subject, data and changed in act (once per
// element for a rule with each), filling in ev when the rule fires.
func (s *evalState) evalOne(r *rule, act *activation, ev *Event) (Result, error) {
	if r.match != nil {
		v, err := r.match.eval(act)
		if err != nil {
			return Failed, fmt.Errorf("when.match: %w", err)
		}
		b, ok := v.(types.Bool)
		if !ok {
			return Failed, fmt.Errorf("when.match: evaluated to a %s, not true or false", v.Type().TypeName())
		}
		if !b {
			return NoMatch, nil
		}
	}
	v, err := r.subject.eval(act)
	if err != nil {
		return Failed, fmt.Errorf("subject: %w", err)
	}
	subject, err := renderSubject(v)
	if err != nil {
		return Failed, fmt.Errorf("subject: %w", err)
	}
	if len(subject) > MaxSubjectBytes {
		// Not quoted: it is response data, and it would flood the log.
		return Failed, fmt.Errorf("subject: evaluated to %d bytes, more than the %d a subject may have; a subject is an id, such as response.body.id", len(subject), MaxSubjectBytes)
	}
	data, err := s.encode(r.data, act, false)
	if err != nil {
		return Failed, fmt.Errorf("data: %w", err)
	}
	*ev = Event{Rule: r.name, Type: r.event, Subject: subject, Data: data, ObservedAt: s.ex.End}
	if r.changed != nil {
		val, err := s.encode(r.changed, act, true)
		if err != nil {
			return Failed, fmt.Errorf("changed: %w", err)
		}
		ev.State = &State{Key: StateKey(r.name, subject), Value: val}
	}
	return Fired, nil
}

// eachDataSlack is how much event data a rule with each may produce on
// one exchange beyond the size of the exchange's bodies: enough for data
// built per element, not for a copy of the whole body per element.
const eachDataSlack = 8 << 20

// evalEach runs a rule with each: its list is evaluated once, then
// match, subject, data and changed once per element, with item bound to
// it; the events of the elements that fire are appended to events, in list
// order. An error (each's or an element's) fails the whole rule, as a
// failing expression fails any rule: the caller drops what was appended.
// When items is not nil (Explain), every element's outcome is recorded,
// also after a failure.
//
// Bounds: at most MaxEachElements elements; the cost of all the rule's
// evaluations on the exchange together within costLimit (every expression
// of the rule tracks its cost); the data of its events within the size of
// the bodies plus eachDataSlack.
func (s *evalState) evalEach(r *rule, path any, events *[]Event, items *[]Outcome) (Result, error) {
	s.initVars()
	act := &s.act
	*act = activation{st: s, path: path}
	s.spent = 0
	v, err := r.each.eval(act)
	if err != nil {
		return Failed, fmt.Errorf("each: %w", err)
	}
	list, ok := v.(traits.Lister)
	if !ok || v.Type() != types.ListType {
		what := "a " + v.Type().TypeName()
		if v == types.NullValue {
			what = "null (no JSON body?)"
		}
		return Failed, fmt.Errorf("each: evaluated to %s, not a list; point it at an array, such as response.body or response.body.orders", what)
	}
	size, _ := list.Size().(types.Int)
	n := int(size)
	if n > MaxEachElements {
		return Failed, fmt.Errorf("each: the list has %d elements, more than the %d a rule may evaluate on one exchange", n, MaxEachElements)
	}
	dataLeft := len(s.ex.Request.Body) + len(s.ex.Response.Body) + eachDataSlack
	res := NoMatch
	var failed error
	for i := 0; i < n; i++ {
		act.item = list.Get(types.Int(i))
		var ev Event
		ires, err := s.evalOne(r, act, &ev)
		if err == nil && s.spent > costLimit {
			ires, err = Failed, fmt.Errorf("the rule's expressions went over the cost limit of %d after %d of %d elements; make them cheaper, or filter the list in each", costLimit, i+1, n)
		}
		if ires == Fired {
			if dataLeft -= len(ev.Data); dataLeft < 0 {
				ires, err = Failed, fmt.Errorf("data: the events' data add up to more than the bodies plus %d MiB; use item, or a part of it, as data", eachDataSlack>>20)
			}
		}
		if err != nil {
			err = fmt.Errorf("each[%d]: %w", i, err)
		}
		if items != nil {
			o := Outcome{Rule: r.name, Result: ires}
			switch ires {
			case Fired:
				o.Event = &ev
			case Failed:
				o.Err = &EvalError{Rule: r.name, Err: err}
			}
			*items = append(*items, o)
		}
		switch ires {
		case Fired:
			if res != Failed {
				res = Fired
			}
			if events != nil && items == nil {
				*events = append(*events, ev)
			}
		case Failed:
			if failed == nil {
				res, failed = Failed, err
			}
			if items == nil {
				return Failed, failed
			}
		}
		if failed != nil && s.spent > costLimit {
			break // the remaining elements would all fail the same way
		}
	}
	act.item = nil
	return res, failed
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
		if out, ok := o.doc.appendText(make([]byte, 0, len(o.doc.raw(o.idx))), o.idx); ok {
			return out, nil
		}
	}
	// Encode into the scratch buffer, then copy out exactly the bytes
	// used.
	sc := s.scratchBuf()
	out, err := appendJSON(sc.enc[:0], v, canonical)
	if cap(out) <= maxScratchEncode {
		sc.enc = out
	}
	if err != nil {
		return nil, err
	}
	return append(json.RawMessage(nil), out...), nil
}

// eval runs the program and turns CEL error values into Go errors. The
// cost of tracked programs is added to the evaluation's spent.
func (x *expr) eval(act *activation) (ref.Val, error) {
	v, det, err := x.prg.Eval(act)
	if det != nil && act.st != nil {
		if c := det.ActualCost(); c != nil {
			act.st.spent += *c
		}
	}
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
