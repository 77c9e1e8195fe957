package rules

import (
	"encoding/binary"
	"math/bits"
	"strconv"
	"unicode/utf8"
)

// jsonNode is one value of a JSON document, or one key of an object.
// jsonScanner records the nodes of a document in document order (a tape):
// an object's node is followed by its key and value nodes, in turn; an
// array's by its elements' nodes. Walking an object or an array is then a
// walk over its direct children, each container skipped in one step, with no
// byte of the document read twice.
type jsonNode struct {
	// start is the offset of the value's first byte ('{', '[', '"', '-',
	// a digit, 't', 'f' or 'n'); end is just past its last byte.
	start, end uint32
	// next is, for an object or an array, the index of the node after the
	// container and everything in it. For a scalar it holds nodeScalar
	// and, for a string, whether its text needs decoding (strPlain
	// unset: it has escapes or invalid UTF-8).
	next uint32
}

const (
	nodeScalar = 1 << 31
	strPlain   = 1 << 30
)

// maxTapeBytes bounds the documents jsonScanner indexes: offsets are
// 32-bit, and the proxy captures at most 64 MiB of a body (see
// proxy.MaxCaptureLimit). Larger bodies are treated as not JSON.
const maxTapeBytes = 1 << 30

// skip returns the index of the node after node i and its contents.
func skipNode(t []jsonNode, i uint32) uint32 {
	if n := t[i].next; n&nodeScalar == 0 {
		return n
	}
	return i + 1
}

// jsonScanner validates a JSON document, accepting exactly what parseJSON
// accepts, and records its tape. Its slices are reused from one scan to
// the next.
type jsonScanner struct {
	tape  []jsonNode
	stack []uint32 // open containers, by node index
	// spaced is set when the root value holds insignificant whitespace, so
	// that its text must be compacted when copied.
	spaced bool
	// badUTF8 is set when some string holds invalid UTF-8, so that text
	// copied from the document must be checked.
	badUTF8 bool
}

// strClass marks the bytes that end a run of plain string bytes: quote,
// backslash, control characters and bytes of multi-byte UTF-8 sequences.
var strClass = func() (c [256]bool) {
	for i := range c {
		c[i] = i == '"' || i == '\\' || i < 0x20 || i >= utf8.RuneSelf
	}
	return c
}()

// scan reports whether b is one JSON document and records its tape.
func (sc *jsonScanner) scan(b []byte) bool {
	sc.tape, sc.stack = sc.tape[:0], sc.stack[:0]
	sc.spaced, sc.badUTF8 = false, false
	if len(b) >= maxTapeBytes {
		return false
	}
	const (
		wantValue = iota
		wantKey
		afterValue
	)
	n := len(b)
	i := skipSpace(b, 0)
	state := wantValue
	for {
		switch state {
		case wantValue:
			if i >= n {
				return false
			}
			switch c := b[i]; c {
			case '{', '[':
				if len(sc.stack) >= maxJSONDepth {
					return false
				}
				idx := uint32(len(sc.tape))
				sc.tape = append(sc.tape, jsonNode{start: uint32(i)})
				i++
				if j := skipSpace(b, i); j != i {
					sc.spaced, i = true, j
				}
				if i < n && b[i] == c+2 { // '}' or ']'
					i++
					sc.tape[idx].end, sc.tape[idx].next = uint32(i), idx+1
					state = afterValue
					continue
				}
				sc.stack = append(sc.stack, idx)
				if c == '{' {
					state = wantKey
				}
				continue
			case '"':
				end, flags, ok := sc.str(b, i)
				if !ok {
					return false
				}
				sc.tape = append(sc.tape, jsonNode{start: uint32(i), end: uint32(end), next: nodeScalar | flags})
				i = end
			case 't', 'f', 'n':
				lit := "null"
				if c == 't' {
					lit = "true"
				} else if c == 'f' {
					lit = "false"
				}
				if n-i < len(lit) || string(b[i:i+len(lit)]) != lit {
					return false
				}
				sc.tape = append(sc.tape, jsonNode{start: uint32(i), end: uint32(i + len(lit)), next: nodeScalar})
				i += len(lit)
			default:
				end, ok := scanNumber(b, i)
				if !ok {
					return false
				}
				sc.tape = append(sc.tape, jsonNode{start: uint32(i), end: uint32(end), next: nodeScalar})
				i = end
			}
			state = afterValue

		case wantKey:
			if i >= n || b[i] != '"' {
				return false
			}
			end, flags, ok := sc.str(b, i)
			if !ok {
				return false
			}
			sc.tape = append(sc.tape, jsonNode{start: uint32(i), end: uint32(end), next: nodeScalar | flags})
			i = end
			if i < n && b[i] == ':' {
				i++
			} else {
				if j := skipSpace(b, i); j != i {
					sc.spaced, i = true, j
				}
				if i >= n || b[i] != ':' {
					return false
				}
				i++
			}
			if j := skipSpace(b, i); j != i {
				sc.spaced, i = true, j
			}
			state = wantValue

		case afterValue:
			if len(sc.stack) == 0 {
				return skipSpace(b, i) == n
			}
			if j := skipSpace(b, i); j != i {
				sc.spaced, i = true, j
			}
			if i >= n {
				return false
			}
			top := sc.stack[len(sc.stack)-1]
			open := b[sc.tape[top].start]
			switch b[i] {
			case ',':
				i++
				if j := skipSpace(b, i); j != i {
					sc.spaced, i = true, j
				}
				if open == '{' {
					state = wantKey
				} else {
					state = wantValue
				}
			case open + 2: // '}' or ']'
				i++
				sc.tape[top].end, sc.tape[top].next = uint32(i), uint32(len(sc.tape))
				sc.stack = sc.stack[:len(sc.stack)-1]
			default:
				return false
			}
		}
	}
}

// str validates the string starting at b[i], a quote, as jsonParser.str
// does. It returns the offset just past it and strPlain when its text needs
// no decoding.
func (sc *jsonScanner) str(b []byte, i int) (end int, flags uint32, ok bool) {
	i++
	start := i
	escaped, multi := false, false
	for {
		// Find the next special byte, eight bytes at a time where
		// there are eight.
		if i+8 <= len(b) {
			m := special8(binary.LittleEndian.Uint64(b[i:]))
			if m == 0 {
				i += 8
				continue
			}
			i += bits.TrailingZeros64(m) >> 3
		} else {
			for i < len(b) && !strClass[b[i]] {
				i++
			}
			if i >= len(b) {
				return 0, 0, false
			}
		}
		switch c := b[i]; {
		case c == '"':
			flags = strPlain
			if multi && !utf8.Valid(b[start:i]) {
				sc.badUTF8 = true
				flags = 0
			}
			if escaped {
				flags = 0
			}
			return i + 1, flags, true
		case c == '\\':
			escaped = true
			if i+1 >= len(b) {
				return 0, 0, false
			}
			switch b[i+1] {
			case '"', '\\', '/', 'b', 'f', 'n', 'r', 't':
				i += 2
			case 'u':
				if len(b)-i < 6 {
					return 0, 0, false
				}
				for _, h := range b[i+2 : i+6] {
					if !(h >= '0' && h <= '9' || h >= 'a' && h <= 'f' || h >= 'A' && h <= 'F') {
						return 0, 0, false
					}
				}
				i += 6
			default:
				return 0, 0, false
			}
		case c >= utf8.RuneSelf:
			multi = true
			i++
		default: // a control character
			return 0, 0, false
		}
	}
}

// special8 is not zero when one of the eight bytes of x is a quote, a
// backslash, a control character or not ASCII.
func special8(x uint64) uint64 {
	const lo, hi = 0x0101010101010101, 0x8080808080808080
	q := x ^ (lo * '"')
	bs := x ^ (lo * '\\')
	return ((q-lo)&^q | (bs-lo)&^bs | (x - lo*0x20) | x) & hi
}

// skipDigits returns the offset of the first byte at or after i that is
// not an ASCII digit.
func skipDigits(b []byte, i int) int {
	for i < len(b) && b[i] >= '0' && b[i] <= '9' {
		i++
	}
	return i
}

// scanNumber validates the number starting at b[i], as jsonParser.number
// does, and returns the offset just past it.
func scanNumber(b []byte, i int) (int, bool) {
	start := i
	if b[i] == '-' {
		i++
	}
	if i >= len(b) {
		return 0, false
	}
	switch c := b[i]; {
	case c == '0':
		i++
	case c >= '1' && c <= '9':
		i = skipDigits(b, i+1)
	default:
		return 0, false
	}
	hasExp := false
	if i < len(b) && b[i] == '.' {
		d := i + 1
		if i = skipDigits(b, d); i == d {
			return 0, false
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		hasExp = true
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		d := i
		if i = skipDigits(b, d); i == d {
			return 0, false
		}
	}
	// Only an exponent or hundreds of digits can leave float64's range,
	// which encoding/json refuses.
	if hasExp || i-start >= 300 {
		if _, err := strconv.ParseFloat(string(b[start:i]), 64); err != nil {
			return 0, false
		}
	}
	return i, true
}
