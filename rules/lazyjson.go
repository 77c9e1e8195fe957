package rules

import (
	"bytes"
	"reflect"
	"slices"
	"unicode/utf8"

	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/common/types/traits"
)

// Bodies reach CEL as lazy values. A rule typically reads a few fields of a
// body (response.body.id, request.body.status) and copies the rest
// (data: response.body), so Evaluate validates a body once without
// allocating and then decodes only what expressions select: objects and
// arrays are jsonObject and jsonArray values that index their members on
// first access, and scalars are decoded when selected. Operations that need
// a whole object or array (equality, iteration over a map, conversion)
// decode it fully once and delegate to CEL's own map and list. Encoding a
// lazy value as event data copies its JSON text.
//
// Lazy values belong to one Evaluate call and are not safe for concurrent
// use (they cache what they decode).

// jsonDoc is a body known to be valid JSON.
type jsonDoc struct {
	b []byte
	// s is string(b), made when a large part of the body is decoded, so
	// that its strings can share one copy.
	s string
}

// bodyValue returns the CEL value of a body: the lazy value of its JSON, or
// null when it is empty, truncated or not JSON.
func bodyValue(b []byte, truncated bool) ref.Val {
	if truncated || len(b) == 0 || !validJSON(b) {
		return types.NullValue
	}
	d := &jsonDoc{b: b}
	return d.valueAt(0)
}

// valueAt returns the value starting at offset i (after optional space).
func (d *jsonDoc) valueAt(i int) ref.Val {
	i = skipSpace(d.b, i)
	switch d.b[i] {
	case '{':
		return &jsonObject{doc: d, start: i}
	case '[':
		return &jsonArray{doc: d, start: i}
	}
	p := jsonParser{b: d.b, s: d.s, i: i, build: true}
	v, _ := p.value(0)
	return scalarVal(v)
}

// native decodes the value at offset i completely.
func (d *jsonDoc) native(i int) any {
	if d.s == "" {
		d.s = string(d.b)
	}
	p := jsonParser{b: d.b, s: d.s, i: i, build: true}
	v, _ := p.value(0)
	return v
}

// raw returns the JSON text of the value at offset i.
func (d *jsonDoc) raw(i int) []byte {
	return d.b[i:skipJSON(d.b, i)]
}

func scalarVal(v any) ref.Val {
	switch v := v.(type) {
	case nil:
		return types.NullValue
	case bool:
		return types.Bool(v)
	case int64:
		return types.Int(v)
	case float64:
		return types.Double(v)
	case string:
		return types.String(v)
	}
	return types.DefaultTypeAdapter.NativeToValue(v)
}

// jsonObject is a JSON object decoded on demand. It implements
// traits.Mapper.
type jsonObject struct {
	doc     *jsonDoc
	start   int // offset of '{'
	indexed bool
	members []jsonMember
	// keys holds the decoded keys that differ from their bytes (escapes,
	// invalid UTF-8), by member index; nil when there are none.
	keys map[int]string
	size int // distinct keys
	full traits.Mapper
}

// jsonMember is one key of an object, in document order.
type jsonMember struct {
	ks, ke int32 // the key's bytes, without quotes
	val    int32 // offset of the value
	v      ref.Val
}

// keyIs reports whether member i's key is k, without allocating.
func (o *jsonObject) keyIs(i int, k string) bool {
	if o.keys != nil {
		if dk, ok := o.keys[i]; ok {
			return dk == k
		}
	}
	m := &o.members[i]
	return string(o.doc.b[m.ks:m.ke]) == k
}

// key returns member i's key.
func (o *jsonObject) key(i int) string {
	if o.keys != nil {
		if k, ok := o.keys[i]; ok {
			return k
		}
	}
	m := &o.members[i]
	return string(o.doc.b[m.ks:m.ke])
}

// maxStackMembers is how many members index collects before allocating
// their exact-size slice.
const maxStackMembers = 32

func (o *jsonObject) index() {
	if o.indexed {
		return
	}
	o.indexed = true
	b := o.doc.b
	i := skipSpace(b, o.start+1)
	if b[i] == '}' {
		return
	}
	var stack [maxStackMembers]jsonMember
	members := stack[:0]
	for {
		end := skipString(b, i)
		m := jsonMember{ks: int32(i + 1), ke: int32(end - 1)}
		if k := b[m.ks:m.ke]; bytes.IndexByte(k, '\\') >= 0 || !utf8.Valid(k) {
			p := jsonParser{b: b, i: i, build: true}
			if o.keys == nil {
				o.keys = map[int]string{}
			}
			o.keys[len(members)], _ = p.str()
		}
		i = skipSpace(b, skipSpace(b, end)+1) // past ':'
		m.val = int32(i)
		members = append(members, m)
		i = skipSpace(b, skipJSON(b, i))
		if b[i] != ',' {
			break
		}
		i = skipSpace(b, i+1)
	}
	o.members = slices.Clone(members)
	o.size = len(o.members)
	// Duplicate keys are legal JSON; the last one wins, as in
	// encoding/json. They are rare, so count them the simple way.
	if len(o.members) <= 32 && o.keys == nil {
		for i := range o.members {
			mi := &o.members[i]
			for j := i + 1; j < len(o.members); j++ {
				if mj := &o.members[j]; bytes.Equal(b[mi.ks:mi.ke], b[mj.ks:mj.ke]) {
					o.size--
					break
				}
			}
		}
		return
	}
	seen := make(map[string]bool, len(o.members))
	for i := range o.members {
		seen[o.key(i)] = true
	}
	o.size = len(seen)
}

func (o *jsonObject) decoded() traits.Mapper {
	if o.full == nil {
		m, _ := o.doc.native(o.start).(map[string]any)
		o.full = types.NewStringInterfaceMap(types.DefaultTypeAdapter, m)
	}
	return o.full
}

// Find implements traits.Mapper.
func (o *jsonObject) Find(key ref.Val) (ref.Val, bool) {
	k, ok := key.(types.String)
	if !ok {
		return o.decoded().Find(key)
	}
	o.index()
	for i := len(o.members) - 1; i >= 0; i-- {
		if o.keyIs(i, string(k)) {
			m := &o.members[i]
			if m.v == nil {
				m.v = o.doc.valueAt(int(m.val))
			}
			return m.v, true
		}
	}
	return nil, false
}

// Get implements traits.Indexer.
func (o *jsonObject) Get(key ref.Val) ref.Val {
	if v, ok := o.Find(key); ok {
		return v
	}
	return o.decoded().Get(key) // CEL's own error for a missing key
}

// Contains implements traits.Container.
func (o *jsonObject) Contains(key ref.Val) ref.Val {
	if _, ok := key.(types.String); !ok {
		return o.decoded().Contains(key)
	}
	_, found := o.Find(key)
	return types.Bool(found)
}

// Size implements traits.Sizer.
func (o *jsonObject) Size() ref.Val {
	o.index()
	return types.Int(o.size)
}

// Iterator implements traits.Iterable.
func (o *jsonObject) Iterator() traits.Iterator { return o.decoded().Iterator() }

// ConvertToNative implements ref.Val.
func (o *jsonObject) ConvertToNative(t reflect.Type) (any, error) {
	return o.decoded().ConvertToNative(t)
}

// ConvertToType implements ref.Val.
func (o *jsonObject) ConvertToType(t ref.Type) ref.Val { return o.decoded().ConvertToType(t) }

// Equal implements ref.Val.
func (o *jsonObject) Equal(other ref.Val) ref.Val { return o.decoded().Equal(other) }

// Type implements ref.Val.
func (o *jsonObject) Type() ref.Type { return types.MapType }

// Value implements ref.Val.
func (o *jsonObject) Value() any { return o.decoded().Value() }

// jsonArray is a JSON array decoded on demand. It implements traits.Lister.
type jsonArray struct {
	doc     *jsonDoc
	start   int // offset of '['
	indexed bool
	elems   []int // offsets of the elements
	vals    []ref.Val
	full    traits.Lister
}

func (a *jsonArray) index() {
	if a.indexed {
		return
	}
	a.indexed = true
	b := a.doc.b
	i := skipSpace(b, a.start+1)
	if b[i] == ']' {
		return
	}
	a.elems = make([]int, 0, 8)
	for {
		a.elems = append(a.elems, i)
		i = skipSpace(b, skipJSON(b, i))
		if b[i] != ',' {
			break
		}
		i = skipSpace(b, i+1)
	}
	a.vals = make([]ref.Val, len(a.elems))
}

func (a *jsonArray) decoded() traits.Lister {
	if a.full == nil {
		l, _ := a.doc.native(a.start).([]any)
		a.full = types.NewList(types.DefaultTypeAdapter, l)
	}
	return a.full
}

// Get implements traits.Indexer.
func (a *jsonArray) Get(idx ref.Val) ref.Val {
	a.index()
	if i, ok := idx.(types.Int); ok && i >= 0 && int64(i) < int64(len(a.elems)) {
		if a.vals[i] == nil {
			a.vals[i] = a.doc.valueAt(a.elems[i])
		}
		return a.vals[i]
	}
	return a.decoded().Get(idx) // other index types, and CEL's own errors
}

// Size implements traits.Sizer.
func (a *jsonArray) Size() ref.Val {
	a.index()
	return types.Int(len(a.elems))
}

// Contains implements traits.Container.
func (a *jsonArray) Contains(v ref.Val) ref.Val { return a.decoded().Contains(v) }

// Add implements traits.Adder.
func (a *jsonArray) Add(other ref.Val) ref.Val { return a.decoded().Add(other) }

// Iterator implements traits.Iterable.
func (a *jsonArray) Iterator() traits.Iterator { return a.decoded().Iterator() }

// ConvertToNative implements ref.Val.
func (a *jsonArray) ConvertToNative(t reflect.Type) (any, error) {
	return a.decoded().ConvertToNative(t)
}

// ConvertToType implements ref.Val.
func (a *jsonArray) ConvertToType(t ref.Type) ref.Val { return a.decoded().ConvertToType(t) }

// Equal implements ref.Val.
func (a *jsonArray) Equal(other ref.Val) ref.Val { return a.decoded().Equal(other) }

// Type implements ref.Val.
func (a *jsonArray) Type() ref.Type { return types.ListType }

// Value implements ref.Val.
func (a *jsonArray) Value() any { return a.decoded().Value() }

var (
	_ traits.Mapper = (*jsonObject)(nil)
	_ traits.Lister = (*jsonArray)(nil)
)
