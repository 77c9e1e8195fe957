package rules

import (
	"bytes"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// maxJSONDepth is encoding/json's nesting limit; deeper documents are not JSON
// for rules either.
const maxJSONDepth = 10000

// parseJSON decodes a whole JSON document into native values: map[string]any,
// []any, string, bool, nil, int64 for integers that fit (so that ids keep
// every digit and compare equal to CEL int literals) and float64 for every
// other number. It accepts exactly what encoding/json accepts (same grammar,
// depth and number range; invalid UTF-8 becomes U+FFFD) and reports false
// for anything else.
//
// Evaluate does not call it on whole bodies: it checks them with
// jsonScanner, which records where each value is, and decodes only what
// expressions read (see jsonDoc). parseJSON decodes the parts that are used
// whole.
func parseJSON(b []byte) (any, bool) {
	p := jsonParser{b: b, s: string(b), build: true}
	return p.document()
}

// validJSON reports whether parseJSON would accept b.
func validJSON(b []byte) bool {
	var sc jsonScanner
	return sc.scan(b)
}

// jsonParser is a recursive-descent JSON parser. With build unset it only
// validates, and allocates nothing.
type jsonParser struct {
	b []byte
	// s holds the same bytes as b, when the caller has made that copy:
	// keys and strings without escapes are then substrings of it, which
	// cost no allocation.
	s     string
	i     int
	build bool
}

func (p *jsonParser) document() (any, bool) {
	p.space()
	v, ok := p.value(0)
	if !ok {
		return nil, false
	}
	p.space()
	if p.i != len(p.b) {
		return nil, false
	}
	return v, true
}

func (p *jsonParser) space() {
	for p.i < len(p.b) {
		switch p.b[p.i] {
		case ' ', '\t', '\n', '\r':
			p.i++
		default:
			return
		}
	}
}

func (p *jsonParser) value(depth int) (any, bool) {
	if p.i >= len(p.b) {
		return nil, false
	}
	switch c := p.b[p.i]; {
	case c == '{':
		if depth >= maxJSONDepth {
			return nil, false
		}
		return p.object(depth + 1)
	case c == '[':
		if depth >= maxJSONDepth {
			return nil, false
		}
		return p.array(depth + 1)
	case c == '"':
		s, ok := p.str()
		if !p.build {
			return nil, ok
		}
		return s, ok
	case c == '-' || c >= '0' && c <= '9':
		return p.number()
	case c == 't':
		return true, p.literal("true")
	case c == 'f':
		return false, p.literal("false")
	case c == 'n':
		return nil, p.literal("null")
	}
	return nil, false
}

func (p *jsonParser) literal(s string) bool {
	if len(p.b)-p.i < len(s) || string(p.b[p.i:p.i+len(s)]) != s {
		return false
	}
	p.i += len(s)
	return true
}

func (p *jsonParser) object(depth int) (any, bool) {
	p.i++ // {
	var m map[string]any
	if p.build {
		m = make(map[string]any)
	}
	p.space()
	if p.i < len(p.b) && p.b[p.i] == '}' {
		p.i++
		return m, true
	}
	for {
		if p.i >= len(p.b) || p.b[p.i] != '"' {
			return nil, false
		}
		k, ok := p.str()
		if !ok {
			return nil, false
		}
		p.space()
		if p.i >= len(p.b) || p.b[p.i] != ':' {
			return nil, false
		}
		p.i++
		p.space()
		v, ok := p.value(depth)
		if !ok {
			return nil, false
		}
		if p.build {
			m[k] = v
		}
		if end, ok := p.sep('}'); !ok {
			return nil, false
		} else if end {
			return m, true
		}
	}
}

// sep consumes what follows a member or an element: a comma, or close,
// which ends the object or array (end). ok is false for anything else.
func (p *jsonParser) sep(close byte) (end, ok bool) {
	p.space()
	if p.i >= len(p.b) {
		return false, false
	}
	switch p.b[p.i] {
	case ',':
		p.i++
		p.space()
		return false, true
	case close:
		p.i++
		return true, true
	}
	return false, false
}

func (p *jsonParser) array(depth int) (any, bool) {
	p.i++ // [
	var l []any
	if p.build {
		l = make([]any, 0, 4)
	}
	p.space()
	if p.i < len(p.b) && p.b[p.i] == ']' {
		p.i++
		return l, true
	}
	for {
		v, ok := p.value(depth)
		if !ok {
			return nil, false
		}
		if p.build {
			l = append(l, v)
		}
		if end, ok := p.sep(']'); !ok {
			return nil, false
		} else if end {
			return l, true
		}
	}
}

// str decodes a string starting at the opening quote. Without build it
// returns "" and only validates.
func (p *jsonParser) str() (string, bool) {
	p.i++ // "
	start := p.i
	// Fast path: no escapes.
	for p.i < len(p.b) {
		c := p.b[p.i]
		if c == '"' {
			p.i++
			if !p.build {
				return "", true
			}
			s := p.b[start : p.i-1]
			if !utf8.Valid(s) {
				return string(fixUTF8(nil, s)), true
			}
			if p.s != "" {
				return p.s[start : p.i-1], true
			}
			return string(s), true
		}
		if c == '\\' {
			break
		}
		if c < 0x20 {
			return "", false
		}
		p.i++
	}
	var buf []byte
	if p.build {
		buf = make([]byte, 0, p.i-start+16)
		buf = fixUTF8(buf, p.b[start:p.i])
	}
	for p.i < len(p.b) {
		c := p.b[p.i]
		switch {
		case c == '"':
			p.i++
			return string(buf), true
		case c < 0x20:
			return "", false
		case c == '\\':
			p.i++
			if p.i >= len(p.b) {
				return "", false
			}
			e := p.b[p.i]
			p.i++
			switch e {
			case '"', '\\', '/':
				buf = append(buf, e)
			case 'b':
				buf = append(buf, '\b')
			case 'f':
				buf = append(buf, '\f')
			case 'n':
				buf = append(buf, '\n')
			case 'r':
				buf = append(buf, '\r')
			case 't':
				buf = append(buf, '\t')
			case 'u':
				r, ok := p.hex4()
				if !ok {
					return "", false
				}
				if utf16.IsSurrogate(r) {
					// As encoding/json: a valid pair is one rune; a lone
					// surrogate is U+FFFD, and an escape after it that
					// does not pair with it is decoded on its own.
					r2 := utf8.RuneError
					if p.i+1 < len(p.b) && p.b[p.i] == '\\' && p.b[p.i+1] == 'u' {
						save := p.i
						p.i += 2
						lo, ok := p.hex4()
						if !ok {
							return "", false
						}
						if d := utf16.DecodeRune(r, lo); d != utf8.RuneError {
							r2 = d
						} else {
							p.i = save
						}
					}
					r = r2
				}
				if p.build {
					buf = utf8.AppendRune(buf, r)
				}
			default:
				return "", false
			}
		default:
			// A run of plain bytes.
			j := p.i
			for j < len(p.b) && p.b[j] != '"' && p.b[j] != '\\' && p.b[j] >= 0x20 {
				j++
			}
			if p.build {
				buf = fixUTF8(buf, p.b[p.i:j])
			}
			p.i = j
		}
	}
	return "", false
}

func (p *jsonParser) hex4() (rune, bool) {
	if len(p.b)-p.i < 4 {
		return 0, false
	}
	var r rune
	for _, c := range p.b[p.i : p.i+4] {
		switch {
		case c >= '0' && c <= '9':
			c -= '0'
		case c >= 'a' && c <= 'f':
			c = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			c = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(c)
	}
	p.i += 4
	return r, true
}

// fixUTF8 appends s to buf with each invalid UTF-8 byte replaced by U+FFFD,
// as encoding/json does.
func fixUTF8(buf, s []byte) []byte {
	for len(s) > 0 {
		r, n := utf8.DecodeRune(s)
		if r == utf8.RuneError && n == 1 {
			buf = append(buf, "\uFFFD"...)
		} else {
			buf = append(buf, s[:n]...)
		}
		s = s[n:]
	}
	return buf
}

func (p *jsonParser) number() (any, bool) {
	start := p.i
	isInt, hasExp := true, false
	if p.b[p.i] == '-' {
		p.i++
	}
	if p.i >= len(p.b) {
		return nil, false
	}
	switch c := p.b[p.i]; {
	case c == '0':
		p.i++
	case c >= '1' && c <= '9':
		p.digits()
	default:
		return nil, false
	}
	if p.i < len(p.b) && p.b[p.i] == '.' {
		isInt = false
		p.i++
		if p.digits() == 0 {
			return nil, false
		}
	}
	if p.i < len(p.b) && (p.b[p.i] == 'e' || p.b[p.i] == 'E') {
		isInt, hasExp = false, true
		p.i++
		if p.i < len(p.b) && (p.b[p.i] == '+' || p.b[p.i] == '-') {
			p.i++
		}
		if p.digits() == 0 {
			return nil, false
		}
	}
	s := p.b[start:p.i]
	if !p.build {
		// Only an exponent or hundreds of digits can leave float64's
		// range, which encoding/json refuses.
		if !hasExp && len(s) < 300 {
			return nil, true
		}
		_, err := strconv.ParseFloat(string(s), 64)
		return nil, err == nil
	}
	if isInt && len(s) <= 18 {
		// Fits in int64 without overflow checks.
		var n int64
		neg := s[0] == '-'
		if neg {
			s = s[1:]
		}
		for _, c := range s {
			n = n*10 + int64(c-'0')
		}
		if neg {
			n = -n
		}
		return n, true
	}
	if isInt {
		if n, err := strconv.ParseInt(string(s), 10, 64); err == nil {
			return n, true
		}
	}
	f, err := strconv.ParseFloat(string(s), 64)
	if err != nil {
		return nil, false // out of float64's range
	}
	return f, true
}

func (p *jsonParser) digits() int {
	start := p.i
	for p.i < len(p.b) && p.b[p.i] >= '0' && p.b[p.i] <= '9' {
		p.i++
	}
	return p.i - start
}

// skipString returns the offset just past the string starting at b[i].
func skipString(b []byte, i int) int {
	start := i + 1
	for i = start; ; i++ {
		j := bytes.IndexByte(b[i:], '"')
		if j < 0 {
			return len(b)
		}
		i += j
		// The quote ends the string unless an odd number of
		// backslashes escapes it.
		n := 0
		for k := i - 1; k >= start && b[k] == '\\'; k-- {
			n++
		}
		if n%2 == 0 {
			return i + 1
		}
	}
}

// skipSpace returns the offset of the first non-space byte from i.
func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}
