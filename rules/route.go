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
			t.segs = append(t.segs, segment{lit: part})
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

// match reports whether path matches t. When caps is not nil, it receives
// the captured segments.
func (t *template) match(path string, caps map[string]string) bool {
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
			caps[sg.name] = seg
		}
	}
	return true
}

// capture returns capture k of path, which t matches.
func (t *template) capture(path string, k int) string {
	rest := path[1:]
	for _, sg := range t.segs {
		seg := rest
		if j := strings.IndexByte(rest, '/'); j >= 0 {
			seg, rest = rest[:j], rest[j+1:]
		}
		if sg.name != "" {
			if k == 0 {
				return seg
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

// find returns the smallest rank of a template matching the segments of
// path from start on. done means no segment is left.
func (n *routeNode) find(path string, start int, done bool) (int, string) {
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
			rank, route = n.lits[i].node.find(path, end+1, last)
			break
		}
	}
	if n.param != nil && seg != "" {
		if r, rt := n.param.find(path, end+1, last); r < rank {
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
