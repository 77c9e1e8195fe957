package admin

import (
	"net/http"
	"strings"

	"github.com/munnerz/goautoneg"
)

// Response media types of GraphQL over HTTP.
const (
	mediaJSON            = "application/json"
	mediaGraphQLResponse = "application/graphql-response+json"
	mediaHTML            = "text/html"
)

// acceptRange is one media range of an Accept header.
type acceptRange struct {
	typ, sub string
	q        float64
}

// accept is a parsed Accept header, in the client's order.
type accept []acceptRange

// parseAccept parses the Accept header with goautoneg, one media range at a
// time because goautoneg sorts the ranges of a header by preference and
// the client's order breaks ties here. Ranges goautoneg cannot read, and
// qualities outside 0–1, are dropped: one bad range does not spoil the
// rest. goautoneg.Negotiate itself is not used: it takes the first range
// that matches in its order, so a q=0 range or a more specific range with
// a lower quality does not exclude a type as RFC 9110 says.
func parseAccept(r *http.Request) accept {
	var out accept
	for _, h := range r.Header.Values("Accept") {
		for part := range strings.SplitSeq(h, ",") {
			for _, c := range goautoneg.ParseAccept(part) {
				if c.Q < 0 || c.Q > 1 || c.Type == "" || c.SubType == "" {
					continue
				}
				out = append(out, acceptRange{typ: strings.ToLower(c.Type), sub: strings.ToLower(c.SubType), q: c.Q})
			}
		}
	}
	return out
}

// match returns the quality the client gives mediaType, taken from the
// most specific range that matches it (RFC 9110 §12.5.1), how specific that
// range is (2 exact, 1 type/*, 0 */*, -1 none) and its position.
func (a accept) match(mediaType string) (q float64, specificity, index int) {
	typ, sub, _ := strings.Cut(mediaType, "/")
	specificity, index = -1, len(a)
	for i, r := range a {
		s := -1
		switch {
		case r.typ == typ && r.sub == sub:
			s = 2
		case r.typ == typ && r.sub == "*":
			s = 1
		case r.typ == "*" && r.sub == "*":
			s = 0
		}
		if s > specificity {
			q, specificity, index = r.q, s, i
		}
	}
	return q, specificity, index
}

// responseMediaType picks application/graphql-response+json or
// application/json for a GraphQL response, or "" when the client accepts
// neither (406). No Accept header, and */*, mean application/json, as
// GraphQL over HTTP asks for the sake of older clients.
func (a accept) responseMediaType() string {
	if len(a) == 0 {
		return mediaJSON
	}
	gq, gs, gi := a.match(mediaGraphQLResponse)
	jq, js, ji := a.match(mediaJSON)
	switch {
	case gq <= 0 && jq <= 0:
		return ""
	case gq != jq:
		if gq > jq {
			return mediaGraphQLResponse
		}
		return mediaJSON
	case gs != js: // equal quality: the range that names the type wins
		if gs > js {
			return mediaGraphQLResponse
		}
		return mediaJSON
	case gs == 2 && gi < ji: // both named with equal quality: the first listed
		return mediaGraphQLResponse
	}
	return mediaJSON
}

// wantsHTML reports whether a GET /graphql comes from a browser: text/html
// is named explicitly and preferred at least as much as the JSON types. A
// bare */* (curl, most HTTP libraries) therefore gets GraphQL, not a page.
func (a accept) wantsHTML() bool {
	hq, hs, _ := a.match(mediaHTML)
	if hs != 2 || hq <= 0 {
		return false
	}
	gq, _, _ := a.match(mediaGraphQLResponse)
	jq, _, _ := a.match(mediaJSON)
	return hq >= gq && hq >= jq
}
