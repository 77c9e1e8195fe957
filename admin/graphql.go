package admin

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"time"

	"github.com/graphql-go/graphql"
	"github.com/graphql-go/graphql/gqlerrors"
	"github.com/graphql-go/graphql/language/ast"
	"github.com/graphql-go/graphql/language/location"
	"github.com/graphql-go/graphql/language/parser"
	"github.com/graphql-go/graphql/language/source"
)

// maxBodyBytes is SPEC §5's request size limit.
const maxBodyBytes = 1 << 20

// executeTimeout bounds one GraphQL request; webhookTest, the slowest
// resolver, is bounded by the delivery timeout well below it.
const executeTimeout = 60 * time.Second

// gqlRequest is a GraphQL-over-HTTP request's parameters.
type gqlRequest struct {
	Query         string
	Variables     map[string]any
	OperationName string
}

// gqlError is one entry of a response's errors. It is ours rather than
// gqlerrors.FormattedError so that locations are left out when there are
// none (the GraphQL spec says to omit them) and extensions.code is always
// set.
type gqlError struct {
	Message    string                    `json:"message"`
	Locations  []location.SourceLocation `json:"locations,omitempty"`
	Path       []any                     `json:"path,omitempty"`
	Extensions map[string]any            `json:"extensions"`
}

// gqlResponse is a GraphQL response. Data is raw so that "absent" (a
// request error: nothing was executed) and null (a field error reached the
// root) stay distinct; GraphQL over HTTP gives them different status codes.
type gqlResponse struct {
	Errors []gqlError      `json:"errors,omitempty"`
	Data   json.RawMessage `json:"data,omitempty"`

	status int // set when the HTTP layer decides it (401, 405, 413, …)
}

// requestError is a response to a request that was not executed; status 0
// leaves the status to writeResponse's GraphQL-over-HTTP rules.
func requestError(status int, code, format string, args ...any) *gqlResponse {
	return &gqlResponse{
		status: status,
		Errors: []gqlError{{Message: fmt.Sprintf(format, args...), Extensions: map[string]any{"code": code}}},
	}
}

// serveGraphQLPost handles POST /graphql.
func (s *Server) serveGraphQLPost(w http.ResponseWriter, r *http.Request) {
	mt, ok := s.negotiate(w, r)
	if !ok {
		return
	}
	if resp := s.authenticate(w, r); resp != nil {
		s.writeResponse(w, r, mt, resp)
		return
	}
	// Requiring application/json also keeps browsers on other origins out:
	// a cross-site form or no-cors fetch cannot send it without a CORS
	// preflight, which this server never approves. That matters because
	// the token may be empty on loopback.
	ct, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil || ct != mediaJSON {
		w.Header().Set("Accept-Post", mediaJSON)
		s.writeResponse(w, r, mt, requestError(http.StatusUnsupportedMediaType, codeBadUserInput,
			"send the request as Content-Type: application/json with a body like {\"query\": \"…\", \"variables\": {…}}"))
		return
	}
	if r.ContentLength > maxBodyBytes {
		s.writeResponse(w, r, mt, tooLarge())
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		if _, ok := errors.AsType[*http.MaxBytesError](err); ok {
			s.writeResponse(w, r, mt, tooLarge())
			return
		}
		s.logger.DebugContext(r.Context(), "reading request body", "err", err)
		s.writeResponse(w, r, mt, requestError(http.StatusBadRequest, codeBadUserInput, "could not read the request body"))
		return
	}
	req, resp := decodeBody(body)
	if resp == nil {
		resp = s.execute(r.Context(), req, true)
	}
	s.writeResponse(w, r, mt, resp)
}

// serveGraphQLGet handles GET /graphql: the explorer for browsers, else
// GraphQL over HTTP's GET, which may only run queries.
func (s *Server) serveGraphQLGet(w http.ResponseWriter, r *http.Request) {
	if parseAccept(r).wantsHTML() {
		// The page holds no data and no secret, so it is served without
		// the token; the page asks for it and sends it with each request.
		s.serveExplorer(w, r)
		return
	}
	mt, ok := s.negotiate(w, r)
	if !ok {
		return
	}
	if resp := s.authenticate(w, r); resp != nil {
		s.writeResponse(w, r, mt, resp)
		return
	}
	q := r.URL.Query()
	req := gqlRequest{Query: q.Get("query"), OperationName: q.Get("operationName")}
	if req.Query == "" {
		s.writeResponse(w, r, mt, requestError(http.StatusBadRequest, codeBadUserInput,
			"missing the query parameter: GET /graphql?query={webhooks{totalCount}}, or open /graphql in a browser for the explorer"))
		return
	}
	if v := q.Get("variables"); v != "" {
		if err := json.Unmarshal([]byte(v), &req.Variables); err != nil {
			s.writeResponse(w, r, mt, requestError(http.StatusBadRequest, codeBadUserInput,
				"the variables parameter must be a JSON object"))
			return
		}
	}
	s.writeResponse(w, r, mt, s.execute(r.Context(), req, false))
}

func tooLarge() *gqlResponse {
	return requestError(http.StatusRequestEntityTooLarge, codeBadUserInput,
		"the request body is larger than the limit of %d bytes", maxBodyBytes)
}

// decodeBody reads {query, variables, operationName}. A body that is not
// such an object is a request error (400 with either media type).
func decodeBody(body []byte) (gqlRequest, *gqlResponse) {
	var raw struct {
		Query         json.RawMessage `json:"query"`
		Variables     json.RawMessage `json:"variables"`
		OperationName json.RawMessage `json:"operationName"`
	}
	var req gqlRequest
	if err := json.Unmarshal(body, &raw); err != nil {
		var typeErr *json.UnmarshalTypeError
		switch trimmed := bytes.TrimSpace(body); {
		case len(trimmed) > 0 && trimmed[0] == '[':
			return req, requestError(http.StatusBadRequest, codeBadUserInput,
				"the request body is a JSON array: batched operations are not supported; send one {\"query\": …} object per request")
		case errors.As(err, &typeErr):
			return req, requestError(http.StatusBadRequest, codeBadUserInput,
				"the request body is a JSON %s, not an object; send {\"query\": \"…\", \"variables\": {…}}", typeErr.Value)
		}
		return req, requestError(http.StatusBadRequest, codeBadUserInput, "the request body is not a JSON object: %v", err)
	}
	if err := unmarshalNullable(raw.Query, &req.Query); err != nil || req.Query == "" {
		return req, requestError(http.StatusBadRequest, codeBadUserInput, "the request body needs a query: a non-empty string holding a GraphQL document")
	}
	if err := unmarshalNullable(raw.Variables, &req.Variables); err != nil {
		return req, requestError(http.StatusBadRequest, codeBadUserInput, "variables must be a JSON object or null")
	}
	if err := unmarshalNullable(raw.OperationName, &req.OperationName); err != nil {
		return req, requestError(http.StatusBadRequest, codeBadUserInput, "operationName must be a string or null")
	}
	return req, nil
}

// unmarshalNullable is json.Unmarshal that, unlike it, refuses a value of
// the wrong JSON type instead of partially filling v, and accepts an absent
// value or null as the zero value.
func unmarshalNullable(raw json.RawMessage, v any) error {
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return nil
	}
	return json.Unmarshal(raw, v)
}

// negotiate picks the response media type; when the client accepts no JSON
// type at all it answers 406, as GraphQL over HTTP recommends.
func (s *Server) negotiate(w http.ResponseWriter, r *http.Request) (string, bool) {
	mt := parseAccept(r).responseMediaType()
	if mt == "" {
		resp := requestError(http.StatusNotAcceptable, codeBadUserInput,
			"this endpoint answers application/graphql-response+json or application/json; add one to the Accept header")
		s.writeResponse(w, r, mediaJSON, resp)
		return "", false
	}
	return mt, true
}

// authenticate returns nil when the request may proceed, else the 401
// response. Both the presented and the configured token are hashed first,
// so the comparison takes the same time whatever their lengths (subtle's
// comparison returns early on a length mismatch).
func (s *Server) authenticate(w http.ResponseWriter, r *http.Request) *gqlResponse {
	if !s.hasToken {
		return nil
	}
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if ok && strings.EqualFold(scheme, "Bearer") {
		got := sha256.Sum256([]byte(strings.TrimSpace(token)))
		if subtle.ConstantTimeCompare(got[:], s.tokenHash[:]) == 1 {
			return nil
		}
		w.Header().Set("WWW-Authenticate", `Bearer realm="eventtap admin", error="invalid_token"`)
		return requestError(http.StatusUnauthorized, codeUnauthenticated, "the bearer token is not the admin token")
	}
	w.Header().Set("WWW-Authenticate", `Bearer realm="eventtap admin"`)
	return requestError(http.StatusUnauthorized, codeUnauthenticated,
		"send the admin token as Authorization: Bearer TOKEN (admin.token or EVENTTAP_ADMIN_TOKEN)")
}

// execute parses, validates (the spec's rules plus the depth and size
// limits) and executes one request. allowMutation is false for GET.
func (s *Server) execute(ctx context.Context, req gqlRequest, allowMutation bool) (resp *gqlResponse) {
	// graphql-go's parser and validators are not hardened against every
	// input; a panic in them must still produce a GraphQL response.
	defer func() {
		if v := recover(); v != nil {
			s.logger.ErrorContext(ctx, "graphql panic", "panic", v, "operation", req.OperationName)
			resp = requestError(http.StatusInternalServerError, codeInternal, "%s", internalError.msg)
		}
	}()

	body := []byte(req.Query)
	toks, err := lexDocument(body, maxTokens)
	switch {
	case err == nil:
		body = blankNullTokens(body, toks)
	case !errors.Is(err, errLex):
		// Answered like a validation error: 200 with application/json.
		return requestError(0, codeBadUserInput, "%v", err)
	}
	src := source.NewSource(&source.Source{Body: body, Name: "GraphQL request"})
	// NoSource: see lineIndex. Syntax errors still carry the source.
	doc, err := parser.Parse(parser.ParseParams{Source: src, Options: parser.ParseOptions{NoSource: true}})
	if err != nil {
		return &gqlResponse{Errors: convertErrors(gqlerrors.FormatErrors(err), codeBadUserInput)}
	}
	lines := newLineIndex(src.Body)
	if n := countFields(doc, maxFields); n > maxFields {
		return requestError(0, codeBadUserInput,
			"the document has more than %d fields, counted over all its operations and fragments, used or not; send fewer fields or split it into several requests", maxFields)
	}
	// limits runs first, alone: see Server.limits.
	for _, rules := range [][]graphql.ValidationRuleFn{s.limits, s.rules} {
		if vr := graphql.ValidateDocument(&s.schema, doc, rules); !vr.IsValid {
			return &gqlResponse{Errors: convertErrors(capErrors(lines.fixLocations(vr.Errors)), codeBadUserInput)}
		}
	}

	if cost := resultCost(&s.schema, doc, req.OperationName, req.Variables); cost > maxResultCost {
		return costError(cost)
	}

	opType := operationType(doc, req.OperationName)
	if opType == ast.OperationTypeMutation && !allowMutation {
		return requestError(http.StatusMethodNotAllowed, codeBadUserInput, "mutations must be sent with POST")
	}
	if opType == ast.OperationTypeQuery {
		ctx = withWebhookCache(ctx)
	}
	ctx, cancel := context.WithTimeout(ctx, executeTimeout)
	defer cancel()

	hidden := hiddenFields(&s.schema, doc)
	start := time.Now()
	res := graphql.Execute(graphql.ExecuteParams{
		Schema:        s.schema,
		AST:           doc,
		OperationName: req.OperationName,
		Args:          req.Variables,
		Context:       ctx,
	})

	// graphql-go leaves Data nil both when it refused to start (unknown
	// operation, bad variables: no error has a path) and when a field error
	// nulled the root (the error has a path). Only the latter executed.
	executed := res.Data != nil
	for _, e := range res.Errors {
		if len(e.Path) > 0 {
			executed = true
		}
	}
	code := codeBadUserInput
	if executed || ctx.Err() != nil {
		// Field errors without a code come from graphql-go itself
		// (a null in a non-null field, a recovered panic): our bugs.
		code = codeInternal
	}
	if code == codeInternal {
		for _, e := range res.Errors {
			if e.Extensions["code"] == nil { // coded errors were logged where they arose
				s.logger.ErrorContext(ctx, "graphql execution error", "message", e.Message, "path", e.Path)
			}
		}
	}
	out := &gqlResponse{Errors: convertErrors(lines.fixLocations(res.Errors), code)}
	if executed {
		data, err := orderedJSON(&s.schema, doc, req.OperationName, res.Data, hidden)
		if err != nil {
			s.logger.ErrorContext(ctx, "encoding graphql data", "err", err)
			return requestError(http.StatusInternalServerError, codeInternal, "%s", internalError.msg)
		}
		out.Data = data
	} else if ctx.Err() != nil {
		out.status = http.StatusServiceUnavailable
	}
	s.logger.DebugContext(ctx, "graphql request", "operation", req.OperationName, "type", opType,
		"errors", len(out.Errors), "duration", time.Since(start))
	return out
}

// operationType is the type of the operation that will run, or "" when
// graphql-go will refuse to pick one (it then reports why).
func operationType(doc *ast.Document, name string) string {
	if op := findOperation(doc, name); op != nil {
		return op.Operation
	}
	return ""
}

// convertErrors turns graphql-go's errors into ours, giving every one a code:
// its own (from a codedError) or defaultCode.
func convertErrors(errs []gqlerrors.FormattedError, defaultCode string) []gqlError {
	out := make([]gqlError, 0, len(errs))
	for _, e := range errs {
		ext := map[string]any{}
		for k, v := range e.Extensions {
			ext[k] = v
		}
		if c, _ := ext["code"].(string); c == "" {
			ext["code"] = defaultCode
		}
		out = append(out, gqlError{Message: e.Message, Locations: e.Locations, Path: e.Path, Extensions: ext})
	}
	return out
}

// writeResponse sends resp as mt. The status follows GraphQL over HTTP:
// with application/json every GraphQL response is 200 and only HTTP-level
// failures differ; with application/graphql-response+json a request that was
// not executed (no data entry) is 4xx (400, or 500 for our own failure).
func (s *Server) writeResponse(w http.ResponseWriter, r *http.Request, mt string, resp *gqlResponse) {
	status := resp.status
	if status == http.StatusMethodNotAllowed {
		// Only mutations sent with GET end here; RFC 9110 requires Allow.
		w.Header().Set("Allow", "POST")
	}
	if status == 0 {
		status = http.StatusOK
		if mt == mediaGraphQLResponse && resp.Data == nil {
			status = http.StatusBadRequest
			for _, e := range resp.Errors {
				if e.Extensions["code"] == codeInternal {
					status = http.StatusInternalServerError
				}
			}
		}
	}
	body, err := json.Marshal(resp)
	if err != nil {
		// Only an unencodable value from a resolver gets here.
		s.logger.ErrorContext(r.Context(), "encoding graphql response", "err", err)
		status = http.StatusInternalServerError
		body, _ = json.Marshal(requestError(status, codeInternal, "%s", internalError.msg))
	}
	h := w.Header()
	h.Set("Content-Type", mt+"; charset=utf-8")
	h.Set("Cache-Control", "no-store") // responses carry webhook secrets
	h.Set("X-Content-Type-Options", "nosniff")
	h.Add("Vary", "Accept")
	w.WriteHeader(status)
	if _, err := w.Write(body); err != nil {
		s.logger.DebugContext(r.Context(), "writing graphql response", "err", err)
	}
}

// slogPrintln adapts slog to promhttp's Logger.
type slogPrintln struct{ logger *slog.Logger }

func (l slogPrintln) Println(v ...any) { l.logger.Error(strings.TrimSuffix(fmt.Sprintln(v...), "\n")) }
