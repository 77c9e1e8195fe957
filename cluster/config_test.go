package cluster

import (
	"strings"
	"testing"
)

func TestConfigValidate(t *testing.T) {
	ok := DefaultConfig()
	if err := ok.Validate(); err != nil || ok.Enabled() {
		t.Fatalf("the default (one node) must be valid and off: %v", err)
	}
	tests := []struct {
		name string
		edit func(*Config)
		want string // "" = valid
	}{
		{"urls", func(c *Config) { c.NATS.URLs = []string{"nats://127.0.0.1:4222", "tls://nats-1:4222"} }, ""},
		{"settings without urls", func(c *Config) { c.Replicas = 3 }, "nats.urls: is required"},
		{"not a url", func(c *Config) { c.NATS.URLs = []string{"127.0.0.1:4222"} }, "nats.urls[0]:"},
		{"websocket", func(c *Config) { c.NATS.URLs = []string{"ws://h:80"} }, "must start with nats://"},
		{"name", func(c *Config) { c.NATS.URLs = []string{"nats://h:1"}; c.Name = "a.b" }, "name:"},
		{"node", func(c *Config) { c.NATS.URLs = []string{"nats://h:1"}; c.Node = "a b" }, "node:"},
		{"replicas", func(c *Config) { c.NATS.URLs = []string{"nats://h:1"}; c.Replicas = 7 }, "replicas: must be between 1 and 5"},
		{"missing creds", func(c *Config) { c.NATS.URLs = []string{"nats://h:1"}; c.NATS.CredentialsFile = "/nonexistent.creds" }, "nats.credentials_file: cannot read"},
		{"cert without key", func(c *Config) {
			c.NATS.URLs = []string{"nats://h:1"}
			c.NATS.TLS.CertFile = "config.go"
		}, "cert_file and key_file go together"},
	}
	for _, tc := range tests {
		c := DefaultConfig()
		tc.edit(&c)
		err := c.Validate()
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: %v", tc.name, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: error %v, want one containing %q", tc.name, err, tc.want)
		}
	}
}

func TestStateKeyIsAValidKVKey(t *testing.T) {
	k := stateKey("order-status-changed\x00any bytes: * > . \xff")
	if len(k) != 26 || strings.ContainsAny(k, "*>. ") {
		t.Fatalf("stateKey = %q", k)
	}
	if stateKey("a\x00b") == stateKey("a\x00c") {
		t.Fatal("distinct keys collide")
	}
}
