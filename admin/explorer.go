package admin

import (
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// explorerHTML is the whole explorer: one page with one inline style and
// one inline script, so that it works offline and from an air-gapped host.
//
//go:embed explorer.html
var explorerHTML []byte

// explorerPage is the page with its Content-Security-Policy.
type explorerPage struct {
	body []byte
	csp  string
}

// newExplorerPage allows exactly the page's own script and style by hash.
// Anything else (an injected script, a loaded resource, a form post, a
// frame around the page) is refused by the browser: the page handles the
// admin token and webhook secrets.
func newExplorerPage() (explorerPage, error) {
	script, err := inlineBlock(explorerHTML, "script")
	if err != nil {
		return explorerPage{}, err
	}
	style, err := inlineBlock(explorerHTML, "style")
	if err != nil {
		return explorerPage{}, err
	}
	csp := fmt.Sprintf("default-src 'none'; script-src '%s'; style-src '%s'; connect-src 'self'; "+
		"img-src data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'", hashSource(script), hashSource(style))
	return explorerPage{body: explorerHTML, csp: csp}, nil
}

// inlineBlock returns the content of the page's only <tag>…</tag>.
func inlineBlock(page []byte, tag string) ([]byte, error) {
	open, end := "<"+tag+">", "</"+tag+">"
	s := string(page)
	i := strings.Index(s, open)
	j := strings.Index(s, end)
	if i < 0 || j < i || strings.Count(s, open) != 1 {
		return nil, errors.New("admin: explorer page needs exactly one <" + tag + "> block")
	}
	return page[i+len(open) : j], nil
}

func hashSource(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256-" + base64.StdEncoding.EncodeToString(sum[:])
}

func (s *Server) serveExplorer(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", s.explorer.csp)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-cache")
	h.Add("Vary", "Accept")
	if _, err := w.Write(s.explorer.body); err != nil {
		s.logger.DebugContext(r.Context(), "writing explorer page", "err", err)
	}
}
