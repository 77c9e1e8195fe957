package admin

import (
	"cmp"
	"slices"
	"strings"
	"sync"

	"github.com/graphql-go/graphql"
)

// enumDefaultsFixed guards the one change this package makes to
// graphql-go's own state; see fixEnumDefaults.
var enumDefaultsFixed sync.Once

// fixEnumDefaults makes introspection print an enum default value as an
// enum (`status: WebhookStatus = ENABLED`, as SPEC §5 writes it) rather than
// as the string "\"ENABLED\"": graphql-go v0.8.1's __InputValue.defaultValue
// passes the argument itself where the argument's type belongs, so it never
// sees the enum. The introspection types are graphql-go package variables
// shared by every schema in the process, hence the exception to the rule of
// no package state: the patch is applied once, before any schema of ours
// can execute, and only changes answers for enum-typed defaults.
func fixEnumDefaults() {
	enumDefaultsFixed.Do(func() {
		sortIntrospectionLists()
		field := graphql.InputValueType.Fields()["defaultValue"]
		if field == nil || field.Resolve == nil {
			return
		}
		orig := field.Resolve
		field.Resolve = func(p graphql.ResolveParams) (any, error) {
			var (
				typ graphql.Type
				def any
			)
			switch v := p.Source.(type) {
			case *graphql.Argument:
				typ, def = v.Type, v.DefaultValue
			case *graphql.InputObjectField:
				typ, def = v.Type, v.DefaultValue
			}
			if nn, ok := typ.(*graphql.NonNull); ok {
				typ = nn.OfType
			}
			if e, ok := typ.(*graphql.Enum); ok && def != nil {
				if name := e.Serialize(def); name != nil {
					return name, nil
				}
			}
			return orig(p)
		}
	})
}

// sortIntrospectionLists makes __Schema.types and __Type.inputFields list types and
// input fields by name, as graphql-go lists an object's fields: it lists
// them in map order, so the schema a client prints changed from one process
// to the next. Part of the one-time patch of fixEnumDefaults.
func sortIntrospectionLists() {
	sortResult(graphql.TypeType.Fields()["inputFields"], (*graphql.InputObjectField).Name)
	sortResult(graphql.SchemaType.Fields()["types"], graphql.Type.Name)
}

// sortResult wraps a list field's resolver so that it answers its list
// sorted by name.
func sortResult[T any](field *graphql.FieldDefinition, name func(T) string) {
	if field == nil || field.Resolve == nil {
		return
	}
	orig := field.Resolve
	field.Resolve = func(p graphql.ResolveParams) (any, error) {
		v, err := orig(p)
		if list, ok := v.([]T); ok {
			list = slices.Clone(list)
			slices.SortFunc(list, func(a, b T) int { return strings.Compare(name(a), name(b)) })
			return list, nil
		}
		return v, err
	}
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
