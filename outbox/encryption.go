package outbox

import (
	"bytes"
	"encoding/hex"
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
