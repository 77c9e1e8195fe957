package admin

// graphql-go's parser predates the null literal of the GraphQL spec (June
// 2018, §2.9.5): `webhooks(after: null)` is a syntax error to it, although
// every client library may send it. What it does with a null passed through
// a variable is to treat the argument or input field as not given. blankNulls
// gives the literal the same meaning by blanking, before parsing, every
// `name: null` argument or input-object field and every `= null` variable
// default. Blanked bytes become spaces, so the locations in error messages
// stay those of the document as sent.

// nullToken is one lexical token of a document, as far as blankNulls needs.
type nullToken struct {
	start, end int
	kind       byte // 'n' a name, 's' a string, '#' anything else that is a value (numbers, $), else the punctuator itself
}

// Bracket contexts: where a `name: null` pair is an argument or an input
// field (args, object), and where it is an alias in a selection set.
const (
	ctxArgs = iota
	ctxObject
	ctxList
	ctxSelection
)

// blankNulls returns q with null arguments, input fields and variable
// defaults blanked, or q itself when it has none. Malformed documents are
// returned unchanged for the parser to report.
func blankNulls(q []byte) []byte {
	toks, ok := lexForNulls(q)
	if !ok {
		return q
	}
	var out []byte
	blank := func(from, to int) {
		if out == nil {
			out = append([]byte(nil), q...)
		}
		for i := from; i < to; i++ {
			if out[i] != '\n' && out[i] != '\r' {
				out[i] = ' '
			}
		}
	}
	removed := make([]bool, len(toks))
	var stack []int
	top := func() int {
		if len(stack) == 0 {
			return ctxSelection
		}
		return stack[len(stack)-1]
	}
	for i, t := range toks {
		// A value starts after ':' in arguments or objects, after '=' (a
		// default) and anywhere in a list.
		valuePos := i > 0 && ((toks[i-1].kind == ':' && (top() == ctxArgs || top() == ctxObject)) || toks[i-1].kind == '=') ||
			top() == ctxList
		switch t.kind {
		case '(':
			stack = append(stack, ctxArgs)
		case '{':
			if valuePos {
				stack = append(stack, ctxObject)
			} else {
				stack = append(stack, ctxSelection)
			}
		case '[':
			stack = append(stack, ctxList)
		case ')', '}', ']':
			if len(stack) > 0 {
				stack = stack[:len(stack)-1]
			}
		case 'n':
			if string(q[t.start:t.end]) != "null" || i == 0 {
				continue
			}
			switch p := toks[i-1]; {
			case p.kind == ':' && i >= 2 && toks[i-2].kind == 'n' && (top() == ctxArgs || top() == ctxObject):
				blank(toks[i-2].start, t.end)
				removed[i-2], removed[i-1], removed[i] = true, true, true
			case p.kind == '=':
				blank(p.start, t.end)
				removed[i-1], removed[i] = true, true
			}
		}
	}
	if out == nil {
		return q
	}
	// `f(after: null)` is now `f(            )`, and an empty argument list
	// is a syntax error of its own.
	for i := range toks {
		if toks[i].kind != '(' || removed[i] {
			continue
		}
		j := i + 1
		for j < len(toks) && removed[j] {
			j++
		}
		if j < len(toks) && toks[j].kind == ')' {
			blank(toks[i].start, toks[i].end)
			blank(toks[j].start, toks[j].end)
			removed[i], removed[j] = true, true
		}
	}
	return out
}

// lexForNulls splits q into tokens, skipping white space, commas and
// comments; ok is false when a string is not terminated.
func lexForNulls(q []byte) (toks []nullToken, ok bool) {
	isName := func(c byte) bool {
		return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
	}
	for i := 0; i < len(q); {
		c := q[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == ',':
			i++
		case c == '#':
			for i < len(q) && q[i] != '\n' && q[i] != '\r' {
				i++
			}
		case c == '"':
			start := i
			if len(q)-i >= 3 && q[i+1] == '"' && q[i+2] == '"' {
				i += 3
				for ; ; i++ {
					if i+3 > len(q) {
						return nil, false
					}
					if q[i] == '\\' && i+4 <= len(q) && string(q[i+1:i+4]) == `"""` {
						i += 3
						continue
					}
					if string(q[i:i+3]) == `"""` {
						i += 3
						break
					}
				}
			} else {
				for i++; ; i++ {
					if i >= len(q) || q[i] == '\n' || q[i] == '\r' {
						return nil, false
					}
					if q[i] == '\\' {
						i++
						continue
					}
					if q[i] == '"' {
						i++
						break
					}
				}
			}
			toks = append(toks, nullToken{start, i, 's'})
		case isName(c) || c == '-' || c == '$':
			start := i
			kind := byte('n')
			if c < 'A' || c == '$' { // digits, '-', '$'
				kind = '#'
			}
			for i++; i < len(q) && (isName(q[i]) || (kind == '#' && (q[i] == '.' || q[i] == '+' || q[i] == '-'))); i++ {
			}
			toks = append(toks, nullToken{start, i, kind})
		default:
			toks = append(toks, nullToken{i, i + 1, c})
			i++
		}
	}
	return toks, true
}
