#include "textflag.h"

// func call(nr, a, b uintptr) uintptr
TEXT ·call(SB), NOSPLIT, $0-32
	MOVQ nr+0(FP), AX
	MOVQ a+8(FP), BX
	MOVQ b+16(FP), CX
	INT $0x80
	MOVQ AX, ret+24(FP)
	RET
