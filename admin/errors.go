package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/eventtap/eventtap/outbox"
)

// Error codes carried in every GraphQL error's extensions.code (SPEC §5).
// Clients branch on these, never on messages.
const (
	codeBadUserInput    = "BAD_USER_INPUT"
	codeNotFound        = "NOT_FOUND"
	codeUnauthenticated = "UNAUTHENTICATED"
	codeInternal        = "INTERNAL"
	codeUnavailable     = "UNAVAILABLE"
)

// codedError is a resolver error that graphql-go reports with
// extensions.code: it implements gqlerrors.ExtendedError, which the library
// consults when it formats an error.
type codedError struct {
	code string
	msg  string
}

func (e *codedError) Error() string { return e.msg }

// Extensions implements gqlerrors.ExtendedError.
func (e *codedError) Extensions() map[string]any { return map[string]any{"code": e.code} }

func badInput(format string, args ...any) error {
	return &codedError{code: codeBadUserInput, msg: fmt.Sprintf(format, args...)}
}

func notFound(format string, args ...any) error {
	return &codedError{code: codeNotFound, msg: fmt.Sprintf(format, args...)}
}

// internalError is what clients see for failures that are not theirs; the
// detail goes to the log instead, because it may name files, addresses or
// other internals.
var internalError = &codedError{code: codeInternal, msg: "internal error; the details are in the eventtap log"}

// storeError maps an error from the Store to a coded GraphQL error. what
// names the thing that was looked for, for the NOT_FOUND message
// (`webhook "wh_1"`); op names the operation, for the log.
func storeError(ctx context.Context, logger *slog.Logger, op, what string, err error) error {
	switch {
	case errors.Is(err, outbox.ErrNotFound):
		return notFound("%s not found", what)
	case errors.Is(err, outbox.ErrBadCursor):
		// Callers with a cursor in hand replace this with a message that
		// quotes it; see cursorError.
		return badInput("after: not a cursor handed out by this API; pass an edges.cursor or pageInfo.endCursor from a previous page, or omit after to start at the newest")
	case errors.Is(err, outbox.ErrInvalid):
		// The store's message says what is wrong and how to fix it.
		return &codedError{code: codeBadUserInput, msg: err.Error()}
	case errors.Is(err, outbox.ErrUnavailable), errors.Is(err, outbox.ErrConflict):
		// Cluster mode: NATS is unreachable, or other nodes kept changing
		// the same webhook; nothing was changed, and a retry may succeed.
		logger.WarnContext(ctx, "store call refused by the cluster", "op", op, "err", err)
		switch op {
		// Published again on the cluster's stream (docs/cluster.md).
		case "Redeliver":
			return &codedError{code: codeUnavailable, msg: "the cluster's events stream (NATS JetStream) cannot be reached right now; the event was not queued again, retry later"}
		case "Replay":
			return &codedError{code: codeUnavailable, msg: "the cluster's events stream (NATS JetStream) cannot be reached right now; retry later (part of the replay may have been queued already: receivers deduplicate on webhook-id)"}
		}
		return &codedError{code: codeUnavailable, msg: "the cluster's shared registry (NATS JetStream) cannot be changed right now; nothing was changed, retry later"}
	case errors.Is(err, outbox.ErrClosed):
		return &codedError{code: codeInternal, msg: "the event store is shutting down; retry against the new instance"}
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		logger.DebugContext(ctx, "store call ended with the request", "op", op, "err", err)
		return &codedError{code: codeInternal, msg: "the request was canceled or timed out"}
	default:
		logger.ErrorContext(ctx, "store call failed", "op", op, "err", err)
		return internalError
	}
}

// cursorError is storeError for a listing: a malformed cursor gets a
// message that quotes it, so that a copied placeholder such as the Zonos
// documentation's "yyyyyyy" is easy to spot.
func cursorError(ctx context.Context, logger *slog.Logger, op, after string, err error) error {
	if errors.Is(err, outbox.ErrBadCursor) {
		return badInput("after: %q is not a cursor handed out by this API; pass an edges.cursor or pageInfo.endCursor from a previous page, or omit after to start at the newest", clip(after, 64))
	}
	return storeError(ctx, logger, op, "", err)
}

// clip shortens s for quoting in a message, so that a megabyte of input
// does not come back in the error.
func clip(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n]) + "…"
}
