package outbox

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

func writeKeyFile(t *testing.T, content []byte, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "key")
	if err := os.WriteFile(p, content, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

// grepDir returns the files under dir that contain needle.
func grepDir(t *testing.T, dir string, needle []byte) []string {
	t.Helper()
	var hits []string
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if bytes.Contains(b, needle) {
			hits = append(hits, filepath.Base(p))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return hits
}

// Item 14: with storage.encryption_key_file no secret or payload is stored
// in plaintext; reopening needs the same key.
func TestEncryptionAtRest(t *testing.T) {
	raw := bytes.Repeat([]byte{0x5a}, 32)
	keyFile := writeKeyFile(t, []byte(hex.EncodeToString(raw)+"\n"), 0o600)
	withKey := func(path string) testOpt {
		return func(s *StorageConfig, _ *DeliveryConfig, _ *openHooks) { s.EncryptionKeyFile = path }
	}
	dir := t.TempDir()
	o := openTestDir(t, dir, withKey(keyFile))
	rc := newReceiver(t, nil)
	const secret = "whsec_ZW5jcnlwdGlvbi10ZXN0LXNlY3JldC1ieXRlcyE="
	hook, err := o.CreateWebhook(t.Context(), WebhookCreate{URL: rc.URL, Type: "ORDER_CREATED", Secret: secret})
	if err != nil {
		t.Fatal(err)
	}
	const marker = "cust-7Q2x9Lk3Vb-Zr8T"
	o.commit(t, event("ORDER_CREATED", "o1", `{"card":"`+marker+`"}`))
	waitFor(t, 5*time.Second, "delivered", func() bool { return rc.count() == 1 })
	waitFor(t, 5*time.Second, "SUCCEEDED", func() bool {
		return o.deliveryState(t, rc.requests()[0].ID, hook.ID).State == Succeeded
	})
	needles := []string{secret, strings.TrimPrefix(secret, "whsec_"), marker, "ORDER_CREATED", rc.URL}
	// While running (write-ahead logs, value logs) and after a clean close
	// (tables).
	for _, needle := range needles {
		if hits := grepDir(t, dir, []byte(needle)); len(hits) > 0 {
			t.Errorf("running: %q is stored in plaintext in %v", needle, hits)
		}
	}
	o.close(t)
	for _, needle := range needles {
		if hits := grepDir(t, dir, []byte(needle)); len(hits) > 0 {
			t.Errorf("closed: %q is stored in plaintext in %v", needle, hits)
		}
	}

	// The same key, as raw bytes, opens it.
	o = openTestDir(t, dir, withKey(writeKeyFile(t, raw, 0o600)))
	if w, err := o.Webhook(t.Context(), hook.ID); err != nil || w.Secret != secret {
		t.Fatalf("reopened with the key: %+v, %v", w, err)
	}
	o.close(t)

	s, d := testConfigs(dir)
	openErr := func() error {
		o, err := Open(t.Context(), s, d, testTypes, nil, nil)
		if err == nil {
			_ = o.Close(t.Context())
		}
		return err
	}
	err = openErr()
	if !errors.Is(err, badger.ErrEncryptionKeyMismatch) || !strings.Contains(err.Error(), "set storage.encryption_key_file") {
		t.Errorf("reopened without a key: %v", err)
	}
	s.EncryptionKeyFile = writeKeyFile(t, bytes.Repeat([]byte{0x6b}, 32), 0o600)
	err = openErr()
	if !errors.Is(err, badger.ErrEncryptionKeyMismatch) || !strings.Contains(err.Error(), "is not the one the store was written with") {
		t.Errorf("reopened with another key: %v", err)
	}
}

func TestEncryptionKeyFileErrors(t *testing.T) {
	tests := []struct {
		name    string
		content []byte
		path    string
		wantErr string
	}{
		{"missing", nil, filepath.Join(t.TempDir(), "nope"), "cannot read the key file"},
		{"wrong size", bytes.Repeat([]byte{1}, 20), "", "holds 20 bytes; it must hold a 16, 24 or 32-byte AES key"},
		{"short hex", []byte("abcd\n"), "", "holds 5 bytes"},
		{"huge", bytes.Repeat([]byte{'a'}, 4096), "", "more than 1024 bytes"},
		{"directory", nil, t.TempDir(), "not a regular file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := tt.path
			if p == "" {
				p = writeKeyFile(t, tt.content, 0o600)
			}
			err := StorageConfig{Dir: t.TempDir(), Retention: time.Hour, EncryptionKeyFile: p}.Validate()
			if err == nil || !strings.Contains(err.Error(), "encryption_key_file: ") || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("Validate: %v, want %q", err, tt.wantErr)
			}
		})
	}
	for _, k := range [][]byte{bytes.Repeat([]byte{7}, 16), bytes.Repeat([]byte{7}, 24), []byte(strings.Repeat("ab", 24) + "\n")} {
		key, warning, err := readEncryptionKey(writeKeyFile(t, k, 0o644))
		if err != nil || (len(key) != 16 && len(key) != 24) || !strings.Contains(warning, "chmod 600") {
			t.Errorf("key file %q: %d bytes, warning %q, %v", k, len(key), warning, err)
		}
	}
}

// The registry seal: a record sealed for one webhook id opens only with
// the same master key and the same id; a node without a key, or with
// another, gets an error that says what to set; plain records pass.
func TestRegistrySeal(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	s, err := newRegistrySeal(key)
	if err != nil {
		t.Fatal(err)
	}
	record := (&webhookRecord{Webhook: Webhook{ID: "wh_1", URL: "https://r.example/x", Type: "ORDER_CREATED", Status: "ENABLED", Secret: "whsec_abc"}}).marshal()
	sealed := s.seal("wh_1", record)
	if bytes.Contains(sealed, []byte("whsec_abc")) || bytes.Contains(sealed, []byte("r.example")) {
		t.Fatal("sealed value holds the record in the clear")
	}
	if again := s.seal("wh_1", record); bytes.Equal(again, sealed) {
		t.Fatal("two seals of one record are equal: the nonce is not fresh")
	}
	got, err := s.open("wh_1", sealed)
	if err != nil || !bytes.Equal(got, record) {
		t.Fatalf("open: %v", err)
	}
	if got, err := s.open("wh_1", record); err != nil || !bytes.Equal(got, record) {
		t.Fatalf("a plain record: %v", err)
	}
	if nilSeal := (*registrySeal)(nil); !bytes.Equal(nilSeal.seal("wh_1", record), record) {
		t.Fatal("without a key a record must pass as it is")
	}
	other, _ := newRegistrySeal(bytes.Repeat([]byte{8}, 32))
	flipped := bytes.Clone(sealed)
	flipped[len(flipped)-1] ^= 1
	for name, c := range map[string]struct {
		s     *registrySeal
		id    string
		value []byte
		says  string
	}{
		"no key":        {nil, "wh_1", sealed, "set storage.encryption_key_file"},
		"another key":   {other, "wh_1", sealed, "every node of a cluster needs the same storage.encryption_key_file"},
		"another id":    {s, "wh_2", sealed, "another key (or altered)"},
		"altered":       {s, "wh_1", flipped, "another key (or altered)"},
		"truncated":     {s, "wh_1", sealed[:20], "truncated"},
		"only its byte": {s, "wh_1", sealed[:1], "truncated"},
	} {
		_, err := c.s.open(c.id, c.value)
		if !errors.Is(err, ErrSealed) || !strings.Contains(err.Error(), c.says) {
			t.Errorf("%s: %v, want ErrSealed saying %q", name, err, c.says)
		}
	}
}

// FuzzRegistryOpen: values from the registry come over the network; open
// must never panic, and whatever it accepts must be what was sealed.
func FuzzRegistryOpen(f *testing.F) {
	s, err := newRegistrySeal(bytes.Repeat([]byte{7}, 16))
	if err != nil {
		f.Fatal(err)
	}
	f.Add([]byte{registrySealVersion})
	f.Add(s.seal("wh_1", []byte{recordVersion, 1, 2, 3}))
	f.Add([]byte{recordVersion, 1, 2})
	f.Fuzz(func(t *testing.T, value []byte) {
		got, err := s.open("wh_1", value)
		if err != nil {
			return
		}
		if len(value) > 0 && value[0] == registrySealVersion && bytes.Equal(got, value) {
			t.Fatal("a sealed value passed through unopened")
		}
	})
}
