package admin

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/graphql-go/graphql/language/lexer"
	"github.com/graphql-go/graphql/language/source"
)

// graphql-go's parser predates the null literal of the GraphQL spec (June
// 2018, §2.9.5): `webhooks(after: null)` is a syntax error to it, although
// every client library may send it. What it does with a null passed through
// a variable is to treat the argument or input field as not given. blankNulls
// gives the literal the same meaning by blanking, before parsing, every
// `name: null` argument or input-object field and every `= null` variable
// default. Blanked bytes become spaces, so the locations in error messages
// stay those of the document as sent.

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
	toks, err := lexDocument(q, len(q)+1)
	if err != nil {
		return q
	}
	return blankNullTokens(q, toks)
}

// blankNullTokens is blankNulls on q's tokens, as lexDocument returns them.
func blankNullTokens(q []byte, toks []token) []byte {
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
			case p.kind == ':' && i >= 2 && toks[i-2].kind == 'n' && (i < 3 || toks[i-3].kind != '$') && (top() == ctxArgs || top() == ctxObject):
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

// token is one lexical token of a document, as far as the checks before
// parsing need.
type token struct {
	start, end int
	kind       byte // 'n' a name, 's' a string, '#' a number, else the punctuator itself ('.' for "...")
}

// kindOf maps graphql-go's token kinds to token.kind.
func kindOf(k lexer.TokenKind) byte {
	switch k {
	case lexer.NAME:
		return 'n'
	case lexer.STRING, lexer.BLOCK_STRING:
		return 's'
	case lexer.INT, lexer.FLOAT:
		return '#'
	case lexer.SPREAD:
		return '.'
	}
	// The other kinds are one-character punctuators, which graphql-go
	// describes by themselves.
	if d := k.String(); len(d) == 1 {
		return d[0]
	}
	return '?'
}

// errLex is a lexing error, which the parser reports with its location.
var errLex = errors.New("lexing error")

// lexDocument splits a document into tokens with graphql-go's lexer, the
// one the parser uses, so that strings, block strings and comments are
// read exactly as the parser reads them. It refuses, before anything
// parses the document, more than maxTokens tokens (graphql-go's parser and
// validators spend microseconds per node, so a megabyte of tiny tokens
// would cost seconds) and brackets nested more than maxNesting deep (they
// recurse once per level). It returns errLex when the lexer fails.
func lexDocument(q []byte, maxTokens int) ([]token, error) {
	// A copy: graphql-go's lexer writes into the body when it reads an
	// escaped triple quote in a block string (v0.8.1 appends to a slice of
	// it), so the parser, lexing the same bytes again, would read another
	// document.
	lex := lexer.Lex(source.NewSource(&source.Source{Body: bytes.Clone(q)}))
	var toks []token
	depth, pos := 0, 0
	// Direct tokens of each open bracket. Only list values and list types
	// open '[', and no argument of this schema takes a list, so a long
	// list is always an error, yet graphql-go prints it whole, slowly, to
	// say so.
	var items, openers []int
	for {
		tok, err := lex(pos)
		if err != nil {
			return nil, errLex
		}
		if tok.Kind == lexer.EOF {
			return toks, nil
		}
		if len(toks) == maxTokens {
			return nil, fmt.Errorf("document has more than %d tokens (names, values and punctuation); send a smaller document", maxTokens)
		}
		t := token{start: tok.Start, end: tok.End, kind: kindOf(tok.Kind)}
		if n := len(items); n > 0 && t.kind != '}' && t.kind != ']' && t.kind != ')' {
			items[n-1]++
			if items[n-1] > maxListItems && toks[openers[n-1]].kind == '[' {
				return nil, fmt.Errorf("a list value holds more than %d items; no argument of this API takes a list", maxListItems)
			}
		}
		switch t.kind {
		case '{', '[', '(':
			depth++
			if depth > maxNesting {
				return nil, fmt.Errorf("document nests brackets more than %d levels deep; the query depth limit is %d", maxNesting, maxDepth)
			}
			items = append(items, 0)
			openers = append(openers, len(toks))
		case '}', ']', ')':
			depth--
			if len(items) > 0 {
				items, openers = items[:len(items)-1], openers[:len(openers)-1]
			}
		}
		toks = append(toks, t)
		pos = tok.End
	}
}
