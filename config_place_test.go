package main

import (
	"errors"
	"reflect"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/eventtap/eventtap/configerr"
)

// TestReportPlacesByKeyPath: a validation problem lands on its key, on the
// nearest enclosing key when it is not written, else at 1:1; a legacy
// "key: message" error is read the same way as a typed one.
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
		{errors.New("listen: bad"), []string{"admin"}, "c.yaml:4:3: admin.listen: bad"},
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
