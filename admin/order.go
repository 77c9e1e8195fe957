package admin

import (
	"bytes"
	"encoding/json"
	"slices"

	"github.com/graphql-go/graphql/language/ast"
)

// orderedJSON encodes a result with each object's members in the order the
// operation selects them, which the GraphQL spec asks for (§7.2.2) and
// encoding/json, sorting map keys, does not give: graphql-go returns its
// results as maps. Fields selected more than once (through fragments) are
// merged as execution merges them; members no selection names, which
// graphql-go never produces, follow in sorted order.
func orderedJSON(doc *ast.Document, operationName string, data any) ([]byte, error) {
	op := findOperation(doc, operationName)
	if op == nil {
		return json.Marshal(data)
	}
	e := orderedEncoder{frags: map[string]*ast.FragmentDefinition{}}
	for _, d := range doc.Definitions {
		if f, ok := d.(*ast.FragmentDefinition); ok && f.Name != nil {
			e.frags[f.Name.Value] = f
		}
	}
	if err := e.value(data, []*ast.SelectionSet{op.SelectionSet}); err != nil {
		return nil, err
	}
	return e.buf.Bytes(), nil
}

type orderedEncoder struct {
	buf   bytes.Buffer
	frags map[string]*ast.FragmentDefinition
}

func (e *orderedEncoder) value(v any, sets []*ast.SelectionSet) error {
	switch x := v.(type) {
	case map[string]any:
		return e.object(x, sets)
	case []any:
		e.buf.WriteByte('[')
		for i, el := range x {
			if i > 0 {
				e.buf.WriteByte(',')
			}
			if err := e.value(el, sets); err != nil {
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

func (e *orderedEncoder) object(m map[string]any, sets []*ast.SelectionSet) error {
	var keys []string
	subs := map[string][]*ast.SelectionSet{}
	seenFrag := map[string]bool{}
	var collect func(set *ast.SelectionSet)
	collect = func(set *ast.SelectionSet) {
		if set == nil {
			return
		}
		for _, sel := range set.Selections {
			switch s := sel.(type) {
			case *ast.Field:
				key := s.Name.Value
				if s.Alias != nil && s.Alias.Value != "" {
					key = s.Alias.Value
				}
				if _, ok := m[key]; !ok {
					continue // skipped by a directive or a type condition
				}
				if _, ok := subs[key]; !ok {
					keys = append(keys, key)
					subs[key] = nil
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
	e.buf.WriteByte('{')
	for i, k := range keys {
		if i > 0 {
			e.buf.WriteByte(',')
		}
		kb, _ := json.Marshal(k)
		e.buf.Write(kb)
		e.buf.WriteByte(':')
		if err := e.value(m[k], subs[k]); err != nil {
			return err
		}
	}
	e.buf.WriteByte('}')
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
