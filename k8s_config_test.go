package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestKubernetesConfigsLoad loads the eventtap configuration of every
// ConfigMap in docs/kubernetes with the same loader `serve` uses (the rules
// of the pod.yaml ConfigMap stand in where a file patches only the config),
// so a manifest cannot ship a config eventtap refuses.
func TestKubernetesConfigsLoad(t *testing.T) {
	files, err := filepath.Glob("docs/kubernetes/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	files = append(files, "docs/kubernetes/cluster/config.yaml")
	podRules := ""
	found := 0
	for _, f := range append([]string{podFile}, files...) {
		if f == podFile && found > 0 {
			continue // first, for its rules; not twice
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		for {
			var o struct {
				Kind string            `yaml:"kind"`
				Data map[string]string `yaml:"data"`
			}
			if err := dec.Decode(&o); err != nil {
				if !errors.Is(err, io.EOF) {
					t.Fatalf("%s: %v", f, err)
				}
				break
			}
			cfgText, ok := o.Data["config.yaml"]
			if o.Kind != "ConfigMap" || !ok {
				continue
			}
			rulesText := o.Data["rules.yaml"]
			if f == podFile && podRules == "" {
				podRules = rulesText
			}
			if rulesText == "" {
				rulesText = podRules
			}
			found++
			t.Run(f, func(t *testing.T) {
				dir := t.TempDir()
				rulesPath := filepath.Join(dir, "rules.yaml")
				if err := os.WriteFile(rulesPath, []byte(rulesText), 0o644); err != nil {
					t.Fatal(err)
				}
				text := strings.ReplaceAll(cfgText, `"/etc/eventtap/rules.yaml"`, `"`+rulesPath+`"`)
				text = strings.ReplaceAll(text, `"/data"`, `"`+filepath.Join(dir, "data")+`"`)
				path := filepath.Join(dir, "config.yaml")
				if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
					t.Fatal(err)
				}
				// The manifests leave the token to the Secret, and listen on
				// all interfaces: give the loader the token, as the Secret does.
				t.Setenv("EVENTTAP_ADMIN_TOKEN", "k8s-test-token")
				if _, _, err := loadAll(path); err != nil {
					t.Errorf("%s: eventtap refuses its config:\n%v", f, err)
				}
			})
		}
	}
	if found < 3 {
		t.Errorf("found %d ConfigMaps with a config.yaml, want pod.yaml's, the cluster patch's and the Deployment's", found)
	}
}
