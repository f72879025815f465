// Package int80 makes a system call through the i386 interface (int
// 0x80) from a 64-bit process: the escape suite's probe of seccomp's
// architecture check. Imported by tests only.
package int80

// Call makes i386 system call nr with arguments a and b and returns its
// result (a negative errno on failure). Only on amd64.
func Call(nr, a, b uintptr) uintptr { return call(nr, a, b) }
