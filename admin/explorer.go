package admin

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strings"
	"sync"
	"time"
)

// explorerFiles is GraphiQL as served at GET /graphql to browsers: the page,
// eventtap's bootstrap script and styles, and, under graphiql/, the pinned
// third-party files that graphiql/fetch.sh extracted unchanged from the npm
// registry, with their licences and SHA256SUMS. Everything the page loads
// comes from the binary: nothing from a CDN or any other origin, so the
// explorer works from an air-gapped host.
//
//go:embed explorer.html explorer.js explorer.css graphiql/*.js graphiql/*.css graphiql/LICENSE.* graphiql/SHA256SUMS
var explorerFiles embed.FS

// explorerPrefix is where the page's assets are served. The page refers to
// them relatively (graphql/explorer/…), so a path prefix in front of the
// admin keeps working.
const explorerPrefix = "/graphql/explorer/"

// explorerCSP lets the page load scripts, styles, fonts and images from the
// admin origin only and talk to it only. No inline script runs: the
// bootstrap is a file of its own. Inline styles are allowed because
// GraphiQL's dialogs (Radix's scroll lock) insert style elements whose text
// varies and the UMD bundle exposes no nonce hook; with every load and
// connection held to 'self', a style cannot send anything elsewhere. data:
// URLs are GraphiQL's embedded fonts and icons. The page handles the admin
// token and webhook secrets, so it may not be framed, post forms or change
// its base URL.
const explorerCSP = "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; font-src 'self' data:; " +
	"img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// explorerAsset is one file under explorerPrefix.
type explorerAsset struct {
	body        []byte
	contentType string
	etag        string
	gzipOnce    sync.Once
	gzipped     []byte // compressed on first request: graphiql.min.js is 3.5 MB, ~0.7 MB gzipped
}

// explorer serves the page and its assets.
type explorer struct {
	page   []byte
	assets map[string]*explorerAsset // by file name
}

// newExplorer prepares the page; tokenRequired tells the page to open its
// headers editor with an Authorization header to fill in.
func newExplorer(tokenRequired bool) (*explorer, error) {
	page, err := explorerFiles.ReadFile("explorer.html")
	if err != nil {
		return nil, fmt.Errorf("admin: explorer page: %w", err)
	}
	const mark = "{{TOKEN_REQUIRED}}"
	if bytes.Count(page, []byte(mark)) != 1 {
		return nil, errors.New("admin: explorer page needs exactly one " + mark)
	}
	e := &explorer{
		page:   bytes.Replace(page, []byte(mark), fmt.Appendf(nil, "%t", tokenRequired), 1),
		assets: map[string]*explorerAsset{},
	}
	types := map[string]string{
		".js":  "text/javascript; charset=utf-8",
		".css": "text/css; charset=utf-8",
	}
	err = fs.WalkDir(explorerFiles, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || p == "explorer.html" {
			return err
		}
		body, err := explorerFiles.ReadFile(p)
		if err != nil {
			return err
		}
		ct, ok := types[path.Ext(p)]
		if !ok {
			ct = "text/plain; charset=utf-8" // licences, SHA256SUMS
		}
		sum := sha256.Sum256(body)
		e.assets[path.Base(p)] = &explorerAsset{body: body, contentType: ct, etag: `"` + hex.EncodeToString(sum[:16]) + `"`}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("admin: explorer assets: %w", err)
	}
	return e, nil
}

// serveExplorer serves the GraphiQL page (GET /graphql from a browser). The
// page holds no data and no secret, so it is served without the token.
func (s *Server) serveExplorer(w http.ResponseWriter, r *http.Request) {
	s.explorer.servePage(w)
}

func (e *explorer) servePage(w http.ResponseWriter) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Content-Security-Policy", explorerCSP)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cache-Control", "no-cache")
	h.Add("Vary", "Accept")
	_, _ = w.Write(e.page)
}

// serveAsset serves GET /graphql/explorer/{name}. The files are public (the
// same as in the npm packages) and so need no token. They are revalidated
// on each load (ETag, 304) and gzipped for clients that accept it.
func (e *explorer) serveAsset(w http.ResponseWriter, r *http.Request) {
	a := e.assets[strings.TrimPrefix(r.URL.Path, explorerPrefix)]
	if a == nil {
		http.NotFound(w, r)
		return
	}
	h := w.Header()
	h.Set("Content-Type", a.contentType)
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cross-Origin-Resource-Policy", "same-origin")
	h.Set("Cache-Control", "no-cache")
	h.Set("ETag", a.etag)
	h.Add("Vary", "Accept-Encoding")
	body := a.body
	if acceptsGzip(r) {
		body = a.gzip()
		h.Set("Content-Encoding", "gzip")
	}
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(body))
}

// gzip compresses the asset once, on first request, so that a process
// whose explorer is never opened spends nothing on it.
func (a *explorerAsset) gzip() []byte {
	a.gzipOnce.Do(func() {
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression) // a valid level: no error
		_, _ = zw.Write(a.body)                                  // writes to memory cannot fail
		_ = zw.Close()
		a.gzipped = buf.Bytes()
	})
	return a.gzipped
}

// acceptsGzip reports whether Accept-Encoding lists gzip with a non-zero
// quality.
func acceptsGzip(r *http.Request) bool {
	for _, h := range r.Header.Values("Accept-Encoding") {
		for part := range strings.SplitSeq(h, ",") {
			name, params, _ := strings.Cut(strings.TrimSpace(part), ";")
			if strings.EqualFold(strings.TrimSpace(name), "gzip") {
				q := strings.ReplaceAll(strings.TrimSpace(params), " ", "")
				return q != "q=0" && q != "q=0.0" && q != "q=0.00" && q != "q=0.000"
			}
		}
	}
	return false
}
