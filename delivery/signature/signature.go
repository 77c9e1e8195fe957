// Package signature implements Standard Webhooks signing
// (https://www.standardwebhooks.com): secrets of the form "whsec_" + base64,
// and the "v1,<base64 HMAC-SHA256 of id.timestamp.body>" signature scheme.
//
// Every function is pure and safe for concurrent use.
package signature

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Prefix starts every secret.
const Prefix = "whsec_"

// MinKeyBytes is the smallest key a secret may hold.
const MinKeyBytes = 24

// Header names of the Standard Webhooks specification.
const (
	HeaderID        = "webhook-id"
	HeaderTimestamp = "webhook-timestamp"
	HeaderSignature = "webhook-signature"
)

// ErrSecret means a string is not a usable secret.
var ErrSecret = errors.New("secret must be \"whsec_\" followed by the base64 of at least 24 random bytes (leave it empty to have one generated)")

// NewSecret returns a fresh secret holding 32 random bytes.
func NewSecret() string {
	var key [32]byte
	_, _ = rand.Read(key[:]) // crypto/rand.Read never fails on supported platforms
	return Prefix + base64.StdEncoding.EncodeToString(key[:])
}

// Key returns the HMAC key held by secret, or an error wrapping ErrSecret.
func Key(secret string) ([]byte, error) {
	enc, ok := strings.CutPrefix(secret, Prefix)
	if !ok {
		return nil, fmt.Errorf("%w: it does not start with %q", ErrSecret, Prefix)
	}
	key, err := base64.StdEncoding.DecodeString(enc)
	if err != nil {
		// Secrets stored before Check refused unpadded base64 keep
		// signing; new ones cannot be unpadded (see Check).
		if key, err = base64.RawStdEncoding.DecodeString(enc); err != nil {
			return nil, fmt.Errorf("%w: the part after %q is not valid base64", ErrSecret, Prefix)
		}
	}
	if len(key) < MinKeyBytes {
		return nil, fmt.Errorf("%w: it holds %d bytes", ErrSecret, len(key))
	}
	return key, nil
}

// Check reports whether a secret supplied by a user is acceptable: what Key
// accepts, spelled as standard base64 with its '=' padding. Reference
// Standard Webhooks receivers (the Go, Python and Java libraries) decode the
// secret with padded standard base64 and cannot use an unpadded one, so
// such a secret would make every delivery unverifiable.
func Check(secret string) error {
	if _, err := Key(secret); err != nil {
		return err
	}
	enc := strings.TrimPrefix(secret, Prefix)
	if _, err := base64.StdEncoding.DecodeString(enc); err != nil {
		return fmt.Errorf("%w: the base64 after %q lacks its '=' padding, which Standard Webhooks receivers need to decode it; append %q",
			ErrSecret, Prefix, strings.Repeat("=", (4-len(enc)%4)%4))
	}
	return nil
}

// Sign returns "v1,<base64 signature>" of body for the message id and Unix
// timestamp under key.
func Sign(key []byte, id string, timestamp int64, body []byte) string {
	mac := hmac.New(sha256.New, key)
	mac.Write([]byte(id))
	mac.Write([]byte{'.'})
	mac.Write(strconv.AppendInt(nil, timestamp, 10))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(mac.Sum(nil))
}

// Header returns the webhook-signature header value: one signature per key,
// space-separated, in the order given (the current secret first).
func Header(keys [][]byte, id string, timestamp int64, body []byte) string {
	sigs := make([]string, len(keys))
	for i, k := range keys {
		sigs[i] = Sign(k, id, timestamp, body)
	}
	return strings.Join(sigs, " ")
}

// Verify reports whether header (a webhook-signature value) holds a v1
// signature of body made with key. It is meant for tests and receivers; the
// sender never needs it.
func Verify(key []byte, header, id string, timestamp int64, body []byte) bool {
	want := Sign(key, id, timestamp, body)
	for _, s := range strings.Fields(header) {
		if hmac.Equal([]byte(s), []byte(want)) {
			return true
		}
	}
	return false
}
