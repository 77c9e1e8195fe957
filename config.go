package main

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/eventtap/eventtap/admin"
	"github.com/eventtap/eventtap/cluster"
	"github.com/eventtap/eventtap/configerr"
	"github.com/eventtap/eventtap/outbox"
	"github.com/eventtap/eventtap/proxy"
	"github.com/eventtap/eventtap/rules"
)

// config is the whole configuration file. Each section belongs to the
// package that uses it; this file only decodes YAML with positions and asks
// each package to validate its part.
type config struct {
	Proxy    proxy.Config          `yaml:"proxy"`
	Admin    admin.Config          `yaml:"admin"`
	Storage  outbox.StorageConfig  `yaml:"storage"`
	Delivery outbox.DeliveryConfig `yaml:"delivery"`
	Rules    rules.Config          `yaml:",inline"`
	Log      logConfig             `yaml:"log"`
	Cluster  cluster.Config        `yaml:"cluster"`

	// deliverOnly is set by `eventtap deliver`: no proxy (cluster mode).
	deliverOnly bool

	// rulesDecoded is false when the rules keys themselves failed to
	// decode, so that compiling them would only repeat those problems.
	rulesDecoded bool

	// file is the path the configuration was read from, src its contents
	// (rules use it to place errors inside multi-line expressions exactly).
	file string
	src  []byte
}

// logConfig is the `log:` section.
type logConfig struct {
	Level  string `yaml:"level"`
	Format string `yaml:"format"`
}

func defaultConfig() config {
	return config{
		Proxy:    proxy.DefaultConfig(),
		Admin:    admin.DefaultConfig(),
		Storage:  outbox.DefaultStorageConfig(),
		Delivery: outbox.DefaultDeliveryConfig(),
		Rules:    rules.DefaultConfig(),
		Log:      logConfig{Level: "info", Format: "json"},
		Cluster:  cluster.DefaultConfig(),
	}
}

// Validate reports every problem with c, each a *configerr.Error at its key.
func (c logConfig) Validate() error {
	var errs []error
	switch c.Level {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, configerr.Field("level", "must be debug, info, warn or error, got %q", c.Level))
	}
	if c.Format != "json" && c.Format != "text" {
		errs = append(errs, configerr.Field("format", "must be json or text, got %q", c.Format))
	}
	return errors.Join(errs...)
}

func (c logConfig) slogLevel() slog.Level {
	var l slog.Level
	_ = l.UnmarshalText([]byte(c.Level))
	return l
}

// loadConfig reads and validates the configuration file at path, with the
// EVENTTAP_ADMIN_TOKEN override applied. The error, if any, joins one
// "FILE:LINE:COL: message" problem per line.
func loadConfig(path string) (config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return config{}, fmt.Errorf("%s:1:1: cannot read the configuration file: %w", path, errors.Unwrap(err))
	}
	return parseConfig(path, data, os.Getenv("EVENTTAP_ADMIN_TOKEN"))
}

// parseConfig decodes data strictly. tokenOverride, when not empty,
// replaces admin.token.
func parseConfig(file string, data []byte, tokenOverride string) (config, error) {
	cfg := defaultConfig()
	cfg.file, cfg.src = file, data
	d := &decoder{file: file, keys: map[string]*yaml.Node{}}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return cfg, d.yamlSyntax(err)
	}
	if len(root.Content) > 0 {
		d.decode(root.Content[0], reflect.ValueOf(&cfg).Elem(), "")
	}
	// Keys that failed to decode keep their defaults, so validating the
	// rest still reports every other problem in the same run.
	cfg.rulesDecoded = !d.failedUnder("rules", "rules_file", "event_types") &&
		!(cfg.Rules.RulesFile != "" && len(cfg.Rules.Rules.Content) > 0) // reported by Validate
	// A token read from a Kubernetes secret often ends with a newline.
	cfg.Admin.Token = strings.TrimSpace(cfg.Admin.Token)
	if t := strings.TrimSpace(tokenOverride); t != "" {
		cfg.Admin.Token = t
	}
	sections := []struct {
		prefix []string
		err    error
	}{
		{[]string{"proxy"}, cfg.Proxy.Validate()},
		{[]string{"admin"}, cfg.Admin.Validate()},
		{[]string{"storage"}, cfg.Storage.Validate()},
		{[]string{"delivery"}, cfg.Delivery.Validate()},
		{nil, cfg.Rules.Validate()},
		{[]string{"log"}, cfg.Log.Validate()},
		{[]string{"cluster"}, cfg.Cluster.Validate()},
	}
	for _, s := range sections {
		for _, e := range flatten(s.err) {
			d.report(fieldError(e).Under(s.prefix...))
		}
	}
	return cfg, errors.Join(d.problems...)
}

// rulesFilePath resolves rules_file relative to the configuration file's
// directory, as Prometheus does with rule_files, so that a config and its
// rules can move together.
func (c config) rulesFilePath() string {
	if c.Rules.RulesFile == "" || filepath.IsAbs(c.Rules.RulesFile) {
		return c.Rules.RulesFile
	}
	return filepath.Join(filepath.Dir(c.file), c.Rules.RulesFile)
}

// compileRules builds the rules engine from the inline rules or rules_file.
func (c config) compileRules() (*rules.Engine, error) {
	types := rules.EventTypes(c.Rules.EventTypes)
	if p := c.rulesFilePath(); p != "" {
		data, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("%s:1:1: cannot read rules_file: %w", p, errors.Unwrap(err))
		}
		return rules.CompileFile(p, data, types)
	}
	return rules.CompileSource(c.file, c.src, &c.Rules.Rules, types)
}

// flatten returns the leaves of a tree of joined errors.
func flatten(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, flatten(e)...)
		}
		return out
	}
	return []error{err}
}

// fieldError returns the validation problem e as a *configerr.Error. Every
// section's Validate returns them; anything else (a bug) is reported as a
// problem of the section as a whole, with its text.
func fieldError(e error) *configerr.Error {
	if ce := configerr.As(e); ce != nil {
		return ce
	}
	return &configerr.Error{Msg: e.Error()}
}

// decoder decodes a YAML node tree into config structs, refusing unknown
// keys and recording where every key is so that validation problems can
// point at it. It collects every problem instead of stopping at the first.
type decoder struct {
	file     string
	problems []error
	// keys maps a dotted key path ("proxy.upstream") to its key node.
	keys map[string]*yaml.Node
	// failed lists the key paths that could not be decoded.
	failed []string
}

var (
	durationType = reflect.TypeOf(time.Duration(0))
	nodeType     = reflect.TypeOf(yaml.Node{})
	yamlLineRE   = regexp.MustCompile(`line (\d+)(?:, column (\d+))?: (.*)`)
)

// failedUnder reports whether a decoding problem was found under any of
// the given top-level keys.
func (d *decoder) failedUnder(keys ...string) bool {
	for _, p := range d.failed {
		for _, k := range keys {
			if p == k || strings.HasPrefix(p, k+".") || strings.HasPrefix(p, k+"[") {
				return true
			}
		}
	}
	return false
}

// fail records a problem decoding the value at path.
func (d *decoder) fail(n *yaml.Node, path, format string, args ...any) {
	d.failed = append(d.failed, path)
	d.add(n, format, args...)
}

func (d *decoder) add(n *yaml.Node, format string, args ...any) {
	d.place(n, &configerr.Error{Msg: fmt.Sprintf(format, args...)})
}

// place records e at node n, or at the top of the file when n is nil or
// has no position.
func (d *decoder) place(n *yaml.Node, e *configerr.Error) {
	e.File, e.Line, e.Column = d.file, 1, 1
	if n != nil && n.Line > 0 {
		e.Line, e.Column = n.Line, n.Column
	}
	d.problems = append(d.problems, e)
}

// report places a validation problem at the position of its key, or of the
// nearest enclosing key in the file when the key itself is not written
// (a default that another setting makes invalid).
func (d *decoder) report(e *configerr.Error) {
	for i := len(e.Path); i > 0; i-- {
		if n, found := d.keys[strings.Join(e.Path[:i], ".")]; found {
			d.place(n, e)
			return
		}
	}
	d.place(nil, e)
}

func (d *decoder) yamlSyntax(err error) error {
	msg := strings.TrimPrefix(err.Error(), "yaml: ")
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		col := 1
		if m[2] != "" {
			col, _ = strconv.Atoi(m[2])
		}
		// The YAML parser gives the line where the enclosing block starts,
		// not always the line at fault, so say so.
		return configerr.At(d.file, line, col, "YAML syntax error in the block starting here: %s (check indentation, quotes and brackets)", m[3])
	}
	return configerr.At(d.file, 1, 1, "YAML syntax error: %s", msg)
}

func (d *decoder) decode(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	if v.Type() == nodeType {
		v.Set(reflect.ValueOf(*n))
		return
	}
	if n.Kind == yaml.ScalarNode && n.Tag == "!!null" {
		return // "key:" with no value keeps the default
	}
	switch {
	case v.Type() == durationType:
		dur, err := time.ParseDuration(n.Value)
		if n.Kind != yaml.ScalarNode || err != nil {
			d.fail(n, path, "%s: %q is not a duration; use Go syntax such as 200ms, 30s, 5m or 2h", path, n.Value)
			return
		}
		v.SetInt(int64(dur))
	case v.Kind() == reflect.Struct:
		d.decodeStruct(n, v, path)
	case v.Kind() == reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			d.fail(n, path, "%s: must be a list (for example [a, b] or one \"- item\" per line)", path)
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, c := range n.Content {
			item := fmt.Sprintf("%s[%d]", path, i)
			d.keys[item] = c // so that "key[i]: …" points at the item
			d.decode(c, s.Index(i), item)
		}
		v.Set(s)
	default:
		if n.Kind != yaml.ScalarNode {
			d.fail(n, path, "%s: must be a single %s value, not a %s", path, kindName(v.Kind()), nodeKindName(n.Kind))
			return
		}
		// yaml.v3 truncates 2.5 into an int field; a config value that
		// is not a whole number is a mistake worth reporting.
		isInt := v.Kind() >= reflect.Int && v.Kind() <= reflect.Uint64
		if isInt && n.ShortTag() != "!!int" {
			d.fail(n, path, "%s: %q is not a valid %s", path, n.Value, kindName(v.Kind()))
			return
		}
		if err := n.Decode(v.Addr().Interface()); err != nil {
			d.fail(n, path, "%s: %q is not a valid %s", path, n.Value, kindName(v.Kind()))
		}
	}
}

func (d *decoder) decodeStruct(n *yaml.Node, v reflect.Value, path string) {
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "%s: must be a mapping of keys to values, not a %s", orRoot(path), nodeKindName(n.Kind))
		return
	}
	fields := map[string]reflect.Value{}
	collectFields(v, fields)
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		key := k.Value
		full := key
		if path != "" {
			full = path + "." + key
		}
		if seen[key] {
			d.fail(k, full, "%s: duplicate key; remove one of the two", full)
			continue
		}
		seen[key] = true
		f, ok := fields[key]
		if !ok {
			d.fail(k, full, "%s: unknown key in %s; known keys are %s", full, orRoot(path), knownKeys(fields))
			continue
		}
		d.keys[full] = k
		d.decode(val, f, full)
	}
}

// collectFields maps yaml keys to the settable fields of v, descending into
// `,inline` structs.
func collectFields(v reflect.Value, out map[string]reflect.Value) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if opts == "inline" {
			collectFields(v.Field(i), out)
			continue
		}
		if name == "" || name == "-" {
			continue
		}
		out[name] = v.Field(i)
	}
}

func knownKeys(fields map[string]reflect.Value) string {
	names := make([]string, 0, len(fields))
	for k := range fields {
		names = append(names, k)
	}
	sort.Strings(names)
	return strings.Join(names, ", ")
}

func orRoot(path string) string {
	if path == "" {
		return "the top level"
	}
	return path
}

func kindName(k reflect.Kind) string {
	switch k {
	case reflect.Bool:
		return "boolean (true or false)"
	case reflect.Int, reflect.Int64, reflect.Int32:
		return "whole number"
	case reflect.Float64, reflect.Float32:
		return "number"
	case reflect.String:
		return "string"
	}
	return k.String()
}

func nodeKindName(k yaml.Kind) string {
	switch k {
	case yaml.MappingNode:
		return "mapping"
	case yaml.SequenceNode:
		return "list"
	case yaml.ScalarNode:
		return "single value"
	}
	return "document"
}
