package main

import (
	"errors"
	"reflect"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/eventtap/eventtap/configerr"
)

// TestReportPlacesByKeyPath: a validation problem lands on its key, on the
// nearest enclosing key when it is not written, else at 1:1. (A plain
// "key: message" error is no longer split apart: every Validate returns
// *configerr.Error, which TestValidateReturnsPositionedErrors checks; a
// plain one lands on its section.)
func TestReportPlacesByKeyPath(t *testing.T) {
	src := "proxy:\n  listen: x\nadmin:\n  listen: y\n"
	var root yaml.Node
	if err := yaml.Unmarshal([]byte(src), &root); err != nil {
		t.Fatal(err)
	}
	cfg := defaultConfig()
	d := &decoder{file: "c.yaml", keys: map[string]*yaml.Node{}}
	d.decode(root.Content[0], reflect.ValueOf(&cfg).Elem(), "")
	for _, tc := range []struct {
		err    error
		prefix []string
		want   string
	}{
		{configerr.Field("listen", "bad"), []string{"proxy"}, "c.yaml:2:3: proxy.listen: bad"},
		{configerr.Field("listen", "bad"), []string{"admin"}, "c.yaml:4:3: admin.listen: bad"},
		{errors.New("listen: bad"), []string{"admin"}, "c.yaml:3:1: admin: listen: bad"},
		{configerr.Field("upstream", "missing"), []string{"proxy"}, "c.yaml:1:1: proxy.upstream: missing"},
		{configerr.Field("tls.cert", "missing"), []string{"admin"}, "c.yaml:3:1: admin.tls.cert: missing"},
		{configerr.Field("event_types", "bad"), nil, "c.yaml:1:1: event_types: bad"},
	} {
		d.problems = nil
		d.report(fieldError(tc.err).Under(tc.prefix...))
		if len(d.problems) != 1 || d.problems[0].Error() != tc.want {
			t.Errorf("report(%v) = %v, want %q", tc.err, d.problems, tc.want)
		}
	}
}

// TestValidateReturnsPositionedErrors: every section's Validate reports
// each problem as a *configerr.Error with the key it is about, so that the
// loader places it without reading messages.
func TestValidateReturnsPositionedErrors(t *testing.T) {
	cfg := defaultConfig()
	cfg.Proxy.Listen, cfg.Proxy.Upstream, cfg.Proxy.TrustedProxies = "nope", "ftp://x", []string{"x"}
	cfg.Admin.Listen = "nope"
	cfg.Storage.Dir, cfg.Storage.Retention, cfg.Storage.EncryptionKeyFile = "", 0, "/nonexistent/key"
	cfg.Delivery.Workers, cfg.Delivery.Jitter, cfg.Delivery.AllowedNetworks = 0, 2, []string{"x"}
	cfg.Log.Level = "loud"
	for name, err := range map[string]error{
		"proxy": cfg.Proxy.Validate(), "admin": cfg.Admin.Validate(), "storage": cfg.Storage.Validate(),
		"delivery": cfg.Delivery.Validate(), "log": cfg.Log.Validate(),
	} {
		problems := flatten(err)
		if len(problems) == 0 {
			t.Errorf("%s: no problem reported", name)
		}
		for _, e := range problems {
			if ce := configerr.As(e); ce == nil || len(ce.Path) == 0 {
				t.Errorf("%s: %q is not a *configerr.Error with a key path", name, e)
			}
		}
	}
}
