package admin

import (
	"fmt"

	"github.com/graphql-go/graphql"
	"github.com/graphql-go/graphql/gqlerrors"
	"github.com/graphql-go/graphql/language/ast"
)

// maxDepth is SPEC §5's query depth limit.
const maxDepth = 12

// maxNesting bounds the lexical nesting of brackets in a document. It is
// checked before parsing, because graphql-go's parser and validators recurse
// once per level: without it a megabyte of "{a" costs deep stacks in every
// pass. No document within maxDepth comes near it (introspection's ofType
// chains are about 10 deep).
const maxNesting = 64

// maxSelections bounds an operation's size once fragments are expanded.
// Fragments make a small document stand for an exponentially large one
// (each fragment spreading the next twice), which graphql-go would then
// validate and execute in full; the standard introspection query expands to
// about 200 selections.
const maxSelections = 5000

// limitsRule is a validation rule that refuses operations nested deeper than
// maxDepth, and documents whose operations are larger than maxSelections
// once fragments are expanded, alone or in all (every later rule that
// follows fragments visits each operation).
//
// Depth counts field selections: `{ webhooks { totalCount } }` is 2.
// Fragments (named and inline) are expanded and add no depth of their own;
// each fragment is measured once, so spreading a fragment many times costs
// nothing extra, and a fragment cycle cannot loop (it is reported by
// NoFragmentCyclesRule, which runs in the same pass).
//
// Introspection counts like any other query, except that __Type.ofType adds
// no depth: it unwraps List and NonNull one level at a time, never fans out,
// and ends after a few levels, yet the standard introspection query (the
// TypeRef fragment of GraphiQL and graphql-js) nests it 7 or more times.
// Exempting all of __schema instead, as some servers do, would let
// __Type.fields → __Field.type → __Type.fields nest without bound.
func limitsRule(maxDepth, maxSelections int) graphql.ValidationRuleFn {
	return func(ctx *graphql.ValidationContext) *graphql.ValidationRuleInstance {
		m := &measurer{ctx: ctx, memo: map[string]size{}, active: map[string]bool{}, cap: maxSelections + 1}
		total := 0 // over all operations: the later rules visit each one
		return perOperation(func(op *ast.OperationDefinition) {
			sz := m.selectionSet(op.SelectionSet)
			if sz.depth > maxDepth {
				ctx.ReportError(gqlerrors.NewError(
					fmt.Sprintf("query is too deep: its depth is %d and the limit is %d; ask for fewer nested levels or split it into several queries", sz.depth, maxDepth),
					[]ast.Node{op}, "", nil, nil, nil))
			}
			prev := total
			total = min(total+sz.selections, m.cap)
			switch {
			case sz.selections > maxSelections:
				ctx.ReportError(gqlerrors.NewError(
					fmt.Sprintf("query is too large: it selects more than %d fields once fragments are expanded; split it into several queries", maxSelections),
					[]ast.Node{op}, "", nil, nil, nil))
			case total > maxSelections && prev <= maxSelections:
				ctx.ReportError(gqlerrors.NewError(
					fmt.Sprintf("document is too large: its operations select more than %d fields in all once fragments are expanded; send fewer operations per request", maxSelections),
					[]ast.Node{op}, "", nil, nil, nil))
			}
		})
	}
}

// size is what limitsRule measures of a selection set.
type size struct {
	depth      int
	selections int // saturates at measurer.cap
}

type measurer struct {
	ctx    *graphql.ValidationContext
	memo   map[string]size // fragment name → size of its selection set
	active map[string]bool // fragments being expanded, to stop at cycles
	cap    int
}

func (m *measurer) selectionSet(ss *ast.SelectionSet) size {
	var total size
	if ss == nil {
		return total
	}
	for _, sel := range ss.Selections {
		var sz size
		switch sel := sel.(type) {
		case *ast.Field:
			sz = m.selectionSet(sel.SelectionSet)
			if sel.Name == nil || sel.Name.Value != "ofType" {
				sz.depth++
			}
		case *ast.InlineFragment:
			sz = m.selectionSet(sel.SelectionSet)
		case *ast.FragmentSpread:
			if sel.Name != nil {
				sz = m.fragment(sel.Name.Value)
			}
		}
		total.depth = max(total.depth, sz.depth)
		total.selections = min(total.selections+sz.selections+1, m.cap)
	}
	return total
}

func (m *measurer) fragment(name string) size {
	if sz, ok := m.memo[name]; ok {
		return sz
	}
	if m.active[name] {
		return size{}
	}
	frag := m.ctx.Fragment(name)
	if frag == nil {
		return size{} // KnownFragmentNamesRule reports it
	}
	m.active[name] = true
	sz := m.selectionSet(frag.SelectionSet)
	delete(m.active, name)
	m.memo[name] = sz
	return sz
}
