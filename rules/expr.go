package rules

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"cel.dev/cel-go/cel"
	"cel.dev/cel-go/common/ast"
	"cel.dev/cel-go/common/operators"
	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/ext"
)

// Limits that keep compilation and evaluation bounded whatever the rules
// and the exchanges hold.
const (
	// maxExprRunes bounds the length of one expression.
	maxExprRunes = 8 << 10
	// costLimit bounds the work of one evaluation of an expression that
	// iterates, in CEL cost units (about one per operation, more for string
	// and list work proportional to their size). It allows comprehensions
	// over bodies of tens of thousands of elements and stops runaway ones
	// within milliseconds.
	costLimit = 1_000_000
	// maxIssuesPerExpr keeps one broken expression from burying the others.
	maxIssuesPerExpr = 3
)

// Fields of the request and response variables, in the order messages list
// them.
var (
	requestFields  = []string{"method", "path", "query", "headers", "body"}
	responseFields = []string{"status", "headers", "body"}
)

// newEnv returns the CEL environment every rule expression is compiled in.
func newEnv() (*cel.Env, error) {
	return cel.NewEnv(
		cel.Variable("request", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("response", cel.MapType(cel.StringType, cel.DynType)),
		cel.Variable("path", cel.MapType(cel.StringType, cel.StringType)),
		ext.Strings(),
		cel.OptionalTypes(),
		cel.ParserExpressionSizeLimit(maxExprRunes),
	)
}

// needs says which parts of an exchange an expression reads, so that
// Evaluate builds (and parses) only those.
type needs uint8

const (
	needReqBody needs = 1 << iota
	needRespBody
	needReqHeaders
	needRespHeaders
	needQuery
	needAll = needReqBody | needRespBody | needReqHeaders | needRespHeaders | needQuery
)

// expr is one compiled CEL expression of a rule.
type expr struct {
	src   string
	prg   cel.Program
	needs needs
	out   *cel.Type // the checker's type of the result
}

// problem is a compile problem located in an expression's source: line
// (1-based) and column (0-based, in runes), as CEL reports them.
type problem struct {
	line, col int
	msg       string
}

// compileExpr compiles src and checks what it refers to. captures are the
// capture names of each of the rule's path templates (nil when the rule has
// no valid template, so that captures are not checked); key names the YAML
// key for messages. track makes the program track its cost (and apply
// costLimit) even when it does not loop, so that its evaluations can be
// added up (see evalEach). It returns the compiled expression, or the
// problems found.
func compileExpr(env *cel.Env, key, src string, want exprKind, captures [][]string, track bool) (*expr, []problem) {
	if strings.TrimSpace(src) == "" {
		return nil, []problem{{1, 0, fmt.Sprintf("%s: is empty; write a CEL expression such as %s", key, want.example())}}
	}
	checked, iss := env.Compile(src)
	if iss != nil && iss.Err() != nil {
		var probs []problem
		for _, e := range iss.Errors() {
			if len(probs) == maxIssuesPerExpr {
				break
			}
			line, col := e.Location.Line(), e.Location.Column()
			col -= calleeShift(src, line, col, e.Message)
			probs = append(probs, problem{line, col, key + ": " + celMessage(e.Message)})
		}
		return nil, probs
	}
	native := checked.NativeRep()
	x := &expr{src: src, out: checked.OutputType()}
	var probs []problem
	report := func(id int64, shift int, format string, args ...any) {
		loc := native.SourceInfo().GetStartLocation(id)
		probs = append(probs, problem{loc.Line(), loc.Column() + shift, key + ": " + fmt.Sprintf(format, args...)})
	}
	x.needs = analyze(native.Expr(), captures, report)

	switch out := checked.OutputType(); want {
	case exprBool:
		if k := out.Kind(); k != types.BoolKind && k != types.DynKind {
			probs = append(probs, problem{1, 0, fmt.Sprintf("%s: must be true or false, but its type is %s; compare it, as in request.body.status == \"OPEN\"", key, cel.FormatCELType(out))})
		}
	case exprList:
		if k := out.Kind(); k != types.ListKind && k != types.DynKind {
			probs = append(probs, problem{1, 0, fmt.Sprintf("%s: must give a list, but its type is %s; point it at an array, such as response.body or response.body.orders", key, cel.FormatCELType(out))})
		}
	case exprSubject:
		switch out.Kind() {
		case types.ListKind, types.MapKind, types.NullTypeKind, types.TypeKind:
			probs = append(probs, problem{1, 0, fmt.Sprintf("%s: has type %s; a subject must be a string or a number, such as response.body.id or path.id", key, cel.FormatCELType(out))})
		}
	}
	if len(probs) > 0 {
		return nil, probs
	}
	opts := []cel.ProgramOption{cel.EvalOptions(cel.OptOptimize)}
	// Only comprehensions loop. Without one, an expression does a bounded
	// number of steps (its length is limited), each linear in the captured
	// bodies, so tracking its cost would only slow every evaluation down
	// (by a third, measured on BenchmarkEvaluate20).
	if track || len(ast.MatchDescendants(ast.NavigateAST(native), ast.KindMatcher(ast.ComprehensionKind))) > 0 {
		opts = append(opts, cel.CostLimit(costLimit))
	}
	prg, err := env.Program(checked, opts...)
	if err != nil {
		return nil, []problem{{1, 0, fmt.Sprintf("%s: %v", key, err)}}
	}
	x.prg = prg
	return x, nil
}

// exprKind is what a rule expects of an expression's result.
type exprKind int

const (
	exprAny exprKind = iota
	exprBool
	exprSubject
	exprList
)

func (k exprKind) example() string {
	switch k {
	case exprBool:
		return `request.body.status == "OPEN"`
	case exprSubject:
		return "response.body.id"
	case exprList:
		return "response.body.orders"
	}
	return "response.body"
}

var undeclared = regexp.MustCompile(`^undeclared reference to '([^']+)'`)

// calleeShift returns how far before CEL's location an undeclared function
// name starts: CEL locates a call at its parenthesis, users look for the
// name.
func calleeShift(src string, line, col int, msg string) int {
	m := undeclared.FindStringSubmatch(msg)
	if m == nil {
		return 0
	}
	lines := strings.Split(src, "\n")
	if line < 1 || line > len(lines) {
		return 0
	}
	r := []rune(lines[line-1])
	name := []rune(m[1])
	if col < len(name) || col >= len(r) || r[col] != '(' || string(r[col-len(name):col]) != m[1] {
		return 0
	}
	return len(name)
}

// celMessage makes CEL's messages read like ours.
func celMessage(m string) string {
	m = strings.TrimSuffix(m, " (in container '')")
	if strings.HasPrefix(m, "undeclared reference to 'item'") {
		return "undeclared reference to 'item': item is the element of a rule's each; add `each:` with a list, such as response.body.orders, to evaluate the rule once per element"
	}
	if strings.HasPrefix(m, "undeclared reference to ") && !strings.Contains(m, "did you mean") {
		m += "; the variables are request, response and path"
	}
	return m
}

// analyze walks e and returns what it needs from an exchange. It reports
// fields that request and response do not have and path captures that no
// template of the rule has, because CEL sees those variables as maps and
// would accept a typo only to fail on every exchange.
//
// report locates its message at the node id, shifted by shift characters.
func analyze(e ast.Expr, captures [][]string, report func(id int64, shift int, format string, args ...any)) needs {
	a := analyzer{captures: captures, report: report}
	a.walk(e, nil)
	return a.needs
}

type analyzer struct {
	captures [][]string
	report   func(id int64, shift int, format string, args ...any)
	needs    needs
}

// walk visits e; shadowed holds the comprehension variables in scope, which
// hide the variables of the same name.
func (a *analyzer) walk(e ast.Expr, shadowed []string) {
	switch e.Kind() {
	case ast.IdentKind:
		// A variable used whole (not through one of its fields) may
		// reach anything.
		switch name := e.AsIdent(); {
		case slices.Contains(shadowed, name):
		case name == "request" || name == "response":
			a.needs = needAll
		}
	case ast.SelectKind:
		s := e.AsSelect()
		// CEL locates a selection at its dot; the name follows it.
		if a.field(s.Operand(), s.FieldName(), e.ID(), 1, shadowed) {
			return
		}
		a.walk(s.Operand(), shadowed)
	case ast.CallKind:
		c := e.AsCall()
		args := c.Args()
		// x["field"] and x.?field name a field through a string literal.
		if (c.FunctionName() == operators.Index || c.FunctionName() == operators.OptSelect || c.FunctionName() == operators.OptIndex) &&
			len(args) == 2 && args[1].Kind() == ast.LiteralKind {
			if f, ok := args[1].AsLiteral().(types.String); ok && a.field(args[0], string(f), e.ID(), 0, shadowed) {
				return
			}
		}
		if c.IsMemberFunction() {
			a.walk(c.Target(), shadowed)
		}
		for _, x := range args {
			a.walk(x, shadowed)
		}
	case ast.ListKind:
		for _, x := range e.AsList().Elements() {
			a.walk(x, shadowed)
		}
	case ast.MapKind:
		for _, en := range e.AsMap().Entries() {
			if en.Kind() == ast.MapEntryKind {
				a.walk(en.AsMapEntry().Key(), shadowed)
				a.walk(en.AsMapEntry().Value(), shadowed)
			}
		}
	case ast.StructKind:
		for _, f := range e.AsStruct().Fields() {
			if f.Kind() == ast.StructFieldKind {
				a.walk(f.AsStructField().Value(), shadowed)
			}
		}
	case ast.ComprehensionKind:
		c := e.AsComprehension()
		a.walk(c.IterRange(), shadowed)
		a.walk(c.AccuInit(), shadowed)
		inner := append(slices.Clip(shadowed), c.IterVar(), c.AccuVar())
		if c.HasIterVar2() {
			inner = append(inner, c.IterVar2())
		}
		a.walk(c.LoopCondition(), inner)
		a.walk(c.LoopStep(), inner)
		a.walk(c.Result(), inner)
	}
}

// field handles operand.name when operand is one of the variables. It
// reports whether it did.
func (a *analyzer) field(operand ast.Expr, name string, id int64, shift int, shadowed []string) bool {
	if operand.Kind() != ast.IdentKind || slices.Contains(shadowed, operand.AsIdent()) {
		return false
	}
	switch v := operand.AsIdent(); v {
	case "request", "response":
		fields := requestFields
		if v == "response" {
			fields = responseFields
		}
		if !slices.Contains(fields, name) {
			a.report(id, shift, "%s has no field %q%s; its fields are %s", v, name, suggest(name, fields), strings.Join(fields, ", "))
			return true
		}
		switch {
		case name == "body" && v == "request":
			a.needs |= needReqBody
		case name == "body":
			a.needs |= needRespBody
		case name == "headers" && v == "request":
			a.needs |= needReqHeaders
		case name == "headers":
			a.needs |= needRespHeaders
		case name == "query":
			a.needs |= needQuery
		}
		return true
	case "path":
		if a.captures == nil {
			return true // when.path is missing or wrong; that is reported
		}
		found := false
		var all []string
		for _, names := range a.captures {
			found = found || slices.Contains(names, name)
			for _, n := range names {
				if !slices.Contains(all, n) {
					all = append(all, n)
				}
			}
		}
		if !found {
			if len(all) == 0 {
				a.report(id, shift, "path has no capture %q: the rule's when.path has no {name} segments", name)
			} else {
				a.report(id, shift, "path has no capture %q%s; when.path captures %s", name, suggest(name, all), strings.Join(all, ", "))
			}
		}
		return true
	}
	return false
}

// suggest returns `; did you mean "x"?` when one of candidates is close to s.
func suggest(s string, candidates []string) string {
	best, bestD := "", 3
	for _, c := range candidates {
		if d := editDistance(strings.ToLower(s), strings.ToLower(c)); d < bestD {
			best, bestD = c, d
		}
	}
	if best == "" || bestD > len(s)/2 {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}
