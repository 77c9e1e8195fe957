package main

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"
)

// receiver is the webhook endpoint of `eventtap demo`. It verifies each
// delivery the way a Standard Webhooks consumer does (it shares no code with
// the signer) and prints it.
type receiver struct {
	out io.Writer

	mu      sync.Mutex
	secrets map[string]string // path → whsec_ secret
	seen    map[string]bool   // webhook-id, to show deduplication
	// delivered receives each verified event type; the demo test reads it.
	delivered chan string
}

func newReceiver(out io.Writer) *receiver {
	return &receiver{out: out, secrets: map[string]string{}, seen: map[string]bool{}, delivered: make(chan string, 1024)}
}

func (rc *receiver) setSecret(path, secret string) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.secrets[path] = secret
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 1<<20))
	if err != nil {
		http.Error(w, "body too large", http.StatusRequestEntityTooLarge)
		return
	}
	rc.mu.Lock()
	secret := rc.secrets[r.URL.Path]
	dup := rc.seen[r.Header.Get("webhook-id")]
	rc.seen[r.Header.Get("webhook-id")] = true
	rc.mu.Unlock()
	if err := verifyStandardWebhook(secret, r.Header, body, time.Now()); err != nil {
		fmt.Fprintf(rc.out, "receiver: REJECTED %s: %v\n", r.URL.Path, err)
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	var ev struct {
		ID, Type, Subject string
		Change            json.RawMessage
	}
	_ = json.Unmarshal(body, &ev)
	note := ""
	if dup {
		note = " (redelivery of an id already seen: a real receiver deduplicates on webhook-id)"
	}
	fmt.Fprintf(rc.out, "receiver: verified %s %s subject=%s%s\n          %s\n", ev.Type, ev.ID, ev.Subject, note, body)
	select {
	case rc.delivered <- ev.Type:
	default:
	}
	w.WriteHeader(http.StatusNoContent)
}

// verifyStandardWebhook checks the webhook-signature header against
// HMAC-SHA256("id.timestamp.body") with the base64 key after "whsec_", and
// refuses timestamps more than five minutes away, as the specification says.
func verifyStandardWebhook(secret string, h http.Header, body []byte, now time.Time) error {
	id, ts, sigs := h.Get("webhook-id"), h.Get("webhook-timestamp"), h.Get("webhook-signature")
	if id == "" || ts == "" || sigs == "" {
		return fmt.Errorf("missing webhook-id, webhook-timestamp or webhook-signature")
	}
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return fmt.Errorf("webhook-timestamp %q is not Unix seconds", ts)
	}
	if d := now.Sub(time.Unix(sec, 0)); d > 5*time.Minute || d < -5*time.Minute {
		return fmt.Errorf("webhook-timestamp is %s away from now", d.Round(time.Second))
	}
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(secret, "whsec_"))
	if err != nil || secret == "" {
		return fmt.Errorf("no usable secret registered for this path")
	}
	mac := hmac.New(sha256.New, key)
	fmt.Fprintf(mac, "%s.%s.", id, ts)
	mac.Write(body)
	want := mac.Sum(nil)
	for _, s := range strings.Fields(sigs) {
		v, b64, ok := strings.Cut(s, ",")
		if !ok || v != "v1" {
			continue
		}
		got, err := base64.StdEncoding.DecodeString(b64)
		if err == nil && hmac.Equal(got, want) {
			return nil
		}
	}
	return fmt.Errorf("no v1 signature matches")
}
