package admin

import (
	"bytes"
	"cmp"
	"encoding/json"
	"slices"
	"strings"

	"github.com/graphql-go/graphql"
	"github.com/graphql-go/graphql/language/ast"
)

// orderedJSON encodes a result with each object's members in the order the
// operation selects them, which the GraphQL spec asks for (§7.2.2) and
// encoding/json, sorting map keys, does not give: graphql-go returns its
// results as maps. Fields selected more than once (through fragments) are
// merged as execution merges them; members no selection names, which
// graphql-go never produces, follow in sorted order. It also applies the
// introspection corrections (see hiddenFields), leaving out the hidden
// fields.
func orderedJSON(schema *graphql.Schema, doc *ast.Document, operationName string, data any, hidden map[*ast.Field]bool) ([]byte, error) {
	op := findOperation(doc, operationName)
	if op == nil {
		return json.Marshal(data)
	}
	e := orderedEncoder{schema: schema, hidden: hidden, frags: map[string]*ast.FragmentDefinition{}}
	for _, d := range doc.Definitions {
		if f, ok := d.(*ast.FragmentDefinition); ok && f.Name != nil {
			e.frags[f.Name.Value] = f
		}
	}
	if err := e.value(data, []*ast.SelectionSet{op.SelectionSet}, rootType(schema, op.Operation)); err != nil {
		return nil, err
	}
	return e.buf.Bytes(), nil
}

type orderedEncoder struct {
	buf    bytes.Buffer
	schema *graphql.Schema
	hidden map[*ast.Field]bool
	frags  map[string]*ast.FragmentDefinition
}

// value encodes v, selected by sets, of the named type t (nil if unknown).
func (e *orderedEncoder) value(v any, sets []*ast.SelectionSet, t graphql.Type) error {
	switch x := v.(type) {
	case map[string]any:
		return e.object(x, sets, t)
	case []any:
		e.buf.WriteByte('[')
		for i, el := range x {
			if i > 0 {
				e.buf.WriteByte(',')
			}
			if err := e.value(el, sets, t); err != nil {
				return err
			}
		}
		e.buf.WriteByte(']')
		return nil
	}
	b, err := json.Marshal(v)
	e.buf.Write(b)
	return err
}

func (e *orderedEncoder) object(m map[string]any, sets []*ast.SelectionSet, t graphql.Type) error {
	var keys []string
	subs := map[string][]*ast.SelectionSet{}
	names := map[string]string{} // response name → field name
	visible := map[string]bool{} // selected by the client, not only by hiddenFields
	seenFrag := map[string]bool{}
	var collect func(set *ast.SelectionSet)
	collect = func(set *ast.SelectionSet) {
		if set == nil {
			return
		}
		for _, sel := range set.Selections {
			switch s := sel.(type) {
			case *ast.Field:
				key := responseName(s)
				if _, ok := m[key]; !ok {
					continue // skipped by a directive or a type condition
				}
				if _, ok := subs[key]; !ok {
					keys = append(keys, key)
					subs[key] = nil
					names[key] = s.Name.Value
				}
				if !e.hidden[s] {
					visible[key] = true
				}
				if s.SelectionSet != nil {
					subs[key] = append(subs[key], s.SelectionSet)
				}
			case *ast.InlineFragment:
				collect(s.SelectionSet)
			case *ast.FragmentSpread:
				if f := e.frags[s.Name.Value]; f != nil && !seenFrag[s.Name.Value] {
					seenFrag[s.Name.Value] = true
					collect(f.SelectionSet)
				}
			}
		}
	}
	for _, set := range sets {
		collect(set)
	}
	if len(keys) < len(m) {
		var rest []string
		for k := range m {
			if _, ok := subs[k]; !ok {
				rest = append(rest, k)
			}
		}
		slices.Sort(rest)
		keys = append(keys, rest...)
	}
	if t == graphql.Type(graphql.InputValueType) {
		if printed, ok := m["defaultValue"].(string); ok {
			if name, ok := enumDefault(e.schema, printed, m[defaultTypeAlias]); ok {
				m["defaultValue"] = name
			}
		}
	}
	e.buf.WriteByte('{')
	first := true
	for _, k := range keys {
		if _, selected := names[k]; selected && !visible[k] {
			continue
		}
		if !first {
			e.buf.WriteByte(',')
		}
		first = false
		kb, _ := json.Marshal(k)
		e.buf.Write(kb)
		e.buf.WriteByte(':')
		var ft graphql.Type
		if def := fieldDef(e.schema, t, names[k]); def != nil {
			ft, _ = graphql.GetNamed(def.Type).(graphql.Type)
		}
		var err error
		if list, ok := m[k].([]any); ok && sortedIntrospectionList(t, names[k]) {
			err = e.sortedList(list, subs[k], ft)
		} else {
			err = e.value(m[k], subs[k], ft)
		}
		if err != nil {
			return err
		}
	}
	e.buf.WriteByte('}')
	return nil
}

// sortedList encodes a list of introspection objects sorted by name (the
// hidden sort key, which hiddenFields adds), then by encoding.
func (e *orderedEncoder) sortedList(list []any, sets []*ast.SelectionSet, t graphql.Type) error {
	type item struct {
		key string
		enc []byte
	}
	items := make([]item, len(list))
	for i, el := range list {
		sub := orderedEncoder{schema: e.schema, hidden: e.hidden, frags: e.frags}
		if err := sub.value(el, sets, t); err != nil {
			return err
		}
		if m, ok := el.(map[string]any); ok {
			items[i].key, _ = m[sortNameAlias].(string)
		}
		items[i].enc = sub.buf.Bytes()
	}
	slices.SortStableFunc(items, func(a, b item) int {
		return cmp.Or(strings.Compare(a.key, b.key), bytes.Compare(a.enc, b.enc))
	})
	e.buf.WriteByte('[')
	for i, it := range items {
		if i > 0 {
			e.buf.WriteByte(',')
		}
		e.buf.Write(it.enc)
	}
	e.buf.WriteByte(']')
	return nil
}

// findOperation returns the operation a request executes: the one named,
// or the only one.
func findOperation(doc *ast.Document, name string) *ast.OperationDefinition {
	var found *ast.OperationDefinition
	for _, def := range doc.Definitions {
		op, ok := def.(*ast.OperationDefinition)
		if !ok {
			continue
		}
		if name == "" {
			if found != nil {
				return nil
			}
			found = op
		} else if op.Name != nil && op.Name.Value == name {
			found = op
		}
	}
	return found
}
