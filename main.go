// Command eventtap is a sidecar reverse proxy that infers order and shipment
// events from the traffic of an order API it cannot change, commits them to a
// durable outbox and delivers them as signed webhooks.
//
// main.go only parses the command line and wires the packages together:
// rules (what to infer), proxy (the request path), outbox (durability and
// delivery) and admin (GraphQL, metrics, health).
package main

import (
	"fmt"
	"io"
	"os"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

const usage = `eventtap infers order and shipment events from an order API's traffic and delivers them as signed webhooks.

Usage:
  eventtap serve    --config FILE                     run the sidecar until SIGINT/SIGTERM
  eventtap validate --config FILE                     check the config and rules; print every problem
  eventtap rules test --config FILE --exchange EX.json  show which rules match a recorded exchange
  eventtap demo [--listen ADDR] [--admin ADDR] [--api ADDR] [--receiver ADDR] [--data DIR]
                                                      run a self-contained demo (order API + sidecar + receiver)
  eventtap deliver  --config FILE                     cluster mode only: the admin API and delivery, no proxy
  eventtap version                                    print the version
`

// run executes one command and returns the process exit code.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return cmdServe(args[1:], stdout, stderr)
	case "validate":
		return cmdValidate(args[1:], stdout, stderr)
	case "rules":
		if len(args) > 1 && args[1] == "test" {
			return cmdRulesTest(args[2:], stdout, stderr)
		}
		fmt.Fprint(stderr, "eventtap rules: the only subcommand is \"test\"\n\n"+usage)
		return 2
	case "demo":
		return cmdDemo(args[1:], stdout, stderr)
	case "deliver":
		return cmdDeliver(args[1:], stdout, stderr)
	case "version", "--version", "-v":
		fmt.Fprintf(stdout, "eventtap %s\n", version)
		return 0
	case "help", "--help", "-h":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "eventtap: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}
