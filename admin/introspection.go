package admin

import (
	"cmp"
	"slices"
	"strconv"
	"strings"

	"github.com/graphql-go/graphql"
	"github.com/graphql-go/graphql/language/ast"
)

// Introspection answers are corrected per request, in the result, rather
// than by patching graphql-go's introspection types: those are package
// variables shared by every schema in the process. Two things need it:
//
//   - __Schema.types and __Type.inputFields come in map order, so the schema
//     a client prints would change from one process to the next; the encoder
//     sorts them by name (see orderedEncoder.list).
//   - __InputValue.defaultValue prints an enum default as a string
//     ("\"ENABLED\"" instead of ENABLED, as SPEC §5 writes it): graphql-go
//     v0.8.1 passes the input value itself where its type belongs, so it
//     never sees the enum. The encoder rewrites it (orderedEncoder.object).
//
// Both need a member the client may not have selected (the name to sort by,
// the input value's type), so hiddenFields adds them to the document, under
// aliases the encoder leaves out of the answer.
const (
	sortNameAlias    = "__eventtapSortName"
	defaultTypeAlias = "__eventtapDefaultType"
)

// sortedIntrospectionList reports whether the field name of parent answers
// a list that the encoder sorts by name.
func sortedIntrospectionList(parent graphql.Type, name string) bool {
	return (parent == graphql.Type(graphql.SchemaType) && name == "types") ||
		(parent == graphql.Type(graphql.TypeType) && name == "inputFields")
}

// hiddenFields adds to doc's selection sets the fields the encoder needs
// (see above) and returns them. Run it after validation, on a document of
// bounded size: the fields it adds are valid by construction.
func hiddenFields(s *graphql.Schema, doc *ast.Document) map[*ast.Field]bool {
	h := hinter{schema: s, seen: map[*ast.SelectionSet]bool{}, added: map[*ast.Field]bool{}}
	for _, def := range doc.Definitions {
		switch d := def.(type) {
		case *ast.OperationDefinition:
			h.set(d.SelectionSet, rootType(s, d.Operation), 0)
		case *ast.FragmentDefinition:
			if d.TypeCondition != nil && d.TypeCondition.Name != nil {
				h.set(d.SelectionSet, s.Type(d.TypeCondition.Name.Value), 0)
			}
		}
	}
	return h.added
}

type hinter struct {
	schema *graphql.Schema
	seen   map[*ast.SelectionSet]bool
	added  map[*ast.Field]bool
}

func (h *hinter) set(ss *ast.SelectionSet, t graphql.Type, depth int) {
	if ss == nil || t == nil || h.seen[ss] || depth > maxNesting {
		return
	}
	h.seen[ss] = true
	names := map[string]bool{}
	defaultValue := false
	for _, sel := range ss.Selections {
		switch s := sel.(type) {
		case *ast.Field:
			if s.Name == nil {
				continue
			}
			names[responseName(s)] = true
			if t == graphql.Type(graphql.InputValueType) && s.Name.Value == "defaultValue" {
				defaultValue = true
			}
			def := fieldDef(h.schema, t, s.Name.Value)
			if def == nil {
				continue
			}
			if sortedIntrospectionList(t, s.Name.Value) {
				h.add(s.SelectionSet, sortNameAlias, "name", nil)
			}
			named, _ := graphql.GetNamed(def.Type).(graphql.Type)
			h.set(s.SelectionSet, named, depth+1)
		case *ast.InlineFragment:
			ct := t
			if s.TypeCondition != nil && s.TypeCondition.Name != nil {
				ct = h.schema.Type(s.TypeCondition.Name.Value)
			}
			h.set(s.SelectionSet, ct, depth+1)
		}
	}
	if defaultValue && !names[defaultTypeAlias] {
		// Deep enough for a default of type [Enum!]!.
		h.add(ss, defaultTypeAlias, "type", leaves("kind", "name", leaves("kind", "name", leaves("kind", "name", leaves("kind", "name", nil)))))
	}
}

// add appends `alias: name { sub }` to ss unless ss already has that
// response name.
func (h *hinter) add(ss *ast.SelectionSet, alias, name string, sub *ast.SelectionSet) {
	if ss == nil {
		return
	}
	for _, sel := range ss.Selections {
		if f, ok := sel.(*ast.Field); ok && responseName(f) == alias {
			return
		}
	}
	f := ast.NewField(&ast.Field{Alias: ast.NewName(&ast.Name{Value: alias}), Name: ast.NewName(&ast.Name{Value: name}), SelectionSet: sub})
	ss.Selections = append(ss.Selections, f)
	h.added[f] = true
}

// leaves is the selection set `{ a b ofType { next } }`.
func leaves(a, b string, next *ast.SelectionSet) *ast.SelectionSet {
	sels := []ast.Selection{
		ast.NewField(&ast.Field{Name: ast.NewName(&ast.Name{Value: a})}),
		ast.NewField(&ast.Field{Name: ast.NewName(&ast.Name{Value: b})}),
	}
	if next != nil {
		sels = append(sels, ast.NewField(&ast.Field{Name: ast.NewName(&ast.Name{Value: "ofType"}), SelectionSet: next}))
	}
	return ast.NewSelectionSet(&ast.SelectionSet{Selections: sels})
}

// enumDefault is what __InputValue.defaultValue should have answered for a
// value whose type the hidden field typeRef describes: the enum value's
// name instead of printed, a string literal. ok is false when nothing needs
// changing.
func enumDefault(s *graphql.Schema, printed string, typeRef any) (string, bool) {
	ref, _ := typeRef.(map[string]any)
	for ref != nil && ref["kind"] == "NON_NULL" {
		ref, _ = ref["ofType"].(map[string]any)
	}
	if ref == nil || ref["kind"] != "ENUM" {
		return "", false
	}
	name, _ := ref["name"].(string)
	e, ok := s.Type(name).(*graphql.Enum)
	if !ok {
		return "", false
	}
	v, err := strconv.Unquote(printed)
	if err != nil {
		return "", false
	}
	if n, ok := e.Serialize(v).(string); ok {
		return n, true
	}
	return "", false
}

// responseName is the key a field answers under.
func responseName(f *ast.Field) string {
	if f.Alias != nil && f.Alias.Value != "" {
		return f.Alias.Value
	}
	return f.Name.Value
}

// rootType is the schema's root type for an operation type, or nil.
func rootType(s *graphql.Schema, operation string) graphql.Type {
	var t *graphql.Object
	switch operation {
	case ast.OperationTypeQuery:
		t = s.QueryType()
	case ast.OperationTypeMutation:
		t = s.MutationType()
	case ast.OperationTypeSubscription:
		t = s.SubscriptionType()
	}
	if t == nil {
		return nil // not a typed nil in the interface
	}
	return t
}

// fieldDef is the definition of the field name on parent, introspection's
// meta-fields included, or nil.
func fieldDef(s *graphql.Schema, parent graphql.Type, name string) *graphql.FieldDefinition {
	switch {
	case parent == nil:
		return nil
	case name == graphql.TypeNameMetaFieldDef.Name:
		return graphql.TypeNameMetaFieldDef
	case name == graphql.SchemaMetaFieldDef.Name && parent == graphql.Type(s.QueryType()):
		return graphql.SchemaMetaFieldDef
	case name == graphql.TypeMetaFieldDef.Name && parent == graphql.Type(s.QueryType()):
		return graphql.TypeMetaFieldDef
	}
	switch t := parent.(type) {
	case *graphql.Object:
		return t.Fields()[name]
	case *graphql.Interface:
		return t.Fields()[name]
	}
	return nil
}

// argOrder is the order SPEC §5 gives arguments in.
var argOrder = []string{"id", "input", "first", "after", "filter", "since", "webhookId"}

// orderSchema puts enum values in the order given (SPEC §5's; for
// WebhookType, the configured event types') and arguments in argOrder.
// graphql-go takes both from maps, so introspection, and every schema a
// client generates from it, would otherwise change order at each start.
func orderSchema(s *graphql.Schema, enums map[string][]string) {
	rank := func(order []string, name string) int {
		if i := slices.Index(order, name); i >= 0 {
			return i
		}
		return len(order)
	}
	for name, t := range s.TypeMap() {
		switch t := t.(type) {
		case *graphql.Enum:
			if order, ok := enums[name]; ok {
				// Values returns graphql-go's own slice: sorted in place.
				slices.SortStableFunc(t.Values(), func(a, b *graphql.EnumValueDefinition) int {
					return cmp.Or(cmp.Compare(rank(order, a.Name), rank(order, b.Name)), strings.Compare(a.Name, b.Name))
				})
			}
		case *graphql.Object:
			if strings.HasPrefix(name, "__") {
				continue
			}
			for _, f := range t.Fields() {
				slices.SortStableFunc(f.Args, func(a, b *graphql.Argument) int {
					return cmp.Or(cmp.Compare(rank(argOrder, a.Name()), rank(argOrder, b.Name())), strings.Compare(a.Name(), b.Name()))
				})
			}
		}
	}
}
