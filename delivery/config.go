package delivery

import (
	"errors"
	"fmt"
	"net"
	"time"
)

// Config is the `delivery:` section of the configuration file. The zero
// value is not valid; start from DefaultConfig.
type Config struct {
	// Workers is how many attempts are made at once, over all webhooks;
	// one webhook may use at most half of them, so that a receiver that
	// hangs cannot hold every worker.
	Workers int `yaml:"workers"`

	// Timeout bounds one attempt: connecting, sending and reading the
	// response. An attempt that runs out of it failed.
	Timeout time.Duration `yaml:"timeout"`

	// RetrySchedule is the delay before each retry after a failed attempt;
	// once it is exhausted the delivery is FAILED. Its length is the
	// number of retries.
	RetrySchedule []time.Duration `yaml:"retry_schedule"`

	// Jitter spreads each retry delay by ± this fraction (0 ≤ Jitter < 1)
	// so that retries of many deliveries do not arrive together.
	Jitter float64 `yaml:"jitter"`

	// AllowPrivateNetworks lets webhooks reach loopback, private and other
	// special-purpose addresses, which the SSRF guard refuses otherwise.
	AllowPrivateNetworks bool `yaml:"allow_private_networks"`

	// AllowedNetworks are CIDRs the guard lets through although they fall
	// in a refused range (for example a receiver in 10.1.0.0/16).
	AllowedNetworks []string `yaml:"allowed_networks"`

	// DisableAfter is how long every attempt to a webhook may fail before
	// the webhook is DISABLED. It is enforced by the owner of the
	// webhooks (outbox), not by the dispatcher.
	DisableAfter time.Duration `yaml:"disable_after"`

	// MaxResponseBytes is how much of a response body is kept for the
	// delivery log; the rest is read up to 64 KiB (so the connection can
	// be reused) and dropped.
	MaxResponseBytes int `yaml:"max_response_bytes"`
}

// DefaultConfig returns the delivery configuration used for keys the file leaves out.
func DefaultConfig() Config {
	return Config{
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
func (c Config) Validate() error {
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
