package cluster

import (
	"errors"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/eventtap/eventtap/configerr"
)

// Config is the `cluster:` section of the configuration file (SPEC §8).
// Absent or empty, the node runs alone and nothing of this package starts.
type Config struct {
	NATS NATSConfig `yaml:"nats"`
	// Name prefixes every stream, bucket and subject this package creates,
	// so that several eventtap clusters can share one NATS.
	Name string `yaml:"name"`
	// Node names this node in logs and webhookLogs; empty means the host name.
	Node string `yaml:"node"`
	// Replicas is the JetStream replica count of every stream and bucket:
	// 3 on a 3-server NATS cluster, so that an acknowledged write survives
	// the loss of one server.
	Replicas int `yaml:"replicas"`
}

// NATSConfig says how to reach NATS.
type NATSConfig struct {
	// URLs lists the NATS servers; the client fails over between them.
	URLs []string `yaml:"urls"`
	// CredentialsFile is an optional NATS .creds file (JWT and NKey seed).
	CredentialsFile string    `yaml:"credentials_file"`
	TLS             TLSConfig `yaml:"tls"`
}

// TLSConfig holds optional PEM files: a CA to verify the servers with, and
// a client certificate and key for servers that require one.
type TLSConfig struct {
	CAFile   string `yaml:"ca_file"`
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// DefaultConfig returns the values used for keys the file leaves out.
func DefaultConfig() Config { return Config{Name: "eventtap", Replicas: 1} }

// Enabled reports whether cluster mode is configured.
func (c Config) Enabled() bool { return len(c.NATS.URLs) > 0 }

// nameRE keeps cluster.name a valid stream name and subject token.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9_-]{1,32}$`)

// Validate reports every problem with c, each a *configerr.Error at its key.
func (c Config) Validate() error {
	var errs []error
	if !c.Enabled() {
		d := DefaultConfig()
		if c.Name != d.Name || c.Node != "" || c.Replicas != d.Replicas || c.NATS.CredentialsFile != "" || c.NATS.TLS != (TLSConfig{}) {
			errs = append(errs, configerr.Field("nats.urls", `is required when cluster is configured: list the NATS servers, for example ["nats://127.0.0.1:4222"]; or remove the cluster section to run one node`))
		}
		return errors.Join(errs...)
	}
	for i, u := range c.NATS.URLs {
		if err := checkURL(u); err != "" {
			errs = append(errs, &configerr.Error{Path: []string{"nats", "urls[" + strconv.Itoa(i) + "]"}, Msg: err})
		}
	}
	if !nameRE.MatchString(c.Name) {
		errs = append(errs, configerr.Field("name", "%q must be 1 to 32 letters, digits, _ or - (it prefixes NATS stream and subject names)", c.Name))
	}
	if len(c.Node) > 64 || strings.ContainsAny(c.Node, " \t\r\n.*>") {
		errs = append(errs, configerr.Field("node", "%q must be at most 64 characters without spaces, dots, * or > (it is a NATS key)", c.Node))
	}
	if c.Replicas < 1 || c.Replicas > 5 {
		errs = append(errs, configerr.Field("replicas", "must be between 1 and 5 (JetStream's limit), got %d; use 3 on a 3-server NATS cluster", c.Replicas))
	}
	for key, f := range map[string]string{
		"nats.credentials_file": c.NATS.CredentialsFile,
		"nats.tls.ca_file":      c.NATS.TLS.CAFile,
		"nats.tls.cert_file":    c.NATS.TLS.CertFile,
		"nats.tls.key_file":     c.NATS.TLS.KeyFile,
	} {
		if f == "" {
			continue
		}
		if _, err := os.Stat(f); err != nil {
			errs = append(errs, configerr.Field(key, "cannot read %q: %v", f, errors.Unwrap(err)))
		}
	}
	if (c.NATS.TLS.CertFile == "") != (c.NATS.TLS.KeyFile == "") {
		errs = append(errs, configerr.Field("nats.tls", "cert_file and key_file go together: set both for a client certificate, or neither"))
	}
	return errors.Join(errs...)
}

// checkURL returns what is wrong with a NATS server URL, or "".
func checkURL(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return `"` + clip(s) + `" is not a URL; write nats://HOST:PORT (or tls://HOST:PORT)`
	}
	switch u.Scheme {
	case "nats", "tls":
	default:
		return `"` + clip(s) + `" must start with nats:// or tls:// (websocket URLs are not supported)`
	}
	return ""
}

func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
