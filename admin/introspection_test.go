package admin

import (
	"strings"
	"testing"

	"github.com/graphql-go/graphql"
)

// TestIntrospectionLeavesGraphqlGoAlone: the corrections are made per
// answer; graphql-go's shared introspection types keep their resolvers.
func TestIntrospectionLeavesGraphqlGoAlone(t *testing.T) {
	before := map[string]uintptr{
		"defaultValue": funcID(graphql.InputValueType.Fields()["defaultValue"].Resolve),
		"types":        funcID(graphql.SchemaType.Fields()["types"].Resolve),
		"inputFields":  funcID(graphql.TypeType.Fields()["inputFields"].Resolve),
	}
	e := newEnv(t)
	e.gql(introspectionQuery, nil)
	after := map[string]uintptr{
		"defaultValue": funcID(graphql.InputValueType.Fields()["defaultValue"].Resolve),
		"types":        funcID(graphql.SchemaType.Fields()["types"].Resolve),
		"inputFields":  funcID(graphql.TypeType.Fields()["inputFields"].Resolve),
	}
	for k := range before {
		if before[k] != after[k] {
			t.Errorf("graphql-go's %s resolver was replaced", k)
		}
	}
	if len(graphql.SpecifiedRules) != len(e.s.rules) {
		t.Errorf("graphql-go's SpecifiedRules has %d rules, ours %d", len(graphql.SpecifiedRules), len(e.s.rules))
	}
}

// TestIntrospectionCorrections without the members they need selected:
// the order is still stable, the enum default is still an enum, and the
// hidden members stay hidden.
func TestIntrospectionCorrections(t *testing.T) {
	var first string
	for i := range 6 {
		e := newEnv(t)
		raw := string(e.gql(`{ __schema { types { kind } } a: __type(name: "WebhookCreateInput") { inputFields { defaultValue } } }`, nil).raw)
		if strings.Contains(raw, "__eventtap") {
			t.Fatalf("hidden members in the answer: %s", raw)
		}
		if !strings.Contains(raw, `{"defaultValue":"ENABLED"}`) {
			t.Fatalf("enum default: %s", raw)
		}
		if i == 0 {
			first = raw
		} else if raw != first {
			t.Fatalf("answers differ between two servers built alike:\n%s\n%s", first, raw)
		}
	}
	// A client's own alias of the hidden name is kept.
	e := newEnv(t)
	r := e.gql(`{ __type(name: "WebhookCreateInput") { inputFields { __eventtapSortName: name } } }`, nil)
	if !strings.Contains(string(r.raw), `"__eventtapSortName":"description"`) {
		t.Errorf("client alias: %s", r.raw)
	}
}
