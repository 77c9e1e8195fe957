// Package rules turns the YAML rules of SPEC §3 into an Engine that infers
// events from HTTP exchanges.
//
// Compile, CompileSource and CompileFile check a rule set completely and
// report every problem at once, each as an *Error whose text is
// "FILE:LINE:COL: message" pointing at the YAML node (or the character of a
// CEL expression) it is about. A compiled Engine is immutable and safe for
// concurrent use:
//
//   - Engine.Route answers, without allocating, whether some rule could
//     match a request's method and path, so that the proxy captures bodies
//     only on routes that matter and labels metrics with the rule's path
//     template.
//   - Engine.Evaluate runs the rules against a captured Exchange and returns
//     candidate Events (with a State for `changed` rules) and an *EvalError
//     per rule that failed. Whoever stores `changed` values (the outbox)
//     decides whether a candidate fires with DecideChange, the one place
//     that decision is made.
//   - A rule with `each` runs its other expressions once per element of a
//     list, as the variable item (at most MaxEachElements, all of them
//     under one cost budget), and emits one event per element that fires.
//
// CEL expressions see three variables: request {method, path, query,
// headers, body}, response {status, headers, body} and path (the
// template's captures). Header names are lower-case; query and headers map
// to the first value. A body is its parsed JSON when it is JSON, whatever
// its content type says, and null otherwise (also when it was truncated).
// JSON integers that fit are CEL ints (so ids keep every digit), other
// numbers doubles. Besides the standard library, expressions may use the
// CEL string extensions (lowerAscii, split, …) and optional values
// (response.body.?status.orValue("")). Expressions are compiled once,
// type-checked (including the fields of request and response and the names
// of path captures) and evaluated under a cost limit, so that no body or
// rule can make an evaluation run away.
//
// Defaults and renderings beyond SPEC §3: when.status defaults to 2xx;
// method, path and subject are required. A subject renders strings as they
// are and integral numbers without a decimal point; null or "" is an error.
// Event data is the JSON of the data expression: parts of a body are copied
// as the upstream wrote them (compacted, key order kept), maps built by the
// expression have sorted keys. A `changed` value is always encoded
// canonically (sorted keys, shortest numbers), because the outbox compares
// it byte for byte.
//
// The package does no I/O, starts no goroutines and exports no metrics:
// package watch reloads rules, the proxy counts what Evaluate returns.
package rules
