package rules

import (
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// position returns the file position (1-based line and column) of the
// character at line (1-based) and col (0-based, in runes) of the value of
// scalar n, whose key node is key (nil in a list). CEL reports positions in
// the expression; users need them in the file, where quotes, escapes, block
// indicators and indentation shift them.
func (c *compiler) position(n, key *yaml.Node, line, col int) (int, int) {
	// The offset, in runes, of the character in the value.
	off, l := 0, 1
	for _, r := range n.Value {
		if l >= line {
			break
		}
		if r == '\n' {
			l++
		}
		off++
	}
	lineStartOff := off
	off += col
	if total := utf8.RuneCountInString(n.Value); off > total {
		off = total
	}
	if c.src != nil {
		if fl, fc, ok := c.alignScalar(n, off); ok {
			return fl, fc
		}
	}
	// Without the source: exact for single-line plain and quoted scalars,
	// a two-space-indentation guess for block scalars.
	colInLine := off - lineStartOff
	switch n.Style {
	case yaml.LiteralStyle, yaml.FoldedStyle:
		indent := n.Column + 2
		if key != nil {
			indent = key.Column + 2
		}
		return n.Line + line, indent + colInLine
	case yaml.SingleQuotedStyle, yaml.DoubleQuotedStyle:
		if line > 1 {
			return n.Line + line - 1, colInLine + 1
		}
		extra := 0
		i := 0
		for _, r := range n.Value {
			if i >= off {
				break
			}
			if r == '\'' && n.Style == yaml.SingleQuotedStyle || (r == '"' || r == '\\') && n.Style == yaml.DoubleQuotedStyle {
				extra++
			}
			i++
		}
		return n.Line, n.Column + 1 + off + extra
	}
	if line > 1 {
		return n.Line + line - 1, colInLine + 1
	}
	return n.Line, n.Column + off
}

// alignScalar finds the value's rune off in the scalar's source text by
// walking both together: every character of the value appears in the source
// in order, and the source characters in between are only quotes,
// backslashes of escapes, line breaks and indentation. It reports false
// when that does not hold (an escape such as \n or \u0041), and the caller
// falls back to estimating.
func (c *compiler) alignScalar(n *yaml.Node, off int) (int, int, bool) {
	if c.lines == nil {
		c.lines = []int{0}
		for i, b := range c.src {
			if b == '\n' {
				c.lines = append(c.lines, i+1)
			}
		}
	}
	if n.Line < 1 || n.Line > len(c.lines) || n.Column < 1 {
		return 0, 0, false
	}
	line, col := n.Line, 1
	i := c.lines[n.Line-1]
	next := func() (rune, bool) {
		if i >= len(c.src) {
			return 0, false
		}
		r, size := utf8.DecodeRune(c.src[i:])
		i += size
		if r == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
		return r, true
	}
	for col < n.Column {
		if _, ok := next(); !ok {
			return 0, 0, false
		}
	}
	switch n.Style {
	case yaml.LiteralStyle, yaml.FoldedStyle:
		for {
			r, ok := next()
			if !ok {
				return 0, 0, false
			}
			if r == '\n' {
				break
			}
		}
	case yaml.SingleQuotedStyle, yaml.DoubleQuotedStyle:
		if _, ok := next(); !ok {
			return 0, 0, false
		}
	}
	skippable := func(r rune) bool {
		switch r {
		case ' ', '\t', '\r', '\n', '\\', '\'', '"':
			return true
		}
		return false
	}
	// peek returns the next source rune without consuming it.
	peek := func() (rune, bool) {
		if i >= len(c.src) {
			return 0, false
		}
		r, _ := utf8.DecodeRune(c.src[i:])
		return r, true
	}
	vi := 0
	for _, want := range n.Value {
		for {
			r, ok := peek()
			if !ok {
				return 0, 0, false
			}
			if r == want {
				break
			}
			if !skippable(r) {
				return 0, 0, false
			}
			next()
		}
		if vi == off {
			return line, col, true
		}
		next()
		vi++
	}
	if vi == off {
		return line, col, true
	}
	return 0, 0, false
}
