package outbox

import (
	"errors"
	"fmt"
	"net"
	"time"
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

// DeliveryConfig is the `delivery:` section of the configuration file.
type DeliveryConfig struct {
	Workers              int             `yaml:"workers"`
	Timeout              time.Duration   `yaml:"timeout"`
	RetrySchedule        []time.Duration `yaml:"retry_schedule"`
	Jitter               float64         `yaml:"jitter"`
	AllowPrivateNetworks bool            `yaml:"allow_private_networks"`
	AllowedNetworks      []string        `yaml:"allowed_networks"`
	DisableAfter         time.Duration   `yaml:"disable_after"`
	MaxResponseBytes     int             `yaml:"max_response_bytes"`
}

// DefaultStorageConfig returns the storage configuration used for keys the file leaves out.
func DefaultStorageConfig() StorageConfig {
	return StorageConfig{Dir: "./data", SyncWrites: true, Retention: 168 * time.Hour}
}

// DefaultDeliveryConfig returns the delivery configuration used for keys the file leaves out.
func DefaultDeliveryConfig() DeliveryConfig {
	return DeliveryConfig{
		Workers: 32,
		Timeout: 15 * time.Second,
		RetrySchedule: []time.Duration{5 * time.Second, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour,
			5 * time.Hour, 10 * time.Hour, 14 * time.Hour, 20 * time.Hour, 24 * time.Hour},
		Jitter:           0.2,
		DisableAfter:     120 * time.Hour,
		MaxResponseBytes: 4096,
	}
}

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

// Validate reports every problem with c, joined. Each problem's message
// starts with the YAML key it is about, so that the loader can point at the
// line that holds it.
func (c DeliveryConfig) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf(key+": "+format, args...))
	}
	if c.Workers < 1 || c.Workers > 4096 {
		bad("workers", "must be between 1 and 4096, got %d", c.Workers)
	}
	if c.Timeout <= 0 {
		bad("timeout", "must be a positive duration such as 15s, got %s", c.Timeout)
	}
	for i, d := range c.RetrySchedule {
		if d < 0 {
			bad("retry_schedule", "entry %d is negative (%s); delays must be 0 or more", i+1, d)
		}
	}
	if c.Jitter < 0 || c.Jitter >= 1 {
		bad("jitter", "must be a fraction from 0 up to (not including) 1, got %g", c.Jitter)
	}
	for _, n := range c.AllowedNetworks {
		if _, _, err := net.ParseCIDR(n); err != nil {
			bad("allowed_networks", "%q is not a CIDR such as \"10.0.0.0/8\" or \"fd00::/8\"", n)
		}
	}
	if c.DisableAfter <= 0 {
		bad("disable_after", "must be a positive duration such as 120h, got %s", c.DisableAfter)
	}
	if c.MaxResponseBytes < 0 {
		bad("max_response_bytes", "must be 0 or more, got %d", c.MaxResponseBytes)
	}
	return errors.Join(errs...)
}
