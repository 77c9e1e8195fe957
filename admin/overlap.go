package admin

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/graphql-go/graphql"
	"github.com/graphql-go/graphql/gqlerrors"
	"github.com/graphql-go/graphql/language/ast"
	"github.com/graphql-go/graphql/language/kinds"
	"github.com/graphql-go/graphql/language/visitor"
)

// validationRules are graphql-go's specified rules with its
// OverlappingFieldsCanBeMergedRule replaced by overlapRule. The library's
// rule compares every pair of fields that share a response name, and
// builds an error for every conflicting pair: 3,000 aliases in a 60 KiB
// document took minutes and hundreds of MiB. The list is a copy; graphql-go's
// SpecifiedRules is left as it is, since other code in the process may use it.
func validationRules() ([]graphql.ValidationRuleFn, error) {
	quadratic := funcID(graphql.OverlappingFieldsCanBeMergedRule)
	rules := make([]graphql.ValidationRuleFn, 0, len(graphql.SpecifiedRules))
	found := false
	for _, r := range graphql.SpecifiedRules {
		if funcID(r) == quadratic {
			found = true
			continue
		}
		rules = append(rules, stopAfterErrors(r))
	}
	if !found {
		return nil, fmt.Errorf("admin: graphql-go's specified rules no longer hold OverlappingFieldsCanBeMergedRule; check overlapRule against the new version")
	}
	return append(rules, stopAfterErrors(overlapRule)), nil
}

// overlapRule is GraphQL's "Field Selection Merging" (spec §5.3.2) in
// linear time: within a selection set (fragments expanded), every field is
// compared only with the first field of its response name, and the
// sub-selections of all fields of one response name are merged and checked
// once as one set, which is how execution merges them. The comparison is
// transitive for what it checks (same field name, equal arguments,
// return types of the same shape), so comparing with the first finds a
// conflict whenever some pair has one. At most one conflict is reported per
// response name.
//
// It starts from operations only: a fragment is checked where it is
// spread, and an unused fragment is an error of its own (NoUnusedFragments).
// Fragment expansion is bounded by limitsRule, which runs in an earlier
// pass: the document's operations expand to at most maxSelections
// selections in all, and fragment cycles never get here.
func overlapRule(ctx *graphql.ValidationContext) *graphql.ValidationRuleInstance {
	return perOperation(func(op *ast.OperationDefinition) {
		if root, ok := rootType(ctx.Schema(), op.Operation).(graphql.Composite); ok {
			o := overlapChecker{ctx: ctx, args: map[*ast.Field]string{}}
			o.check([]scopedSet{{op.SelectionSet, root}}, false, 0)
		}
	})
}

// perOperation is a rule instance that calls f with each operation and
// visits nothing below it.
func perOperation(f func(op *ast.OperationDefinition)) *graphql.ValidationRuleInstance {
	return &graphql.ValidationRuleInstance{VisitorOpts: &visitor.VisitorOptions{
		KindFuncMap: map[string]visitor.NamedVisitFuncs{
			kinds.OperationDefinition: {Kind: func(p visitor.VisitFuncParams) (string, any) {
				if op, ok := p.Node.(*ast.OperationDefinition); ok {
					f(op)
				}
				return visitor.ActionSkip, nil
			}},
		},
	}}
}

// scopedSet is a selection set and the type it selects on (nil if unknown).
type scopedSet struct {
	set    *ast.SelectionSet
	parent graphql.Composite
}

// scopedField is a field with the type it is selected on and its
// definition (nil when unknown, which FieldsOnCorrectType reports).
type scopedField struct {
	field  *ast.Field
	parent graphql.Composite
	def    *graphql.FieldDefinition
}

type overlapChecker struct {
	ctx  *graphql.ValidationContext
	args map[*ast.Field]string // printed arguments, computed once per field
}

// check compares the fields of sets, merged, by response name, and recurses
// into each name's merged sub-selections. exclusive is true below fields
// whose parent types can never both apply (two different object types):
// there only the shapes of the results must agree.
func (o *overlapChecker) check(sets []scopedSet, exclusive bool, depth int) {
	if depth > maxNesting {
		return // cannot happen after limitsRule; a guard against cycles
	}
	names, byName := o.collect(sets)
	for _, name := range names {
		fields := byName[name]
		first := fields[0]
		sub := exclusive
		conflict := false
		for _, f := range fields[1:] {
			ex := exclusive || differentObjects(first.parent, f.parent)
			sub = sub || ex
			if reason := o.conflict(first, f, ex); reason != "" {
				o.ctx.ReportError(gqlerrors.NewError(
					fmt.Sprintf(`Fields "%s" conflict because %s. Use different aliases on the fields to fetch both if this was intentional.`, name, reason),
					[]ast.Node{first.field, f.field}, "", nil, nil, nil))
				conflict = true
				break
			}
		}
		if conflict {
			continue
		}
		var subs []scopedSet
		for _, f := range fields {
			if f.field.SelectionSet == nil || f.def == nil {
				continue
			}
			t, _ := graphql.GetNamed(f.def.Type).(graphql.Composite)
			subs = append(subs, scopedSet{f.field.SelectionSet, t})
		}
		if len(subs) > 0 {
			o.check(subs, sub, depth+1)
		}
	}
}

// collect gathers the fields of sets by response name, in document order,
// expanding inline fragments and fragment spreads (each named fragment once:
// its fields are the same each time).
func (o *overlapChecker) collect(sets []scopedSet) ([]string, map[string][]scopedField) {
	var names []string
	byName := map[string][]scopedField{}
	seen := map[string]bool{}
	var walk func(set *ast.SelectionSet, parent graphql.Composite)
	walk = func(set *ast.SelectionSet, parent graphql.Composite) {
		if set == nil {
			return
		}
		for _, sel := range set.Selections {
			switch s := sel.(type) {
			case *ast.Field:
				if s.Name == nil {
					continue
				}
				name := responseName(s)
				if _, ok := byName[name]; !ok {
					names = append(names, name)
				}
				byName[name] = append(byName[name], scopedField{s, parent, o.fieldDef(parent, s.Name.Value)})
			case *ast.InlineFragment:
				walk(s.SelectionSet, o.condition(s.TypeCondition, parent))
			case *ast.FragmentSpread:
				if s.Name == nil || seen[s.Name.Value] {
					continue
				}
				seen[s.Name.Value] = true
				if f := o.ctx.Fragment(s.Name.Value); f != nil {
					walk(f.SelectionSet, o.condition(f.TypeCondition, parent))
				}
			}
		}
	}
	for _, s := range sets {
		walk(s.set, s.parent)
	}
	return names, byName
}

// condition is the type a fragment's type condition names, or parent when
// it has none or names an unknown type.
func (o *overlapChecker) condition(cond *ast.Named, parent graphql.Composite) graphql.Composite {
	if cond == nil || cond.Name == nil {
		return parent
	}
	if t, ok := o.ctx.Schema().Type(cond.Name.Value).(graphql.Composite); ok {
		return t
	}
	return parent
}

// fieldDef is fieldDef for the schema being validated.
func (o *overlapChecker) fieldDef(parent graphql.Composite, name string) *graphql.FieldDefinition {
	if parent == nil {
		return nil
	}
	return fieldDef(o.ctx.Schema(), parent, name)
}

// conflict says why a and b cannot be merged, or "".
func (o *overlapChecker) conflict(a, b scopedField, exclusive bool) string {
	if !exclusive {
		if a.field.Name.Value != b.field.Name.Value {
			return fmt.Sprintf("%s and %s are different fields", a.field.Name.Value, b.field.Name.Value)
		}
		if o.printedArgs(a.field) != o.printedArgs(b.field) {
			return "they have differing arguments"
		}
	}
	if a.def != nil && b.def != nil && typesConflict(a.def.Type, b.def.Type) {
		return fmt.Sprintf("they return conflicting types %s and %s", a.def.Type, b.def.Type)
	}
	return ""
}

// printedArgs is f's arguments in a canonical form: sorted by name, each
// value printed.
func (o *overlapChecker) printedArgs(f *ast.Field) string {
	if s, ok := o.args[f]; ok {
		return s
	}
	parts := make([]string, 0, len(f.Arguments))
	for _, a := range f.Arguments {
		if a.Name == nil {
			continue
		}
		var b strings.Builder
		writeValue(&b, a.Value)
		parts = append(parts, a.Name.Value+":"+b.String())
	}
	slices.Sort(parts)
	s := strings.Join(parts, ",")
	o.args[f] = s
	return s
}

// differentObjects reports whether a and b are two distinct object types,
// whose fields can never be selected on the same value.
func differentObjects(a, b graphql.Composite) bool {
	_, aObj := a.(*graphql.Object)
	_, bObj := b.(*graphql.Object)
	return aObj && bObj && a != b
}

// typesConflict reports whether two return types give results of different
// shapes (graphql-js's doTypesConflict).
func typesConflict(a, b graphql.Type) bool {
	for {
		al, aList := a.(*graphql.List)
		bl, bList := b.(*graphql.List)
		an, aNN := a.(*graphql.NonNull)
		bn, bNN := b.(*graphql.NonNull)
		switch {
		case aList || bList:
			if !aList || !bList {
				return true
			}
			a, b = al.OfType, bl.OfType
		case aNN || bNN:
			if !aNN || !bNN {
				return true
			}
			a, b = an.OfType, bn.OfType
		default:
			if isLeaf(a) || isLeaf(b) {
				return a != b
			}
			return false
		}
	}
}

func isLeaf(t graphql.Type) bool {
	switch t.(type) {
	case *graphql.Scalar, *graphql.Enum:
		return true
	}
	return false
}

// writeValue writes v in a canonical form, to compare arguments.
// graphql-go's printer would do, at a hundred times the cost.
func writeValue(b *strings.Builder, v ast.Value) {
	switch v := v.(type) {
	case *ast.Variable:
		if v.Name != nil {
			b.WriteString("$" + v.Name.Value)
		}
	case *ast.StringValue:
		b.WriteString(strconv.Quote(v.Value))
	case *ast.ListValue:
		b.WriteByte('[')
		for _, x := range v.Values {
			writeValue(b, x)
			b.WriteByte(',')
		}
		b.WriteByte(']')
	case *ast.ObjectValue:
		b.WriteByte('{')
		for _, f := range v.Fields {
			if f != nil && f.Name != nil {
				b.WriteString(f.Name.Value + ":")
				writeValue(b, f.Value)
				b.WriteByte(',')
			}
		}
		b.WriteByte('}')
	case nil:
	default:
		fmt.Fprint(b, v.GetValue())
	}
}
