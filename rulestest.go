package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/eventtap/eventtap/rules"
)

// cmdRulesTest is a dry run: it evaluates the configured rules against one
// recorded exchange and prints the events they would emit, touching no store.
func cmdRulesTest(args []string, stdout, stderr io.Writer) int {
	var exPath string
	path, ok := configFlag("rules test", args, stderr, func(fs *flag.FlagSet) {
		fs.StringVar(&exPath, "exchange", "", "path to a recorded exchange (JSON; see README \"Testing rules\")")
	})
	if !ok {
		return 2
	}
	if exPath == "" {
		fmt.Fprintln(stderr, "eventtap rules test: --exchange EX.json is required (see README \"Testing rules\")")
		return 2
	}
	_, eng, err := loadAll(path)
	if err != nil {
		printProblems(stderr, err)
		return 1
	}
	data, err := os.ReadFile(exPath)
	if err != nil {
		fmt.Fprintf(stderr, "%s: cannot read the exchange: %v\n", exPath, errors.Unwrap(err))
		return 1
	}
	ex, err := rules.ParseExchange(data)
	if err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", exPath, err)
		return 1
	}
	route, ok := eng.Route(ex.Request.Method, ex.Request.Path)
	if !ok {
		fmt.Fprintf(stdout, "%s %s: no rule's method and path match; the proxy would pass it through without capturing\n",
			ex.Request.Method, ex.Request.Path)
		return 0
	}
	fmt.Fprintf(stdout, "%s %s -> %d: captured (route %s)\n\n", ex.Request.Method, ex.Request.Path, ex.Response.Status, route)
	fired, failed := 0, 0
	for _, o := range eng.Explain(ex) {
		if o.Items != nil {
			// A rule with each: one line per element.
			fmt.Fprintf(stdout, "rule %s: each gave %d element(s)\n", o.Rule, len(o.Items))
			for i, it := range o.Items {
				printOutcome(stdout, fmt.Sprintf("  [%d]", i), it)
			}
			switch o.Result {
			case rules.Fired:
				fired++
			case rules.Failed:
				failed++
				fmt.Fprintf(stdout, "  error: the rule emits nothing for this exchange: %v\n", o.Err)
			}
			continue
		}
		switch o.Result {
		case rules.Fired:
			fired++
		case rules.Failed:
			failed++
		}
		printOutcome(stdout, "rule "+o.Rule, o)
	}
	if fired == 0 && failed == 0 {
		fmt.Fprintln(stdout, "\nno rule emits an event")
	}
	if failed > 0 {
		return 1
	}
	return 0
}

// printOutcome prints what a rule (or one element of its each) made of
// the exchange, prefixed by who.
func printOutcome(w io.Writer, who string, o rules.Outcome) {
	indent := who[:len(who)-len(strings.TrimLeft(who, " "))] + "  "
	switch o.Result {
	case rules.Fired:
		ev := o.Event
		fmt.Fprintf(w, "%s: emits %s for subject %q\n", who, ev.Type, ev.Subject)
		fmt.Fprintf(w, "%sdata: %s\n", indent, compactJSON(ev.Data))
		if ev.State != nil {
			fmt.Fprintf(w, "%schanged: current value %s; fires only when it differs from the last value stored for this subject (the first sighting only records it; null records nothing)\n",
				indent, compactJSON(ev.State.Value))
		}
	case rules.Failed:
		fmt.Fprintf(w, "%s: error: %v\n", who, o.Err)
	default:
		fmt.Fprintf(w, "%s: skipped, %s\n", who, o.Result)
	}
}

func compactJSON(raw json.RawMessage) string {
	var b bytes.Buffer
	if err := json.Compact(&b, raw); err != nil {
		return string(raw)
	}
	return b.String()
}
