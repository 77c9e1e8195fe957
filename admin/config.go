package admin

import (
	"errors"
	"net"

	"github.com/eventtap/eventtap/configerr"
)

// Config is the `admin:` section of the configuration file.
type Config struct {
	Listen string `yaml:"listen"`
	// Token is the bearer token /graphql requires; EVENTTAP_ADMIN_TOKEN
	// overrides it (the loader applies the override before Validate).
	Token string `yaml:"token"`
}

// DefaultConfig returns the configuration used for keys the file leaves out.
func DefaultConfig() Config {
	return Config{Listen: "127.0.0.1:9090"}
}

// Validate reports every problem with c, joined: each is a
// *configerr.Error whose Path is the key it is about, relative to the
// section, so that the loader can point at the line that holds it.
// An empty token is refused unless the admin port listens on loopback only,
// because the API hands out webhook secrets.
func (c Config) Validate() error {
	var errs []error
	host, _, err := net.SplitHostPort(c.Listen)
	if err != nil {
		errs = append(errs, configerr.Field("listen", "%q is not a host:port address (for example \"127.0.0.1:9090\")", c.Listen))
	} else if c.Token == "" && !isLoopback(host) {
		errs = append(errs, configerr.Field("token", "is empty but admin.listen %q is not a loopback address: set admin.token or EVENTTAP_ADMIN_TOKEN, or listen on 127.0.0.1", c.Listen))
	}
	return errors.Join(errs...)
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
