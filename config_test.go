package main

import (
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/eventtap/eventtap/proxy"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestExampleConfigIsValid(t *testing.T) {
	cfg, err := loadConfig("config.example.yaml")
	if err != nil {
		t.Fatalf("config.example.yaml: %v", err)
	}
	eng, err := cfg.compileRules()
	if err != nil {
		t.Fatalf("config.example.yaml rules: %v", err)
	}
	if eng.Len() == 0 {
		t.Fatal("config.example.yaml has no rules")
	}
	// The example documents the defaults: loading it must give them back.
	def := defaultConfig()
	if !sameProxyConfig(cfg.Proxy, def.Proxy) || cfg.Admin != def.Admin || cfg.Storage != def.Storage || cfg.Log != def.Log {
		t.Errorf("config.example.yaml differs from the defaults:\n got %+v %+v %+v %+v\nwant %+v %+v %+v %+v",
			cfg.Proxy, cfg.Admin, cfg.Storage, cfg.Log, def.Proxy, def.Admin, def.Storage, def.Log)
	}
	if got, want := cfg.Delivery.RetrySchedule, def.Delivery.RetrySchedule; len(got) != len(want) {
		t.Errorf("retry_schedule = %v, want %v", got, want)
	}
}

// sameProxyConfig compares two proxy sections, an empty list being the
// same as none.
func sameProxyConfig(a, b proxy.Config) bool {
	if len(a.TrustedProxies) == 0 && len(b.TrustedProxies) == 0 {
		a.TrustedProxies, b.TrustedProxies = nil, nil
	}
	return reflect.DeepEqual(a, b)
}

func TestEmptyConfigUsesDefaults(t *testing.T) {
	cfg, err := parseConfig("empty.yaml", nil, "")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Proxy.UpstreamTimeout != 30*time.Second || cfg.Delivery.Workers != 32 || !cfg.Storage.SyncWrites {
		t.Errorf("defaults not applied: %+v", cfg)
	}
}

// TestConfigProblems checks that every problem is reported at once, each as
// FILE:LINE:COL: message, against golden files.
func TestConfigProblems(t *testing.T) {
	files, _ := filepath.Glob("testdata/config/*.yaml")
	if len(files) == 0 {
		t.Fatal("no test configs")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			_, _, err := loadAll(f)
			if err == nil {
				t.Fatalf("%s loaded without error", f)
			}
			var b strings.Builder
			printProblems(&b, err)
			golden := strings.TrimSuffix(f, ".yaml") + ".golden"
			if *update {
				if err := os.WriteFile(golden, []byte(b.String()), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test -run TestConfigProblems -update)", err)
			}
			if b.String() != string(want) {
				t.Errorf("problems for %s:\n%s\nwant:\n%s", f, b.String(), want)
			}
		})
	}
}

func TestAdminTokenOverride(t *testing.T) {
	data := []byte("admin:\n  listen: \"0.0.0.0:9090\"\n")
	if _, err := parseConfig("c.yaml", data, ""); err == nil || !strings.Contains(err.Error(), "c.yaml:1:1: admin.token: is empty") {
		t.Fatalf("non-loopback admin without a token: err = %v", err)
	}
	// A token from a secret file often ends with a newline.
	cfg, err := parseConfig("c.yaml", data, "s3cret\n")
	if err != nil {
		t.Fatalf("token from the environment: %v", err)
	}
	if cfg.Admin.Token != "s3cret" {
		t.Errorf("token = %q", cfg.Admin.Token)
	}
}

func TestRulesFileRelativeToConfig(t *testing.T) {
	dir := t.TempDir()
	rules, err := os.ReadFile("docs/examples/orders.rules.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "r.yaml"), rules, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "c.yaml"), []byte("rules_file: r.yaml\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, eng, err := loadAll(filepath.Join(dir, "c.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if eng.Len() != 5 {
		t.Errorf("rules = %d, want 5", eng.Len())
	}
}

// FuzzParseConfig: any input gives a config or positioned problems, never a panic.
func FuzzParseConfig(f *testing.F) {
	for _, p := range []string{"config.example.yaml", "testdata/config/decode-errors.yaml", "testdata/config/validate-errors.yaml"} {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("proxy: &a {listen: *a}"))
	f.Add([]byte("---\n---\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, err := parseConfig("fuzz.yaml", data, "")
		for _, e := range flatten(err) {
			if !strings.HasPrefix(e.Error(), "fuzz.yaml:") {
				t.Fatalf("problem without a position: %q", e)
			}
		}
	})
}
