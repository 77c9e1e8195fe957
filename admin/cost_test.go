package admin

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
	"time"
)

// repeat joins n copies of format with sep; in format, %[1]d is the copy's
// index and %[2]d the next one's.
func repeat(n int, sep, format string) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteString(sep)
		}
		if strings.Contains(format, "%[") {
			fmt.Fprintf(&b, format, i, i+1)
		} else {
			b.WriteString(format)
		}
	}
	return b.String()
}

// costShapes are documents built to make validation or execution expensive.
// want is a substring of the first error message, or "" for no error.
func costShapes() []struct{ name, query, want string } {
	typeRef := "kind name ofType { kind name ofType { kind name } }"
	return []struct{ name, query, want string }{
		// Issue 10: 3,000 fields sharing one response name in an unused
		// fragment reached graphql-go's quadratic overlap rule (42 s of
		// CPU for 500; 420 MiB and no answer for 3,000).
		{"unused fragment, one alias for different fields",
			`{ __typename } fragment F on Query { ` + repeat(1200, " ", "x: webhooks { totalCount } x: events { totalCount }") + ` }`,
			"never used"},
		{"one alias for different fields",
			`{ ` + repeat(1200, " ", "x: webhooks { totalCount } x: events { totalCount }") + ` }`, "conflict"},
		{"one alias, different arguments",
			`{ ` + repeat(2400, " ", "x: webhooks(first: %[1]d) { totalCount }") + ` }`, "conflict"},
		{"same field repeated", `{ ` + repeat(4999, " ", "__typename") + ` }`, ""},
		{"same field repeated with selections", `{ ` + repeat(2499, " ", "webhooks { totalCount }") + ` }`, ""},
		{"many distinct aliases", `{ ` + repeat(4999, " ", "a%[1]d: __typename") + ` }`, ""},
		{"repeated field, leaves under one alias each",
			`{ webhooks { ` + repeat(2000, " ", "pageInfo { hasNextPage }") + ` } }`, ""},
		{"over the field limit", `{ ` + repeat(5001, " ", "__typename") + ` }`, "more than 5000 fields"},
		{"a megabyte of fields", `{ ` + repeat(maxBodyBytes/4, " ", "a") + ` }`, "more than 30000 tokens"},
		{"just under the token limit", `{ ` + repeat(maxTokens/3-1, " ", "__typename @skip") + ` }`, "more than 5000 fields"},
		{"fields in unused fragments count",
			`{ __typename } ` + repeat(100, " ", "fragment F%[1]d on Query { "+repeat(51, " ", "__typename")+" }"), "more than 5000 fields"},
		{"nested fragments", `{ ...F0 } ` + repeat(40, " ", "fragment F%[1]d on Query { a: __typename ...F%[2]d }") + " fragment F40 on Query { __typename }", ""},
		{"fragment fan-out", `{ __type(name: "Query") { ...F0 } } ` +
			repeat(30, " ", "fragment F%[1]d on __Type { a: ofType { ...F%[2]d } b: ofType { ...F%[2]d } }") +
			" fragment F30 on __Type { name }", "too large"},
		{"spread of a large fragment many times",
			`{ ` + repeat(4000, " ", "...F") + ` } fragment F on Query { ` + repeat(100, " ", "a%[1]d: __typename") + ` }`, "too large"},
		{"deep nesting just under the depth limit, many times",
			`{ ` + repeat(100, " ", "a%[1]d: "+strings.TrimSuffix(strings.TrimPrefix(deepQuery(maxDepth), "{ "), " }")) + ` }`, ""},
		{"many operations", repeat(4000, " ", "query Q%[1]d { __typename }"), "operation name"},
		{"many operations, too large in all", repeat(2600, " ", "query Q%[1]d { ...F }") + " fragment F on Query { __typename }", "in all"},
		{"many operations sharing fragments",
			repeat(3000, " ", "query Q%[1]d { ...F }") + ` fragment F on Query { ` + repeat(100, " ", "a%[1]d: __typename") + ` }`, "too large"},
		{"many unknown fields", `{ ` + repeat(4999, " ", "webhookz") + ` }`, "Cannot query field"},
		{"many unknown types", `query(` + repeat(maxTokens/4-10, " ", "$v%[1]d: Webhookz") + `) { __typename }`, "Unknown type"},
		{"many arguments", `{ webhooks(` + repeat(maxTokens/3-10, " ", "first: 1") + `) { totalCount } }`, "only one argument"},
		{"many directives", `{ __typename ` + repeat(maxTokens/7-10, " ", "@include(if: true)") + ` }`, ""},
		{"long list literal", `{ webhooks(after: [` + repeat(maxTokens-20, " ", "1") + `]) { totalCount } }`, "more than 1000 items"},
		{"long lists", `{ webhooks(after: [` + repeat(maxTokens/(maxListItems+2)-1, " ", "["+repeat(maxListItems, " ", "1")+"]") + `]) { totalCount } }`, "more than 100 items"},
		{"large input object", `{ webhookLogs(filter: {` + repeat(maxTokens/3-10, " ", "succeeded: true") + `}) { totalCount } }`, "more than 100 items"},
		{"introspection, deep type refs", `{ __schema { types { fields { type { ` + typeRef + ` } } inputFields { type { ` + typeRef + ` } } } } }`, ""},
	}
}

// TestCostBound sends each shape through the handler and bounds the time to
// the answer.
func TestCostBound(t *testing.T) {
	e := newEnv(t, withToken(""))
	for _, tc := range costShapes() {
		t.Run(tc.name, func(t *testing.T) {
			if len(tc.query) > maxBodyBytes-100 {
				t.Fatalf("the document is %d bytes, over the body limit", len(tc.query))
			}
			cpu0, start := processCPU(t), time.Now()
			r := e.post(tc.query, nil)
			wall, cpu := time.Since(start), processCPU(t)-cpu0
			t.Logf("%d bytes: %v CPU, %v wall", len(tc.query), cpu, wall)
			// CPU time of the whole process (the server runs in it), not
			// wall time: other work on the machine does not count.
			if cpu > costBound {
				t.Errorf("took %v of CPU for %d bytes, bound %v", cpu, len(tc.query), costBound)
			}
			switch {
			case tc.want == "" && len(r.Errors) > 0:
				t.Errorf("unexpected errors: %.500s", r.raw)
			case tc.want != "" && (len(r.Errors) == 0 || !strings.Contains(r.Errors[0].Message, tc.want)):
				t.Errorf("want an error with %q: %.500s", tc.want, r.raw)
			}
			if len(r.raw) > 1<<20 {
				t.Errorf("the answer is %d bytes", len(r.raw))
			}
		})
	}
}

// processCPU is the CPU time this process has used, user and system.
func processCPU(t *testing.T) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		t.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// FuzzCost repeats a fuzzed piece of document up to the body limit, inside
// an operation or alone: whatever the piece, the answer is well-formed and
// within costBound of CPU.
func FuzzCost(f *testing.F) {
	for _, unit := range []string{
		"x: webhooks { totalCount } x: events { totalCount }", "__typename", "a%[1]d: __typename",
		"...F", "webhooks(first: 1, first: 1) { totalCount }", "__typename @include(if: true)",
		"query Q%[1]d { __typename }", "fragment F%[1]d on Query { ...F%[2]d }", "$v%[1]d: Webhookz",
		`__type(name: "Query") { fields { type { fields { type { name } } } } }`, "[[[1]]]", "{a: null}",
	} {
		f.Add(unit, uint16(5000), true)
		f.Add(unit, uint16(1000), false)
	}
	s, err := New(DefaultConfig(), nil, newRegistry(), newFakeStore(), builtinTypes, nil)
	if err != nil {
		f.Fatal(err)
	}
	h := s.Handler()
	f.Fuzz(func(t *testing.T, unit string, n uint16, wrap bool) {
		if len(unit) == 0 || len(unit)*int(n) > maxBodyBytes/2 {
			return
		}
		doc := repeat(int(n), " ", unit)
		if wrap {
			doc = "{ " + doc + " } fragment F on Query { __typename }"
		}
		raw := mustJSON(map[string]string{"query": doc})
		cpu0 := processCPU(t)
		req := httptest.NewRequest(http.MethodPost, "http://127.0.0.1:9090/graphql", bytes.NewReader(raw))
		req.Header.Set("Content-Type", "application/json")
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if cpu := processCPU(t) - cpu0; cpu > 2*costBound {
			t.Errorf("%d bytes took %v of CPU", len(doc), cpu)
		}
		checkWellFormed(t, rec.Result(), mediaJSON)
	})
}
