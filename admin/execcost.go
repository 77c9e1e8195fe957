package admin

import (
	"fmt"
	"math"
	"strconv"

	"github.com/graphql-go/graphql"
	"github.com/graphql-go/graphql/language/ast"
)

// maxResultCost bounds what one request may ask execution to do. The size
// limits (maxFields, maxSelections, maxDepth) bound the document, not its
// answer: 999 aliases of `events(first: 500) { edges { node { payload } } }`
// pass them all, and took 35 s of CPU and a 500 MB answer. So, before
// execution, the operation's answer is estimated (resultCost) and refused
// above this bound. It leaves room for about eight full pages of events with
// their payloads, or thirty pages of ids, in one request.
const maxResultCost = 50_000

// Weights of resultCost, per value the answer may hold.
const (
	// costLargeText is a field whose value can be kilobytes: an event's
	// payload, the request and response body of a log.
	costLargeText = 10
	// costMutation is a mutation that commits to the store.
	costMutation = 10
	// costSlowMutation is a mutation that waits on the network or scans
	// the store: webhookTest posts to the receiver, webhookReplay reads
	// the stored events since a date.
	costSlowMutation = 1000
	// assumedListLength stands for a list the request does not size with
	// `first`: an event's deliveries (one per webhook of its type) and
	// introspection's lists.
	assumedListLength = 10
)

// resultCost estimates the values the selected operation of doc may
// produce: every field counts its weight, times the length of each list
// it sits in. A connection's list (`edges`) counts its page size, `first`,
// taken from the argument, the request's variables, the variable's default
// or the argument's default, in that order. Fragments are measured once
// per type and multiplied. The estimate saturates just above
// maxResultCost, so it cannot overflow. It runs after validation, so the
// document is known to be well-formed, within the size limits and free of
// fragment cycles.
func resultCost(schema *graphql.Schema, doc *ast.Document, operationName string, vars map[string]any) int {
	op := findOperation(doc, operationName)
	if op == nil {
		return 0 // graphql-go refuses to execute; it says why
	}
	c := costCounter{
		schema: schema,
		frags:  map[string]*ast.FragmentDefinition{},
		memo:   map[string]int{},
		active: map[string]bool{},
		vars:   vars,
		op:     op,
		limit:  maxResultCost + 1,
		intro:  map[introKey]int{},
	}
	for _, def := range doc.Definitions {
		if f, ok := def.(*ast.FragmentDefinition); ok && f.Name != nil {
			c.frags[f.Name.Value] = f
		}
	}
	var root graphql.Type
	switch op.Operation {
	case ast.OperationTypeMutation:
		if m := schema.MutationType(); m != nil {
			root = m
		}
		c.mutation = true
	default:
		if q := schema.QueryType(); q != nil {
			root = q
		}
	}
	return c.selectionSet(op.SelectionSet, root, 0, true)
}

type costCounter struct {
	schema   *graphql.Schema
	frags    map[string]*ast.FragmentDefinition
	memo     map[string]int // fragment name → cost of one copy
	active   map[string]bool
	vars     map[string]any
	op       *ast.OperationDefinition
	mutation bool
	limit    int
	intro    map[introKey]int // see introspection
}

type introKey struct {
	obj any
	ss  *ast.SelectionSet
}

// selectionSet is the cost of one copy of ss on parent. page is the page
// size of the enclosing connection, 0 outside one; top is true for the
// operation's own selection set.
func (c *costCounter) selectionSet(ss *ast.SelectionSet, parent graphql.Type, page int, top bool) int {
	if ss == nil {
		return 0
	}
	total := 0
	for _, sel := range ss.Selections {
		var n int
		switch s := sel.(type) {
		case *ast.Field:
			n = c.field(s, parent, page, top)
		case *ast.InlineFragment:
			t := parent
			if s.TypeCondition != nil && s.TypeCondition.Name != nil {
				t = c.namedType(s.TypeCondition.Name.Value, parent)
			}
			n = c.selectionSet(s.SelectionSet, t, page, top)
		case *ast.FragmentSpread:
			if s.Name != nil {
				n = c.fragment(s.Name.Value, parent, page, top)
			}
		}
		total = c.add(total, n)
	}
	return total
}

func (c *costCounter) fragment(name string, parent graphql.Type, page int, top bool) int {
	f := c.frags[name]
	if f == nil || c.active[name] {
		return 0
	}
	// The page size and the top flag change a fragment's cost.
	key := fmt.Sprint(name, "/", page, "/", top)
	if n, ok := c.memo[key]; ok {
		return n
	}
	t := parent
	if f.TypeCondition != nil && f.TypeCondition.Name != nil {
		t = c.namedType(f.TypeCondition.Name.Value, parent)
	}
	c.active[name] = true
	n := c.selectionSet(f.SelectionSet, t, page, top)
	delete(c.active, name)
	c.memo[key] = n
	return n
}

func (c *costCounter) field(f *ast.Field, parent graphql.Type, page int, top bool) int {
	if f.Name == nil {
		return 0
	}
	name := f.Name.Value
	def := fieldDef(c.schema, parent, name)
	weight := 1
	switch {
	case top && c.mutation && (name == "webhookTest" || name == "webhookReplay"):
		weight = costSlowMutation
	case top && c.mutation:
		weight = costMutation
	case name == "payload" || name == "request" || name == "responseBody":
		weight = costLargeText
	}
	switch {
	case def == nil:
		return weight
	case def == graphql.SchemaMetaFieldDef:
		return c.add(weight, c.introspection(c.schema, f.SelectionSet))
	case def == graphql.TypeMetaFieldDef:
		if t := c.typeArg(f); t != nil {
			return c.add(weight, c.introspection(t, f.SelectionSet))
		}
		return weight
	}
	childPage := 0
	if a := argDef(def, "first"); a != nil {
		childPage = c.intArg(f, a)
	}
	named, _ := graphql.GetNamed(def.Type).(graphql.Type)
	children := c.selectionSet(f.SelectionSet, named, childPage, false)
	n := c.add(weight, children)
	if isList(def.Type) {
		length := assumedListLength
		if name == "edges" { // a connection's only list
			length = page
		}
		n = c.mul(n, length)
	}
	return n
}

// intArg is the value the field's argument a will have: the literal, the
// variable's value or default, or the argument's default; clamped to
// 0..maxFirst (the resolver refuses values outside it).
func (c *costCounter) intArg(f *ast.Field, a *graphql.Argument) int {
	v := a.DefaultValue
	for _, arg := range f.Arguments {
		if arg.Name == nil || arg.Name.Value != a.Name() {
			continue
		}
		switch x := arg.Value.(type) {
		case *ast.IntValue:
			v = x.Value
		case *ast.Variable:
			if x.Name != nil {
				v = c.variable(x.Name.Value, v)
			}
		}
	}
	var n float64
	switch x := v.(type) {
	case int:
		n = float64(x)
	case float64:
		n = x
	case string:
		n, _ = strconv.ParseFloat(x, 64)
	case *ast.IntValue:
		n, _ = strconv.ParseFloat(x.Value, 64)
	}
	if math.IsNaN(n) || n < 0 {
		return 0
	}
	return int(min(n, maxFirst))
}

// variable is a variable's value from the request, else its default in the
// operation, else fallback.
func (c *costCounter) variable(name string, fallback any) any {
	if v, ok := c.vars[name]; ok && v != nil {
		return v
	}
	for _, vd := range c.op.VariableDefinitions {
		if vd.Variable != nil && vd.Variable.Name != nil && vd.Variable.Name.Value == name && vd.DefaultValue != nil {
			return vd.DefaultValue
		}
	}
	return fallback
}

func (c *costCounter) namedType(name string, fallback graphql.Type) graphql.Type {
	if t := c.schema.Type(name); t != nil {
		return t
	}
	return fallback
}

func (c *costCounter) add(a, b int) int { return min(a+b, c.limit) }

func (c *costCounter) mul(a, b int) int {
	if a == 0 || b == 0 {
		return 0
	}
	if a > c.limit/b {
		return c.limit
	}
	return min(a*b, c.limit)
}

func argDef(def *graphql.FieldDefinition, name string) *graphql.Argument {
	for _, a := range def.Args {
		if a.Name() == name {
			return a
		}
	}
	return nil
}

func isList(t graphql.Type) bool {
	if nn, ok := t.(*graphql.NonNull); ok {
		t = nn.OfType
	}
	_, ok := t.(*graphql.List)
	return ok
}

// costError is the answer to a request over maxResultCost.
func costError(cost int) *gqlResponse {
	est := fmt.Sprint(cost)
	if cost > maxResultCost {
		est = fmt.Sprintf("more than %d", maxResultCost)
	}
	return requestError(0, codeBadUserInput,
		"query is too costly: its answer may hold %s values (a connection counts `first` values per field of its edges; payload, request and responseBody count %d; webhookTest and webhookReplay %d) and the limit is %d; ask for smaller pages or fewer aliases, or split it into several requests",
		est, costLargeText, costSlowMutation, maxResultCost)
}

// typeArg is the type __type(name: …) names, or nil.
func (c *costCounter) typeArg(f *ast.Field) graphql.Type {
	for _, arg := range f.Arguments {
		if arg.Name == nil || arg.Name.Value != "name" {
			continue
		}
		var v any
		switch x := arg.Value.(type) {
		case *ast.StringValue:
			v = x.Value
		case *ast.Variable:
			if x.Name != nil {
				v = c.variable(x.Name.Value, nil)
			}
		}
		if sv, ok := v.(*ast.StringValue); ok {
			v = sv.Value
		}
		if name, ok := v.(string); ok {
			return c.schema.Type(name)
		}
	}
	return nil
}

// introspection is the exact number of values ss selects of obj, a part of
// the schema (the schema, a type, a field, an argument or input field, an
// enum value or a directive). Introspection answers depend only on the
// schema, so they are counted by walking it rather than estimated: a
// deep __type query over a few types is cheap, a thousand copies of
// `__schema { types { fields { name } } }` are not. Each (object, selection
// set) is counted once; counting stops once the cost saturates, so the
// walk does at most maxResultCost steps.
func (c *costCounter) introspection(obj any, ss *ast.SelectionSet) int {
	if ss == nil || obj == nil {
		return 0
	}
	key := introKey{obj, ss}
	if n, ok := c.intro[key]; ok {
		return n
	}
	c.intro[key] = c.limit // a cycle (there is none after validation) costs the limit
	total := 0
	c.eachField(ss, func(f *ast.Field) {
		if total >= c.limit {
			return
		}
		total = c.add(total, 1)
		for _, child := range introChildren(c.schema, obj, f.Name.Value) {
			total = c.add(total, c.introspection(child, f.SelectionSet))
		}
	})
	c.intro[key] = total
	return total
}

// eachField calls fn for each field of ss, fragments expanded.
func (c *costCounter) eachField(ss *ast.SelectionSet, fn func(*ast.Field)) {
	if ss == nil {
		return
	}
	for _, sel := range ss.Selections {
		switch s := sel.(type) {
		case *ast.Field:
			if s.Name != nil {
				fn(s)
			}
		case *ast.InlineFragment:
			c.eachField(s.SelectionSet, fn)
		case *ast.FragmentSpread:
			if s.Name != nil && !c.active[s.Name.Value] {
				if f := c.frags[s.Name.Value]; f != nil {
					c.active[s.Name.Value] = true
					c.eachField(f.SelectionSet, fn)
					delete(c.active, s.Name.Value)
				}
			}
		}
	}
}

// introChildren is what the introspection field name of obj resolves to,
// as a list of schema parts (nil for a leaf or a null).
func introChildren(schema *graphql.Schema, obj any, name string) []any {
	var out []any
	switch o := obj.(type) {
	case *graphql.Schema:
		switch name {
		case "types":
			for _, t := range o.TypeMap() {
				out = append(out, graphql.Type(t))
			}
		case "queryType":
			out = appendType(out, o.QueryType())
		case "mutationType":
			out = appendType(out, o.MutationType())
		case "subscriptionType":
			out = appendType(out, o.SubscriptionType())
		case "directives":
			for _, d := range o.Directives() {
				out = append(out, d)
			}
		}
	case *graphql.FieldDefinition:
		switch name {
		case "args":
			for _, a := range o.Args {
				out = append(out, a)
			}
		case "type":
			out = append(out, o.Type)
		}
	case *graphql.Argument:
		if name == "type" {
			out = append(out, o.Type)
		}
	case *graphql.InputObjectField:
		if name == "type" {
			out = append(out, o.Type)
		}
	case *graphql.Directive:
		if name == "args" {
			for _, a := range o.Args {
				out = append(out, a)
			}
		}
	case graphql.Type:
		out = typeChildren(schema, o, name)
	}
	return out
}

func typeChildren(schema *graphql.Schema, t graphql.Type, name string) []any {
	var out []any
	switch name {
	case "fields":
		var fields graphql.FieldDefinitionMap
		switch x := t.(type) {
		case *graphql.Object:
			fields = x.Fields()
		case *graphql.Interface:
			fields = x.Fields()
		}
		for _, f := range fields {
			out = append(out, f)
		}
	case "interfaces":
		if x, ok := t.(*graphql.Object); ok {
			for _, i := range x.Interfaces() {
				out = append(out, graphql.Type(i))
			}
		}
	case "possibleTypes":
		if x, ok := t.(graphql.Abstract); ok {
			for _, p := range schema.PossibleTypes(x) {
				out = append(out, graphql.Type(p))
			}
		}
	case "enumValues":
		if x, ok := t.(*graphql.Enum); ok {
			for _, v := range x.Values() {
				out = append(out, v)
			}
		}
	case "inputFields":
		if x, ok := t.(*graphql.InputObject); ok {
			for _, f := range x.Fields() {
				out = append(out, f)
			}
		}
	case "ofType":
		switch x := t.(type) {
		case *graphql.List:
			out = append(out, x.OfType)
		case *graphql.NonNull:
			out = append(out, x.OfType)
		}
	}
	return out
}

func appendType(out []any, t *graphql.Object) []any {
	if t != nil {
		out = append(out, graphql.Type(t))
	}
	return out
}
