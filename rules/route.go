package rules

import (
	"fmt"
	"strings"
)

// template is a compiled `when.path` entry such as /orders/{id}/cancel.
type template struct {
	// raw is the template as written; it is the route label Route returns.
	raw string
	// segs are the segments between slashes; "/" has none.
	segs []segment
	// names are the capture names, in order.
	names []string
}

// segment is a literal segment, or a capture when name is set.
type segment struct {
	lit  string
	name string
}

// parseTemplate compiles a path template. The error message says how to fix
// the template; it does not name the key (the caller adds it).
func parseTemplate(s string) (*template, error) {
	if !strings.HasPrefix(s, "/") {
		return nil, fmt.Errorf("%q must start with \"/\", as in /orders/{id}", s)
	}
	if strings.ContainsAny(s, "?#") {
		return nil, fmt.Errorf("%q: templates match the path only; test the query in when.match, as in request.query.status == \"open\"", s)
	}
	t := &template{raw: s}
	if s == "/" {
		return t, nil
	}
	seen := map[string]bool{}
	for _, part := range strings.Split(s[1:], "/") {
		switch {
		case part == "":
			return nil, fmt.Errorf("%q has an empty segment; remove the doubled or trailing \"/\"", s)
		case strings.HasPrefix(part, "{") && strings.HasSuffix(part, "}"):
			name := part[1 : len(part)-1]
			if !isIdent(name) {
				return nil, fmt.Errorf("%q: capture %q must be a name of letters, digits and _ that does not start with a digit, as in {id}", s, part)
			}
			if seen[name] {
				return nil, fmt.Errorf("%q captures {%s} twice; give each capture its own name", s, name)
			}
			seen[name] = true
			t.segs = append(t.segs, segment{name: name})
			t.names = append(t.names, name)
		case strings.ContainsAny(part, "{}"):
			return nil, fmt.Errorf("%q: a capture must be a whole segment, as in /orders/{id}; %q mixes text and braces", s, part)
		default:
			// Literals are compared in the form CleanPath gives paths:
			// "caf%C3%A9" is "café", "a%2Fb" stays one segment.
			lit := decodeSegment(part)
			if lit == "." || lit == ".." {
				return nil, fmt.Errorf("%q has a %q segment, which no request path keeps (dot segments are resolved before matching); write the path it stands for", s, part)
			}
			t.segs = append(t.segs, segment{lit: lit})
		}
	}
	return t, nil
}

func isIdent(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || i > 0 && c >= '0' && c <= '9') {
			return false
		}
	}
	return true
}

// match reports whether path, cleaned by CleanPath, matches t. When caps is
// not nil, it receives the captured segments, decoded.
func (t *template) match(path string, caps map[string]string) bool {
	path = CleanPath(path)
	if len(path) == 0 || path[0] != '/' {
		return false
	}
	rest := path[1:]
	if len(t.segs) == 0 {
		return rest == ""
	}
	for i, sg := range t.segs {
		var seg string
		if j := strings.IndexByte(rest, '/'); j >= 0 {
			if i == len(t.segs)-1 {
				return false
			}
			seg, rest = rest[:j], rest[j+1:]
		} else {
			if i != len(t.segs)-1 {
				return false
			}
			seg, rest = rest, ""
		}
		if sg.name == "" {
			if seg != sg.lit {
				return false
			}
		} else if seg == "" {
			return false
		} else if caps != nil {
			caps[sg.name] = unescapeSegment(seg)
		}
	}
	return true
}

// capture returns capture k of path, which t matches, decoded.
func (t *template) capture(path string, k int) string {
	path = CleanPath(path)
	rest := path[1:]
	for _, sg := range t.segs {
		seg := rest
		if j := strings.IndexByte(rest, '/'); j >= 0 {
			seg, rest = rest[:j], rest[j+1:]
		}
		if sg.name != "" {
			if k == 0 {
				return unescapeSegment(seg)
			}
			k--
		}
	}
	return ""
}

// noRank is larger than any rule index.
const noRank = int(^uint(0) >> 1)

// routeNode is a node of a per-method segment trie. Route walks it over the
// request path with indexes only, so that deciding whether to capture an
// exchange costs no allocation.
type routeNode struct {
	lits  []routeEdge
	param *routeNode
	// rank is the index of the first rule with a template ending here
	// (noRank when none), route that template.
	rank  int
	route string
}

type routeEdge struct {
	seg  string
	node *routeNode
}

func newRouteNode() *routeNode { return &routeNode{rank: noRank} }

func (n *routeNode) insert(t *template, rank int) {
	for _, sg := range t.segs {
		if sg.name != "" {
			if n.param == nil {
				n.param = newRouteNode()
			}
			n = n.param
			continue
		}
		var next *routeNode
		for _, e := range n.lits {
			if e.seg == sg.lit {
				next = e.node
				break
			}
		}
		if next == nil {
			next = newRouteNode()
			n.lits = append(n.lits, routeEdge{seg: sg.lit, node: next})
		}
		n = next
	}
	if rank < n.rank {
		n.rank, n.route = rank, t.raw
	}
}

// find returns the smallest rank of a template matching path; Engine.Route
// calls it on the root with start 1 (after the leading slash) and done set
// for "/". A path that is not clean is cleaned first, which allocates; a
// clean one, as the proxy passes, is walked with indexes only.
func (n *routeNode) find(path string, start int, done bool) (int, string) {
	if start == 1 && !isClean(path) {
		path = cleanPath(path)
		done = len(path) == 1
	}
	return n.walk(path, start, done)
}

// walk returns the smallest rank of a template matching the segments of the
// clean path from start on. done means no segment is left.
func (n *routeNode) walk(path string, start int, done bool) (int, string) {
	if done {
		return n.rank, n.route
	}
	end := strings.IndexByte(path[start:], '/')
	last := end < 0
	if last {
		end = len(path)
	} else {
		end += start
	}
	seg := path[start:end]
	rank, route := noRank, ""
	for i := range n.lits {
		if n.lits[i].seg == seg {
			rank, route = n.lits[i].node.walk(path, end+1, last)
			break
		}
	}
	if n.param != nil && seg != "" {
		if r, rt := n.param.walk(path, end+1, last); r < rank {
			rank, route = r, rt
		}
	}
	return rank, route
}

// methodRoutes is the trie of one method's templates.
type methodRoutes struct {
	method string
	root   *routeNode
}

// CleanPath returns a request path as the upstream understands it, the form
// in which rules match it and CEL sees it as request.path: empty segments
// (repeated and trailing slashes) and dot segments are resolved as RFC 3986
// §5.2.4 says, and percent-escapes are decoded, except that an escaped
// slash or percent sign stays escaped (as %2F and %25) so that it remains
// part of its segment: "/orders/./7/", "//orders/7" and "/orders/%37" give
// "/orders/7", while "/files/a%2Fb" stays one segment that the capture
// {name} gets as "a/b".
//
// path is the path as sent (escaped), or a decoded path that holds no
// escapes. A path already clean, as most are, is returned as it is without
// allocating. Anything not starting with "/" (such as "*") is returned
// unchanged; it matches no template.
func CleanPath(path string) string {
	if isClean(path) {
		return path
	}
	return cleanPath(path)
}

// isClean reports whether CleanPath would return path unchanged. It runs
// on every request, so it searches with the strings package's vectorised
// byte search instead of a loop over every byte.
func isClean(p string) bool {
	if len(p) <= 1 || p[0] != '/' {
		return true
	}
	if p[len(p)-1] == '/' || strings.Contains(p, "//") {
		return false
	}
	for rest := p; ; {
		i := strings.Index(rest, "/.")
		if i < 0 {
			break
		}
		rest = rest[i+2:] // after "/."
		if rest == "" || rest[0] == '/' || rest[0] == '.' && (len(rest) == 1 || rest[1] == '/') {
			return false // "/." or "/.." as a whole segment
		}
	}
	for rest := p; ; {
		i := strings.IndexByte(rest, '%')
		if i < 0 {
			return true
		}
		if i+2 >= len(rest) || rest[i+1] != '2' || (rest[i+2] != 'F' && rest[i+2] != '5') {
			return false
		}
		rest = rest[i+3:]
	}
}

func isDotOrEmpty(seg string) bool { return seg == "" || seg == "." || seg == ".." }

func cleanPath(p string) string {
	if len(p) == 0 || p[0] != '/' {
		return p
	}
	segs := make([]string, 0, 8)
	for rest := p[1:]; ; {
		raw, next, more := strings.Cut(rest, "/")
		if raw != "" {
			switch seg := decodeSegment(raw); seg {
			case ".":
			case "..":
				if len(segs) > 0 {
					segs = segs[:len(segs)-1]
				}
			default:
				segs = append(segs, seg)
			}
		}
		if !more {
			break
		}
		rest = next
	}
	return "/" + strings.Join(segs, "/")
}

// decodeSegment decodes the percent-escapes of one path segment, except
// that a slash or a percent sign is written back escaped as %2F or %25. A
// '%' that does not start an escape is taken literally (and so written
// %25).
func decodeSegment(raw string) string {
	if strings.IndexByte(raw, '%') < 0 {
		return raw
	}
	var b strings.Builder
	b.Grow(len(raw))
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		if c != '%' {
			b.WriteByte(c)
			continue
		}
		if i+2 < len(raw) && isHex(raw[i+1]) && isHex(raw[i+2]) {
			c = unhex(raw[i+1])<<4 | unhex(raw[i+2])
			i += 2
		}
		switch c {
		case '/':
			b.WriteString("%2F")
		case '%':
			b.WriteString("%25")
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// unescapeSegment turns a segment of a clean path into its value: %2F and
// %25, the only escapes left, become "/" and "%".
func unescapeSegment(seg string) string {
	if strings.IndexByte(seg, '%') < 0 {
		return seg
	}
	return strings.NewReplacer("%2F", "/", "%25", "%").Replace(seg)
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c >= 'a':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}
