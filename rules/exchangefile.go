package rules

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
	"time"
)

// ParseExchange decodes a recorded exchange, the --exchange file of
// `eventtap rules test`. The file is one JSON object:
//
//	{
//	  "request": {
//	    "method": "PATCH",                          // required; upper-cased
//	    "path": "/orders/42?expand=items",          // required; may carry the query
//	    "query": "expand=items",                    // optional: a query string, or an object
//	                                                //   of string or list-of-string values
//	    "headers": {"Content-Type": "application/json", "X-Tag": ["a", "b"]},
//	    "body": {"status": "SHIPPED"},              // optional, see below
//	    "truncated": false                          // optional: body cut at max_capture_bytes
//	  },
//	  "response": {
//	    "status": 200,                              // required
//	    "headers": {"Content-Type": "application/json"},
//	    "body": {"id": 42, "status": "SHIPPED"},
//	    "truncated": false
//	  },
//	  "start": "2026-11-29T13:34:18Z",              // optional, RFC 3339
//	  "end": "2026-11-29T13:34:18.120Z"             // optional, RFC 3339; defaults to start
//	}
//
// A body given as a JSON object, array, number or boolean is that JSON text.
// A body given as a string is the raw body text, so "not json" is a body that
// is not JSON, and "{\"id\": 1}" is the same body as {"id": 1}. A null or
// missing body is an empty body. The path is written as a client sends it
// and cleaned as the proxy cleans it (CleanPath), so "/orders/a%2Fb" is one
// segment there as in real traffic. Header names are canonicalised; a header given as a list has
// several values. Unknown keys are errors.
func ParseExchange(data []byte) (*Exchange, error) {
	var f struct {
		Request struct {
			Method    string          `json:"method"`
			Path      string          `json:"path"`
			Query     json.RawMessage `json:"query"`
			Headers   json.RawMessage `json:"headers"`
			Body      json.RawMessage `json:"body"`
			Truncated bool            `json:"truncated"`
		} `json:"request"`
		Response struct {
			Status    int             `json:"status"`
			Headers   json.RawMessage `json:"headers"`
			Body      json.RawMessage `json:"body"`
			Truncated bool            `json:"truncated"`
		} `json:"response"`
		Start string `json:"start"`
		End   string `json:"end"`
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, jsonError(data, err)
	}
	if dec.More() {
		return nil, errors.New("exchange: holds more than one JSON value; give one object")
	}

	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("exchange: "+key+": "+format, args...))
	}
	ex := &Exchange{}
	req := &ex.Request
	req.Method = strings.ToUpper(strings.TrimSpace(f.Request.Method))
	if req.Method == "" {
		bad("request.method", "is required, such as \"POST\"")
	}
	path := f.Request.Path
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path, req.RawQuery = path[:i], path[i+1:]
		if len(f.Request.Query) > 0 && string(f.Request.Query) != "null" {
			bad("request.query", "is given both in request.path and here; keep one")
		}
	}
	switch _, err := url.PathUnescape(path); {
	case path == "":
		bad("request.path", "is required, such as \"/orders/42\"")
	case !strings.HasPrefix(path, "/"):
		bad("request.path", "%q must start with \"/\"", path)
	case err != nil:
		bad("request.path", "%q is not a valid URL path: %v", path, err)
	default:
		req.Path = CleanPath(path)
	}
	if q, err := parseQuery(f.Request.Query); err != nil {
		bad("request.query", "%v", err)
	} else if q != "" {
		req.RawQuery = q
	}
	var err error
	if req.Header, err = parseHeaders(f.Request.Headers); err != nil {
		bad("request.headers", "%v", err)
	}
	req.Body, req.Truncated = parseBodyField(f.Request.Body), f.Request.Truncated

	resp := &ex.Response
	resp.Status = f.Response.Status
	if resp.Status < 100 || resp.Status > 599 {
		bad("response.status", "is required, an HTTP status from 100 to 599; got %d", resp.Status)
	}
	if resp.Header, err = parseHeaders(f.Response.Headers); err != nil {
		bad("response.headers", "%v", err)
	}
	resp.Body, resp.Truncated = parseBodyField(f.Response.Body), f.Response.Truncated

	if f.Start != "" {
		if ex.Start, err = time.Parse(time.RFC3339Nano, f.Start); err != nil {
			bad("start", "%q is not an RFC 3339 time such as \"2026-11-29T13:34:18Z\"", f.Start)
		}
	}
	if f.End != "" {
		if ex.End, err = time.Parse(time.RFC3339Nano, f.End); err != nil {
			bad("end", "%q is not an RFC 3339 time such as \"2026-11-29T13:34:18.120Z\"", f.End)
		}
	} else {
		ex.End = ex.Start
	}
	if !ex.Start.IsZero() && ex.End.Before(ex.Start) {
		bad("end", "is before start")
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return ex, nil
}

// jsonError locates a decoding error in data.
func jsonError(data []byte, err error) error {
	var off int64 = -1
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		off = se.Offset
	case errors.As(err, &te):
		off = te.Offset
	}
	msg := strings.TrimPrefix(err.Error(), "json: ")
	if off < 0 {
		return fmt.Errorf("exchange: %s", msg)
	}
	// Offset counts the bytes read, up to and including the offending one.
	off = max(0, min(off-1, int64(len(data))))
	line := 1 + bytes.Count(data[:off], []byte("\n"))
	col := int(off) - bytes.LastIndexByte(data[:off], '\n')
	return fmt.Errorf("exchange: line %d, column %d: %s", line, col, msg)
}

// parseBodyField turns a body given as JSON into the captured bytes.
func parseBodyField(raw json.RawMessage) []byte {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	if raw[0] == '"' {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return []byte(s)
		}
	}
	return bytes.Clone(raw)
}

// parseHeaders accepts an object of string or list-of-string values.
func parseHeaders(raw json.RawMessage) (http.Header, error) {
	h := http.Header{}
	if len(raw) == 0 || string(raw) == "null" {
		return h, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, errors.New("must be an object of header names to a string or a list of strings")
	}
	for k, v := range m {
		vals, err := stringOrList(v)
		if err != nil {
			return nil, fmt.Errorf("%q: %v", k, err)
		}
		ck := textproto.CanonicalMIMEHeaderKey(k)
		h[ck] = append(h[ck], vals...)
	}
	return h, nil
}

// parseQuery accepts a query string or an object of string or
// list-of-string values, and returns the encoded query.
func parseQuery(raw json.RawMessage) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		s = strings.TrimPrefix(s, "?")
		if _, err := url.ParseQuery(s); err != nil {
			return "", fmt.Errorf("%q is not a valid query string: %v", s, err)
		}
		return s, nil
	}
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return "", errors.New("must be a query string or an object of names to a string or a list of strings")
	}
	q := url.Values{}
	for k, v := range m {
		vals, err := stringOrList(v)
		if err != nil {
			return "", fmt.Errorf("%q: %v", k, err)
		}
		q[k] = vals
	}
	return q.Encode(), nil
}

func stringOrList(raw json.RawMessage) ([]string, error) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return []string{s}, nil
	}
	var l []string
	if json.Unmarshal(raw, &l) == nil {
		return l, nil
	}
	return nil, errors.New("must be a string or a list of strings")
}
