package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"sync"
	"time"

	"github.com/graphql-go/graphql"
	"github.com/graphql-go/graphql/language/ast"

	"github.com/eventtap/eventtap/outbox"
)

// Pagination bounds of SPEC §5.
const (
	defaultFirst = 20
	maxFirst     = 500
)

// dateTimeLayout is RFC 3339 with milliseconds, the precision of the
// delivered payload's timestamp (SPEC §4).
const dateTimeLayout = "2006-01-02T15:04:05.000Z07:00"

// enumName is the GraphQL Name grammar; an event type that does not match
// it cannot be a WebhookType value.
var enumName = regexp.MustCompile(`^[_A-Za-z][_0-9A-Za-z]*$`)

// api holds what the resolvers need. It is immutable after newSchema, so
// resolvers may run concurrently.
type api struct {
	store  Store
	logger *slog.Logger
	// types is the WebhookType enum's value set, to give a clear error for a
	// stored webhook or event whose type has since left the configuration.
	types map[string]bool
}

// newSchema builds the schema of SPEC §5, with WebhookType's values taken
// from eventTypes (built-ins plus config event_types).
func newSchema(a *api, eventTypes []string) (graphql.Schema, error) {
	if len(eventTypes) == 0 {
		return graphql.Schema{}, errors.New("admin: no event types for the WebhookType enum")
	}
	a.types = make(map[string]bool, len(eventTypes))
	typeValues := graphql.EnumValueConfigMap{}
	for _, t := range eventTypes {
		if !enumName.MatchString(t) || t == "true" || t == "false" || t == "null" {
			return graphql.Schema{}, fmt.Errorf("admin: event type %q is not a valid GraphQL enum value", t)
		}
		if a.types[t] {
			return graphql.Schema{}, fmt.Errorf("admin: event type %q is listed twice", t)
		}
		a.types[t] = true
		typeValues[t] = &graphql.EnumValueConfig{Value: t}
	}

	dateTime := graphql.NewScalar(graphql.ScalarConfig{
		Name:        "DateTime",
		Description: "An RFC 3339 date-time such as 2026-11-29T13:34:18.123Z. Output is UTC with milliseconds; input must carry a time zone offset.",
		Serialize:   serializeDateTime,
		ParseValue: func(v any) any {
			s, ok := v.(string)
			if !ok {
				return nil
			}
			return parseDateTime(s)
		},
		ParseLiteral: func(v ast.Value) any {
			s, ok := v.(*ast.StringValue)
			if !ok {
				return nil
			}
			return parseDateTime(s.Value)
		},
	})
	webhookType := graphql.NewEnum(graphql.EnumConfig{
		Name:        "WebhookType",
		Description: "An event type: the built-in ones plus the configuration's event_types.",
		Values:      typeValues,
	})
	webhookStatus := graphql.NewEnum(graphql.EnumConfig{
		Name: "WebhookStatus",
		Values: graphql.EnumValueConfigMap{
			"ENABLED":  {Value: string(outbox.Enabled)},
			"DISABLED": {Value: string(outbox.Disabled)},
		},
	})
	deliveryState := graphql.NewEnum(graphql.EnumConfig{
		Name: "DeliveryState",
		Values: graphql.EnumValueConfigMap{
			"PENDING":   {Value: string(outbox.Pending)},
			"SUCCEEDED": {Value: string(outbox.Succeeded)},
			"FAILED":    {Value: string(outbox.Failed)},
		},
	})

	nn := graphql.NewNonNull
	webhook := graphql.NewObject(graphql.ObjectConfig{
		Name: "Webhook",
		Fields: graphql.Fields{
			"id":     {Type: nn(graphql.ID), Resolve: from(func(w outbox.Webhook) any { return w.ID })},
			"url":    {Type: nn(graphql.String), Resolve: from(func(w outbox.Webhook) any { return w.URL })},
			"type":   {Type: nn(webhookType), Resolve: typeOf(a, func(w outbox.Webhook) string { return w.Type })},
			"status": {Type: nn(webhookStatus), Resolve: from(func(w outbox.Webhook) any { return string(w.Status) })},
			"secret": {Type: nn(graphql.String), Resolve: from(func(w outbox.Webhook) any { return w.Secret })},
			"description": {Type: graphql.String, Resolve: from(func(w outbox.Webhook) any {
				return optional(w.Description)
			})},
			"disabledReason": {Type: graphql.String, Resolve: from(func(w outbox.Webhook) any {
				return optional(w.DisabledReason)
			})},
			"createdAt": {Type: nn(dateTime), Resolve: from(func(w outbox.Webhook) any { return w.CreatedAt })},
			"updatedAt": {Type: nn(dateTime), Resolve: from(func(w outbox.Webhook) any { return w.UpdatedAt })},
		},
	})
	webhookLog := graphql.NewObject(graphql.ObjectConfig{
		Name: "WebhookLog",
		Fields: graphql.Fields{
			"id":        {Type: nn(graphql.ID), Resolve: from(func(l outbox.Log) any { return l.ID })},
			"type":      {Type: nn(webhookType), Resolve: typeOf(a, func(l outbox.Log) string { return l.Type })},
			"url":       {Type: nn(graphql.String), Resolve: from(func(l outbox.Log) any { return l.URL })},
			"createdAt": {Type: nn(dateTime), Resolve: from(func(l outbox.Log) any { return l.CreatedAt })},
			"responseStatus": {Type: graphql.Int, Resolve: from(func(l outbox.Log) any {
				return optionalInt(l.ResponseStatus)
			})},
			"request":   {Type: nn(graphql.String), Resolve: from(func(l outbox.Log) any { return l.Request })},
			"webhook":   {Type: webhook, Resolve: webhookOf(a, func(l outbox.Log) string { return l.WebhookID })},
			"webhookId": {Type: nn(graphql.ID), Resolve: from(func(l outbox.Log) any { return l.WebhookID })},
			"eventId":   {Type: nn(graphql.ID), Resolve: from(func(l outbox.Log) any { return l.EventID })},
			"attempt":   {Type: nn(graphql.Int), Resolve: from(func(l outbox.Log) any { return l.Attempt })},
			"durationMs": {Type: nn(graphql.Int), Resolve: from(func(l outbox.Log) any {
				return int(l.Duration.Milliseconds())
			})},
			"error": {Type: graphql.String, Resolve: from(func(l outbox.Log) any {
				if l.Error == "" {
					return nil
				}
				return l.Error
			})},
			"responseBody": {Type: graphql.String, Resolve: from(func(l outbox.Log) any {
				// Without a response there is no body, as opposed to an empty one.
				if l.ResponseStatus == 0 && l.ResponseBody == "" {
					return nil
				}
				return l.ResponseBody
			})},
			"succeeded": {Type: nn(graphql.Boolean), Resolve: from(func(l outbox.Log) any { return l.Succeeded })},
		},
	})
	delivery := graphql.NewObject(graphql.ObjectConfig{
		Name: "Delivery",
		Fields: graphql.Fields{
			"webhook":   {Type: webhook, Resolve: webhookOf(a, func(d outbox.Delivery) string { return d.WebhookID })},
			"webhookId": {Type: nn(graphql.ID), Resolve: from(func(d outbox.Delivery) any { return d.WebhookID })},
			"state":     {Type: nn(deliveryState), Resolve: from(func(d outbox.Delivery) any { return string(d.State) })},
			"attempts":  {Type: nn(graphql.Int), Resolve: from(func(d outbox.Delivery) any { return d.Attempts })},
			"nextAttemptAt": {Type: dateTime, Resolve: from(func(d outbox.Delivery) any {
				if d.NextAttemptAt.IsZero() {
					return nil
				}
				return d.NextAttemptAt
			})},
			"lastResponseStatus": {Type: graphql.Int, Resolve: from(func(d outbox.Delivery) any {
				return optionalInt(d.LastResponseStatus)
			})},
		},
	})
	event := graphql.NewObject(graphql.ObjectConfig{
		Name: "Event",
		Fields: graphql.Fields{
			"id":         {Type: nn(graphql.ID), Resolve: from(func(e outbox.Event) any { return e.ID })},
			"type":       {Type: nn(webhookType), Resolve: typeOf(a, func(e outbox.Event) string { return e.Type })},
			"subject":    {Type: nn(graphql.String), Resolve: from(func(e outbox.Event) any { return e.Subject })},
			"rule":       {Type: nn(graphql.String), Resolve: from(func(e outbox.Event) any { return e.Rule })},
			"createdAt":  {Type: nn(dateTime), Resolve: from(func(e outbox.Event) any { return e.CreatedAt })},
			"payload":    {Type: nn(graphql.String), Resolve: from(func(e outbox.Event) any { return string(e.Payload) })},
			"deliveries": {Type: nn(graphql.NewList(nn(delivery))), Resolve: from(func(e outbox.Event) any { return e.Deliveries })},
		},
	})

	pageInfo := graphql.NewObject(graphql.ObjectConfig{
		Name: "PageInfo",
		Fields: graphql.Fields{
			"hasNextPage":     {Type: nn(graphql.Boolean)},
			"hasPreviousPage": {Type: nn(graphql.Boolean)},
			"startCursor":     {Type: graphql.String},
			"endCursor":       {Type: graphql.String},
		},
	})
	webhookConnection := connectionType("Webhook", webhook, pageInfo)
	webhookLogConnection := connectionType("WebhookLog", webhookLog, pageInfo)
	eventConnection := connectionType("Event", event, pageInfo)

	webhookCreateInput := inputObject("WebhookCreateInput", "", graphql.InputObjectConfigFieldMap{
		"url":         {Type: nn(graphql.String)},
		"type":        {Type: nn(webhookType)},
		"status":      {Type: webhookStatus, DefaultValue: string(outbox.Enabled)},
		"secret":      {Type: graphql.String, Description: "A whsec_ secret to use; one is generated when omitted."},
		"description": {Type: graphql.String},
	})
	webhookUpdateInput := inputObject("WebhookUpdateInput", "Omitted (or null) fields keep their value.", graphql.InputObjectConfigFieldMap{
		"id":          {Type: nn(graphql.ID)},
		"url":         {Type: graphql.String},
		"type":        {Type: webhookType},
		"status":      {Type: webhookStatus},
		"description": {Type: graphql.String},
	})
	webhooksFilter := inputObject("WebhooksFilterInput", "", graphql.InputObjectConfigFieldMap{
		"type":   {Type: webhookType},
		"status": {Type: webhookStatus},
	})
	webhookLogsFilter := inputObject("WebhookLogsFilterInput", "", graphql.InputObjectConfigFieldMap{
		"type":          {Type: webhookType},
		"webhookId":     {Type: graphql.ID},
		"eventId":       {Type: graphql.ID},
		"succeeded":     {Type: graphql.Boolean},
		"createdAfter":  {Type: dateTime},
		"createdBefore": {Type: dateTime},
	})
	eventsFilter := inputObject("EventsFilterInput", "", graphql.InputObjectConfigFieldMap{
		"type":    {Type: webhookType},
		"subject": {Type: graphql.String},
		"state":   {Type: deliveryState},
	})

	page := func(filter *graphql.InputObject) graphql.FieldConfigArgument {
		return graphql.FieldConfigArgument{
			"first":  {Type: graphql.Int, DefaultValue: defaultFirst},
			"after":  {Type: graphql.String},
			"filter": {Type: filter},
		}
	}
	idArg := graphql.FieldConfigArgument{"id": {Type: nn(graphql.ID)}}

	query := graphql.NewObject(graphql.ObjectConfig{
		Name: "Query",
		Fields: graphql.Fields{
			"webhook":     {Type: webhook, Args: idArg, Resolve: a.webhook},
			"webhooks":    {Type: nn(webhookConnection), Args: page(webhooksFilter), Resolve: a.webhooks},
			"webhookLogs": {Type: nn(webhookLogConnection), Args: page(webhookLogsFilter), Resolve: a.webhookLogs},
			"event":       {Type: event, Args: idArg, Resolve: a.event},
			"events":      {Type: nn(eventConnection), Args: page(eventsFilter), Resolve: a.events},
		},
	})
	mutation := graphql.NewObject(graphql.ObjectConfig{
		Name: "Mutation",
		Fields: graphql.Fields{
			"webhookCreate": {Type: nn(webhook), Resolve: a.webhookCreate,
				Args: graphql.FieldConfigArgument{"input": {Type: nn(webhookCreateInput)}}},
			"webhookUpdate": {Type: nn(webhook), Resolve: a.webhookUpdate,
				Args: graphql.FieldConfigArgument{"input": {Type: nn(webhookUpdateInput)}}},
			"webhookDelete":       {Type: nn(graphql.ID), Args: idArg, Resolve: a.webhookDelete},
			"webhookSecretRotate": {Type: nn(webhook), Args: idArg, Resolve: a.webhookSecretRotate},
			"webhookTest": {Type: nn(webhookLog), Args: idArg, Resolve: a.webhookTest,
				Description: "Sends a signed test event now and returns its log."},
			"webhookReplay": {Type: nn(graphql.Int), Resolve: a.webhookReplay,
				Description: "Queues the stored events of the webhook's type since the given time; returns how many.",
				Args: graphql.FieldConfigArgument{
					"id":    {Type: nn(graphql.ID)},
					"since": {Type: nn(dateTime)},
				}},
			"eventRedeliver": {Type: nn(event), Resolve: a.eventRedeliver,
				Description: "Queues the event again, for one webhook or for every subscribed one.",
				Args: graphql.FieldConfigArgument{
					"id":        {Type: nn(graphql.ID)},
					"webhookId": {Type: graphql.ID},
				}},
		},
	})
	schema, err := graphql.NewSchema(graphql.SchemaConfig{Query: query, Mutation: mutation})
	if err != nil {
		return graphql.Schema{}, fmt.Errorf("admin: build schema: %w", err)
	}
	orderSchema(&schema, map[string][]string{
		"WebhookType":   eventTypes,
		"WebhookStatus": {string(outbox.Enabled), string(outbox.Disabled)},
		"DeliveryState": {string(outbox.Pending), string(outbox.Succeeded), string(outbox.Failed)},
	})
	return schema, nil
}

// connectionType is a Relay connection over node: edges{cursor,node},
// pageInfo and totalCount. Its values are built by connection.
func connectionType(name string, node, pageInfo *graphql.Object) *graphql.Object {
	nn := graphql.NewNonNull
	edge := graphql.NewObject(graphql.ObjectConfig{
		Name: name + "Edge",
		Fields: graphql.Fields{
			"cursor": {Type: nn(graphql.String)},
			"node":   {Type: nn(node)},
		},
	})
	return graphql.NewObject(graphql.ObjectConfig{
		Name: name + "Connection",
		Fields: graphql.Fields{
			"edges":      {Type: nn(graphql.NewList(nn(edge)))},
			"pageInfo":   {Type: nn(pageInfo)},
			"totalCount": {Type: nn(graphql.Int)},
		},
	})
}

// connection maps a store page to a connection value. The store's cursors
// are passed through untouched: they are opaque here too.
func connection[T any](p outbox.Page[T], first int, after string) (map[string]any, error) {
	if len(p.Cursors) != len(p.Items) {
		return nil, fmt.Errorf("store returned %d items but %d cursors", len(p.Items), len(p.Cursors))
	}
	items, cursors, hasNext := p.Items, p.Cursors, p.HasNext
	if len(items) > first {
		// Defensive: never hand out more than was asked for.
		items, cursors, hasNext = items[:first], cursors[:first], true
	}
	edges := make([]any, len(items))
	for i := range items {
		edges[i] = map[string]any{"cursor": cursors[i], "node": items[i]}
	}
	info := map[string]any{
		"hasNextPage": hasNext,
		// Relay: when paginating forward, hasPreviousPage may be true if
		// edges before `after` exist, if that is cheap to know. The edge
		// `after` names is such an edge, so after != "" is exact for a
		// cursor the store accepted.
		"hasPreviousPage": after != "",
		"startCursor":     nil,
		"endCursor":       nil,
	}
	if len(cursors) > 0 {
		info["startCursor"] = cursors[0]
		info["endCursor"] = cursors[len(cursors)-1]
	}
	return map[string]any{"edges": edges, "pageInfo": info, "totalCount": p.Total}, nil
}

// from adapts a typed field getter to a resolver. The source is always the
// value a parent resolver returned, so a mismatch is a bug (INTERNAL).
func from[T any](get func(T) any) graphql.FieldResolveFn {
	return func(p graphql.ResolveParams) (any, error) {
		v, err := sourceOf[T](p)
		if err != nil {
			return nil, err
		}
		return get(v), nil
	}
}

// sourceOf returns the value the parent resolver returned, which is a T
// unless the schema and the resolvers disagree (a bug: INTERNAL).
func sourceOf[T any](p graphql.ResolveParams) (T, error) {
	v, ok := p.Source.(T)
	if !ok {
		return v, fmt.Errorf("admin: resolver for %s got a %T", p.Info.FieldName, p.Source)
	}
	return v, nil
}

// typeOf resolves a WebhookType field. A stored type that is no longer
// configured cannot be serialized as the enum; say so instead of letting
// graphql-go report a bare null in a non-null field.
func typeOf[T any](a *api, get func(T) string) graphql.FieldResolveFn {
	return func(p graphql.ResolveParams) (any, error) {
		v, err := sourceOf[T](p)
		if err != nil {
			return nil, err
		}
		t := get(v)
		if !a.types[t] {
			return nil, &codedError{code: codeInternal, msg: fmt.Sprintf("stored type %q is not among the configured event types; add it back to event_types", t)}
		}
		return t, nil
	}
}

// webhookOf resolves the webhook a log or delivery belongs to; null once the
// webhook is deleted (the log and delivery outlive it).
func webhookOf[T any](a *api, get func(T) string) graphql.FieldResolveFn {
	return func(p graphql.ResolveParams) (any, error) {
		v, err := sourceOf[T](p)
		if err != nil {
			return nil, err
		}
		id := get(v)
		if id == "" {
			return nil, nil
		}
		cache, _ := p.Context.Value(webhookCacheKey{}).(*webhookCache)
		if w, ok := cache.get(id); ok {
			return w, nil
		}
		w, err := a.store.Webhook(p.Context, id)
		switch {
		case errors.Is(err, outbox.ErrNotFound):
			cache.put(id, nil)
			return nil, nil
		case err != nil:
			return nil, storeError(p.Context, a.logger, "Webhook", "", err)
		}
		cache.put(id, w)
		return w, nil
	}
}

// webhookCache remembers webhook lookups for one query, because a page of
// 500 logs usually names a handful of webhooks. It is installed only for
// query operations: within a mutation a webhook may change between fields.
type webhookCache struct {
	mu sync.Mutex
	m  map[string]any // outbox.Webhook, or nil when not found
}

type webhookCacheKey struct{}

func withWebhookCache(ctx context.Context) context.Context {
	return context.WithValue(ctx, webhookCacheKey{}, &webhookCache{m: map[string]any{}})
}

func (c *webhookCache) get(id string) (any, bool) {
	if c == nil {
		return nil, false
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	w, ok := c.m[id]
	return w, ok
}

func (c *webhookCache) put(id string, w any) {
	if c == nil {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.m[id] = w
}

func optional(s *string) any {
	if s == nil {
		return nil
	}
	return *s
}

func optionalInt(n int) any {
	if n == 0 {
		return nil
	}
	return n
}

func serializeDateTime(v any) any {
	var t time.Time
	switch v := v.(type) {
	case time.Time:
		t = v
	case *time.Time:
		if v == nil {
			return nil
		}
		t = *v
	default:
		return nil
	}
	if t.IsZero() {
		return nil
	}
	return t.UTC().Format(dateTimeLayout)
}

// parseDateTime accepts RFC 3339 only (with or without fractional
// seconds); anything else is nil, which graphql-go reports as an invalid
// value before any resolver runs.
func parseDateTime(s string) any {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		return nil
	}
	return t
}

// inputObject declares an input type of the schema.
func inputObject(name, description string, fields graphql.InputObjectConfigFieldMap) *graphql.InputObject {
	return graphql.NewInputObject(graphql.InputObjectConfig{Name: name, Description: description, Fields: fields})
}
