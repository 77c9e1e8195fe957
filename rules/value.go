package rules

import (
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"cel.dev/cel-go/common/types"
	"cel.dev/cel-go/common/types/ref"
	"cel.dev/cel-go/common/types/traits"
)

// maxEncodeDepth bounds the nesting of values encoded as JSON; parsed bodies
// cannot be deeper than maxJSONDepth, and CEL literals are far shallower.
const maxEncodeDepth = maxJSONDepth + 16

// appendJSON appends the JSON encoding of a CEL value to buf.
//
// Parts of a body are copied as the upstream wrote them (compacted), so that
// `data: response.body` keeps its key order and number formatting. With
// canonical set they are re-encoded instead, with sorted keys, so that
// equal values always encode to equal bytes: the outbox compares `changed`
// values byte for byte. Maps built by expressions always have sorted keys.
func appendJSON(buf []byte, v ref.Val, canonical bool) ([]byte, error) {
	e := jsonEncoder{canonical: canonical}
	return e.appendVal(buf, v, 0)
}

type jsonEncoder struct {
	canonical bool
}

func (e jsonEncoder) appendVal(buf []byte, v ref.Val, depth int) ([]byte, error) {
	if depth > maxEncodeDepth {
		return buf, errors.New("value is nested too deeply to encode as JSON")
	}
	switch v := v.(type) {
	case types.Null:
		return append(buf, "null"...), nil
	case types.Bool:
		return strconv.AppendBool(buf, bool(v)), nil
	case types.Int:
		return strconv.AppendInt(buf, int64(v), 10), nil
	case types.Uint:
		return strconv.AppendUint(buf, uint64(v), 10), nil
	case types.Double:
		return appendFloat(buf, float64(v))
	case types.String:
		return appendString(buf, string(v)), nil
	case types.Bytes:
		buf = append(buf, '"')
		buf = base64.StdEncoding.AppendEncode(buf, []byte(v))
		return append(buf, '"'), nil
	case types.Timestamp:
		buf = append(buf, '"')
		buf = v.Time.UTC().AppendFormat(buf, time.RFC3339Nano)
		return append(buf, '"'), nil
	case types.Duration:
		return appendString(buf, formatDuration(v.Duration)), nil
	case *types.Optional:
		if !v.HasValue() {
			return append(buf, "null"...), nil
		}
		return e.appendVal(buf, v.GetValue(), depth+1)
	case *types.Err:
		return buf, v
	case *jsonObject:
		return e.appendRaw(buf, v.doc, v.idx, depth)
	case *jsonArray:
		return e.appendRaw(buf, v.doc, v.idx, depth)
	}
	// Lists and maps built from parsed bodies wrap the parser's native
	// values; encoding those directly skips adapting every element.
	switch nv := v.Value().(type) {
	case map[string]any:
		if _, ok := v.(traits.Mapper); ok {
			return appendNative(buf, nv, depth)
		}
	case []any:
		if _, ok := v.(traits.Lister); ok {
			return appendNative(buf, nv, depth)
		}
	}
	switch v := v.(type) {
	case traits.Lister:
		buf = append(buf, '[')
		n := int(v.Size().(types.Int))
		for i := 0; i < n; i++ {
			if i > 0 {
				buf = append(buf, ',')
			}
			var err error
			if buf, err = e.appendVal(buf, v.Get(types.Int(i)), depth+1); err != nil {
				return buf, err
			}
		}
		return append(buf, ']'), nil
	case traits.Mapper:
		var small [8]mapEntry
		c := entryCollector{entries: small[:0]}
		if f, ok := v.(traits.Foldable); ok {
			f.Fold(&c)
		} else {
			it := v.Iterator()
			for it.HasNext() == types.True {
				k := it.Next()
				c.FoldEntry(k, v.Get(k))
			}
		}
		if c.err != nil {
			return buf, c.err
		}
		entries := c.entries
		slices.SortFunc(entries, func(a, b mapEntry) int { return strings.Compare(a.key, b.key) })
		buf = append(buf, '{')
		for i, en := range entries {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = appendString(buf, en.key)
			buf = append(buf, ':')
			var err error
			if buf, err = e.appendVal(buf, en.val, depth+1); err != nil {
				return buf, err
			}
		}
		return append(buf, '}'), nil
	}
	return buf, fmt.Errorf("a value of type %s cannot be encoded as JSON", v.Type().TypeName())
}

// mapEntry is one entry of a map being encoded.
type mapEntry struct {
	key string
	val ref.Val
}

// entryCollector collects the entries of a map with string keys (or keys
// JSON writes as strings), through traits.Folder.
type entryCollector struct {
	entries []mapEntry
	err     error
}

// FoldEntry implements traits.Folder.
func (c *entryCollector) FoldEntry(key, val any) bool {
	kv, ok := key.(ref.Val)
	if !ok {
		kv = types.DefaultTypeAdapter.NativeToValue(key)
	}
	var ks string
	switch k := kv.(type) {
	case types.String:
		ks = string(k)
	case types.Int, types.Uint, types.Bool:
		ks = fmt.Sprint(k.Value())
	default:
		c.err = fmt.Errorf("map key of type %s cannot be a JSON object key", kv.Type().TypeName())
		return false
	}
	c.entries = append(c.entries, mapEntry{ks, types.DefaultTypeAdapter.NativeToValue(val)})
	return true
}

// appendRaw encodes the part of a body at node i.
func (e jsonEncoder) appendRaw(buf []byte, d *jsonDoc, i uint32, depth int) ([]byte, error) {
	if !e.canonical {
		if out, ok := d.appendText(buf, i); ok {
			return out, nil
		}
	}
	return appendNative(buf, d.native(i), depth)
}

// appendCompact appends src, valid JSON, without insignificant whitespace.
func appendCompact(buf, src []byte) []byte {
	start := 0
	for i := 0; i < len(src); i++ {
		switch c := src[i]; c {
		case '"':
			i = skipString(src, i) - 1
		case ' ', '\t', '\n', '\r':
			buf = append(buf, src[start:i]...)
			start = i + 1
		}
	}
	return append(buf, src[start:]...)
}

// appendNative encodes the values parseJSON produces.
func appendNative(buf []byte, v any, depth int) ([]byte, error) {
	if depth > maxEncodeDepth {
		return buf, errors.New("value is nested too deeply to encode as JSON")
	}
	switch v := v.(type) {
	case nil:
		return append(buf, "null"...), nil
	case bool:
		return strconv.AppendBool(buf, v), nil
	case int64:
		return strconv.AppendInt(buf, v, 10), nil
	case float64:
		return appendFloat(buf, v)
	case string:
		return appendString(buf, v), nil
	case []any:
		buf = append(buf, '[')
		for i, e := range v {
			if i > 0 {
				buf = append(buf, ',')
			}
			var err error
			if buf, err = appendNative(buf, e, depth+1); err != nil {
				return buf, err
			}
		}
		return append(buf, ']'), nil
	case map[string]any:
		var small [16]string
		keys := small[:0]
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		buf = append(buf, '{')
		for i, k := range keys {
			if i > 0 {
				buf = append(buf, ',')
			}
			buf = appendString(buf, k)
			buf = append(buf, ':')
			var err error
			if buf, err = appendNative(buf, v[k], depth+1); err != nil {
				return buf, err
			}
		}
		return append(buf, '}'), nil
	}
	// Not reachable with parseJSON's output; CEL adapts anything else.
	return jsonEncoder{canonical: true}.appendVal(buf, types.DefaultTypeAdapter.NativeToValue(v), depth+1)
}

// appendFloat formats f as encoding/json does: integral values have no
// decimal point, large and tiny ones use an exponent.
func appendFloat(buf []byte, f float64) ([]byte, error) {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return buf, fmt.Errorf("%v cannot be encoded as JSON", f)
	}
	abs := math.Abs(f)
	format := byte('f')
	if abs != 0 && (abs < 1e-6 || abs >= 1e21) {
		format = 'e'
	}
	start := len(buf)
	buf = strconv.AppendFloat(buf, f, format, -1, 64)
	if format == 'e' {
		// Clean up e-09 to e-9, as encoding/json does.
		n := len(buf) - start
		if n >= 4 && buf[len(buf)-4] == 'e' && buf[len(buf)-3] == '-' && buf[len(buf)-2] == '0' {
			buf[len(buf)-2] = buf[len(buf)-1]
			buf = buf[:len(buf)-1]
		}
	}
	return buf, nil
}

const hexDigits = "0123456789abcdef"

// AppendJSONString appends s as a JSON string, byte for byte as
// encoding/json writes it with HTML escaping off (json.Encoder with
// SetEscapeHTML(false)): invalid UTF-8 becomes U+FFFD, U+2028 and U+2029 are
// escaped so that the output is also valid JavaScript, and < > & are kept.
// It is eventtap's one JSON string escaper: event data and the webhook
// payload's envelope (outbox) both use it, so that a payload never mixes
// two escaping styles. Safe for concurrent use; it allocates only to grow buf.
func AppendJSONString(buf []byte, s string) []byte {
	return appendString(buf, s)
}

// appendString is AppendJSONString.
func appendString(buf []byte, s string) []byte {
	buf = append(buf, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			buf = append(buf, s[start:i]...)
			switch c {
			case '"', '\\':
				buf = append(buf, '\\', c)
			case '\n':
				buf = append(buf, '\\', 'n')
			case '\r':
				buf = append(buf, '\\', 'r')
			case '\t':
				buf = append(buf, '\\', 't')
			case '\b':
				buf = append(buf, '\\', 'b')
			case '\f':
				buf = append(buf, '\\', 'f')
			default:
				buf = append(buf, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			buf = append(buf, s[start:i]...)
			buf = append(buf, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if r == '\u2028' || r == '\u2029' {
			buf = append(buf, s[start:i]...)
			buf = append(buf, '\\', 'u', '2', '0', '2', hexDigits[r&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	buf = append(buf, s[start:]...)
	return append(buf, '"')
}

// formatDuration renders d the way protobuf JSON does: seconds with an "s".
func formatDuration(d time.Duration) string {
	return strconv.FormatFloat(d.Seconds(), 'f', -1, 64) + "s"
}

// renderSubject turns the result of a subject expression into the event's
// subject: strings as they are, integral numbers without a decimal point.
func renderSubject(v ref.Val) (string, error) {
	switch v := v.(type) {
	case types.String:
		if v == "" {
			return "", errors.New("evaluated to an empty string")
		}
		return string(v), nil
	case types.Int:
		return strconv.FormatInt(int64(v), 10), nil
	case types.Uint:
		return strconv.FormatUint(uint64(v), 10), nil
	case types.Double:
		f := float64(v)
		if math.IsNaN(f) || math.IsInf(f, 0) {
			return "", fmt.Errorf("evaluated to %v", f)
		}
		if f == math.Trunc(f) && math.Abs(f) < 1<<63 {
			return strconv.FormatInt(int64(f), 10), nil
		}
		return strconv.FormatFloat(f, 'f', -1, 64), nil
	case types.Bool:
		return strconv.FormatBool(bool(v)), nil
	case types.Bytes:
		if len(v) == 0 || !utf8.Valid(v) {
			return "", errors.New("evaluated to bytes that are empty or not UTF-8 text")
		}
		return string(v), nil
	case types.Timestamp:
		return v.Time.UTC().Format(time.RFC3339Nano), nil
	case types.Duration:
		return formatDuration(v.Duration), nil
	case types.Null:
		return "", errors.New("evaluated to null; point it at a field that is always present, such as response.body.id or path.id")
	case *types.Optional:
		if !v.HasValue() {
			return "", errors.New("evaluated to an empty optional")
		}
		return renderSubject(v.GetValue())
	case *types.Err:
		return "", v
	}
	return "", fmt.Errorf("evaluated to a %s; a subject must be a string or a number", v.Type().TypeName())
}
