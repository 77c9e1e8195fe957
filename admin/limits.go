package admin

import (
	"fmt"
	"reflect"
	"sort"

	"github.com/graphql-go/graphql"
	"github.com/graphql-go/graphql/gqlerrors"
	"github.com/graphql-go/graphql/language/ast"
	"github.com/graphql-go/graphql/language/kinds"
	"github.com/graphql-go/graphql/language/location"
	"github.com/graphql-go/graphql/language/visitor"
)

// maxFields is SPEC §5's limit on the fields of a document, counted as
// written over all its operations and fragments, used or not.
const maxFields = 5000

// maxTokens bounds a document's lexical tokens, checked before parsing.
// A document at the field limit, every field aliased and given an
// argument, has about 25,000.
const maxTokens = 30000

// maxListItems bounds the items of one list value (see lexDocument).
const maxListItems = 1000

// maxErrors bounds the request errors one answer lists: a document can
// hold tens of thousands of mistakes, and listing them all only makes the
// answer large.
const maxErrors = 100

// countFields counts the fields of doc as written, stopping once the count
// passes limit. It runs before any validation, so that validation only sees
// documents of bounded size whatever their fragments do.
func countFields(doc *ast.Document, limit int) int {
	n := 0
	var walk func(ss *ast.SelectionSet)
	walk = func(ss *ast.SelectionSet) {
		if ss == nil {
			return
		}
		for _, sel := range ss.Selections {
			if n > limit {
				return
			}
			switch s := sel.(type) {
			case *ast.Field:
				n++
				walk(s.SelectionSet)
			case *ast.InlineFragment:
				walk(s.SelectionSet)
			}
		}
	}
	for _, def := range doc.Definitions {
		switch d := def.(type) {
		case *ast.OperationDefinition:
			walk(d.SelectionSet)
		case *ast.FragmentDefinition:
			walk(d.SelectionSet)
		}
	}
	return n
}

// lineIndex turns byte offsets of a document into graphql-go's line and
// column (bytes, 1-based). graphql-go's own location.GetLocation compiles a
// regexp and scans the whole document for every error, so a document with
// thousands of errors cost seconds; documents are therefore parsed without
// their source (each error then carries line 1 and column offset+1) and
// their locations are put right here, with one scan in all.
type lineIndex struct {
	starts, ends []int // line terminators ("\r\n", "\n" or "\r")
}

func newLineIndex(body []byte) *lineIndex {
	var li lineIndex
	for i := 0; i < len(body); i++ {
		switch body[i] {
		case '\r':
			end := i + 1
			if end < len(body) && body[end] == '\n' {
				end++
			}
			li.starts, li.ends = append(li.starts, i), append(li.ends, end)
			i = end - 1
		case '\n':
			li.starts, li.ends = append(li.starts, i), append(li.ends, i+1)
		}
	}
	return &li
}

// locate is location.GetLocation for a source-less location, whose column
// is the offset plus one.
func (li *lineIndex) locate(l location.SourceLocation) location.SourceLocation {
	pos := l.Column - 1
	if l.Line != 1 || pos < 0 {
		return l
	}
	k := sort.SearchInts(li.starts, pos) // terminators that start before pos
	if k == 0 {
		return l
	}
	return location.SourceLocation{Line: k + 1, Column: pos + 1 - li.ends[k-1]}
}

// fixLocations puts right the locations of errors about a source-less
// document.
func (li *lineIndex) fixLocations(errs []gqlerrors.FormattedError) []gqlerrors.FormattedError {
	for i := range errs {
		for j := range errs[i].Locations {
			errs[i].Locations[j] = li.locate(errs[i].Locations[j])
		}
	}
	return errs
}

// capErrors keeps the first maxErrors errors and says that there are more
// (validation stops looking once it has found maxErrors, see stopAfterErrors).
func capErrors(errs []gqlerrors.FormattedError) []gqlerrors.FormattedError {
	if len(errs) < maxErrors {
		return errs
	}
	return append(errs[:maxErrors:maxErrors], gqlerrors.FormattedError{
		Message: fmt.Sprintf("validation stopped after %d errors; fix these and send the document again", maxErrors),
	})
}

// funcID identifies a function value, which Go does not compare.
func funcID(f any) uintptr { return reflect.ValueOf(f).Pointer() }

// stopAfterErrors makes rule do nothing more once the validation has
// maxErrors errors. graphql-go builds each error eagerly, some with "did you
// mean" suggestions that compare the unknown name with every name the
// schema has: fifty thousand unknown type names took half a minute.
func stopAfterErrors(rule graphql.ValidationRuleFn) graphql.ValidationRuleFn {
	return func(ctx *graphql.ValidationContext) *graphql.ValidationRuleInstance {
		inst := rule(ctx)
		if inst == nil || inst.VisitorOpts == nil {
			return inst
		}
		wrap := func(f visitor.VisitFunc) visitor.VisitFunc {
			if f == nil {
				return nil
			}
			return func(p visitor.VisitFuncParams) (string, any) {
				if len(ctx.Errors()) >= maxErrors {
					return visitor.ActionNoChange, nil
				}
				return f(p)
			}
		}
		o := inst.VisitorOpts
		w := &visitor.VisitorOptions{Enter: wrap(o.Enter), Leave: wrap(o.Leave)}
		if o.KindFuncMap != nil {
			w.KindFuncMap = make(map[string]visitor.NamedVisitFuncs, len(o.KindFuncMap))
			for k, v := range o.KindFuncMap {
				w.KindFuncMap[k] = visitor.NamedVisitFuncs{Kind: wrap(v.Kind), Enter: wrap(v.Enter), Leave: wrap(v.Leave)}
			}
		}
		for _, m := range []struct{ from, to *map[string]visitor.VisitFunc }{{&o.EnterKindMap, &w.EnterKindMap}, {&o.LeaveKindMap, &w.LeaveKindMap}} {
			if *m.from == nil {
				continue
			}
			*m.to = make(map[string]visitor.VisitFunc, len(*m.from))
			for k, f := range *m.from {
				(*m.to)[k] = wrap(f)
			}
		}
		return &graphql.ValidationRuleInstance{VisitorOpts: w}
	}
}

// maxValueNodes bounds one argument's or variable default's value, counted
// in scalars, lists and objects. The largest value this API accepts, a
// WebhookCreateInput, has 6; graphql-go prints an invalid value whole in its
// error message, at tens of microseconds per node.
const maxValueNodes = 100

// valueSizeRule refuses values larger than maxValueNodes. It runs in the
// limits pass, before the rules that print values.
func valueSizeRule(ctx *graphql.ValidationContext) *graphql.ValidationRuleInstance {
	check := func(v ast.Value, node ast.Node, what string) string {
		if n := valueNodes(v, maxValueNodes+1); n > maxValueNodes {
			ctx.ReportError(gqlerrors.NewError(
				fmt.Sprintf("%s has a value of more than %d items; no input of this API is that large", what, maxValueNodes),
				[]ast.Node{node}, "", nil, nil, nil))
			return visitor.ActionSkip
		}
		return visitor.ActionNoChange
	}
	return &graphql.ValidationRuleInstance{VisitorOpts: &visitor.VisitorOptions{
		KindFuncMap: map[string]visitor.NamedVisitFuncs{
			kinds.Argument: {Kind: func(p visitor.VisitFuncParams) (string, any) {
				if a, ok := p.Node.(*ast.Argument); ok && a.Name != nil {
					return check(a.Value, a, fmt.Sprintf("argument %q", a.Name.Value)), nil
				}
				return visitor.ActionNoChange, nil
			}},
			kinds.VariableDefinition: {Kind: func(p visitor.VisitFuncParams) (string, any) {
				if d, ok := p.Node.(*ast.VariableDefinition); ok && d.DefaultValue != nil {
					return check(d.DefaultValue, d, "a variable's default"), nil
				}
				return visitor.ActionNoChange, nil
			}},
		},
	}}
}

// valueNodes counts the nodes of v, stopping once past limit.
func valueNodes(v ast.Value, limit int) int {
	n := 1
	switch v := v.(type) {
	case *ast.ListValue:
		for _, x := range v.Values {
			if n += valueNodes(x, limit-n); n > limit {
				return n
			}
		}
	case *ast.ObjectValue:
		for _, f := range v.Fields {
			if f == nil {
				continue
			}
			if n += valueNodes(f.Value, limit-n); n > limit {
				return n
			}
		}
	}
	return n
}
