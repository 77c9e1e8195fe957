package main

import (
	"fmt"
	"io"
)

func cmdValidate(args []string, stdout, stderr io.Writer) int {
	path, ok := configFlag("validate", args, stderr, nil)
	if !ok {
		return 2
	}
	cfg, eng, err := loadAll(path)
	if err != nil {
		printProblems(stderr, err)
		return 1
	}
	src := "inline"
	if p := cfg.rulesFilePath(); p != "" {
		src = p
	}
	fmt.Fprintf(stdout, "%s: ok (%d rules from %s)\n", path, eng.Len(), src)
	return 0
}
