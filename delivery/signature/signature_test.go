package signature_test

import (
	"bytes"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/eventtap/eventtap/delivery/signature"
)

// The test vector published with the Standard Webhooks specification.
func TestSpecVector(t *testing.T) {
	key, err := signature.Key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		t.Fatal(err)
	}
	got := signature.Sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, []byte(`{"test": 2432232314}`))
	if want := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; got != want {
		t.Fatalf("Sign = %s, want %s", got, want)
	}
}

func TestIndependentVerifier(t *testing.T) {
	old, cur := signature.NewSecret(), signature.NewSecret()
	oldKey, _ := signature.Key(old)
	curKey, _ := signature.Key(cur)
	body := []byte(`{"id":"evt_1","type":"ORDER_CREATED"}`)
	ts := time.Now().Unix()
	h := http.Header{}
	h.Set(signature.HeaderID, "evt_1")
	h.Set(signature.HeaderTimestamp, strconv.FormatInt(ts, 10))
	h.Set(signature.HeaderSignature, signature.Header([][]byte{curKey, oldKey}, "evt_1", ts, body))
	for _, secret := range []string{cur, old} {
		wh, err := standardwebhooks.NewWebhook(secret)
		if err != nil {
			t.Fatal(err)
		}
		if err := wh.Verify(body, h); err != nil {
			t.Errorf("verify with %s…: %v", secret[:10], err)
		}
	}
	other, _ := standardwebhooks.NewWebhook(signature.NewSecret())
	if other.Verify(body, h) == nil {
		t.Error("an unrelated secret verified the signature")
	}
	if !signature.Verify(oldKey, h.Get(signature.HeaderSignature), "evt_1", ts, body) {
		t.Error("Verify rejected the old key's signature")
	}
	if signature.Verify(oldKey, h.Get(signature.HeaderSignature), "evt_1", ts, append(bytes.Clone(body), ' ')) {
		t.Error("Verify accepted a changed body")
	}
}

func TestKey(t *testing.T) {
	tests := []struct {
		secret string
		ok     bool
	}{
		{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", true},       // 24 bytes
		{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2La", false},          // 19 bytes
		{"MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", false},            // no prefix
		{"whsec_not base64 at all!!!!!!!!!!!!!!!!!!!!", false}, // bad base64
		{signature.NewSecret(), true},
	}
	for _, tt := range tests {
		if _, err := signature.Key(tt.secret); (err == nil) != tt.ok {
			t.Errorf("Key(%q) error = %v, want ok=%v", tt.secret, err, tt.ok)
		}
	}
}

func FuzzKey(f *testing.F) {
	f.Add("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	f.Add("whsec_")
	f.Fuzz(func(t *testing.T, s string) {
		if key, err := signature.Key(s); err == nil && len(key) < signature.MinKeyBytes {
			t.Fatalf("short key accepted: %d bytes", len(key))
		}
	})
}

// An unpadded secret is refused with a message saying how to fix it: the
// reference receiver library cannot decode it.
func TestCheckRefusesUnpaddedSecret(t *testing.T) {
	padded := "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSwAA==" // 26 bytes
	unpadded := strings.TrimRight(padded, "=")
	if _, err := signature.Key(unpadded); err != nil {
		t.Fatalf("Key must keep accepting stored unpadded secrets: %v", err)
	}
	if _, err := standardwebhooks.NewWebhook(unpadded); err == nil {
		t.Fatal("premise: the reference library refuses an unpadded secret")
	}
	err := signature.Check(unpadded)
	if !errors.Is(err, signature.ErrSecret) || !strings.Contains(err.Error(), `append "=="`) {
		t.Fatalf("Check(unpadded) = %v, want ErrSecret telling to append ==", err)
	}
	if err := signature.Check(padded); err != nil {
		t.Fatalf("Check(padded) = %v", err)
	}
	if _, err := standardwebhooks.NewWebhook(padded); err != nil {
		t.Fatalf("reference library on the padded secret: %v", err)
	}
	if err := signature.Check("whsec_short"); err == nil {
		t.Fatal("Check accepted a short secret")
	}
}
