package rules

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/types"
	"go.yaml.in/yaml/v3"

	"github.com/eventtap/eventtap/configerr"
)

// Error is one problem found while compiling rules, located at the YAML
// node it is about (File, Line, Column set; Path empty, Msg starting with
// the key it is about: "when.status: …"). Compile and CompileFile return
// every problem they find, as an errors.Join of *Error in file order; its
// text is "FILE:LINE:COL: message". It is the configuration's error type,
// so that the loader reports rules and settings alike.
type Error = configerr.Error

// Compile compiles the rules in node, a YAML sequence of rules (SPEC §3) as
// decoded from file, usually the `rules:` key of the configuration file.
// Positions in errors are those of the nodes, reported against file. A nil
// or zero node, a null and an empty sequence mean no rules.
//
// eventTypes is the complete list of valid event types, usually
// EventTypes(cfg.EventTypes); nil means the built-in ones.
//
// Without the file's bytes, a problem inside a multi-line expression is
// located by assuming two-space indentation; CompileSource is exact.
func Compile(file string, node *yaml.Node, eventTypes []string) (*Engine, error) {
	return compile(file, nil, node, eventTypes)
}

// CompileSource is Compile for callers that still hold src, the bytes node
// was decoded from. It locates problems inside expressions exactly, whatever
// the quoting and indentation.
func CompileSource(file string, src []byte, node *yaml.Node, eventTypes []string) (*Engine, error) {
	return compile(file, src, node, eventTypes)
}

// CompileFile compiles the contents of a rules_file: either a top-level
// sequence of rules or a mapping with the single key `rules`. An empty file
// is an error (`rules: []` says "no rules"), so that a file caught halfway
// through being rewritten does not silently remove every rule.
func CompileFile(file string, data []byte, eventTypes []string) (*Engine, error) {
	c := &compiler{file: file, src: data}
	doc, err := parseYAML(data)
	if err != nil {
		c.yamlError(err)
		return nil, c.err()
	}
	if doc == nil {
		c.errorAt(1, 1, "the rules file is empty; write a list of rules (see SPEC §3), or `rules: []` for none")
		return nil, c.err()
	}
	node := resolve(doc)
	switch node.Kind {
	case yaml.SequenceNode:
	case yaml.MappingNode:
		var rulesNode *yaml.Node
		for i := 0; i+1 < len(node.Content); i += 2 {
			k, v := node.Content[i], node.Content[i+1]
			switch {
			case k.Value != "rules":
				c.errorf(k, "unknown key %q%s; a rules file holds a list of rules, or a mapping with the single key rules", k.Value, suggest(k.Value, []string{"rules"}))
			case rulesNode != nil:
				c.errorf(k, "rules: is given twice; keep one list")
			default:
				rulesNode = v
			}
		}
		if rulesNode == nil && len(c.errs) == 0 {
			c.errorf(node, "missing the key rules; a rules file holds a list of rules, or a mapping with the single key rules")
		}
		if rulesNode == nil {
			return nil, c.err()
		}
		node = rulesNode
	default:
		c.errorf(node, "a rules file holds a list of rules, or a mapping with the single key rules; found %s", describe(node))
		return nil, c.err()
	}
	eng := c.compile(node, eventTypes)
	if err := c.err(); err != nil {
		return nil, err
	}
	return eng, nil
}

func compile(file string, src []byte, node *yaml.Node, eventTypes []string) (*Engine, error) {
	c := &compiler{file: file, src: src}
	eng := c.compile(node, eventTypes)
	if err := c.err(); err != nil {
		return nil, err
	}
	return eng, nil
}

// parseYAML returns the document node of data, nil when data holds no
// document.
func parseYAML(data []byte) (doc *yaml.Node, err error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var n yaml.Node
	if err := dec.Decode(&n); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, nil
		}
		return nil, err
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, &Error{Line: extra.Line, Column: extra.Column, Msg: "a rules file holds one YAML document; remove the \"---\" and what follows, or merge the lists"}
	} else if !errors.Is(err, io.EOF) {
		return nil, err
	}
	if n.Kind == yaml.DocumentNode {
		if len(n.Content) == 0 {
			return nil, nil
		}
		if c := n.Content[0]; c.Kind == yaml.ScalarNode && c.ShortTag() == "!!null" && c.Value == "" {
			return nil, nil
		}
		return n.Content[0], nil
	}
	return &n, nil
}

// compiler collects the problems of one compilation.
type compiler struct {
	file  string
	src   []byte
	lines []int // byte offsets of line starts in src, computed on demand
	env   *cel.Env
	errs  []*Error
}

func (c *compiler) errorAt(line, col int, format string, args ...any) {
	if line < 1 {
		line = 1
	}
	if col < 1 {
		col = 1
	}
	c.errs = append(c.errs, &Error{File: c.file, Line: line, Column: col, Msg: fmt.Sprintf(format, args...)})
}

func (c *compiler) errorf(n *yaml.Node, format string, args ...any) {
	c.errorAt(n.Line, n.Column, format, args...)
}

var yamlLine = regexp.MustCompile(`^yaml: line (\d+): `)

// yamlError turns a YAML syntax error into a positioned one. yaml.v3 gives
// only a line (none at all for problems on the first line).
func (c *compiler) yamlError(err error) {
	var pe *Error
	if errors.As(err, &pe) {
		c.errorAt(pe.Line, pe.Column, "%s", pe.Msg)
		return
	}
	msg := err.Error()
	line := 1
	if m := yamlLine.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = msg[len(m[0]):]
	} else {
		msg = strings.TrimPrefix(msg, "yaml: ")
	}
	c.errorAt(line, 1, "YAML syntax: %s", msg)
}

// err returns the problems joined in file order, or nil.
func (c *compiler) err() error {
	if len(c.errs) == 0 {
		return nil
	}
	slices.SortStableFunc(c.errs, func(a, b *Error) int {
		if a.Line != b.Line {
			return a.Line - b.Line
		}
		return a.Column - b.Column
	})
	errs := make([]error, len(c.errs))
	for i, e := range c.errs {
		errs[i] = e
	}
	return errors.Join(errs...)
}

// resolve follows aliases (bounded: an alias cannot point at an alias in
// yaml.v3, but a cycle must not hang us either).
func resolve(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && n.Alias != nil && i < 8; i++ {
		n = n.Alias
	}
	if n != nil && n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		return resolve(n.Content[0])
	}
	return n
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.ScalarNode:
		if isNull(n) {
			return "nothing (null)"
		}
		return fmt.Sprintf("the value %q", n.Value)
	}
	return "an alias"
}

// compile compiles a sequence of rules; problems go to c.errs.
func (c *compiler) compile(node *yaml.Node, eventTypes []string) *Engine {
	if eventTypes == nil {
		eventTypes = builtinEventTypes[:]
	}
	node = resolve(node)
	eng := &Engine{}
	if node == nil || node.Kind == 0 || isNull(node) {
		return eng
	}
	if node.Kind != yaml.SequenceNode {
		c.errorf(node, "rules: must be a list of rules, each starting with \"- name: …\"; found %s", describe(node))
		return eng
	}
	env, err := newEnv()
	if err != nil {
		// Only a bug in the declarations above can get here.
		c.errorf(node, "rules: cannot set up CEL: %v", err)
		return eng
	}
	c.env = env
	names := map[string]*yaml.Node{}
	for _, item := range node.Content {
		r, nameNode := c.rule(item, eventTypes)
		if nameNode != nil {
			if prev, dup := names[r.name]; dup {
				c.errorf(nameNode, "name: %q is already the name of the rule at line %d; rule names must be unique", r.name, prev.Line)
				continue
			}
			names[r.name] = nameNode
		}
		if r != nil && r.ok {
			eng.rules = append(eng.rules, r)
		}
	}
	if len(c.errs) > 0 {
		return nil
	}
	eng.buildRoutes()
	return eng
}

// Rule keys, in the order messages list them.
var (
	ruleKeys = []string{"name", "event", "when", "subject", "data", "changed", "each"}
	whenKeys = []string{"method", "path", "status", "match"}
)

// httpMethods are the methods a rule may name.
var httpMethods = []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "CONNECT", "TRACE"}

// rule compiles one rule. It returns the rule (ok only when it has no
// problem) and its name node, nil when the rule has no usable name.
func (c *compiler) rule(n *yaml.Node, eventTypes []string) (*rule, *yaml.Node) {
	n = resolve(n)
	if n.Kind != yaml.MappingNode {
		c.errorf(n, "each rule must be a mapping with the keys name, event, when and subject; found %s", describe(n))
		return nil, nil
	}
	r := &rule{ok: true}
	before := len(c.errs)
	keys := c.mapping(n, "", ruleKeys, "a rule")
	label := "this rule"

	nameNode := keys["name"]
	if nameNode != nil {
		if name, ok := c.scalar(nameNode, "name"); ok {
			if msg := checkName(name); msg != "" {
				c.errorf(nameNode, "name: %s", msg)
				nameNode = nil
			} else {
				r.name = name
				label = fmt.Sprintf("rule %q", name)
			}
		} else {
			nameNode = nil
		}
	} else {
		c.errorf(n, "this rule has no name; add `name:` with a unique name such as order-created (it labels metrics and logs)")
	}

	if ev := keys["event"]; ev != nil {
		if t, ok := c.scalar(ev, "event"); ok {
			if slices.Contains(eventTypes, t) {
				r.event = t
			} else {
				c.errorf(ev, "event: unknown event type %q%s; use one of %s, or add it to event_types in the configuration",
					t, suggest(t, eventTypes), strings.Join(eventTypes, ", "))
			}
		}
	} else {
		c.errorf(n, "%s: missing `event:`, the event type it emits, such as ORDER_CREATED", label)
	}

	var matchNode, matchKey *yaml.Node
	if w := keys["when"]; w != nil {
		matchNode, matchKey = c.when(r, resolve(w), label)
	} else {
		c.errorf(n, "%s: missing `when:`, the requests it watches; add method, path and status under it", label)
	}

	// Expressions: compiled even when other keys are wrong, to report
	// every problem at once.
	captures := make([][]string, len(r.paths))
	for i, t := range r.paths {
		captures[i] = t.names
	}
	if len(r.paths) == 0 {
		captures = nil
	}
	// With `each`, the other expressions run once per element, which they
	// see as item (typed as the list's elements when the checker knows
	// them); their cost is tracked, so that the cost limit bounds the
	// rule's whole evaluation however long the list (see evalEach).
	env, track := c.env, false
	if ev := keys["each"]; ev != nil {
		r.each, env = c.each(ev, keys["each:key"], captures)
		track = true
	}
	if matchNode != nil {
		r.match = c.expr(env, matchNode, matchKey, "when.match", exprBool, captures, track)
	}
	if s := keys["subject"]; s != nil {
		r.subject = c.expr(env, s, keys["subject:key"], "subject", exprSubject, captures, track)
	} else {
		c.errorf(n, "%s: missing `subject:`, a CEL expression naming what the event is about, such as response.body.id or path.id", label)
	}
	if d := keys["data"]; d != nil {
		r.data = c.expr(env, d, keys["data:key"], "data", exprAny, captures, track)
	} else {
		// With each, an event is about one element: its data is that
		// element, not the whole list once per element.
		def := "response.body"
		if keys["each"] != nil {
			def = "item"
		}
		r.data, _ = compileExpr(env, "data", def, exprAny, captures, track)
	}
	if ch := keys["changed"]; ch != nil {
		r.changed = c.expr(env, ch, keys["changed:key"], "changed", exprAny, captures, track)
	}
	r.ok = len(c.errs) == before
	if r.ok {
		for _, x := range []*expr{r.each, r.match, r.subject, r.data, r.changed} {
			if x != nil {
				r.needs |= x.needs
			}
		}
	}
	return r, nameNode
}

// checkName returns what is wrong with a rule name, or "".
func checkName(name string) string {
	if name == "" || len(name) > 64 {
		return fmt.Sprintf("%q must be 1 to 64 characters long", name)
	}
	for _, ch := range name {
		if !(ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '-' || ch == '_' || ch == '.') {
			return fmt.Sprintf("%q may hold only letters, digits, '-', '_' and '.', as in order-created (it labels metrics)", name)
		}
	}
	return ""
}

// mapping returns the values of n's keys, refusing unknown and repeated
// keys. The key node of each known key k is under "k:key".
func (c *compiler) mapping(n *yaml.Node, prefix string, known []string, what string) map[string]*yaml.Node {
	out := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			c.errorf(k, "%skeys must be names such as %s", prefix, known[0])
			continue
		}
		if !slices.Contains(known, k.Value) {
			c.errorf(k, "%s%s: unknown key in %s%s; the keys are %s", prefix, k.Value, what, suggest(k.Value, known), strings.Join(known, ", "))
			continue
		}
		if prev := out[k.Value+":key"]; prev != nil {
			c.errorf(k, "%s%s: is given twice (first at line %d); keep one", prefix, k.Value, prev.Line)
			continue
		}
		out[k.Value] = v
		out[k.Value+":key"] = k
	}
	return out
}

// scalar returns the text of a scalar node that must not be empty.
func (c *compiler) scalar(n *yaml.Node, key string) (string, bool) {
	n = resolve(n)
	if n.Kind != yaml.ScalarNode || isNull(n) || n.Value == "" {
		c.errorf(n, "%s: must be a single value; found %s", key, describe(n))
		return "", false
	}
	return n.Value, true
}

// list returns the items of a scalar-or-list node.
func (c *compiler) list(n *yaml.Node, key, example string) []*yaml.Node {
	n = resolve(n)
	switch {
	case n.Kind == yaml.SequenceNode && len(n.Content) == 0:
		c.errorf(n, "%s: an empty list matches nothing; give one value or a list, as in %s", key, example)
	case n.Kind == yaml.SequenceNode:
		items := make([]*yaml.Node, 0, len(n.Content))
		for _, it := range n.Content {
			it = resolve(it)
			if it.Kind != yaml.ScalarNode || isNull(it) {
				c.errorf(it, "%s: each item must be a single value, as in %s; found %s", key, example, describe(it))
				continue
			}
			items = append(items, it)
		}
		return items
	case n.Kind == yaml.ScalarNode && !isNull(n):
		return []*yaml.Node{n}
	default:
		c.errorf(n, "%s: give one value or a list, as in %s; found %s", key, example, describe(n))
	}
	return nil
}

// when compiles a rule's `when:` and returns its match node and key, if any.
func (c *compiler) when(r *rule, n *yaml.Node, label string) (match, matchKey *yaml.Node) {
	if n.Kind != yaml.MappingNode {
		c.errorf(n, "when: must be a mapping with method, path and status; found %s", describe(n))
		return nil, nil
	}
	keys := c.mapping(n, "when.", whenKeys, "when")

	if m := keys["method"]; m != nil {
		for _, it := range c.list(m, "when.method", "[POST, PUT]") {
			method := strings.ToUpper(strings.TrimSpace(it.Value))
			switch {
			case slices.Contains(httpMethods, method):
				if !slices.Contains(r.methods, method) {
					r.methods = append(r.methods, method)
				}
			case strings.ContainsAny(method, ", |"):
				c.errorf(it, "when.method: %q is not one method; write a YAML list, as in [POST, PUT]", it.Value)
			default:
				c.errorf(it, "when.method: unknown method %q%s; use one of %s", it.Value, suggest(method, httpMethods), strings.Join(httpMethods, ", "))
			}
		}
	} else {
		c.errorf(n, "%s: missing `when.method:`, the HTTP method (or list of methods) it watches, such as POST", label)
	}

	if p := keys["path"]; p != nil {
		for _, it := range c.list(p, "when.path", "/orders/{id}") {
			t, err := parseTemplate(it.Value)
			if err != nil {
				c.errorf(it, "when.path: %v", err)
				continue
			}
			if !slices.ContainsFunc(r.paths, func(o *template) bool { return o.raw == t.raw }) {
				r.paths = append(r.paths, t)
			}
		}
	} else {
		c.errorf(n, "%s: missing `when.path:`, the path template (or list of templates) it watches, such as /orders/{id}", label)
	}

	if s := keys["status"]; s != nil {
		for _, it := range c.list(s, "when.status", "[200, 201] or 2xx") {
			if err := r.status.add(it.Value); err != nil {
				c.errorf(it, "when.status: %v", err)
			}
		}
	} else {
		r.status.add("2xx")
	}
	return keys["match"], keys["match:key"]
}

// expr compiles the CEL expression in scalar node n (whose key node is key)
// in env; track asks for its cost to be tracked (see compileExpr).
func (c *compiler) expr(env *cel.Env, n, key *yaml.Node, name string, want exprKind, captures [][]string, track bool) *expr {
	n = resolve(n)
	if n.Kind != yaml.ScalarNode || isNull(n) {
		at := n
		if isNull(n) && key != nil {
			at = key // an empty value has no position of its own
		}
		c.errorf(at, "%s: must be a CEL expression such as %s; found %s (quote it if it starts with [ or {)", name, want.example(), describe(n))
		return nil
	}
	x, probs := compileExpr(env, name, n.Value, want, captures, track)
	for _, p := range probs {
		line, col := c.position(n, key, p.line, p.col)
		c.errorAt(line, col, "%s", p.msg)
	}
	return x
}

// each compiles a rule's `each` and returns it with the environment of the
// rule's other expressions: c.env plus item, typed as the list's elements
// when the checker knows them, dyn otherwise (always the case for bodies).
// The environment is returned even when each is wrong, so that the other
// expressions are still checked.
func (c *compiler) each(n, key *yaml.Node, captures [][]string) (*expr, *cel.Env) {
	x := c.expr(c.env, n, key, "each", exprList, captures, true)
	elem := cel.DynType
	if x != nil && x.out != nil && x.out.Kind() == types.ListKind && len(x.out.Parameters()) == 1 {
		elem = x.out.Parameters()[0]
	}
	env, err := c.env.Extend(cel.Variable("item", elem))
	if err != nil {
		// Only a bug in the declarations can get here.
		c.errorf(n, "each: cannot declare item: %v", err)
		return nil, c.env
	}
	return x, env
}

// statusSet is a set of HTTP status codes 0–639.
type statusSet [10]uint64

func (s *statusSet) has(code int) bool {
	return code >= 0 && code < 640 && s[code>>6]&(1<<(code&63)) != 0
}

func (s *statusSet) set(code int) { s[code>>6] |= 1 << (code & 63) }

// add adds a code ("201") or a class ("2xx") to s.
func (s *statusSet) add(v string) error {
	v = strings.TrimSpace(v)
	if len(v) == 3 && (v[1] == 'x' || v[1] == 'X') && (v[2] == 'x' || v[2] == 'X') {
		if v[0] < '1' || v[0] > '5' {
			return fmt.Errorf("%q is not a status class; use 1xx, 2xx, 3xx, 4xx or 5xx", v)
		}
		base := int(v[0]-'0') * 100
		for code := base; code < base+100; code++ {
			s.set(code)
		}
		return nil
	}
	code, err := strconv.Atoi(v)
	if err != nil || len(v) != 3 {
		return fmt.Errorf("%q is not a status; write a code such as 201, a class such as 2xx, or a list of them", v)
	}
	if code < 100 || code > 599 {
		return fmt.Errorf("%d is not an HTTP status; codes run from 100 to 599", code)
	}
	s.set(code)
	return nil
}
