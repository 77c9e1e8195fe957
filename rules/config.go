package rules

import (
	"errors"
	"slices"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/eventtap/eventtap/configerr"
)

// Built-in event types. Every configuration has them; event_types adds more.
const (
	OrderCreated       = "ORDER_CREATED"
	OrderCanceled      = "ORDER_CANCELED"
	OrderStatusChanged = "ORDER_STATUS_CHANGED"
	OrderUpdated       = "ORDER_UPDATED"
	ShipmentCreated    = "SHIPMENT_CREATED"
	ShipmentCanceled   = "SHIPMENT_CANCELED"
)

// builtinEventTypes is in the order SPEC §3 lists them; EventTypes keeps it.
var builtinEventTypes = [...]string{
	OrderCreated, OrderCanceled, OrderStatusChanged, OrderUpdated, ShipmentCreated, ShipmentCanceled,
}

// EventTypes returns the built-in event types followed by extra, in order,
// leaving out the names Config.Validate refuses (not UPPER_SNAKE, built-in,
// repeated), so that messages listing the known types never offer one.
// The result is a new slice that the caller may keep and modify.
func EventTypes(extra []string) []string {
	out := make([]string, 0, len(builtinEventTypes)+len(extra))
	out = append(out, builtinEventTypes[:]...)
	for _, t := range extra {
		if isUpperSnake(t) && !slices.Contains(out, t) {
			out = append(out, t)
		}
	}
	return out
}

// Config is the part of the configuration file that rules owns: the
// top-level keys event_types, rules_file and rules.
//
// Rules is kept as a yaml.Node so that Compile can report problems at their
// line and column in the configuration file.
type Config struct {
	// EventTypes are event type names beyond the built-in ones.
	EventTypes []string `yaml:"event_types"`
	// RulesFile names a file holding the rules (see CompileFile). Relative
	// paths are resolved by the loader, against the configuration file's
	// directory.
	RulesFile string `yaml:"rules_file"`
	// Rules is the inline YAML sequence of rules (see Compile).
	Rules yaml.Node `yaml:"rules"`
}

// DefaultConfig returns the configuration used for keys the file leaves out:
// no extra event types and no rules.
func DefaultConfig() Config {
	return Config{}
}

// Validate reports every problem with c, joined, each a *configerr.Error
// with the YAML key it is about ("event_types"), so that the loader can
// point at the line that holds it. The rules themselves are checked by
// Compile, which knows their positions.
func (c Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, configerr.Field(key, format, args...))
	}
	seen := make(map[string]bool, len(c.EventTypes))
	for _, t := range builtinEventTypes {
		seen[t] = true
	}
	for _, t := range c.EventTypes {
		switch {
		case !isUpperSnake(t):
			bad("event_types", "%q is not an UPPER_SNAKE name (at most 64 capital letters, digits and single underscores, starting with a letter, such as %q)",
				t, "ORDER_REFUNDED")
		case isBuiltinEventType(t):
			bad("event_types", "%q is a built-in event type; remove it from event_types", t)
		case seen[t]:
			bad("event_types", "%q is listed more than once", t)
		}
		seen[t] = true
	}
	if c.RulesFile != "" && hasInlineRules(&c.Rules) {
		bad("rules_file", "cannot be used together with inline rules; keep the rules in %q or under `rules:`, not both", c.RulesFile)
	}
	return errors.Join(errs...)
}

// hasInlineRules reports whether n holds anything but an empty sequence or null.
func hasInlineRules(n *yaml.Node) bool {
	switch n.Kind {
	case 0:
		return false
	case yaml.SequenceNode:
		return len(n.Content) > 0
	case yaml.ScalarNode:
		return n.ShortTag() != "!!null"
	}
	return true
}

func isBuiltinEventType(t string) bool {
	for _, b := range builtinEventTypes {
		if b == t {
			return true
		}
	}
	return false
}

// isUpperSnake reports whether s matches [A-Z][A-Z0-9]*(_[A-Z0-9]+)*.
func isUpperSnake(s string) bool {
	if s == "" || s[0] < 'A' || s[0] > 'Z' || len(s) > 64 {
		return false
	}
	if strings.HasSuffix(s, "_") || strings.Contains(s, "__") {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}
