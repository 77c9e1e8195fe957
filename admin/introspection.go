package admin

import (
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
