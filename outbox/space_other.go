//go:build !(linux || darwin || freebsd || netbsd || openbsd)

package outbox

// freeBytes is not known on this platform: writes are not guarded.
var freeBytes func(dir string) (uint64, error)
