package admin

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/eventtap/eventtap/outbox"
)

// TestExecutionCostBound: a document within every size limit can still ask
// for millions of values (1,000 aliases of a full page of events). It must
// be refused before execution, in bounded CPU, with an error that says
// what to do; a large but reasonable query still runs.
func TestExecutionCostBound(t *testing.T) {
	e := newEnv(t, withToken(""))
	payload := []byte(`{"order":{"id":"` + strings.Repeat("x", 1000) + `"}}`)
	for i := range 500 {
		e.store.addEvent(outbox.Event{Type: "ORDER_CREATED", Subject: fmt.Sprint("order-", i), Rule: "r", Payload: payload})
	}
	for _, tc := range []struct {
		name, query string
		vars        map[string]any
		want        string
	}{
		{"aliased full pages", `{ ` + repeat(999, " ", "a%[1]d: events(first: 500) { edges { node { payload } } }") + ` }`, nil, "too costly"},
		{"aliased default pages", `{ ` + repeat(1200, " ", "a%[1]d: events { edges { node { id } } }") + ` }`, nil, "too costly"},
		{"first from a variable", `query($n: Int) { ` + repeat(999, " ", "a%[1]d: events(first: $n) { edges { node { payload } } }") + ` }`,
			map[string]any{"n": 500}, "too costly"},
		{"first from a variable's default", `query($n: Int = 500) { ` + repeat(999, " ", "a%[1]d: events(first: $n) { edges { node { payload } } }") + ` }`,
			nil, "too costly"},
		{"spread fragment", `{ ` + repeat(999, " ", "a%[1]d: events(first: 500) { ...E }") + ` } fragment E on EventConnection { edges { node { payload } } }`,
			nil, "too costly"},
		{"one full page with everything", `{ events(first: 500) { totalCount pageInfo { endCursor } edges { cursor node { id type subject rule createdAt payload deliveries { webhookId state attempts } } } } }`,
			nil, ""},
		{"aliased introspection", `{ ` + repeat(999, " ", "a%[1]d: __schema { types { fields { name } } }") + ` }`, nil, "too costly"},
		{"aliased deep introspection", `{ ` + repeat(200, " ", "a%[1]d: __schema { types { fields { type { fields { type { fields { name } } } } } } }") + ` }`, nil, "too costly"},
		{"deep __type, many times", `{ ` + repeat(100, " ", "a%[1]d: "+strings.TrimSuffix(strings.TrimPrefix(deepQuery(maxDepth), "{ "), " }")) + ` }`, nil, ""},
		{"many webhookTest", `mutation { ` + repeat(60, " ", `a%[1]d: webhookTest(id: "wh_1") { id }`) + ` }`, nil, "too costly"},
		{"a few full pages", `{ ` + repeat(10, " ", "a%[1]d: events(first: 500) { edges { node { id subject } } }") + ` }`, nil, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cpu0, start := processCPU(t), time.Now()
			r := e.post(tc.query, tc.vars)
			wall, cpu := time.Since(start), processCPU(t)-cpu0
			t.Logf("%d bytes of document, %d bytes of answer: %v CPU, %v wall", len(tc.query), len(r.raw), cpu, wall)
			if cpu > costBound {
				t.Errorf("took %v of CPU, bound %v", cpu, costBound)
			}
			switch {
			case tc.want == "" && len(r.Errors) > 0:
				t.Errorf("unexpected errors: %.500s", r.raw)
			case tc.want != "" && (len(r.Errors) == 0 || !strings.Contains(r.Errors[0].Message, tc.want)):
				t.Errorf("want an error with %q: %.500s", tc.want, r.raw)
			case tc.want != "" && r.code() != codeBadUserInput:
				t.Errorf("code %q, want %s", r.code(), codeBadUserInput)
			}
		})
	}
}
