package admin

import (
	"os"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/graphql-go/graphql/language/ast"
	"github.com/graphql-go/graphql/language/parser"
	"github.com/graphql-go/graphql/language/printer"
)

// introspectionQuery is the standard one (graphql-js's getIntrospectionQuery,
// without the arguments and fields graphql-go does not implement), with its
// seven-level TypeRef: it must pass the depth limit.
const introspectionQuery = `
query IntrospectionQuery {
  __schema {
    queryType { name }
    mutationType { name }
    subscriptionType { name }
    types { ...FullType }
    directives { name description locations args { ...InputValue } }
  }
}
fragment FullType on __Type {
  kind name description
  fields(includeDeprecated: true) {
    name description
    args { ...InputValue }
    type { ...TypeRef }
    isDeprecated deprecationReason
  }
  inputFields { ...InputValue }
  interfaces { ...TypeRef }
  enumValues(includeDeprecated: true) { name description isDeprecated deprecationReason }
  possibleTypes { ...TypeRef }
}
fragment InputValue on __InputValue { name description type { ...TypeRef } defaultValue }
fragment TypeRef on __Type {
  kind name
  ofType { kind name ofType { kind name ofType { kind name ofType { kind name
    ofType { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } } }
}`

// TestSchemaMatchesSpec checks every type, field, argument, nullability and
// default value the server introspects against SPEC §5's SDL, and that
// there is nothing more.
func TestSchemaMatchesSpec(t *testing.T) {
	e := newEnv(t, withEventTypes(builtinTypes...))
	r := e.gql(introspectionQuery, nil)
	got := describeIntrospection(t, r.get("__schema.types").([]any))

	sdl, err := os.ReadFile("testdata/schema.graphql")
	if err != nil {
		t.Fatal(err)
	}
	doc, err := parser.Parse(parser.ParseParams{Source: string(sdl)})
	if err != nil {
		t.Fatalf("parse SPEC SDL: %v", err)
	}
	want := describeSDL(t, doc)

	for name, w := range want {
		g, ok := got[name]
		if !ok {
			t.Errorf("type %s: missing from the served schema", name)
			continue
		}
		if diff := diffLines(w, g); diff != "" {
			t.Errorf("type %s differs from SPEC (-spec +served):\n%s", name, diff)
		}
	}
	for name := range got {
		if _, ok := want[name]; !ok {
			t.Errorf("type %s: served but not in SPEC", name)
		}
	}
	if q, m := r.get("__schema.queryType.name"), r.get("__schema.mutationType.name"); q != "Query" || m != "Mutation" {
		t.Errorf("root types = %v, %v", q, m)
	}
}

// describeSDL renders each type of an SDL document as sorted lines such as
// "field webhooks(after: String, filter: WebhooksFilterInput, first: Int = 20): WebhookConnection!".
func describeSDL(t *testing.T, doc *ast.Document) map[string][]string {
	out := map[string][]string{}
	for _, def := range doc.Definitions {
		var name string
		var lines []string
		switch d := def.(type) {
		case *ast.ScalarDefinition:
			name, lines = d.Name.Value, []string{"SCALAR"}
		case *ast.EnumDefinition:
			name, lines = d.Name.Value, []string{"ENUM"}
			for _, v := range d.Values {
				lines = append(lines, "value "+v.Name.Value)
			}
		case *ast.ObjectDefinition:
			name, lines = d.Name.Value, []string{"OBJECT"}
			for _, f := range d.Fields {
				var args []string
				for _, a := range f.Arguments {
					args = append(args, inputLine(a.Name.Value, printer.Print(a.Type).(string), a.DefaultValue))
				}
				lines = append(lines, fieldLine(f.Name.Value, args, printer.Print(f.Type).(string)))
			}
		case *ast.InputObjectDefinition:
			name, lines = d.Name.Value, []string{"INPUT_OBJECT"}
			for _, f := range d.Fields {
				lines = append(lines, "input "+inputLine(f.Name.Value, printer.Print(f.Type).(string), f.DefaultValue))
			}
		default:
			t.Fatalf("unexpected SDL definition %T", def)
		}
		sort.Strings(lines)
		out[name] = lines
	}
	return out
}

func inputLine(name, typ string, def ast.Value) string {
	s := name + ": " + typ
	if def != nil {
		s += " = " + printer.Print(def).(string)
	}
	return s
}

func fieldLine(name string, args []string, typ string) string {
	sort.Strings(args)
	if len(args) > 0 {
		name += "(" + strings.Join(args, ", ") + ")"
	}
	return "field " + name + ": " + typ
}

// describeIntrospection renders introspected types like describeSDL,
// leaving out the introspection types and built-in scalars.
func describeIntrospection(t *testing.T, types []any) map[string][]string {
	out := map[string][]string{}
	builtin := []string{"String", "Int", "Float", "Boolean", "ID"}
	for _, ty := range types {
		m := ty.(map[string]any)
		name := m["name"].(string)
		if strings.HasPrefix(name, "__") || slices.Contains(builtin, name) {
			continue
		}
		lines := []string{m["kind"].(string)}
		for _, f := range list(m["fields"]) {
			var args []string
			for _, a := range list(f["args"]) {
				args = append(args, introspectedInput(a))
			}
			lines = append(lines, fieldLine(f["name"].(string), args, typeString(f["type"])))
		}
		for _, f := range list(m["inputFields"]) {
			lines = append(lines, "input "+introspectedInput(f))
		}
		for _, v := range list(m["enumValues"]) {
			lines = append(lines, "value "+v["name"].(string))
		}
		sort.Strings(lines)
		out[name] = lines
	}
	return out
}

func introspectedInput(a map[string]any) string {
	s := a["name"].(string) + ": " + typeString(a["type"])
	if d, ok := a["defaultValue"].(string); ok {
		s += " = " + d
	}
	return s
}

func list(v any) []map[string]any {
	var out []map[string]any
	for _, x := range asSlice(v) {
		out = append(out, x.(map[string]any))
	}
	return out
}

func asSlice(v any) []any { s, _ := v.([]any); return s }

func typeString(v any) string {
	m := v.(map[string]any)
	switch m["kind"] {
	case "NON_NULL":
		return typeString(m["ofType"]) + "!"
	case "LIST":
		return "[" + typeString(m["ofType"]) + "]"
	}
	return m["name"].(string)
}

func diffLines(want, got []string) string {
	var b strings.Builder
	for _, w := range want {
		if !slices.Contains(got, w) {
			b.WriteString("- " + w + "\n")
		}
	}
	for _, g := range got {
		if !slices.Contains(want, g) {
			b.WriteString("+ " + g + "\n")
		}
	}
	return b.String()
}

// TestWebhookTypeHasConfiguredTypes checks that config event_types join the
// enum and work end to end.
func TestWebhookTypeHasConfiguredTypes(t *testing.T) {
	e := newEnv(t)
	r := e.gql(`{ __type(name: "WebhookType") { enumValues { name } } }`, nil)
	var names []string
	for _, v := range list(r.get("__type.enumValues")) {
		names = append(names, v["name"].(string))
	}
	want := append(append([]string{}, builtinTypes...), "INVOICE_PAID")
	slices.Sort(names)
	slices.Sort(want)
	if !slices.Equal(names, want) {
		t.Errorf("WebhookType values = %v, want %v", names, want)
	}
	id := e.seedWebhook("https://example.com/hook", "INVOICE_PAID")
	r = e.gql(`query($id: ID!) { webhook(id: $id) { type } }`, map[string]any{"id": id})
	if got := r.get("webhook.type"); got != "INVOICE_PAID" {
		t.Errorf("type = %v", got)
	}
}

func TestNewRefusesBadEventTypes(t *testing.T) {
	for name, types := range map[string][]string{
		"empty":      nil,
		"duplicate":  {"ORDER_CREATED", "ORDER_CREATED"},
		"not a name": {"ORDER-CREATED"},
		"reserved":   {"true"},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := New(DefaultConfig(), nil, newRegistry(), newFakeStore(), types, nil); err == nil {
				t.Error("New accepted the event types")
			}
		})
	}
}

// TestSchemaOrderIsStable builds the server several times, as separate
// starts would (graphql-go takes arguments and enum values from maps, whose
// order differs every time), and checks that introspection answers the
// same bytes each time, in SPEC §5's order where it has one.
func TestSchemaOrderIsStable(t *testing.T) {
	var first []byte
	for i := range 8 {
		e := newEnv(t, withEventTypes(builtinTypes...))
		raw := e.gql(introspectionQuery, nil).raw
		if i == 0 {
			first = raw
			continue
		}
		if string(raw) != string(first) {
			t.Fatalf("introspection differs between two servers built alike (attempt %d)", i)
		}
	}
	e := newEnv(t, withEventTypes(builtinTypes...))
	r := e.gql(`{
  query: __type(name: "Query") { fields { name args { name } } }
  status: __type(name: "WebhookStatus") { enumValues { name } }
  state: __type(name: "DeliveryState") { enumValues { name } }
  types: __type(name: "WebhookType") { enumValues { name } }
  create: __type(name: "WebhookCreateInput") { inputFields { name } }
}`, nil)
	names := func(path, key string) []string {
		var out []string
		for _, v := range r.get(path).([]any) {
			out = append(out, v.(map[string]any)[key].(string))
		}
		return out
	}
	for _, f := range r.get("query.fields").([]any) {
		f := f.(map[string]any)
		var args []string
		for _, a := range f["args"].([]any) {
			args = append(args, a.(map[string]any)["name"].(string))
		}
		if strings.HasSuffix(f["name"].(string), "s") && !slices.Equal(args, []string{"first", "after", "filter"}) {
			t.Errorf("%s arguments %v, want first, after, filter", f["name"], args)
		}
	}
	for _, tc := range []struct {
		path string
		want []string
	}{
		{"status.enumValues", []string{"ENABLED", "DISABLED"}},
		{"state.enumValues", []string{"PENDING", "SUCCEEDED", "FAILED"}},
		{"types.enumValues", builtinTypes},
		{"create.inputFields", []string{"description", "secret", "status", "type", "url"}},
	} {
		if got := names(tc.path, "name"); !slices.Equal(got, tc.want) {
			t.Errorf("%s = %v, want %v", tc.path, got, tc.want)
		}
	}
}
