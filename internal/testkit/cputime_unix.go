//go:build unix

package testkit

import (
	"syscall"
	"time"
)

// CPUTime is the user plus system CPU time the process has used, for
// benchmarks to report CPU per operation: on a shared machine that is far
// steadier than wall time.
func CPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
