package outbox

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"time"
)

// maxKeyFileBytes bounds what is read of storage.encryption_key_file: a
// key is at most 64 hex digits and a newline.
const maxKeyFileBytes = 1024

// keyRotation is how often Badger makes a new data key. Badger encrypts
// each table and log file with a data key, and keeps the data keys in its
// key registry (KEYREGISTRY), encrypted with the master key from
// storage.encryption_key_file; 10 days is Badger's own default.
const keyRotation = 10 * 24 * time.Hour

// readEncryptionKey reads the AES master key from path. The file holds the
// key either as raw bytes (exactly 16, 24 or 32 bytes: AES-128, -192 or
// -256) or as hex text (32, 48 or 64 hex digits, surrounding whitespace
// ignored). Raw bytes are what badger's `rotate` command reads. warning is
// set when the file can be read by other users than its owner.
func readEncryptionKey(path string) (key []byte, warning string, err error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, "", fmt.Errorf("cannot read the key file: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, "", fmt.Errorf("cannot read the key file: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, "", fmt.Errorf("%s is not a regular file", path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxKeyFileBytes+1))
	if err != nil {
		return nil, "", fmt.Errorf("cannot read the key file: %w", err)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		warning = fmt.Sprintf("%s can be read by users other than its owner (mode %#o); restrict it with chmod 600", path, perm)
	}
	text := bytes.TrimSpace(b)
	if n := len(text); (n == 32 || n == 48 || n == 64) && isHex(text) {
		key = make([]byte, n/2)
		_, _ = hex.Decode(key, text) // isHex checked it
		return key, warning, nil
	}
	if n := len(b); n == 16 || n == 24 || n == 32 {
		return b, warning, nil
	}
	size := fmt.Sprintf("%d bytes", len(b))
	if len(b) > maxKeyFileBytes {
		size = fmt.Sprintf("more than %d bytes", maxKeyFileBytes)
	}
	return nil, "", fmt.Errorf("%s holds %s; it must hold a 16, 24 or 32-byte AES key, as raw bytes (head -c 32 /dev/urandom > FILE) or as 32, 48 or 64 hex digits (openssl rand -hex 32 > FILE)", path, size)
}

func isHex(b []byte) bool {
	for _, c := range b {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return true
}

// registrySealVersion is the first byte of a webhook record sealed for the
// shared registry; plain records start with recordVersion, so the two
// cannot be mistaken for each other.
const registrySealVersion = 0xE1

// registrySealInfo names what the registry key derived from the master key
// is for, so that it is never the key Badger uses for its key registry.
const registrySealInfo = "eventtap webhook registry v1"

// registrySeal seals webhook records for the cluster's shared registry
// (NATS is another store at rest, and a record holds the webhook's
// secrets): AES-256-GCM under a key derived from the master key with
// HKDF-SHA256, the webhook id as additional data so that a value cannot
// be moved to another key. Every node of a cluster needs the same
// storage.encryption_key_file. A nil registrySeal passes records as they
// are.
type registrySeal struct{ aead cipher.AEAD }

func newRegistrySeal(master []byte) (*registrySeal, error) {
	key, err := hkdf.Key(sha256.New, master, nil, registrySealInfo, 32)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &registrySeal{aead: aead}, nil
}

// seal returns record as the registry stores it.
func (s *registrySeal) seal(id string, record []byte) []byte {
	if s == nil {
		return record
	}
	out := make([]byte, 1+s.aead.NonceSize(), 1+s.aead.NonceSize()+len(record)+s.aead.Overhead())
	out[0] = registrySealVersion
	_, _ = rand.Read(out[1:]) // crypto/rand.Read never fails
	return s.aead.Seal(out, out[1:], record, []byte(id))
}

// ErrSealed is returned for a webhook in the shared registry sealed with
// a key this node does not have; such a node must not deliver (it would
// not know that webhook's subscriptions).
var ErrSealed = errors.New("sealed")

// open returns the record in a registry value. A plain record is taken as
// it is, also by a node with a key: it was written by a node without one,
// or before this node had one, and is sealed the next time it changes.
func (s *registrySeal) open(id string, value []byte) ([]byte, error) {
	if len(value) == 0 || value[0] != registrySealVersion {
		return value, nil
	}
	if s == nil {
		return nil, fmt.Errorf("%w by another node: set storage.encryption_key_file on this node to the key the other nodes of the cluster use", ErrSealed)
	}
	n := 1 + s.aead.NonceSize()
	if len(value) < n+s.aead.Overhead() {
		return nil, fmt.Errorf("%w value of %d bytes is truncated", ErrSealed, len(value))
	}
	record, err := s.aead.Open(nil, value[1:n], value[n:], []byte(id))
	if err != nil {
		return nil, fmt.Errorf("%w with another key (or altered): every node of a cluster needs the same storage.encryption_key_file", ErrSealed)
	}
	return record, nil
}
