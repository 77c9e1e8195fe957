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
