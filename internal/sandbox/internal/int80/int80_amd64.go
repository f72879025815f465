package int80

func call(nr, a, b uintptr) uintptr
