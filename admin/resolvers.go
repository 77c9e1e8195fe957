package admin

import (
	"errors"
	"fmt"
	"time"

	"github.com/graphql-go/graphql"

	"github.com/eventtap/eventtap/outbox"
)

// The root resolvers. Each one makes one Store call and maps its error; the
// field resolvers in schema.go read the returned outbox values.

func (a *api) webhook(p graphql.ResolveParams) (any, error) {
	id := argString(p.Args, "id")
	w, err := a.store.Webhook(p.Context, id)
	if errors.Is(err, outbox.ErrNotFound) {
		return nil, nil // the field is nullable: an unknown id is null, not an error
	}
	if err != nil {
		return nil, storeError(p.Context, a.logger, "Webhook", "", err)
	}
	return w, nil
}

func (a *api) webhooks(p graphql.ResolveParams) (any, error) {
	first, after, err := pageArgs(p.Args)
	if err != nil {
		return nil, err
	}
	f := filterArg(p.Args)
	filter := outbox.WebhookFilter{
		Type:   argString(f, "type"),
		Status: outbox.WebhookStatus(argString(f, "status")),
	}
	page, err := a.store.Webhooks(p.Context, filter, first, after)
	if err != nil {
		return nil, cursorError(p.Context, a.logger, "Webhooks", after, err)
	}
	return pageResult(a, p, page, first, after)
}

func (a *api) webhookLogs(p graphql.ResolveParams) (any, error) {
	first, after, err := pageArgs(p.Args)
	if err != nil {
		return nil, err
	}
	f := filterArg(p.Args)
	filter := outbox.LogFilter{
		Type:      argString(f, "type"),
		WebhookID: argString(f, "webhookId"),
		EventID:   argString(f, "eventId"),
	}
	if b, ok := f["succeeded"].(bool); ok {
		filter.Succeeded = &b
	}
	filter.CreatedAfter, _ = f["createdAfter"].(time.Time)
	filter.CreatedBefore, _ = f["createdBefore"].(time.Time)
	page, err := a.store.Logs(p.Context, filter, first, after)
	if err != nil {
		return nil, cursorError(p.Context, a.logger, "Logs", after, err)
	}
	return pageResult(a, p, page, first, after)
}

func (a *api) event(p graphql.ResolveParams) (any, error) {
	id := argString(p.Args, "id")
	e, err := a.store.Event(p.Context, id)
	if errors.Is(err, outbox.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, storeError(p.Context, a.logger, "Event", "", err)
	}
	return e, nil
}

func (a *api) events(p graphql.ResolveParams) (any, error) {
	first, after, err := pageArgs(p.Args)
	if err != nil {
		return nil, err
	}
	f := filterArg(p.Args)
	filter := outbox.EventFilter{
		Type:    argString(f, "type"),
		Subject: argString(f, "subject"),
		State:   outbox.DeliveryState(argString(f, "state")),
	}
	page, err := a.store.Events(p.Context, filter, first, after)
	if err != nil {
		return nil, cursorError(p.Context, a.logger, "Events", after, err)
	}
	return pageResult(a, p, page, first, after)
}

func (a *api) webhookCreate(p graphql.ResolveParams) (any, error) {
	in, _ := p.Args["input"].(map[string]any)
	create := outbox.WebhookCreate{
		URL:         argString(in, "url"),
		Type:        argString(in, "type"),
		Status:      outbox.WebhookStatus(argString(in, "status")),
		Secret:      argString(in, "secret"),
		Description: argOptional(in, "description"),
	}
	w, err := a.store.CreateWebhook(p.Context, create)
	if err != nil {
		return nil, storeError(p.Context, a.logger, "CreateWebhook", "", err)
	}
	return w, nil
}

func (a *api) webhookUpdate(p graphql.ResolveParams) (any, error) {
	in, _ := p.Args["input"].(map[string]any)
	update := outbox.WebhookUpdate{
		ID:          argString(in, "id"),
		URL:         argOptional(in, "url"),
		Type:        argOptional(in, "type"),
		Description: argOptional(in, "description"),
	}
	if s := argOptional(in, "status"); s != nil {
		status := outbox.WebhookStatus(*s)
		update.Status = &status
	}
	w, err := a.store.UpdateWebhook(p.Context, update)
	if err != nil {
		return nil, storeError(p.Context, a.logger, "UpdateWebhook", webhookWhat(update.ID), err)
	}
	return w, nil
}

func (a *api) webhookDelete(p graphql.ResolveParams) (any, error) {
	id := argString(p.Args, "id")
	if err := a.store.DeleteWebhook(p.Context, id); err != nil {
		return nil, storeError(p.Context, a.logger, "DeleteWebhook", webhookWhat(id), err)
	}
	return id, nil
}

func (a *api) webhookSecretRotate(p graphql.ResolveParams) (any, error) {
	id := argString(p.Args, "id")
	w, err := a.store.RotateSecret(p.Context, id)
	if err != nil {
		return nil, storeError(p.Context, a.logger, "RotateSecret", webhookWhat(id), err)
	}
	return w, nil
}

func (a *api) webhookTest(p graphql.ResolveParams) (any, error) {
	id := argString(p.Args, "id")
	l, err := a.store.TestWebhook(p.Context, id)
	if err != nil {
		return nil, storeError(p.Context, a.logger, "TestWebhook", webhookWhat(id), err)
	}
	return l, nil
}

func (a *api) webhookReplay(p graphql.ResolveParams) (any, error) {
	id := argString(p.Args, "id")
	since, _ := p.Args["since"].(time.Time)
	n, err := a.store.Replay(p.Context, id, since)
	if err != nil {
		return nil, storeError(p.Context, a.logger, "Replay", webhookWhat(id), err)
	}
	return n, nil
}

func (a *api) eventRedeliver(p graphql.ResolveParams) (any, error) {
	id := argString(p.Args, "id")
	webhookID := argString(p.Args, "webhookId")
	e, err := a.store.Redeliver(p.Context, id, webhookID)
	if err != nil {
		what := fmt.Sprintf("event %q", clip(id, 64))
		if webhookID != "" {
			// The store's ErrNotFound does not say which of the two is missing.
			what = fmt.Sprintf("event %q or webhook %q", clip(id, 64), clip(webhookID, 64))
		}
		return nil, storeError(p.Context, a.logger, "Redeliver", what, err)
	}
	return e, nil
}

// pageResult maps a store page to a connection value; a page that does not
// fit together is the store's bug, reported as INTERNAL.
func pageResult[T any](a *api, p graphql.ResolveParams, page outbox.Page[T], first int, after string) (any, error) {
	c, err := connection(page, first, after)
	if err != nil {
		a.logger.ErrorContext(p.Context, "bad page from store", "field", p.Info.FieldName, "err", err)
		return nil, internalError
	}
	return c, nil
}

func webhookWhat(id string) string { return fmt.Sprintf("webhook %q", clip(id, 64)) }

// pageArgs reads first and after, enforcing first's 0–500 range (SPEC §5).
func pageArgs(args map[string]any) (first int, after string, err error) {
	first = defaultFirst
	if v, ok := args["first"].(int); ok {
		first = v
	}
	if first < 0 || first > maxFirst {
		return 0, "", badInput("first: must be between 0 and %d, got %d", maxFirst, first)
	}
	after, _ = args["after"].(string)
	return first, after, nil
}

func filterArg(args map[string]any) map[string]any {
	f, _ := args["filter"].(map[string]any)
	return f
}

// argString reads an optional string (ID, String or enum) argument; absent
// and null read as "", which the store treats as "no constraint".
func argString(args map[string]any, name string) string {
	s, _ := args[name].(string)
	return s
}

// argOptional distinguishes an absent (or null) field, which leaves a value
// alone, from a present one, which sets it (possibly to "").
func argOptional(args map[string]any, name string) *string {
	s, ok := args[name].(string)
	if !ok {
		return nil
	}
	return &s
}
