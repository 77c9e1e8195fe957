package admin

import (
	"strings"
	"testing"
)

// TestResultKeysInSelectionOrder checks the raw bytes of responses: members
// come in the order the document selects them, through aliases, fragments
// and lists, not sorted as encoding/json sorts map keys.
func TestResultKeysInSelectionOrder(t *testing.T) {
	e := newEnv(t)
	e.seedWebhook("https://example.com/a", "ORDER_CREATED")
	e.seedWebhook("https://example.com/b", "SHIPMENT_CREATED")
	for _, tc := range []struct {
		name, query string
		want        []string // substrings that must appear in this order
	}{
		{"fields and aliases", `{ webhooks(first: 5) { totalCount edges { node { url id type kind: status } cursor } pageInfo { hasNextPage endCursor } } }`,
			[]string{`{"data":{"webhooks":{"totalCount":2,"edges":[{"node":{"url":"https://example.com/b","id":"wh_`, `","type":"SHIPMENT_CREATED","kind":"ENABLED"},"cursor":"`,
				`"pageInfo":{"hasNextPage":false,"endCursor":"`}},
		{"fragments merge", `query { webhooks(first: 1) { ...Hook edges { cursor node { type } } } } fragment Hook on WebhookConnection { edges { node { url } } totalCount }`,
			[]string{`{"data":{"webhooks":{"edges":[{"node":{"url":"https://example.com/b","type":"SHIPMENT_CREATED"},"cursor":"`, `"totalCount":2}}}`}},
		{"inline fragment and typename", `{ webhooks(first: 1) { __typename ... on WebhookConnection { totalCount } } }`,
			[]string{`{"data":{"webhooks":{"__typename":"WebhookConnection","totalCount":2}}}`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw := string(e.gql(tc.query, nil).raw)
			at := 0
			for _, w := range tc.want {
				i := strings.Index(raw[at:], w)
				if i < 0 {
					t.Fatalf("response %s\nlacks, in order, %s", raw, w)
				}
				at += i + len(w)
			}
		})
	}
}
