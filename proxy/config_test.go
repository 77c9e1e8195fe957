package proxy

import (
	"strings"
	"testing"
	"time"
)

func TestConfigValidate(t *testing.T) {
	cases := []struct {
		name string
		mod  func(*Config)
		want []string // prefixes of the problems, one per line; none when valid
	}{
		{"default", func(*Config) {}, nil},
		{"async reject", func(c *Config) { c.Durability, c.OnOutboxError = DurabilityAsync, OnOutboxErrorReject }, nil},
		{"zero capture", func(c *Config) { c.MaxCaptureBytes = 0 }, nil},
		{"bad listen", func(c *Config) { c.Listen = "8080" }, []string{"listen: "}},
		{"upstream with path", func(c *Config) { c.Upstream = "http://h:1/api" }, []string{"upstream: "}},
		{"capture too big", func(c *Config) { c.MaxCaptureBytes = MaxCaptureLimit + 1 }, []string{"max_capture_bytes: "}},
		{"budget below one body", func(c *Config) { c.CaptureBudgetBytes = c.MaxCaptureBytes - 1 }, []string{"capture_budget_bytes: "}},
		{"no capture, no budget", func(c *Config) { c.MaxCaptureBytes, c.CaptureBudgetBytes = 0, 0 }, nil},
		{"trusted proxies", func(c *Config) { c.TrustedProxies = []string{"10.0.0.0/8", "127.0.0.1", "fd00::/8", "10.1.2.3/8"} }, nil},
		{"bad trusted proxies", func(c *Config) { c.TrustedProxies = []string{"10.0.0.0/8", "10.0.0.0/33", "localhost"} },
			[]string{"trusted_proxies[1]: ", "trusted_proxies[2]: "}},
		{"upstream with credentials", func(c *Config) { c.Upstream = "http://svc:s3cret@h:3000" }, []string{"upstream: "}},
		{"everything wrong", func(c *Config) {
			*c = Config{Upstream: "x", MaxCaptureBytes: -1, UpstreamTimeout: -time.Second}
		}, []string{"listen: ", "upstream: ", "max_capture_bytes: ", "upstream_timeout: ", "durability: ", "on_outbox_error: "}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cfg := DefaultConfig()
			c.mod(&cfg)
			err := cfg.Validate()
			if len(c.want) == 0 {
				if err != nil {
					t.Fatalf("unexpected: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("accepted")
			}
			lines := strings.Split(err.Error(), "\n")
			if len(lines) != len(c.want) {
				t.Fatalf("got %d problems, want %d:\n%v", len(lines), len(c.want), err)
			}
			for i, l := range lines {
				if !strings.HasPrefix(l, c.want[i]) {
					t.Errorf("problem %d = %q, want prefix %q", i, l, c.want[i])
				}
			}
		})
	}
}

// TestConfigUpstreamCredentials: credentials in the upstream URL were
// accepted, logged and never sent. They are refused, and the message never
// shows the password.
func TestConfigUpstreamCredentials(t *testing.T) {
	for _, up := range []string{"http://svc:s3cret@h:3000", "https://svc@h", "http://svc:s3cret@h:3000/api", "ftp://svc:s3cret@h"} {
		cfg := DefaultConfig()
		cfg.Upstream = up
		err := cfg.Validate()
		if err == nil {
			t.Errorf("%s accepted", up)
			continue
		}
		if strings.Contains(err.Error(), "s3cret") {
			t.Errorf("%s: the error shows the password: %v", up, err)
		}
		if strings.HasPrefix(up, "http") && !strings.HasSuffix(up, "/api") && !strings.Contains(err.Error(), "Authorization") {
			t.Errorf("%s: the error does not say how to fix it: %v", up, err)
		}
	}
}
