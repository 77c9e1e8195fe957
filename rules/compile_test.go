package rules

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

// positioned matches one problem as SPEC §1 prints it.
var positioned = regexp.MustCompile(`^[^:\n]+:[1-9][0-9]*:[1-9][0-9]*: \S.*$`)

// problems returns the lines of a compile error, checking that each is a
// positioned *Error.
func problems(t testing.TB, err error) []string {
	t.Helper()
	j, ok := err.(interface{ Unwrap() []error })
	if !ok {
		t.Fatalf("error %T is not an errors.Join: %v", err, err)
	}
	var lines []string
	for _, e := range j.Unwrap() {
		var pe *Error
		if !errors.As(e, &pe) {
			t.Fatalf("problem %T is not a *rules.Error: %v", e, e)
		}
		if !positioned.MatchString(e.Error()) {
			t.Fatalf("problem %q is not FILE:LINE:COL: message", e.Error())
		}
		lines = append(lines, e.Error())
	}
	return lines
}

func golden(t *testing.T, path, got string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./rules -run %s -update)", err, t.Name())
	}
	if got != string(want) {
		t.Errorf("%s differs (go test ./rules -run %s -update rewrites it):\n--- got\n%s--- want\n%s", path, t.Name(), got, want)
	}
}

func outcome(t *testing.T, e *Engine, err error) string {
	if err != nil {
		return strings.Join(problems(t, err), "\n") + "\n"
	}
	return fmt.Sprintf("ok: %d rules\n", e.Len())
}

// TestCompileFileGolden compiles each testdata/compile/*.yaml as a rules
// file and compares the outcome with the .golden file next to it.
func TestCompileFileGolden(t *testing.T) {
	files, _ := filepath.Glob("testdata/compile/*.yaml")
	for _, f := range files {
		if strings.HasPrefix(filepath.Base(f), "inline-") {
			continue
		}
		t.Run(filepath.Base(f), func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			e, err := CompileFile(f, data, EventTypes([]string{"ORDER_REFUNDED"}))
			golden(t, strings.TrimSuffix(f, ".yaml")+".golden", outcome(t, e, err))
		})
	}
}

// TestCompileInlineGolden compiles the rules of a configuration file, as
// the loader does: with and without the file's bytes.
func TestCompileInlineGolden(t *testing.T) {
	const f = "testdata/compile/inline-config.yaml"
	data, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	var cfg Config
	if err := yaml.Unmarshal(data, &cfg); err != nil {
		t.Fatal(err)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	types := EventTypes(cfg.EventTypes)
	e, err := CompileSource(f, data, &cfg.Rules, types)
	got := "CompileSource:\n" + outcome(t, e, err)
	e, err = Compile(f, &cfg.Rules, types)
	got += "Compile:\n" + outcome(t, e, err)
	golden(t, "testdata/compile/inline-config.golden", got)
}

func TestCompileNoRules(t *testing.T) {
	for _, n := range []*yaml.Node{nil, {}, {Kind: yaml.SequenceNode}, {Kind: yaml.ScalarNode, Tag: "!!null"}} {
		e, err := Compile("c.yaml", n, nil)
		if err != nil || e.Len() != 0 {
			t.Errorf("Compile(%v) = %v rules, %v", n, e.Len(), err)
		}
		if _, ok := e.Route("GET", "/"); ok {
			t.Error("an empty engine routes")
		}
		if evs, errs := e.Evaluate(exch("GET", "/", 200, "", "")); evs != nil || errs != nil {
			t.Error("an empty engine emits")
		}
	}
}

// TestPositions checks where problems inside expressions are reported, for
// every YAML scalar style, with and without the source: at the undeclared
// `nope`.
func TestPositions(t *testing.T) {
	tests := []struct {
		name    string
		subject string // the rule's subject line(s)
		exact   bool   // also exact without the source
	}{
		{"plain", "  subject: path.id + nope", true},
		{"single quoted", "  subject: 'path.id + nope'", true},
		{"single quoted with escapes", "  subject: '''a'' + ''b'' + nope'", true},
		{"double quoted with escapes", `  subject: "\"a\" + \"\\\\\" + nope"`, true},
		{"unicode before", "  subject: '\"é😀\" + nope'", true},
		{"literal block", "  subject: |\n    path.id +\n      nope", true},
		{"literal block, 4-space indent", "  subject: |\n      path.id +\n        nope", false},
		{"literal block with indicator", "  subject: |-   # comment\n    path.id +\n      nope", true},
		{"folded block", "  subject: >\n    path.id +\n    nope", false},
		{"plain multi-line", "  subject: path.id +\n    nope", false},
		{"double quoted multi-line", "  subject: \"path.id +\n    nope\"", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			src := "- name: r\n  event: ORDER_CREATED\n  when: {method: POST, path: '/o/{id}'}\n" + tc.subject + "\n"
			var want string
			for i, line := range strings.Split(src, "\n") {
				if j := strings.Index(line, "nope"); j >= 0 {
					want = fmt.Sprintf("f.yaml:%d:%d: subject: undeclared reference to 'nope'", i+1, utf8.RuneCountInString(line[:j])+1)
				}
			}
			_, err := CompileFile("f.yaml", []byte(src), nil)
			if err == nil {
				t.Fatal("no error")
			}
			if got := err.Error(); !strings.HasPrefix(got, want) {
				t.Errorf("source:\n%s\ngot  %s\nwant %s…", src, got, want)
			}
			var n yaml.Node
			if err := yaml.Unmarshal([]byte(src), &n); err != nil {
				t.Fatal(err)
			}
			_, err = Compile("f.yaml", n.Content[0], nil)
			if got := err.Error(); tc.exact && !strings.HasPrefix(got, want) {
				t.Errorf("without source:\n%s\ngot  %s\nwant %s…", src, got, want)
			} else if !positioned.MatchString(got) {
				t.Errorf("without source: %q is not positioned", got)
			}
		})
	}
}

func TestConfigValidate(t *testing.T) {
	var inline yaml.Node
	if err := yaml.Unmarshal([]byte("- name: x"), &inline); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		cfg  Config
		want string // "" = valid; else every line expected, joined
	}{
		{DefaultConfig(), ""},
		{Config{EventTypes: []string{"ORDER_REFUNDED", "INVOICE_PAID", "A1_B2"}}, ""},
		{Config{EventTypes: []string{"order_refunded"}}, `event_types: "order_refunded" is not an UPPER_SNAKE name`},
		{Config{EventTypes: []string{"ORDER__X", "_X", "X_", "1X", ""}}, "event_types: \"ORDER__X\" is not|event_types: \"_X\" is not|event_types: \"X_\" is not|event_types: \"1X\" is not|event_types: \"\" is not"},
		{Config{EventTypes: []string{"ORDER_CREATED"}}, `event_types: "ORDER_CREATED" is a built-in event type`},
		{Config{EventTypes: []string{"A", "A"}}, `event_types: "A" is listed more than once`},
		{Config{RulesFile: "rules.yaml"}, ""},
		{Config{RulesFile: "rules.yaml", Rules: yaml.Node{Kind: yaml.SequenceNode}}, ""},
		{Config{RulesFile: "rules.yaml", Rules: *inline.Content[0]}, "rules_file: cannot be used together with inline rules"},
	}
	for _, tc := range tests {
		err := tc.cfg.Validate()
		if tc.want == "" {
			if err != nil {
				t.Errorf("%+v: %v", tc.cfg, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("%+v: valid, want %q", tc.cfg, tc.want)
			continue
		}
		got := strings.Split(err.Error(), "\n")
		want := strings.Split(tc.want, "|")
		if len(got) != len(want) {
			t.Errorf("%+v: got %q, want %q", tc.cfg, got, want)
			continue
		}
		for i := range got {
			if !strings.HasPrefix(got[i], want[i]) {
				t.Errorf("%+v: got %q, want prefix %q", tc.cfg, got[i], want[i])
			}
		}
	}
}

func TestEventTypes(t *testing.T) {
	got := EventTypes([]string{"ORDER_REFUNDED"})
	want := "ORDER_CREATED ORDER_CANCELED ORDER_STATUS_CHANGED ORDER_UPDATED SHIPMENT_CREATED SHIPMENT_CANCELED ORDER_REFUNDED"
	if strings.Join(got, " ") != want {
		t.Fatalf("EventTypes = %v", got)
	}
	got[0] = "CHANGED"
	if EventTypes(nil)[0] != OrderCreated {
		t.Fatal("EventTypes returned shared storage")
	}
}

// A message that lists the known event types offers only names that
// would be accepted: event_types that Validate refuses are left out.
func TestEventTypesLeaveOutRefusedNames(t *testing.T) {
	got := EventTypes([]string{"lower_case", "ORDER_REFUNDED", "ORDER_CREATED", "ORDER_REFUNDED", "X_"})
	want := append(EventTypes(nil), "ORDER_REFUNDED")
	if !slices.Equal(got, want) {
		t.Fatalf("EventTypes = %v, want %v", got, want)
	}
}
