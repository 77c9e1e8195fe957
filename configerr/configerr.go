// Package configerr defines Error, the one error type for problems in the
// configuration file and the rules: a message about a key path (what each
// package's Config.Validate returns) that the loader places at a file
// position (what `eventtap validate` prints as "FILE:LINE:COL: message").
//
// It owns only the type and its text. It must not know the configuration's
// layout nor read files: package main maps key paths to positions, and rules
// computes positions inside rules and CEL expressions itself.
package configerr

import (
	"errors"
	"fmt"
	"strings"
)

// Error is one configuration problem.
//
// A package's Config.Validate returns it with Path set (relative to the
// package's section) and no position; the loader prefixes the section with
// Under and sets File, Line and Column from where the key is in the file.
// Compilers that know positions themselves (rules) set File, Line and
// Column directly, and may leave Path empty.
type Error struct {
	// Path is the YAML key path the problem is about, outermost first, such
	// as {"proxy", "listen"}; empty when the message needs no key.
	Path []string
	// File, Line and Column place the problem; Line and Column are 1-based,
	// Column counts characters. Line 0 means "not placed yet".
	File         string
	Line, Column int
	// Msg says what is wrong and how to fix it, without the key.
	Msg string
}

// Field returns a problem with the key path key (dotted for nested keys:
// "tls.cert") and the message format, args.
func Field(key, format string, args ...any) *Error {
	return &Error{Path: strings.Split(key, "."), Msg: fmt.Sprintf(format, args...)}
}

// At returns a problem placed at file:line:col, with no key path.
func At(file string, line, col int, format string, args ...any) *Error {
	return &Error{File: file, Line: line, Column: col, Msg: fmt.Sprintf(format, args...)}
}

// Key returns the dotted key path, "" when there is none.
func (e *Error) Key() string {
	return strings.Join(e.Path, ".")
}

// Error returns "FILE:LINE:COL: key: message" once placed, "key: message"
// before; the parts without content are left out.
func (e *Error) Error() string {
	msg := e.Msg
	if len(e.Path) > 0 {
		msg = e.Key() + ": " + msg
	}
	if e.Line > 0 {
		return fmt.Sprintf("%s:%d:%d: %s", e.File, e.Line, e.Column, msg)
	}
	return msg
}

// Under returns a copy of e whose path starts with the keys prefix, for
// the loader to turn a section's relative path into a full one.
func (e *Error) Under(prefix ...string) *Error {
	c := *e
	c.Path = append(append(make([]string, 0, len(prefix)+len(e.Path)), prefix...), e.Path...)
	return &c
}

// As returns err as an *Error when it is one (or wraps one), nil otherwise.
func As(err error) *Error {
	var e *Error
	if errors.As(err, &e) {
		return e
	}
	return nil
}
