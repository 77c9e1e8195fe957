package rules

import (
	"net/http"
	"testing"
	"time"
)

// mustCompile compiles a rules file given as text.
func mustCompile(tb testing.TB, src string, extra ...string) *Engine {
	tb.Helper()
	e, err := CompileFile("test.yaml", []byte(src), EventTypes(extra))
	if err != nil {
		tb.Fatalf("compile:\n%v", err)
	}
	return e
}

var testEnd = time.Date(2026, 11, 29, 13, 34, 18, 123e6, time.UTC)

// exch builds an exchange; bodies are given as text.
func exch(method, path string, status int, reqBody, respBody string) *Exchange {
	ex := &Exchange{
		Request:  Request{Method: method, Path: path, Header: http.Header{}},
		Response: Response{Status: status, Header: http.Header{}},
		Start:    testEnd.Add(-20 * time.Millisecond),
		End:      testEnd,
	}
	if reqBody != "" {
		ex.Request.Body = []byte(reqBody)
	}
	if respBody != "" {
		ex.Response.Body = []byte(respBody)
	}
	return ex
}
