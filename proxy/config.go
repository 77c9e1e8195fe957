package proxy

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"time"

	"github.com/eventtap/eventtap/configerr"
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

// DefaultCaptureBudget is the default capture_budget_bytes: 32 MiB for the
// bodies of all tapped exchanges in flight together.
const DefaultCaptureBudget = 32 << 20

// Config is the `proxy:` section of the configuration file.
type Config struct {
	// Listen is the address clients connect to instead of the upstream.
	Listen string `yaml:"listen"`
	// Upstream is the order API: scheme and host only, no credentials.
	Upstream string `yaml:"upstream"`
	// MaxCaptureBytes bounds each captured body.
	MaxCaptureBytes int64 `yaml:"max_capture_bytes"`
	// UpstreamTimeout bounds the wait for the upstream's response headers.
	UpstreamTimeout time.Duration `yaml:"upstream_timeout"`
	// Durability is DurabilitySync or DurabilityAsync.
	Durability string `yaml:"durability"`
	// OnOutboxError is OnOutboxErrorPass or OnOutboxErrorReject.
	OnOutboxError string `yaml:"on_outbox_error"`
	// CaptureBudgetBytes bounds the bodies captured by all exchanges in
	// flight together; a body that finds it spent passes uncaptured.
	CaptureBudgetBytes int64 `yaml:"capture_budget_bytes"`
	// TrustedProxies are the CIDRs of peers whose X-Forwarded-For, -Proto
	// and -Host are kept as sent; from any other peer they are replaced.
	TrustedProxies []string `yaml:"trusted_proxies"`
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

		CaptureBudgetBytes: DefaultCaptureBudget,
	}
}

// Validate reports every problem with c, joined: each is a
// *configerr.Error whose Path is the key it is about, relative to the
// section, so that the loader can point at the line that holds it.
func (c Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, configerr.Field(key, format, args...))
	}
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		bad("listen", "%q is not a host:port address (for example \"127.0.0.1:8080\")", c.Listen)
	}
	if u, err := url.Parse(c.Upstream); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("upstream", "%q is not an absolute http(s) URL (for example \"http://127.0.0.1:3000\")", redactURL(c.Upstream, u))
	} else if u.User != nil {
		// The transport would drop them silently: every request carries
		// the client's own Authorization, or none.
		bad("upstream", "%q contains credentials (user:pass@), which the proxy would never send; "+
			"remove them: each client's own Authorization header reaches the upstream unchanged, "+
			"so send the credentials from the clients (or have the upstream's own front end add them)", u.Redacted())
	} else if u.Path != "" && u.Path != "/" || u.RawQuery != "" {
		bad("upstream", "%q must not have a path or query: requests keep their own path", c.Upstream)
	}
	if c.MaxCaptureBytes < 0 {
		bad("max_capture_bytes", "must be 0 or more, got %d", c.MaxCaptureBytes)
	} else if c.MaxCaptureBytes > MaxCaptureLimit {
		bad("max_capture_bytes", "must be at most %d (64 MiB): every tapped exchange in flight may hold this much per body, got %d",
			MaxCaptureLimit, c.MaxCaptureBytes)
	}
	if c.MaxCaptureBytes >= 0 && c.MaxCaptureBytes <= MaxCaptureLimit && c.CaptureBudgetBytes < c.MaxCaptureBytes {
		bad("capture_budget_bytes", "must be at least max_capture_bytes (%d), or no body could be captured in full; got %d (default %d, 32 MiB)",
			c.MaxCaptureBytes, c.CaptureBudgetBytes, DefaultCaptureBudget)
	}
	for i, s := range c.TrustedProxies {
		if _, err := parseTrusted(s); err != nil {
			bad(fmt.Sprintf("trusted_proxies[%d]", i), "%q is not a CIDR such as \"10.0.0.0/8\", \"127.0.0.1/32\" or \"fd00::/8\"", s)
		}
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

// redactURL hides the password of a URL that failed the checks, so that a
// config error never prints it.
func redactURL(raw string, u *url.URL) string {
	if u != nil && u.User != nil {
		return u.Redacted()
	}
	return raw
}

// parseTrusted parses one trusted_proxies entry. A bare address is taken as
// the network of that one address, as nginx's set_real_ip_from does.
func parseTrusted(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}
