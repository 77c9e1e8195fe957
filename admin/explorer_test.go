package admin

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/input"
	cdplog "github.com/chromedp/cdproto/log"
	"github.com/chromedp/cdproto/network"
	"github.com/chromedp/cdproto/runtime"
	"github.com/chromedp/chromedp"

	"github.com/eventtap/eventtap/internal/testkit"
)

var pageRefRE = regexp.MustCompile(`(?:src|href)="([^"]*)"`)

// checkExplorerPage checks the GraphiQL page served at GET /graphql: every
// file it loads is one of ours from the admin origin, no inline script or
// style exists, and the CSP allows nothing else.
func checkExplorerPage(t *testing.T, e *testEnv, page string, h http.Header) {
	t.Helper()
	if strings.Contains(page, "http://") || strings.Contains(page, "https://") || strings.Contains(page, "//") {
		t.Error("the explorer page refers to another origin")
	}
	if regexp.MustCompile(`<script(?:\s[^>]*)?>[^<]`).MatchString(page) || strings.Contains(page, "<style") || strings.Contains(page, " style=") {
		t.Error("the explorer page has an inline script or style")
	}
	csp := h.Get("Content-Security-Policy")
	for _, want := range []string{"default-src 'none'", "script-src 'self';", "connect-src 'self'", "frame-ancestors 'none'", "base-uri 'none'"} {
		if !strings.Contains(csp, want) {
			t.Errorf("CSP %q lacks %q", csp, want)
		}
	}
	for _, d := range strings.Split(csp, ";") {
		d = strings.TrimSpace(d)
		// Only style-src may allow inline code (GraphiQL's dialogs add style elements).
		if (strings.Contains(d, "unsafe") && d != "style-src 'self' 'unsafe-inline'") || strings.Contains(d, "*") {
			t.Errorf("CSP directive %q allows unsafe sources or wildcards", d)
		}
	}
	refs := pageRefRE.FindAllStringSubmatch(page, -1)
	if len(refs) < 5 {
		t.Fatalf("page loads %d files, want GraphiQL, React, ReactDOM, the bootstrap and styles", len(refs))
	}
	for _, m := range refs {
		ref := m[1]
		if ref == "data:," { // the empty favicon: no request at all
			continue
		}
		if !strings.HasPrefix(ref, strings.TrimPrefix(explorerPrefix, "/")) {
			t.Errorf("page loads %q, not under %s", ref, explorerPrefix)
			continue
		}
		r := e.send(http.MethodGet, "/"+ref, nil, header{"Authorization", ""})
		if r.status != http.StatusOK || len(r.raw) == 0 || r.header.Get("X-Content-Type-Options") != "nosniff" {
			t.Errorf("GET /%s: HTTP %d, %d bytes, %v", ref, r.status, len(r.raw), r.header)
		}
	}
}

// TestExplorerAssets: the embedded third-party files are exactly those
// graphiql/fetch.sh extracted (SHA256SUMS), their licences are served beside
// them, and the assets are gzipped, revalidated by ETag and need no token.
func TestExplorerAssets(t *testing.T) {
	sums, err := explorerFiles.ReadFile("graphiql/SHA256SUMS")
	if err != nil {
		t.Fatal(err)
	}
	listed := 0
	sc := bufio.NewScanner(bytes.NewReader(sums))
	for sc.Scan() {
		want, name, ok := strings.Cut(sc.Text(), "  ")
		if !ok {
			t.Fatalf("SHA256SUMS line %q", sc.Text())
		}
		body, err := explorerFiles.ReadFile("graphiql/" + name)
		if err != nil {
			t.Errorf("%s: listed in SHA256SUMS but not embedded: %v", name, err)
			continue
		}
		if sum := sha256.Sum256(body); hex.EncodeToString(sum[:]) != want {
			t.Errorf("%s: sha256 %x, SHA256SUMS says %s: edited by hand? Run admin/graphiql/fetch.sh", name, sum, want)
		}
		listed++
	}
	if listed < 7 {
		t.Errorf("SHA256SUMS lists %d files, want GraphiQL, React, ReactDOM and their licences", listed)
	}

	e := newEnv(t) // with a token: assets are public all the same
	for _, name := range []string{"LICENSE.graphiql", "LICENSE.react", "LICENSE.react-dom"} {
		r := e.send(http.MethodGet, explorerPrefix+name, nil, header{"Authorization", ""})
		if r.status != http.StatusOK || !bytes.Contains(r.raw, []byte("MIT License")) {
			t.Errorf("%s: HTTP %d %.60s", name, r.status, r.raw)
		}
	}
	if r := e.send(http.MethodGet, explorerPrefix+"../server.go", nil); r.status != http.StatusNotFound {
		t.Errorf("unknown asset: HTTP %d", r.status)
	}
	if r := e.send(http.MethodGet, explorerPrefix+"SHA256SUMS", nil); r.status != http.StatusOK {
		t.Errorf("SHA256SUMS: HTTP %d", r.status)
	}

	js, _ := explorerFiles.ReadFile("graphiql/graphiql.min.js")
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+explorerPrefix+"graphiql.min.js", nil)
	req.Header.Set("Accept-Encoding", "gzip")
	resp, err := http.DefaultTransport.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	raw, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.Header.Get("Content-Encoding") != "gzip" || len(raw) > len(js)/3 {
		t.Errorf("gzip: Content-Encoding %q, %d bytes for %d", resp.Header.Get("Content-Encoding"), len(raw), len(js))
	}
	zr, err := gzip.NewReader(bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	if plain, _ := io.ReadAll(zr); !bytes.Equal(plain, js) {
		t.Error("gzipped graphiql.min.js does not decompress to the embedded file")
	}
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/javascript") {
		t.Errorf("Content-Type %q", resp.Header.Get("Content-Type"))
	}
	r := e.send(http.MethodGet, explorerPrefix+"graphiql.min.js", nil, header{"If-None-Match", resp.Header.Get("ETag")})
	if r.status != http.StatusNotModified {
		t.Errorf("revalidation with ETag %s: HTTP %d", resp.Header.Get("ETag"), r.status)
	}

	// The page says whether the headers editor should ask for a token.
	for _, tok := range []string{testToken, ""} {
		e := newEnv(t, withToken(tok))
		page := e.send(http.MethodGet, "/graphql", nil, header{"Accept", "text/html"})
		want := `data-token-required="` + map[bool]string{true: "true", false: "false"}[tok != ""] + `"`
		if !strings.Contains(string(page.raw), want) {
			t.Errorf("token %q: page lacks %s", tok, want)
		}
	}
}

// browserRun is what the browser did while a test drove it.
type browserRun struct {
	mu       sync.Mutex
	requests []string // every URL requested
	errors   []string // console errors, exceptions, error log entries (CSP violations)
}

func (b *browserRun) listen(ev any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch ev := ev.(type) {
	case *network.EventRequestWillBeSent:
		b.requests = append(b.requests, ev.Request.URL)
	case *runtime.EventConsoleAPICalled:
		if ev.Type == runtime.ConsoleAPICalledTypeError || ev.Type == runtime.ConsoleAPICalledTypeAssert {
			var parts []string
			for _, a := range ev.Args {
				parts = append(parts, string(a.Value)+a.Description)
			}
			b.errors = append(b.errors, "console."+string(ev.Type)+": "+strings.Join(parts, " "))
		}
	case *runtime.EventExceptionThrown:
		b.errors = append(b.errors, "exception: "+ev.ExceptionDetails.Text+" "+exceptionDescription(ev.ExceptionDetails))
	case *cdplog.EventEntryAdded:
		if ev.Entry.Level == cdplog.EntryLevelError {
			b.errors = append(b.errors, "log: "+ev.Entry.Text+" "+ev.Entry.URL)
		}
	}
}

func exceptionDescription(d *runtime.ExceptionDetails) string {
	if d.Exception != nil {
		return d.Exception.Description
	}
	return ""
}

// newBrowser starts headless Chromium with a fresh profile, recording what
// the page does.
func newBrowser(t *testing.T) (context.Context, *browserRun) {
	t.Helper()
	path := testkit.RequireTool(t, "the GraphiQL browser test; Debian: apt-get install chromium", "chromium", "chromium-browser", "google-chrome")
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(),
		chromedp.ExecPath(path),
		chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1400, 900),
		chromedp.UserDataDir(t.TempDir()),
	)
	rec := &browserRun{}
	ctx, cancel := chromedp.NewContext(alloc, chromedp.WithListener(rec.listen))
	t.Cleanup(func() { cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx); err != nil { // starts the browser, not under a timeout
		t.Fatalf("starting %s: %v", path, err)
	}
	return ctx, rec
}

// typeInto focuses a CodeMirror editor, selects everything and types text
// over it (as an input method would: CodeMirror's bracket auto-closing
// reacts to key presses only).
func typeInto(sel, text string) chromedp.Action[chromedp.Void] {
	return chromedp.Steps(
		chromedp.Click(chromedp.CSS(sel)),
		chromedp.KeyEvent("a", chromedp.KeyModifiers(chromedp.ModifierCtrl)),
		chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
			_, err := cdp.Call(ctx, t, input.InsertText, input.InsertTextParams{Text: text})
			return err
		}),
	)
}

// poll evaluates a JavaScript expression until it returns true.
func poll(ctx context.Context, what, expr string) error {
	for {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
		if err == nil && ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return &pollError{what, err}
		case <-time.After(100 * time.Millisecond):
		}
	}
}

type pollError struct {
	what string
	err  error
}

func (e *pollError) Error() string {
	if e.err != nil {
		return e.what + ": " + e.err.Error()
	}
	return e.what + ": timed out"
}

const (
	headersEditor = `section.graphiql-editor-tool[aria-label="Headers"] .graphiql-editor:not(.hidden) .CodeMirror`
	queryEditor   = `.graphiql-query-editor .CodeMirror`
	responseText  = `(document.querySelector('.graphiql-response .CodeMirror')?.CodeMirror?.getValue() ?? '')`
)

// TestExplorerBrowser drives GraphiQL in headless Chromium against an admin
// server with a token: the page loads with no console error and no request
// leaving the admin origin, the token typed into the headers editor is sent
// and loads the schema by introspection, and a query typed into the editor
// and run with Ctrl-Enter shows its result.
func TestExplorerBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("starts Chromium; skipped with -short")
	}
	e := newEnv(t) // with testToken
	e.seedWebhook("https://a.example/hook", "ORDER_CREATED")
	e.seedWebhook("https://b.example/hook", "ORDER_CANCELED")

	// Record what reaches the server, in front of the real handler.
	var (
		mu            sync.Mutex
		seen          []string // "status auth-ok operation"
		introspection string   // the query GraphiQL introspects with
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rw := &statusWriter{ResponseWriter: w, status: http.StatusOK}
		var body []byte
		if r.Method == http.MethodPost {
			body, _ = io.ReadAll(r.Body)
			r.Body = io.NopCloser(bytes.NewReader(body))
		}
		e.s.Handler().ServeHTTP(rw, r)
		if r.Method == http.MethodPost {
			var req struct{ Query string }
			_ = json.Unmarshal(body, &req)
			op := "query"
			if strings.Contains(req.Query, "__schema") {
				op = "introspection"
				mu.Lock()
				introspection = req.Query
				mu.Unlock()
			}
			mu.Lock()
			seen = append(seen, http.StatusText(rw.status)+" "+map[bool]string{true: "token", false: "no-token"}[r.Header.Get("Authorization") == "Bearer "+testToken]+" "+op)
			mu.Unlock()
		}
	}))
	t.Cleanup(srv.Close)
	pageURL := srv.URL + "/graphql"

	ctx, rec := newBrowser(t)
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	step := func(what string, a chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(ctx, a); err != nil {
			html, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`document.body ? document.body.innerHTML.slice(0, 3000) : ''`))
			t.Fatalf("%s: %v\nerrors: %q\npage: %s", what, err, rec.errors, html)
		}
	}
	step("open the page", chromedp.Steps(chromedp.Navigate(pageURL), chromedp.WaitVisible(chromedp.CSS(queryEditor))))
	step("the headers editor is open with an Authorization header", chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		return poll(ctx, "headers editor", `(document.querySelector('`+headersEditor+`')?.CodeMirror?.getValue() ?? '').includes('Authorization')`)
	}))
	step("type the token", typeInto(headersEditor, `{"Authorization": "Bearer `+testToken+`"}`))
	// The token loads the schema: the documentation explorer gets it.
	step("schema loaded", chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		return poll(ctx, "introspection with the token", `true`) // the server-side record below is the check
	}))
	deadline := time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		got := strings.Join(seen, "\n")
		mu.Unlock()
		if strings.Contains(got, "OK token introspection") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no introspection with the token answered 200; requests:\n%s\nerrors: %q", got, rec.errors)
		}
		time.Sleep(100 * time.Millisecond)
	}
	step("type a query and run it with Ctrl-Enter", chromedp.Steps(
		typeInto(queryEditor, `{ webhooks { totalCount } }`),
		chromedp.KeyEvent("\r", chromedp.KeyModifiers(chromedp.ModifierCtrl)),
	))
	step("the result shows", chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		return poll(ctx, "result", responseText+`.includes('"totalCount": 2')`)
	}))
	// Autocompletion and the docs come from the introspected schema.
	step("the schema reached the editor", chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
		return poll(ctx, "docs", `(() => {
			const b = document.querySelector('button[aria-label="Show Documentation Explorer"]');
			if (b) b.click();
			const d = document.querySelector('.graphiql-doc-explorer');
			return !!d && d.innerText.includes('Mutation');
		})()`)
	}))

	// A dialog (its scroll lock adds a style element) keeps within the CSP.
	step("open and close the short keys dialog", chromedp.Steps(
		chromedp.Click(chromedp.CSS(`button[aria-label="Open short keys dialog"]`)),
		chromedp.WaitVisible(chromedp.CSS(`[role="dialog"]`)),
		chromedp.KeyEvent("\x1b"),
	))

	if path := os.Getenv("EVENTTAP_SCREENSHOT"); path != "" {
		png, err := chromedp.Run(ctx, chromedp.CaptureScreenshot())
		if err != nil || os.WriteFile(path, png, 0o644) != nil {
			t.Errorf("screenshot: %v", err)
		}
	}

	mu.Lock()
	got := append([]string(nil), seen...)
	mu.Unlock()
	if !strings.Contains(strings.Join(got, "\n"), "OK token query") {
		t.Errorf("the query did not reach the server with the token: %q", got)
	}
	checkIntrospection(t, e, introspection)

	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.errors) > 0 {
		t.Errorf("console errors:\n%s", strings.Join(rec.errors, "\n"))
	}
	if len(rec.requests) < 6 {
		t.Errorf("only %d requests recorded: %q", len(rec.requests), rec.requests)
	}
	for _, u := range rec.requests {
		if !strings.HasPrefix(u, srv.URL+"/") && !strings.HasPrefix(u, "data:") {
			t.Errorf("request to another origin: %s", u)
		}
	}
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) { w.status = code; w.ResponseWriter.WriteHeader(code) }

// checkIntrospection runs GraphiQL's own introspection query (as the
// browser sent it) against the server: it must pass the depth and size
// limits, and enum defaults must print as enums, so that the docs and
// autocompletion show `status: WebhookStatus = ENABLED`.
func checkIntrospection(t *testing.T, e *testEnv, query string) {
	t.Helper()
	if query == "" {
		t.Fatal("GraphiQL sent no introspection query")
	}
	r := e.gql(query, nil)
	if n := len(asSlice(r.get("__schema.types"))); n < 20 {
		t.Errorf("%d types", n)
	}
	found := false
	for _, ty := range list(r.get("__schema.types")) {
		if ty["name"] == "WebhookCreateInput" {
			for _, f := range list(ty["inputFields"]) {
				if f["name"] == "status" {
					found = true
					if f["defaultValue"] != "ENABLED" {
						t.Errorf("status default = %v", f["defaultValue"])
					}
				}
			}
		}
	}
	if !found {
		t.Error("WebhookCreateInput.status not in the introspection result")
	}
}
