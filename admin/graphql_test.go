package admin

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eventtap/eventtap/outbox"
)

// The Zonos documents, verbatim from /work/shared/reference/zonos-webhooks.txt
// (the end-to-end test sends the logs document too).
var (
	zonosCreate = readZonos("create")
	zonosUpdate = readZonos("update")
	zonosLogs   = readZonos("logs")
)

func readZonos(name string) string {
	b, err := os.ReadFile(filepath.Join("testdata", "zonos", name+".graphql"))
	if err != nil {
		panic(err)
	}
	return strings.TrimSuffix(string(b), "\n")
}

func TestZonosDocuments(t *testing.T) {
	e := newEnv(t)

	r := e.gql(zonosCreate, nil)
	id, _ := r.get("webhookCreate.id").(string)
	if id == "" || r.get("webhookCreate.url") != "https://example.com/webhooks/zonos" ||
		r.get("webhookCreate.type") != "ORDER_CREATED" || r.get("webhookCreate.status") != "ENABLED" {
		t.Fatalf("webhookCreate: %s", r.raw)
	}

	// The update document's id is a placeholder: NOT_FOUND, data null.
	r = e.post(zonosUpdate, nil)
	if r.status != http.StatusOK || r.code() != codeNotFound || string(r.Data) != "null" ||
		!strings.Contains(r.Errors[0].Message, `"webhook-id"`) {
		t.Fatalf("webhookUpdate with the placeholder id: HTTP %d %s", r.status, r.raw)
	}
	if p := r.Errors[0].Path; len(p) != 1 || p[0] != "webhookUpdate" {
		t.Errorf("error path = %v", p)
	}
	// With a real id the same document works.
	r = e.gql(strings.Replace(zonosUpdate, "webhook-id", id, 1), nil)
	if r.get("webhookUpdate.id") != id {
		t.Fatalf("webhookUpdate: %s", r.raw)
	}

	// The logs document's cursor is a placeholder: a clear BAD_USER_INPUT.
	r = e.post(zonosLogs, nil)
	if r.code() != codeBadUserInput || !strings.Contains(r.Errors[0].Message, `"yyyyyyy"`) ||
		!strings.Contains(r.Errors[0].Message, "cursor") {
		t.Fatalf("webhookLogs with the placeholder cursor: %s", r.raw)
	}
	// With a real cursor it pages.
	for i := range 3 {
		e.store.addLog(outbox.Log{WebhookID: id, EventID: fmt.Sprint("evt_x", i), Type: "ORDER_CREATED", URL: "https://example.com/webhooks/zonos",
			ResponseStatus: 200, Succeeded: true})
	}
	e.store.addLog(outbox.Log{WebhookID: id, Type: "SHIPMENT_CREATED"})
	r = e.gql(`{ webhookLogs(first: 1, filter: {type: ORDER_CREATED}) { edges { cursor } } }`, nil)
	cursor := r.get("webhookLogs.edges.0.cursor").(string)
	r = e.gql(strings.Replace(zonosLogs, "yyyyyyy", cursor, 1), nil)
	edges := asSlice(r.get("webhookLogs.edges"))
	if len(edges) != 2 {
		t.Fatalf("after a real cursor: %d edges: %s", len(edges), r.raw)
	}
	for _, ed := range edges {
		n := dig(ed, "node").(map[string]any)
		if n["type"] != "ORDER_CREATED" || n["responseStatus"] != float64(200) || n["url"] == "" {
			t.Errorf("node = %v", n)
		}
		if _, err := time.Parse(time.RFC3339, n["createdAt"].(string)); err != nil {
			t.Errorf("createdAt: %v", err)
		}
	}
}

func TestWebhookQueries(t *testing.T) {
	e := newEnv(t)
	a := e.seedWebhook("https://a.example/hook", "ORDER_CREATED")
	b := e.seedWebhook("https://b.example/hook", "SHIPMENT_CREATED")
	e.gql(`mutation($id: ID!) { webhookUpdate(input: {id: $id, status: DISABLED, description: "paused"}) { id } }`,
		map[string]any{"id": b})

	r := e.gql(`query($id: ID!) { webhook(id: $id) { id url type status secret description disabledReason createdAt updatedAt } }`,
		map[string]any{"id": a})
	w := r.get("webhook").(map[string]any)
	if w["id"] != a || w["url"] != "https://a.example/hook" || w["type"] != "ORDER_CREATED" || w["status"] != "ENABLED" ||
		!strings.HasPrefix(w["secret"].(string), "whsec_") || w["description"] != nil || w["disabledReason"] != nil {
		t.Errorf("webhook = %v", w)
	}
	if w["createdAt"] != "2026-11-29T13:34:19.123Z" {
		t.Errorf("createdAt = %v, want RFC 3339 UTC with milliseconds", w["createdAt"])
	}

	// Unknown id: null, not an error (the field is nullable).
	r = e.gql(`{ webhook(id: "wh_999") { id } }`, nil)
	if string(r.Data) != `{"webhook":null}` {
		t.Errorf("unknown webhook: %s", r.raw)
	}

	for _, tc := range []struct {
		filter string
		want   []string
	}{
		{``, []string{b, a}}, // newest first
		{`filter: {type: ORDER_CREATED}`, []string{a}},
		{`filter: {status: DISABLED}`, []string{b}},
		{`filter: {status: ENABLED, type: SHIPMENT_CREATED}`, nil},
	} {
		q := `{ webhooks` + wrapArgs(tc.filter) + ` { totalCount edges { cursor node { id description } } pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }`
		r := e.gql(q, nil)
		if got := nodeIDs(r, "webhooks"); strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("%s: ids = %v, want %v", tc.filter, got, tc.want)
		}
		if r.get("webhooks.totalCount") != float64(len(tc.want)) {
			t.Errorf("%s: totalCount = %v", tc.filter, r.get("webhooks.totalCount"))
		}
		if len(tc.want) == 0 && (r.get("webhooks.pageInfo.startCursor") != nil || r.get("webhooks.pageInfo.endCursor") != nil) {
			t.Errorf("%s: cursors on an empty page: %s", tc.filter, r.raw)
		}
	}
}

func wrapArgs(s string) string {
	if s == "" {
		return ""
	}
	return "(" + s + ")"
}

func nodeIDs(r *gqlResult, field string) []string {
	var ids []string
	for _, ed := range asSlice(r.get(field + ".edges")) {
		ids = append(ids, dig(ed, "node.id").(string))
	}
	return ids
}

func TestWebhookLogsQuery(t *testing.T) {
	e := newEnv(t)
	a := e.seedWebhook("https://a.example/hook", "ORDER_CREATED")
	ok := e.store.addLog(outbox.Log{WebhookID: a, EventID: "evt_1", Type: "ORDER_CREATED", URL: "https://a.example/hook",
		ResponseStatus: 204, Request: `{"id":"evt_1"}`, Attempt: 1, Duration: 1500 * time.Millisecond, Succeeded: true})
	failed := e.store.addLog(outbox.Log{WebhookID: a, EventID: "evt_2", Type: "ORDER_CREATED", URL: "https://a.example/hook",
		Request: `{"id":"evt_2"}`, Attempt: 3, Error: "dial tcp: connection refused"})
	orphan := e.store.addLog(outbox.Log{WebhookID: "wh_deleted", EventID: "evt_3", Type: "ORDER_CREATED", ResponseStatus: 500,
		ResponseBody: "", Attempt: 1})

	const fields = `{ totalCount edges { node { id type url createdAt responseStatus request webhook { id url } webhookId eventId attempt durationMs error responseBody succeeded } } }`
	r := e.gql(`{ webhookLogs `+fields+` }`, nil)
	if got := nodeIDs(r, "webhookLogs"); strings.Join(got, ",") != strings.Join([]string{orphan.ID, failed.ID, ok.ID}, ",") {
		t.Fatalf("ids = %v", got)
	}
	n := dig(r.get("webhookLogs.edges"), "2.node").(map[string]any)
	if n["responseStatus"] != float64(204) || n["durationMs"] != float64(1500) || n["succeeded"] != true || n["error"] != nil ||
		n["request"] != `{"id":"evt_1"}` || dig(n, "webhook.id") != a || n["webhookId"] != a || n["eventId"] != "evt_1" || n["responseBody"] != "" {
		t.Errorf("succeeded log = %v", n)
	}
	n = dig(r.get("webhookLogs.edges"), "1.node").(map[string]any)
	if n["responseStatus"] != nil || n["error"] != "dial tcp: connection refused" || n["responseBody"] != nil || n["attempt"] != float64(3) {
		t.Errorf("failed log = %v", n)
	}
	n = dig(r.get("webhookLogs.edges"), "0.node").(map[string]any)
	if n["webhook"] != nil || n["webhookId"] != "wh_deleted" || n["responseStatus"] != float64(500) || n["responseBody"] != "" {
		t.Errorf("log of a deleted webhook = %v", n)
	}

	for _, tc := range []struct {
		filter string
		vars   map[string]any
		want   []string
	}{
		{`filter: {succeeded: true}`, nil, []string{ok.ID}},
		{`filter: {succeeded: false}`, nil, []string{orphan.ID, failed.ID}},
		{`filter: {webhookId: "` + a + `"}`, nil, []string{failed.ID, ok.ID}},
		{`filter: {eventId: "evt_2"}`, nil, []string{failed.ID}},
		{`filter: {type: SHIPMENT_CREATED}`, nil, nil},
		{`filter: {createdAfter: $t}`, map[string]any{"t": ok.CreatedAt.Format(time.RFC3339Nano)}, []string{orphan.ID, failed.ID}},
		{`filter: {createdBefore: $t}`, map[string]any{"t": failed.CreatedAt.In(time.FixedZone("", 3600)).Format(time.RFC3339)}, []string{ok.ID}},
	} {
		q := `{ webhookLogs(` + tc.filter + `) { edges { node { id } } } }`
		if tc.vars != nil {
			q = `query($t: DateTime) ` + q
		}
		r := e.gql(q, tc.vars)
		if got := nodeIDs(r, "webhookLogs"); strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("%s: ids = %v, want %v", tc.filter, got, tc.want)
		}
	}
}

func TestEventQueries(t *testing.T) {
	e := newEnv(t)
	a := e.seedWebhook("https://a.example/hook", "ORDER_STATUS_CHANGED")
	payload := `{"id":"evt_x","type":"ORDER_STATUS_CHANGED","data":{"note":"<b>&amp;</b> \u00e9"},"change":{"previous":"OPEN","current":"SHIPPED"}}`
	next := time.Date(2026, 12, 1, 0, 0, 0, 5_000_000, time.FixedZone("", -5*3600))
	ev := e.store.addEvent(outbox.Event{Type: "ORDER_STATUS_CHANGED", Subject: "1", Rule: "order-status-changed",
		Payload: []byte(payload), Deliveries: []outbox.Delivery{
			{WebhookID: a, State: outbox.Pending, Attempts: 2, NextAttemptAt: next, LastResponseStatus: 503},
			{WebhookID: "wh_gone", State: outbox.Failed, Attempts: 10},
		}})
	other := e.store.addEvent(outbox.Event{Type: "ORDER_CREATED", Subject: "2", Rule: "order-created", Payload: []byte(`{}`),
		Deliveries: []outbox.Delivery{{WebhookID: a, State: outbox.Succeeded, Attempts: 1, LastResponseStatus: 200}}})

	r := e.gql(`query($id: ID!) { event(id: $id) { id type subject rule createdAt payload
		deliveries { webhook { id } webhookId state attempts nextAttemptAt lastResponseStatus } } }`, map[string]any{"id": ev.ID})
	got := r.get("event").(map[string]any)
	if got["payload"] != payload {
		t.Errorf("payload = %q, want the exact bytes %q", got["payload"], payload)
	}
	if got["subject"] != "1" || got["rule"] != "order-status-changed" || got["type"] != "ORDER_STATUS_CHANGED" {
		t.Errorf("event = %v", got)
	}
	d0 := dig(got, "deliveries.0").(map[string]any)
	if dig(d0, "webhook.id") != a || d0["state"] != "PENDING" || d0["attempts"] != float64(2) ||
		d0["nextAttemptAt"] != "2026-12-01T05:00:00.005Z" || d0["lastResponseStatus"] != float64(503) {
		t.Errorf("delivery 0 = %v", d0)
	}
	d1 := dig(got, "deliveries.1").(map[string]any)
	if d1["webhook"] != nil || d1["webhookId"] != "wh_gone" || d1["nextAttemptAt"] != nil || d1["lastResponseStatus"] != nil {
		t.Errorf("delivery 1 = %v", d1)
	}

	r = e.gql(`{ event(id: "evt_404") { id } }`, nil)
	if string(r.Data) != `{"event":null}` {
		t.Errorf("unknown event: %s", r.raw)
	}

	for _, tc := range []struct {
		filter string
		want   []string
	}{
		{``, []string{other.ID, ev.ID}},
		{`filter: {type: ORDER_CREATED}`, []string{other.ID}},
		{`filter: {subject: "1"}`, []string{ev.ID}},
		{`filter: {state: FAILED}`, []string{ev.ID}},
		{`filter: {state: SUCCEEDED}`, []string{other.ID}},
	} {
		r := e.gql(`{ events`+wrapArgs(tc.filter)+` { totalCount edges { node { id } } } }`, nil)
		if got := nodeIDs(r, "events"); strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("%s: ids = %v, want %v", tc.filter, got, tc.want)
		}
	}
}

func TestMutations(t *testing.T) {
	e := newEnv(t)

	r := e.gql(`mutation { webhookCreate(input: {url: "https://x.example/h", type: SHIPMENT_CANCELED, status: DISABLED,
		secret: "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", description: "ops"}) { id status secret description } }`, nil)
	id := r.get("webhookCreate.id").(string)
	if r.get("webhookCreate.status") != "DISABLED" || r.get("webhookCreate.secret") != "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" ||
		r.get("webhookCreate.description") != "ops" {
		t.Errorf("webhookCreate: %s", r.raw)
	}
	// status defaults to ENABLED.
	r = e.gql(`mutation { webhookCreate(input: {url: "https://y.example/h", type: ORDER_CREATED}) { status } }`, nil)
	if r.get("webhookCreate.status") != "ENABLED" {
		t.Errorf("default status: %s", r.raw)
	}

	// Update changes only what is given.
	r = e.gql(`mutation($in: WebhookUpdateInput!) { webhookUpdate(input: $in) { url type status description } }`,
		map[string]any{"in": map[string]any{"id": id, "url": "https://z.example/h", "status": "ENABLED"}})
	if r.get("webhookUpdate.url") != "https://z.example/h" || r.get("webhookUpdate.type") != "SHIPMENT_CANCELED" ||
		r.get("webhookUpdate.status") != "ENABLED" || r.get("webhookUpdate.description") != "ops" {
		t.Errorf("webhookUpdate: %s", r.raw)
	}

	r = e.gql(`mutation($id: ID!) { webhookSecretRotate(id: $id) { secret updatedAt } }`, map[string]any{"id": id})
	if s := r.get("webhookSecretRotate.secret"); s == "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw" || !strings.HasPrefix(s.(string), "whsec_") {
		t.Errorf("rotated secret = %v", s)
	}

	r = e.gql(`mutation($id: ID!) { webhookTest(id: $id) { id webhookId succeeded responseStatus durationMs webhook { url } } }`,
		map[string]any{"id": id})
	if r.get("webhookTest.succeeded") != true || r.get("webhookTest.durationMs") != float64(42) ||
		r.get("webhookTest.webhook.url") != "https://z.example/h" {
		t.Errorf("webhookTest: %s", r.raw)
	}

	e.store.addEvent(outbox.Event{Type: "SHIPMENT_CANCELED", Payload: []byte(`{}`)})
	e.store.addEvent(outbox.Event{Type: "SHIPMENT_CANCELED", Payload: []byte(`{}`)})
	r = e.gql(`mutation($id: ID!) { webhookReplay(id: $id, since: "2026-11-29T14:34:18+01:00") }`, map[string]any{"id": id})
	if r.get("webhookReplay") != float64(2) {
		t.Errorf("webhookReplay: %s", r.raw)
	}
	if want := id + "@2026-11-29T13:34:18Z"; len(e.store.replays) != 1 || e.store.replays[0] != want {
		t.Errorf("replays = %v, want [%s]", e.store.replays, want)
	}

	ev := e.store.addEvent(outbox.Event{Type: "SHIPMENT_CANCELED", Payload: []byte(`{}`),
		Deliveries: []outbox.Delivery{{WebhookID: id, State: outbox.Failed, Attempts: 10}}})
	for _, args := range []string{`id: $id`, `id: $id, webhookId: "` + id + `"`} {
		r = e.gql(`mutation($id: ID!) { eventRedeliver(`+args+`) { id deliveries { state } } }`, map[string]any{"id": ev.ID})
		if r.get("eventRedeliver.id") != ev.ID || r.get("eventRedeliver.deliveries.0.state") != "PENDING" {
			t.Errorf("eventRedeliver(%s): %s", args, r.raw)
		}
	}

	r = e.gql(`mutation($id: ID!) { webhookDelete(id: $id) }`, map[string]any{"id": id})
	if r.get("webhookDelete") != id {
		t.Errorf("webhookDelete: %s", r.raw)
	}
	r = e.gql(`query($id: ID!) { webhook(id: $id) { id } }`, map[string]any{"id": id})
	if string(r.Data) != `{"webhook":null}` {
		t.Errorf("deleted webhook still there: %s", r.raw)
	}
}

// TestErrorCodes covers every code the API produces, with the HTTP status
// under application/json (always 200 once the request is well formed).
func TestErrorCodes(t *testing.T) {
	e := newEnv(t)
	id := e.seedWebhook("https://a.example/hook", "ORDER_CREATED")
	for _, tc := range []struct {
		name, query string
		vars        map[string]any
		code        string
		msg         string // a substring of the first message
		data        string // "" for no data entry
	}{
		{"update unknown", `mutation { webhookUpdate(input: {id: "nope"}) { id } }`, nil, codeNotFound, `webhook "nope" not found`, "null"},
		{"delete unknown", `mutation { webhookDelete(id: "nope") }`, nil, codeNotFound, "not found", "null"},
		{"rotate unknown", `mutation { webhookSecretRotate(id: "nope") { id } }`, nil, codeNotFound, "not found", "null"},
		{"test unknown", `mutation { webhookTest(id: "nope") { id } }`, nil, codeNotFound, "not found", "null"},
		{"replay unknown", `mutation { webhookReplay(id: "nope", since: "2026-01-01T00:00:00Z") }`, nil, codeNotFound, "not found", "null"},
		{"redeliver unknown", `mutation { eventRedeliver(id: "evt_0", webhookId: "wh_0") { id } }`, nil, codeNotFound, `event "evt_0" or webhook "wh_0"`, "null"},
		{"invalid url", `mutation { webhookCreate(input: {url: "ftp://x", type: ORDER_CREATED}) { id } }`, nil, codeBadUserInput, "url:", "null"},
		{"invalid secret", `mutation { webhookCreate(input: {url: "https://x.example", type: ORDER_CREATED, secret: "hunter2"}) { id } }`, nil, codeBadUserInput, "whsec_", "null"},
		{"invalid url on update", `mutation($id: ID!) { webhookUpdate(input: {id: $id, url: "/relative"}) { id } }`, map[string]any{"id": id}, codeBadUserInput, "url:", "null"},
		{"first too big", `{ webhooks(first: 501) { totalCount } }`, nil, codeBadUserInput, "first: must be between 0 and 500, got 501", "null"},
		{"first negative", `{ events(first: -1) { totalCount } }`, nil, codeBadUserInput, "first:", "null"},
		{"first variable", `query($n: Int) { webhookLogs(first: $n) { totalCount } }`, map[string]any{"n": 1000}, codeBadUserInput, "first:", "null"},
		{"bad cursor", `{ events(after: "!!") { totalCount } }`, nil, codeBadUserInput, `after: "!!" is not a cursor`, "null"},
		{"syntax error", `{ webhooks { `, nil, codeBadUserInput, "Syntax Error", ""},
		{"unknown field", `{ webhooks { nope } }`, nil, codeBadUserInput, `Cannot query field "nope"`, ""},
		{"bad enum", `{ webhooks(filter: {type: NOT_A_TYPE}) { totalCount } }`, nil, codeBadUserInput, "NOT_A_TYPE", ""},
		{"bad DateTime literal", `mutation { webhookReplay(id: "x", since: "yesterday") }`, nil, codeBadUserInput, "DateTime", ""},
		{"DateTime without zone", `mutation { webhookReplay(id: "x", since: "2026-01-01T00:00:00") }`, nil, codeBadUserInput, "DateTime", ""},
		{"bad DateTime variable", `query($t: DateTime) { webhookLogs(filter: {createdAfter: $t}) { totalCount } }`, map[string]any{"t": "2026-13-01T00:00:00Z"}, codeBadUserInput, "DateTime", ""},
		{"DateTime variable not a string", `query($t: DateTime) { webhookLogs(filter: {createdAfter: $t}) { totalCount } }`, map[string]any{"t": 12}, codeBadUserInput, "DateTime", ""},
		{"missing variable", `query($id: ID!) { webhook(id: $id) { id } }`, nil, codeBadUserInput, `"$id"`, ""},
		{"unknown operation", `query A { webhooks { totalCount } }`, nil, codeBadUserInput, "", ""},
		{"subscription", `subscription { webhooks { totalCount } }`, nil, codeBadUserInput, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r *gqlResult
			if tc.name == "unknown operation" {
				r = e.send(http.MethodPost, "/graphql", []byte(`{"query": "query A { webhooks { totalCount } }", "operationName": "B"}`),
					header{"Content-Type", "application/json"})
			} else {
				r = e.post(tc.query, tc.vars)
			}
			if r.status != http.StatusOK {
				t.Errorf("HTTP %d, want 200", r.status)
			}
			if r.code() != tc.code {
				t.Fatalf("code = %q, want %q: %s", r.code(), tc.code, r.raw)
			}
			if !strings.Contains(r.Errors[0].Message, tc.msg) {
				t.Errorf("message %q does not contain %q", r.Errors[0].Message, tc.msg)
			}
			if string(r.Data) != tc.data {
				t.Errorf("data = %s, want %q", r.Data, tc.data)
			}
			for _, er := range r.Errors {
				if er.Extensions["code"] == nil {
					t.Errorf("error without a code: %s", r.raw)
				}
			}
		})
	}
}

func TestInternalErrors(t *testing.T) {
	for name, err := range map[string]error{
		"unexpected": errors.New("badger: corrupt value log at /var/lib/eventtap/000042.vlog"),
		"closed":     fmt.Errorf("commit: %w", outbox.ErrClosed),
		"timeout":    fmt.Errorf("read: %w", context.DeadlineExceeded),
	} {
		t.Run(name, func(t *testing.T) {
			e := newEnv(t)
			e.store.fail = err
			for _, q := range []string{
				`{ webhooks { totalCount } }`,
				`{ webhook(id: "x") { id } }`,
				`mutation { webhookCreate(input: {url: "https://x.example", type: ORDER_CREATED}) { id } }`,
			} {
				r := e.post(q, nil)
				if r.status != http.StatusOK || r.code() != codeInternal {
					t.Fatalf("%s: HTTP %d %s", q, r.status, r.raw)
				}
				if strings.Contains(string(r.raw), "/var/lib") {
					t.Errorf("internal detail leaked: %s", r.raw)
				}
			}
		})
	}
}

// TestStaleEventType: a stored webhook whose type left event_types gets a
// clear INTERNAL error naming the type, and the rest of the page survives.
func TestStaleEventType(t *testing.T) {
	e := newEnv(t)
	e.store.webhooks = append(e.store.webhooks, outbox.Webhook{ID: "wh_900", URL: "https://x.example", Type: "GONE_TYPE", Status: outbox.Enabled})
	r := e.post(`{ webhook(id: "wh_900") { id type } }`, nil)
	if r.code() != codeInternal || !strings.Contains(r.Errors[0].Message, "GONE_TYPE") || string(r.Data) != `{"webhook":null}` {
		t.Errorf("%s", r.raw)
	}
}

// TestPaginationWhileAdding walks all pages while new items keep arriving:
// every item that existed when the walk began is seen exactly once, in
// newest-first order, and no new item shows up.
func TestPaginationWhileAdding(t *testing.T) {
	e := newEnv(t)
	var want []string
	for i := range 7 {
		want = append([]string{e.seedWebhook(fmt.Sprintf("https://h%d.example/", i), "ORDER_CREATED")}, want...)
	}
	var got []string
	after := ""
	for page := 0; ; page++ {
		r := e.gql(`query($after: String) { webhooks(first: 3, after: $after) {
			totalCount edges { cursor node { id } } pageInfo { hasNextPage hasPreviousPage startCursor endCursor } } }`,
			map[string]any{"after": nilIfEmpty(after)})
		edges := asSlice(r.get("webhooks.edges"))
		got = append(got, nodeIDs(r, "webhooks")...)
		if hp := r.get("webhooks.pageInfo.hasPreviousPage"); hp != (page > 0) {
			t.Errorf("page %d: hasPreviousPage = %v", page, hp)
		}
		if len(edges) > 0 {
			if r.get("webhooks.pageInfo.startCursor") != dig(edges[0], "cursor") ||
				r.get("webhooks.pageInfo.endCursor") != dig(edges[len(edges)-1], "cursor") {
				t.Errorf("page %d: start/end cursors do not match the edges: %s", page, r.raw)
			}
		}
		// Someone adds a webhook between pages.
		e.seedWebhook(fmt.Sprintf("https://late%d.example/", page), "ORDER_CREATED")
		if r.get("webhooks.pageInfo.hasNextPage") != true {
			break
		}
		after = r.get("webhooks.pageInfo.endCursor").(string)
		if page > 5 {
			t.Fatal("pagination does not end")
		}
	}
	if strings.Join(got, ",") != strings.Join(want, ",") {
		t.Errorf("walked %v, want %v", got, want)
	}

	// first: 0 counts without listing.
	r := e.gql(`{ webhooks(first: 0) { totalCount edges { cursor } pageInfo { hasNextPage startCursor } } }`, nil)
	if r.get("webhooks.totalCount") != float64(10) || len(asSlice(r.get("webhooks.edges"))) != 0 ||
		r.get("webhooks.pageInfo.hasNextPage") != true || r.get("webhooks.pageInfo.startCursor") != nil {
		t.Errorf("first: 0: %s", r.raw)
	}
	// Default first is 20; 500 is allowed.
	for range 15 {
		e.seedWebhook("https://more.example/", "ORDER_CREATED")
	}
	if r := e.gql(`{ webhooks { edges { cursor } } }`, nil); len(asSlice(r.get("webhooks.edges"))) != 20 {
		t.Errorf("default page size = %d", len(asSlice(r.get("webhooks.edges"))))
	}
	if r := e.gql(`{ webhooks(first: 500) { edges { cursor } } }`, nil); len(asSlice(r.get("webhooks.edges"))) != 25 {
		t.Errorf("first: 500 returned %d", len(asSlice(r.get("webhooks.edges"))))
	}
}

func nilIfEmpty(s string) any {
	if s == "" {
		return nil
	}
	return s
}
