package outbox

import (
	"errors"
	"fmt"
	"time"

	"github.com/eventtap/eventtap/delivery"
)

// StorageConfig is the `storage:` section of the configuration file.
type StorageConfig struct {
	Dir        string        `yaml:"dir"`
	SyncWrites bool          `yaml:"sync_writes"`
	Retention  time.Duration `yaml:"retention"`
	// EncryptionKeyFile, when set, names a file holding a 16, 24 or
	// 32-byte AES key (raw bytes, or hex digits); Badger then encrypts
	// everything it writes (see readEncryptionKey).
	EncryptionKeyFile string `yaml:"encryption_key_file"`
}

// DeliveryConfig is the `delivery:` section of the configuration file,
// owned by package delivery.
type DeliveryConfig = delivery.Config

// DefaultStorageConfig returns the storage configuration used for keys the file leaves out.
func DefaultStorageConfig() StorageConfig {
	return StorageConfig{Dir: "./data", SyncWrites: true, Retention: 168 * time.Hour}
}

// DefaultDeliveryConfig returns the delivery configuration used for keys the file leaves out.
func DefaultDeliveryConfig() DeliveryConfig { return delivery.DefaultConfig() }

// Validate reports every problem with c, joined. Each problem's message
// starts with the YAML key it is about, so that the loader can point at the
// line that holds it.
func (c StorageConfig) Validate() error {
	var errs []error
	if c.Dir == "" {
		errs = append(errs, errors.New("dir: must name the directory that holds the outbox (for example \"./data\")"))
	}
	if c.Retention <= 0 {
		errs = append(errs, fmt.Errorf("retention: must be a positive duration such as 168h, got %s", c.Retention))
	}
	if c.EncryptionKeyFile != "" {
		if _, _, err := readEncryptionKey(c.EncryptionKeyFile); err != nil {
			errs = append(errs, fmt.Errorf("encryption_key_file: %w", err))
		}
	}
	return errors.Join(errs...)
}
