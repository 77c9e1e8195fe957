package proxy

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"time"
)

// Durability modes for Config.Durability.
const (
	// DurabilitySync releases a matched response only after its events are durable.
	DurabilitySync = "sync"
	// DurabilityAsync releases a matched response at once and commits its events right after.
	DurabilityAsync = "async"
)

// Outbox error policies for Config.OnOutboxError.
const (
	// OnOutboxErrorPass still gives the client its response; the events are counted as dropped.
	OnOutboxErrorPass = "pass"
	// OnOutboxErrorReject answers 503 instead of the upstream's response.
	OnOutboxErrorReject = "reject"
)

// MaxCaptureLimit is the largest max_capture_bytes Validate accepts. A
// matched exchange holds up to max_capture_bytes of each body in memory
// until its events are committed, per request in flight.
const MaxCaptureLimit = 64 << 20

// Config is the `proxy:` section of the configuration file.
type Config struct {
	Listen          string        `yaml:"listen"`
	Upstream        string        `yaml:"upstream"`
	MaxCaptureBytes int64         `yaml:"max_capture_bytes"`
	UpstreamTimeout time.Duration `yaml:"upstream_timeout"`
	Durability      string        `yaml:"durability"`
	OnOutboxError   string        `yaml:"on_outbox_error"`
}

// DefaultConfig returns the configuration used for keys the file leaves out.
func DefaultConfig() Config {
	return Config{
		Listen:          "127.0.0.1:8080",
		Upstream:        "http://127.0.0.1:3000",
		MaxCaptureBytes: 1 << 20,
		UpstreamTimeout: 30 * time.Second,
		Durability:      DurabilitySync,
		OnOutboxError:   OnOutboxErrorPass,
	}
}

// Validate reports every problem with c, joined. Each problem's message
// starts with the YAML key it is about ("upstream: …"), so that the loader
// can point at the line that holds it.
func (c Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf(key+": "+format, args...))
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		bad("listen", "%q is not a host:port address (for example \"127.0.0.1:8080\")", c.Listen)
	}
	if u, err := url.Parse(c.Upstream); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("upstream", "%q is not an absolute http(s) URL (for example \"http://127.0.0.1:3000\")", c.Upstream)
	} else if u.Path != "" && u.Path != "/" || u.RawQuery != "" {
		bad("upstream", "%q must not have a path or query: requests keep their own path", c.Upstream)
	}
	if c.MaxCaptureBytes < 0 {
		bad("max_capture_bytes", "must be 0 or more, got %d", c.MaxCaptureBytes)
	} else if c.MaxCaptureBytes > MaxCaptureLimit {
		bad("max_capture_bytes", "must be at most %d (64 MiB): every tapped exchange in flight may hold this much per body, got %d",
			MaxCaptureLimit, c.MaxCaptureBytes)
	}
	if c.UpstreamTimeout <= 0 {
		bad("upstream_timeout", "must be a positive duration such as 30s, got %s", c.UpstreamTimeout)
	}
	if c.Durability != DurabilitySync && c.Durability != DurabilityAsync {
		bad("durability", "must be %q or %q, got %q", DurabilitySync, DurabilityAsync, c.Durability)
	}
	if c.OnOutboxError != OnOutboxErrorPass && c.OnOutboxError != OnOutboxErrorReject {
		bad("on_outbox_error", "must be %q or %q, got %q", OnOutboxErrorPass, OnOutboxErrorReject, c.OnOutboxError)
	}
	return errors.Join(errs...)
}
