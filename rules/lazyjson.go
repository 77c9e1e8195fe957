package rules

import (
	"reflect"
	"unicode/utf8"

	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/common/types/traits"
)

// Bodies reach CEL as lazy values. A rule typically reads a few fields of a
// body (response.body.id, request.body.status) and copies the rest
// (data: response.body), so Evaluate scans a body once, recording where
// each value starts and ends (its tape, see jsonNode), and then decodes only
// what expressions select: objects and arrays are jsonObject and jsonArray
// values that walk the tape, and scalars are decoded when selected, once.
// Operations that need a whole object or array (equality, conversion)
// decode it fully once and delegate to CEL's own map and list. Encoding a
// lazy value as event data copies its JSON text.
//
// Lazy values belong to one Evaluate call and are not safe for concurrent
// use (they cache what they decode).

// jsonDoc is a body known to be valid JSON, with its tape.
type jsonDoc struct {
	b    []byte
	tape []jsonNode
	// vals caches the values decoded so far, by node (keys included);
	// nil until the first one.
	vals []ref.Val
	// set lists the nodes vals holds a value for, when vals is borrowed
	// (see scratch), so that returning it clears only those.
	set *[]uint32
	// s is string(b), made when a value is decoded whole (see native),
	// so that its strings share one copy.
	s string
	// spaced and badUTF8 are jsonScanner's.
	spaced, badUTF8 bool
	arena           *jsonArena
}

// jsonArena allocates the lazy objects and arrays of one evaluation in
// blocks.
type jsonArena struct {
	objs []jsonObject
	arrs []jsonArray
}

func (a *jsonArena) object(d *jsonDoc, i uint32) *jsonObject {
	if len(a.objs) == cap(a.objs) {
		a.objs = make([]jsonObject, 0, min(2*cap(a.objs)+4, 64))
	}
	a.objs = append(a.objs, jsonObject{doc: d, idx: i, size: -1})
	return &a.objs[len(a.objs)-1]
}

func (a *jsonArena) array(d *jsonDoc, i uint32) *jsonArray {
	if len(a.arrs) == cap(a.arrs) {
		a.arrs = make([]jsonArray, 0, min(2*cap(a.arrs)+2, 64))
	}
	a.arrs = append(a.arrs, jsonArray{doc: d, idx: i, size: -1})
	return &a.arrs[len(a.arrs)-1]
}

// bodyValue returns the CEL value of a body: the lazy value of its JSON, or
// null when it is empty, truncated or not JSON.
func bodyValue(b []byte, truncated bool) ref.Val {
	var d jsonDoc
	var sc jsonScanner
	if !d.init(b, truncated, &sc, &jsonArena{}) {
		return types.NullValue
	}
	return d.value(0)
}

// init scans b with sc, whose tape d then uses, and reports whether b is
// JSON (and neither empty nor truncated).
func (d *jsonDoc) init(b []byte, truncated bool, sc *jsonScanner, arena *jsonArena) bool {
	if truncated || len(b) == 0 || !sc.scan(b) {
		return false
	}
	*d = jsonDoc{b: b, tape: sc.tape, spaced: sc.spaced, badUTF8: sc.badUTF8, arena: arena}
	return true
}

// value returns the value of node i.
func (d *jsonDoc) value(i uint32) ref.Val {
	if d.vals == nil {
		d.vals = make([]ref.Val, len(d.tape))
	} else if v := d.vals[i]; v != nil {
		return v
	}
	var v ref.Val
	n := d.tape[i]
	switch d.b[n.start] {
	case '{':
		v = d.arena.object(d, i)
	case '[':
		v = d.arena.array(d, i)
	case '"':
		v = types.String(d.str(i))
	case 't':
		v = types.True
	case 'f':
		v = types.False
	case 'n':
		v = types.NullValue
	default:
		p := jsonParser{b: d.b[:n.end], i: int(n.start), build: true}
		num, _ := p.number()
		v = scalarVal(num)
	}
	d.vals[i] = v
	if d.set != nil {
		*d.set = append(*d.set, i)
	}
	return v
}

// str decodes the string of node i.
func (d *jsonDoc) str(i uint32) string {
	n := d.tape[i]
	if n.next&strPlain != 0 {
		if d.s != "" {
			return d.s[n.start+1 : n.end-1]
		}
		return string(d.b[n.start+1 : n.end-1])
	}
	p := jsonParser{b: d.b, s: d.s, i: int(n.start), build: true}
	s, _ := p.str()
	return s
}

// keyIs reports whether key node i is k, without allocating.
func (d *jsonDoc) keyIs(i uint32, k string) bool {
	n := d.tape[i]
	if n.next&strPlain != 0 {
		return int(n.end-n.start) == len(k)+2 && string(d.b[n.start+1:n.end-1]) == k
	}
	return string(d.keyVal(i)) == k
}

// keyVal returns the decoded key node i.
func (d *jsonDoc) keyVal(i uint32) types.String {
	v, _ := d.value(i).(types.String)
	return v
}

// native decodes the value at node i completely.
func (d *jsonDoc) native(i uint32) any {
	if d.s == "" {
		d.s = string(d.b)
	}
	p := jsonParser{b: d.b, s: d.s, i: int(d.tape[i].start), build: true}
	v, _ := p.value(0)
	return v
}

// raw returns the JSON text of node i.
func (d *jsonDoc) raw(i uint32) []byte {
	n := d.tape[i]
	return d.b[n.start:n.end]
}

// appendText appends the text of node i, compacted, and reports true,
// unless it holds invalid UTF-8, which the text cannot be copied with.
func (d *jsonDoc) appendText(buf []byte, i uint32) ([]byte, bool) {
	raw := d.raw(i)
	if d.badUTF8 && !utf8.Valid(raw) {
		return buf, false
	}
	if !d.spaced {
		return append(buf, raw...), true
	}
	return appendCompact(buf, raw), true
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
// traits.Mapper and traits.Foldable.
type jsonObject struct {
	doc  *jsonDoc
	idx  uint32 // node
	size int32  // distinct keys; -1 until counted
	full traits.Mapper
}

// find returns the value node of key k; duplicate keys are legal JSON,
// and the last one wins, as in encoding/json.
func (o *jsonObject) find(k string) (uint32, bool) {
	t := o.doc.tape
	found, ok := uint32(0), false
	for i, end := o.idx+1, t[o.idx].next; i < end; i = skipNode(t, i+1) {
		if o.doc.keyIs(i, k) {
			found, ok = i+1, true
		}
	}
	return found, ok
}

func (o *jsonObject) decoded() traits.Mapper {
	if o.full == nil {
		m, _ := o.doc.native(o.idx).(map[string]any)
		o.full = types.NewStringInterfaceMap(types.DefaultTypeAdapter, m)
	}
	return o.full
}

// FindStringKey is CEL's fast path for selecting a field.
func (o *jsonObject) FindStringKey(k string) (any, bool) {
	if i, ok := o.find(k); ok {
		return o.doc.value(i), true
	}
	return nil, false
}

// Find implements traits.Mapper.
func (o *jsonObject) Find(key ref.Val) (ref.Val, bool) {
	k, ok := key.(types.String)
	if !ok {
		return o.decoded().Find(key)
	}
	if i, ok := o.find(string(k)); ok {
		return o.doc.value(i), true
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
	k, ok := key.(types.String)
	if !ok {
		return o.decoded().Contains(key)
	}
	_, found := o.find(string(k))
	return types.Bool(found)
}

// Size implements traits.Sizer.
func (o *jsonObject) Size() ref.Val {
	if o.size < 0 {
		o.count()
	}
	return types.Int(o.size)
}

// count sets o.size, the number of distinct keys.
func (o *jsonObject) count() {
	d, t := o.doc, o.doc.tape
	members, plain := 0, true
	for i, end := o.idx+1, t[o.idx].next; i < end; i = skipNode(t, i+1) {
		members++
		plain = plain && t[i].next&strPlain != 0
	}
	o.size = int32(members)
	if members < 2 {
		return
	}
	if members <= 32 && plain {
		// Duplicates are rare; count them the simple way.
		for i, end := o.idx+1, t[o.idx].next; i < end; i = skipNode(t, i+1) {
			ki := t[i]
			for j := skipNode(t, i+1); j < end; j = skipNode(t, j+1) {
				if kj := t[j]; string(d.b[ki.start:ki.end]) == string(d.b[kj.start:kj.end]) {
					o.size--
					break
				}
			}
		}
		return
	}
	seen := make(map[types.String]struct{}, members)
	for i, end := o.idx+1, t[o.idx].next; i < end; i = skipNode(t, i+1) {
		seen[d.keyVal(i)] = struct{}{}
	}
	o.size = int32(len(seen))
}

// Fold implements traits.Foldable: it passes each distinct key, in
// document order (the last of duplicates), with its value.
func (o *jsonObject) Fold(f traits.Folder) {
	d, t := o.doc, o.doc.tape
	if o.size < 0 {
		o.count()
	}
	keyOnly := false
	if kf, ok := f.(interface{ FoldKeyOnly() bool }); ok {
		keyOnly = kf.FoldKeyOnly()
	}
	members := 0
	for i, end := o.idx+1, t[o.idx].next; i < end; i = skipNode(t, i+1) {
		members++
	}
	dups := members != int(o.size)
	for i, end := o.idx+1, t[o.idx].next; i < end; i = skipNode(t, i+1) {
		k := d.keyVal(i)
		if dups {
			if last, _ := o.find(string(k)); last != i+1 {
				continue
			}
		}
		var v ref.Val
		if !keyOnly {
			v = d.value(i + 1)
		}
		if !f.FoldEntry(k, v) {
			return
		}
	}
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

// jsonArray is a JSON array decoded on demand. It implements traits.Lister
// and traits.Foldable.
type jsonArray struct {
	doc  *jsonDoc
	idx  uint32 // node
	size int32  // -1 until counted
	// elems are the nodes of the elements, made when an element other
	// than the first is selected by index.
	elems []uint32
	full  traits.Lister
}

func (a *jsonArray) len() int {
	if a.size < 0 {
		t := a.doc.tape
		n := 0
		for i, end := a.idx+1, t[a.idx].next; i < end; i = skipNode(t, i) {
			n++
		}
		a.size = int32(n)
	}
	return int(a.size)
}

// elem returns the node of element k, which must exist.
func (a *jsonArray) elem(k int) uint32 {
	if k == 0 {
		return a.idx + 1
	}
	if a.elems == nil {
		t := a.doc.tape
		a.elems = make([]uint32, 0, a.len())
		for i, end := a.idx+1, t[a.idx].next; i < end; i = skipNode(t, i) {
			a.elems = append(a.elems, i)
		}
	}
	return a.elems[k]
}

func (a *jsonArray) decoded() traits.Lister {
	if a.full == nil {
		l, _ := a.doc.native(a.idx).([]any)
		a.full = types.NewList(types.DefaultTypeAdapter, l)
	}
	return a.full
}

// Get implements traits.Indexer.
func (a *jsonArray) Get(idx ref.Val) ref.Val {
	if i, ok := idx.(types.Int); ok && i >= 0 && int64(i) < int64(a.len()) {
		return a.doc.value(a.elem(int(i)))
	}
	return a.decoded().Get(idx) // other index types, and CEL's own errors
}

// Size implements traits.Sizer.
func (a *jsonArray) Size() ref.Val { return types.Int(a.len()) }

// Fold implements traits.Foldable: it passes each index with its element.
func (a *jsonArray) Fold(f traits.Folder) {
	t := a.doc.tape
	k := types.Int(0)
	for i, end := a.idx+1, t[a.idx].next; i < end; i = skipNode(t, i) {
		if !f.FoldEntry(k, a.doc.value(i)) {
			return
		}
		k++
	}
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
	_ traits.Mapper   = (*jsonObject)(nil)
	_ traits.Foldable = (*jsonObject)(nil)
	_ traits.Lister   = (*jsonArray)(nil)
	_ traits.Foldable = (*jsonArray)(nil)
)
