package outbox

import (
	"errors"
	"time"

	"github.com/eventtap/eventtap/delivery"
)

// Errors callers branch on. The admin API maps ErrNotFound to NOT_FOUND and
// ErrInvalid and ErrBadCursor to BAD_USER_INPUT.
var (
	// ErrNotFound means no webhook or event has the given id.
	ErrNotFound = errors.New("not found")
	// ErrInvalid wraps a problem with caller input (a URL, a secret, a type);
	// the wrapping message says what is wrong and how to fix it.
	// It is delivery.ErrInvalid, which a refused webhook URL wraps.
	ErrInvalid = delivery.ErrInvalid
	// ErrBadCursor means a pagination cursor was not one this store handed out.
	ErrBadCursor = errors.New("malformed cursor")
	// ErrClosed means the store is closed or closing.
	ErrClosed = errors.New("outbox closed")
	// ErrNoSpace means storage.dir's file system is too full to write
	// safely; writing resumes by itself once space is freed.
	ErrNoSpace = errors.New("not enough free space")
)

// WebhookStatus is ENABLED or DISABLED.
type WebhookStatus string

// Webhook statuses.
const (
	Enabled  WebhookStatus = "ENABLED"
	Disabled WebhookStatus = "DISABLED"
)

// DeliveryState is the state of one event's delivery to one webhook.
type DeliveryState string

// Delivery states.
const (
	Pending   DeliveryState = "PENDING"
	Succeeded DeliveryState = "SUCCEEDED"
	Failed    DeliveryState = "FAILED"
)

// Webhook is a subscription of one URL to one event type.
type Webhook struct {
	ID     string
	URL    string
	Type   string
	Status WebhookStatus
	// Secret is the current signing secret ("whsec_" + base64).
	Secret string
	// PreviousSecrets, newest first, sign alongside Secret, each until 24 h
	// after the rotation that replaced it.
	PreviousSecrets []PreviousSecret
	Description     *string
	DisabledReason  *string
	CreatedAt       time.Time
	UpdatedAt       time.Time
}

// PreviousSecret is a secret replaced by a rotation; it keeps signing until
// Until.
type PreviousSecret = delivery.Secret

// WebhookCreate is the input of Outbox.CreateWebhook. An empty Status means
// ENABLED; an empty Secret means one is generated.
type WebhookCreate struct {
	URL         string
	Type        string
	Status      WebhookStatus
	Secret      string
	Description *string
}

// WebhookUpdate is the input of Outbox.UpdateWebhook; nil fields are left as they are.
type WebhookUpdate struct {
	ID          string
	URL         *string
	Type        *string
	Status      *WebhookStatus
	Description *string
}

// Log is one delivery attempt (or a webhookTest send).
type Log struct {
	ID        string
	WebhookID string
	EventID   string
	Type      string
	URL       string
	CreatedAt time.Time
	// ResponseStatus is 0 when there was no HTTP response.
	ResponseStatus int
	// Request is the body that was sent.
	Request      string
	Attempt      int
	Duration     time.Duration
	Error        string
	ResponseBody string
	Succeeded    bool
}

// Delivery is the state of one event's delivery to one webhook.
type Delivery struct {
	WebhookID string
	State     DeliveryState
	Attempts  int
	// NextAttemptAt is zero when no attempt is scheduled.
	NextAttemptAt time.Time
	// LastResponseStatus is 0 when the last attempt got no HTTP response (or none was made).
	LastResponseStatus int
}

// Event is a committed event with its deliveries.
type Event struct {
	ID        string
	Type      string
	Subject   string
	Rule      string
	CreatedAt time.Time
	// Payload is the exact JSON body delivered to webhooks.
	Payload    []byte
	Deliveries []Delivery
}

// WebhookFilter narrows Outbox.Webhooks; zero fields match everything.
type WebhookFilter struct {
	Type   string
	Status WebhookStatus
}

// LogFilter narrows Outbox.Logs; zero fields match everything.
type LogFilter struct {
	Type          string
	WebhookID     string
	EventID       string
	Succeeded     *bool
	CreatedAfter  time.Time
	CreatedBefore time.Time
}

// EventFilter narrows Outbox.Events; zero fields match everything. State
// matches events with at least one delivery in that state.
type EventFilter struct {
	Type    string
	Subject string
	State   DeliveryState
}

// Page is one page of a newest-first listing. Cursors[i] is the opaque
// cursor of Items[i]; passing it as `after` continues after that item, and
// stays valid while new items are written.
type Page[T any] struct {
	Items   []T
	Cursors []string
	HasNext bool
	Total   int
}
