//go:build linux || darwin || freebsd || netbsd || openbsd

package outbox

import "syscall"

// freeBytes is the space available to an unprivileged writer of dir's file
// system.
func freeBytes(dir string) (uint64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, err
	}
	// The field types differ between platforms; the conversions are not
	// redundant everywhere.
	return uint64(st.Bavail) * uint64(st.Bsize), nil
}
